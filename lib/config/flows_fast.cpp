// The flows file's fast reader.
//
// yaml-cpp takes seconds for a flows file of 100k rules (most of a reload). The flows files
// people and generators write use a small part of YAML: block maps and lists, one-line flow
// maps such as `match: { proto: tcp, dst_port: 23 }`, plain or simply quoted scalars, and
// comments. This reader takes that part only and valid files only: on anything else (another
// YAML construct, a non-ASCII byte, a tab, an empty value, a value the decoders would refuse)
// it gives up and the file goes through yaml-cpp and config.cpp's decoders, which report the
// problem with its file:line:col. On what it takes it gives the same Flows as they do
// (tests/unit/config compares the two, on the shipped examples and on thousands of edits).

#include "lib/config/flows_fast.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace sluice::config::detail {
namespace {

struct Node;
struct Entry;

struct Node {
  enum class Kind : uint8_t { kScalar, kMap, kList } kind = Kind::kScalar;
  bool quoted = false;
  int line = 0, col = 0;  // 0-based, as YAML::Mark
  std::string_view text;  // a scalar's
  std::vector<Entry> map;
  std::vector<Node> list;
};

struct Entry {
  std::string_view key;
  Node value;
};

// One line of content: its indentation and its text without the comment and trailing blanks.
struct Line {
  int number;  // 0-based
  int indent;
  std::string_view text;
};

bool plain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-' || c == '/' || c == ':';
}

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Splits text into content lines; false on a byte or construct this reader does not take.
bool split_lines(std::string_view text, std::vector<Line>& out) {
  int number = 0;
  for (size_t pos = 0; pos < text.size(); ++number) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    // Cut the comment: '#' at the start or after a blank, outside quotes.
    char quote = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '#' && (i == 0 || line[i - 1] == ' ')) {
        line = line.substr(0, i);
        break;
      }
    }
    for (char c : line) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7f || c == '\\') return false;  // tabs, CR, non-ASCII, escapes
    }
    while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t indent = line.find_first_not_of(' ');
    const std::string_view body = line.substr(indent);
    if (indent == 0 && (body.starts_with("---") || body.starts_with("...") || body[0] == '%'))
      return false;  // document markers and directives
    out.push_back(Line{number, static_cast<int>(indent), body});
  }
  return true;
}

class Reader {
 public:
  explicit Reader(std::vector<Line> lines) : lines_(std::move(lines)) {}

  // The document: a block map at column 0 that takes every line.
  bool document(Node& root) {
    if (lines_.empty() || lines_[0].indent != 0 || is_item(lines_[0].text)) return false;
    return block_map(lines_[0].text, 0, root) && next_ == lines_.size();
  }

 private:
  static bool is_item(std::string_view s) { return s == "-" || s.starts_with("- "); }

  // A scalar, quoted or plain, or a one-line flow map: all of `s`, which starts at `col`.
  bool inline_value(int line, int col, std::string_view s, Node& out) {
    out.line = line;
    out.col = col;
    if (s.front() == '{') return flow_map(line, col, s, out);
    size_t used = 0;
    if (!scalar(s, false, out, used)) return false;
    return used == s.size();
  }

  // A scalar at the start of s; `used` is how much of s it took. In a flow map a plain scalar
  // ends at ',', '}' or a blank.
  static bool scalar(std::string_view s, bool in_flow, Node& out, size_t& used) {
    out.kind = Node::Kind::kScalar;
    if (s.front() == '"' || s.front() == '\'') {
      const size_t end = s.find(s.front(), 1);
      if (end == std::string_view::npos) return false;
      out.text = s.substr(1, end - 1);
      out.quoted = true;
      used = end + 1;
      return std::all_of(out.text.begin(), out.text.end(), plain_char);
    }
    size_t n = 0;
    while (n < s.size() && plain_char(s[n])) ++n;
    if (n == 0 || (in_flow && n < s.size() && s[n] != ',' && s[n] != '}' && s[n] != ' ')) {
      return false;
    }
    out.text = s.substr(0, n);
    used = n;
    // Not a null, a list entry or a value indicator that YAML reads otherwise.
    if (out.text == "null" || out.text == "Null" || out.text == "NULL") return false;
    if (out.text.front() == '-' && out.text.size() == 1) return false;
    return out.text.back() != ':';
  }

  static bool flow_map(int line, int col, std::string_view s, Node& out) {
    out.kind = Node::Kind::kMap;
    out.line = line;
    out.col = col;
    size_t i = 1;
    auto blanks = [&] {
      while (i < s.size() && s[i] == ' ') ++i;
    };
    blanks();
    if (i < s.size() && s[i] == '}') return i + 1 == s.size();
    for (;;) {
      size_t k = i;
      while (k < s.size() && key_char(s[k])) ++k;
      if (k == i || k + 1 >= s.size() || s[k] != ':' || s[k + 1] != ' ') return false;
      Entry e{s.substr(i, k - i), {}};
      i = k + 2;
      blanks();
      if (i >= s.size()) return false;
      e.value.line = line;
      e.value.col = col + static_cast<int>(i);
      size_t used = 0;
      if (!scalar(s.substr(i), true, e.value, used)) return false;
      i += used;
      out.map.push_back(std::move(e));
      blanks();
      if (i >= s.size()) return false;
      if (s[i] == '}') return i + 1 == s.size();
      if (s[i] != ',') return false;
      ++i;
      blanks();
    }
  }

