#include "lib/flow/diff.h"

#include <algorithm>
#include <optional>
#include <unordered_map>

namespace sluice::flow {
namespace {

std::string port_text(const config::Appliance& app, uint16_t id) {
  return id < app.ports.size() ? app.ports[id].name : "port " + std::to_string(id);
}

std::string action_text(const config::Appliance& app, config::Action a,
                        const std::optional<uint16_t>& to) {
  if (a == config::Action::kDrop) return "drop";
  return "forward to " + (to ? port_text(app, *to) : std::string("?"));
}

std::string range_text(const config::PortRange& r) {
  return r.lo == r.hi ? std::to_string(r.lo) : std::to_string(r.lo) + "-" + std::to_string(r.hi);
}

bool same(const config::Cidr& a, const config::Cidr& b) {
  return a.family == b.family && a.prefix == b.prefix && a.addr == b.addr;
}
bool same(const config::PortRange& a, const config::PortRange& b) {
  return a.lo == b.lo && a.hi == b.hi;
}
bool same(uint16_t a, uint16_t b) {
  return a == b;
}
bool same(uint8_t a, uint8_t b) {
  return a == b;
}

// A rule's changes: each in words, or (kNames) only whether there is one; the same comparisons
// decide both.
struct Changes {
  bool words;
  bool any = false;
  std::vector<std::string> what;
  template <class Text>
  void add(Text text) {
    any = true;
    if (words) what.push_back(text());
  }
};

// Adds "key A -> B" when an optional field differs; "any" stands for absent.
template <class T, class Text>
void compare(Changes& out, const char* key, const std::optional<T>& a, const std::optional<T>& b,
             Text text) {
  if (a.has_value() == b.has_value() && (!a || same(*a, *b))) return;
  out.add([&] {
    return std::string(key) + " " + (a ? text(*a) : "any") + " -> " + (b ? text(*b) : "any");
  });
}

Changes rule_changes(const config::Rule& a, const config::Rule& b, const config::Appliance& app,
                     bool words) {
  Changes out{words};
  if (a.priority != b.priority) {
    out.add([&] {
      return "priority " + std::to_string(a.priority) + " -> " + std::to_string(b.priority);
    });
  }
  auto port = [&](uint16_t id) { return port_text(app, id); };
  compare(out, "in_port", a.match.in_port, b.match.in_port, port);
  compare(out, "proto", a.match.proto, b.match.proto, config::proto_name);
  compare(out, "src", a.match.src, b.match.src, config::cidr_text);
  compare(out, "dst", a.match.dst, b.match.dst, config::cidr_text);
  compare(out, "src_port", a.match.src_port, b.match.src_port, range_text);
  compare(out, "dst_port", a.match.dst_port, b.match.dst_port, range_text);
  if (a.action != b.action || a.to != b.to) {
    out.add([&] {
      return action_text(app, a.action, a.to) + " -> " + action_text(app, b.action, b.to);
    });
  }
  auto mirror = [&](uint16_t id) { return port_text(app, id); };
  compare(out, "mirror", a.mirror, b.mirror, mirror);
  if (a.capture != b.capture) {
    out.add([&] { return std::string(b.capture ? "capture on" : "capture off"); });
  }
  return out;
}

void policy_change(std::vector<std::string>& out, const char* key, const config::PolicyAction& a,
                   const config::PolicyAction& b, const config::Appliance& app) {
  if (a.action == b.action && a.to == b.to) return;
  out.push_back(std::string(key) + ": " + action_text(app, a.action, a.to) + " -> " +
                action_text(app, b.action, b.to));
}

std::string names(const std::vector<std::string>& v, size_t max) {
  std::string o;
  for (size_t i = 0; i < v.size() && i < max; ++i) o += (i ? ", " : "") + v[i];
  if (v.size() > max) o += ", ... (+" + std::to_string(v.size() - max) + " more)";
  return o;
}

}  // namespace

FlowsDiff diff_flows(const config::Flows& before, const config::Flows& after,
                     const config::Appliance& app, DiffDetail detail) {
  FlowsDiff d;
  const bool words = detail == DiffDetail::kChanges;
  // The rules both files list by the same names in the same places (an edit in place: usually
  // all of them) pair up without an index; names are unique in a file, so none of these
  // appears again in what follows.
  const size_t common = std::min(before.rules.size(), after.rules.size());
  size_t same_place = 0;
  while (same_place < common && before.rules[same_place].name == after.rules[same_place].name) {
    ++same_place;
  }
  for (size_t i = 0; i < same_place; ++i) {
    if (Changes c = rule_changes(before.rules[i], after.rules[i], app, words); c.any) {
      d.changed.push_back(RuleChange{after.rules[i].name, std::move(c.what)});
    }
  }
  std::unordered_map<std::string_view, size_t> old_index, new_index;
  old_index.reserve(before.rules.size() - same_place);
  new_index.reserve(after.rules.size() - same_place);
  for (size_t i = same_place; i < before.rules.size(); ++i) {
    old_index.emplace(before.rules[i].name, i);
  }
  for (size_t i = same_place; i < after.rules.size(); ++i)
    new_index.emplace(after.rules[i].name, i);

  // The rest's surviving rules, each file's order (the rules in the same places come first in
  // both).
  std::vector<std::string_view> old_order, new_order;
  for (size_t i = same_place; i < before.rules.size(); ++i) {
    const auto& r = before.rules[i];
    if (new_index.count(r.name) == 0) {
      d.removed.push_back(r.name);
    } else {
      old_order.push_back(r.name);
    }
  }
  for (size_t i = same_place; i < after.rules.size(); ++i) {
    const auto& r = after.rules[i];
    auto it = old_index.find(r.name);
    if (it == old_index.end()) {
      d.added.push_back(r.name);
      continue;
    }
    new_order.push_back(r.name);
    if (Changes c = rule_changes(before.rules[it->second], r, app, words); c.any) {
      d.changed.push_back(RuleChange{r.name, std::move(c.what)});
    }
  }
  policy_change(d.other, "non_ip", before.non_ip, after.non_ip, app);
  policy_change(d.other, "default", before.fallback, after.fallback, app);
  if (old_order != new_order) d.other.push_back("order of the surviving rules changed");
  return d;
}

std::string diff_counts(const FlowsDiff& d) {
  if (d.empty()) return "no rule changes";
  return std::to_string(d.added.size()) + " added, " + std::to_string(d.removed.size()) +
         " removed, " + std::to_string(d.changed.size()) + " changed";
}

std::string diff_line(const FlowsDiff& d, size_t max_names) {
  if (d.empty()) return "no rule changes";
  std::string o = diff_counts(d);
  std::vector<std::string> parts;
  if (!d.added.empty()) parts.push_back("added: " + names(d.added, max_names));
  if (!d.removed.empty()) parts.push_back("removed: " + names(d.removed, max_names));
  if (!d.changed.empty()) {
    std::vector<std::string> changed;
    for (const auto& c : d.changed) changed.push_back(c.name);
    parts.push_back("changed: " + names(changed, max_names));
  }
  for (const auto& other : d.other) parts.push_back(other);
  o += " (";
  for (size_t i = 0; i < parts.size(); ++i) o += (i ? "; " : "") + parts[i];
  return o + ")";
}

std::string diff_text(const FlowsDiff& d) {
  std::string o;
  for (const auto& n : d.added) o += "+ " + n + "\n";
  for (const auto& n : d.removed) o += "- " + n + "\n";
  for (const auto& c : d.changed) {
    o += "~ " + c.name + ":";
    for (size_t i = 0; i < c.what.size(); ++i) o += (i ? ", " : " ") + c.what[i];
    o += "\n";
  }
  for (const auto& other : d.other) o += "* " + other + "\n";
  return o;
}

}  // namespace sluice::flow