  // A block map whose first key is `first` (a line's text, or what follows "- ") at `col`; the
  // following lines at that indentation are its other keys.
  bool block_map(std::string_view first, int col, Node& out) {
    out.kind = Node::Kind::kMap;
    out.line = lines_[next_].number;
    out.col = col;
    std::string_view text = first;
    for (;;) {
      const int line = lines_[next_].number;
      ++next_;
      size_t k = 0;
      while (k < text.size() && key_char(text[k])) ++k;
      if (k == 0 || k >= text.size() || text[k] != ':') return false;
      Entry e{text.substr(0, k), {}};
      if (k + 1 < text.size()) {
        if (text[k + 1] != ' ') return false;
        std::string_view rest = text.substr(k + 1);
        const size_t skip = rest.find_first_not_of(' ');
        rest = rest.substr(skip);
        if (!inline_value(line, col + static_cast<int>(k + 1 + skip), rest, e.value)) return false;
      } else {
        // The value is the block below: more indented, or a list at this indentation.
        if (next_ == lines_.size()) return false;
        const Line& below = lines_[next_];
        if (below.indent > col) {
          if (!block(below.indent, e.value)) return false;
        } else if (below.indent == col && is_item(below.text)) {
          if (!block_list(col, e.value)) return false;
        } else {
          return false;  // an empty value (null)
        }
      }
      out.map.push_back(std::move(e));
      if (next_ == lines_.size() || lines_[next_].indent < col) return true;
      if (lines_[next_].indent > col || is_item(lines_[next_].text)) return false;
      text = lines_[next_].text;
    }
  }

  // The block that starts at the next line, at indentation `col`.
  bool block(int col, Node& out) {
    if (is_item(lines_[next_].text)) return block_list(col, out);
    return block_map(lines_[next_].text, col, out);
  }

  // A block list whose "- " are at `col`; each entry is a block map.
  bool block_list(int col, Node& out) {
    out.kind = Node::Kind::kList;
    out.line = lines_[next_].number;
    out.col = col;
    while (next_ < lines_.size() && lines_[next_].indent == col) {
      const std::string_view text = lines_[next_].text;
      if (!is_item(text)) return false;
      const size_t skip = text.find_first_not_of(' ', 1);
      if (skip == std::string_view::npos || text[skip] == '-') return false;
      Node item;
      if (!block_map(text.substr(skip), col + static_cast<int>(skip), item)) return false;
      out.list.push_back(std::move(item));
    }
    return next_ == lines_.size() || lines_[next_].indent < col;
  }

  std::vector<Line> lines_;
  size_t next_ = 0;
};

// A map's values by key, checked against the keys it may hold (none twice).
template <size_t N>
bool fields(const Node& n, const std::array<std::string_view, N>& keys,
            std::array<const Node*, N>& out) {
  out.fill(nullptr);
  if (n.kind != Node::Kind::kMap) return false;
  for (const Entry& e : n.map) {
    const auto it = std::find(keys.begin(), keys.end(), e.key);
    if (it == keys.end() || out[it - keys.begin()] != nullptr) return false;
    out[it - keys.begin()] = &e.value;
  }
  return true;
}

bool text_of(const Node* n, std::string_view& out) {
  if (n == nullptr || n->kind != Node::Kind::kScalar) return false;
  out = n->text;
  return true;
}

bool port_ref(const Node* n, const Appliance& app, uint16_t& out) {
  std::string_view name;
  if (!text_of(n, name)) return false;
  const int id = app.port_index(std::string(name));
  out = static_cast<uint16_t>(id);
  return id >= 0;
}

bool action(const Node* act, const Node* to, const Appliance& app, PolicyAction& out) {
  std::string_view word;
  if (!text_of(act, word)) return false;
  if (word == "drop") {
    out.action = Action::kDrop;
    return to == nullptr;
  }
  uint16_t id = 0;
  if (word != "forward" || !port_ref(to, app, id)) return false;
  out.action = Action::kForward;
  out.to = id;
  return true;
}

bool port_range(const Node* n, PortRange& out) {
  std::string_view text;
  if (!text_of(n, text)) return false;
  const size_t dash = text.find('-');
  const std::string_view lo_text = text.substr(0, dash);
  const std::string_view hi_text = dash == std::string_view::npos ? lo_text : text.substr(dash + 1);
  auto lo = detail::decimal(lo_text), hi = detail::decimal(hi_text);
  if (!lo || !hi || lo_text[0] == '+' || hi_text[0] == '+' || hi_text[0] == '-') return false;
  if (*lo < 0 || *hi > 65535 || *lo > *hi) return false;
  out = PortRange{static_cast<uint16_t>(*lo), static_cast<uint16_t>(*hi)};
  return true;
}

bool match(const Node& n, const Appliance& app, Match& m) {
  static constexpr std::array<std::string_view, 6> kKeys = {"in_port", "proto",    "src",
                                                            "dst",     "src_port", "dst_port"};
  std::array<const Node*, 6> f;
  if (!fields(n, kKeys, f)) return false;
  std::string_view text;
  if (f[0]) {
    uint16_t id = 0;
    if (!port_ref(f[0], app, id)) return false;
    m.in_port = id;
  }
  if (f[1]) {
    if (!text_of(f[1], text)) return false;
    m.proto = detail::proto_number(text);
    if (!m.proto) {
      auto v = detail::decimal(text);
      if (!v || *v < 0 || *v > 255 || text[0] == '-') return false;
      m.proto = static_cast<uint8_t>(*v);
    }
  }
  for (int i : {2, 3}) {
    if (!f[i]) continue;
    Cidr c;
    if (!text_of(f[i], text) || !detail::cidr_problem(std::string(text), c).empty()) return false;
    (i == 2 ? m.src : m.dst) = c;
  }
  if (m.src && m.dst && m.src->family != m.dst->family) return false;
  const bool ported = m.proto && (*m.proto == 6 || *m.proto == 17 || *m.proto == 132);
  for (int i : {4, 5}) {
    if (!f[i]) continue;
    PortRange r;
    if (!ported || !port_range(f[i], r)) return false;
    (i == 4 ? m.src_port : m.dst_port) = r;
  }
  return true;
}

bool rule(const Node& n, const std::string& path, const Appliance& app, Rule& r) {
  static constexpr std::array<std::string_view, 7> kKeys = {"name", "priority", "match",  "action",
                                                            "to",   "mirror",   "capture"};
  std::array<const Node*, 7> f;
  if (!fields(n, kKeys, f)) return false;
  r.mark = Mark{path, n.line + 1, n.col + 1};
  std::string_view text;
  if (!text_of(f[0], text)) return false;
  r.name = std::string(text);
  if (!detail::rule_name_ok(r.name)) return false;
  if (f[1]) {
    auto p = f[1]->quoted || !text_of(f[1], text) ? std::nullopt : detail::decimal(text);
    if (!p || *p < 0 || *p > 65535) return false;
    r.priority = static_cast<uint16_t>(*p);
  }
  if (f[2] && !match(*f[2], app, r.match)) return false;
  PolicyAction a;
  if (!action(f[3], f[4], app, a)) return false;
  r.action = a.action;
  r.to = a.to;
  if (f[5]) {
    uint16_t id = 0;
    if (!port_ref(f[5], app, id) || (r.to && *r.to == id)) return false;
    r.mirror = id;
  }
  if (f[6]) {
    if (f[6]->quoted || !text_of(f[6], text) || (text != "true" && text != "false")) return false;
    r.capture = text == "true";
    if (r.capture && !app.capture) return false;
  }
  return true;
}

bool policy(const Node& n, const Appliance& app, PolicyAction& out) {
  static constexpr std::array<std::string_view, 2> kKeys = {"action", "to"};
  std::array<const Node*, 2> f;
  return fields(n, kKeys, f) && action(f[0], f[1], app, out);
}

}  // namespace

std::optional<Flows> read_flows_fast(const std::string& text, const std::string& path,
                                     const Appliance& app) {
  std::vector<Line> lines;
  lines.reserve(text.size() / 24);
  if (!split_lines(text, lines)) return std::nullopt;
  Reader reader(std::move(lines));
  Node root;
  if (!reader.document(root)) return std::nullopt;
  static constexpr std::array<std::string_view, 4> kKeys = {"version", "non_ip", "default",
                                                            "rules"};
  std::array<const Node*, 4> f;
  if (!fields(root, kKeys, f)) return std::nullopt;
  Flows flows;
  flows.path = path;
  if (!f[0] || f[0]->kind != Node::Kind::kScalar || f[0]->quoted || f[0]->text != "1") {
    return std::nullopt;
  }
  if (f[1] && !policy(*f[1], app, flows.non_ip)) return std::nullopt;
  if (f[2] && !policy(*f[2], app, flows.fallback)) return std::nullopt;
  if (f[3]) {
    if (f[3]->kind != Node::Kind::kList) return std::nullopt;
    flows.rules.resize(f[3]->list.size());
    std::unordered_set<std::string_view> names;
    names.reserve(flows.rules.size());
    for (size_t i = 0; i < flows.rules.size(); ++i) {
      if (!rule(f[3]->list[i], path, app, flows.rules[i])) return std::nullopt;
      if (!names.insert(flows.rules[i].name).second) return std::nullopt;
    }
  }
  return flows;
}

}  // namespace sluice::config::detail
