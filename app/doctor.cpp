// sluice --doctor: the running and printing (the checks are in doctor_checks.cpp).

#include "app/doctor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "lib/sys/host.h"
#include "lib/sys/json.h"

namespace sluice::app {

namespace {

const char* status_name(Status s) {
  switch (s) {
    case Status::kOk:
      return "OK";
    case Status::kWarn:
      return "WARN";
    default:
      return "FAIL";
  }
}

struct Counts {
  size_t ok = 0, warn = 0, fail = 0;
};

Counts count(const std::vector<Check>& checks) {
  Counts n;
  for (const auto& c : checks) {
    (c.status == Status::kOk ? n.ok : c.status == Status::kWarn ? n.warn : n.fail) += 1;
  }
  return n;
}

// "-m 512", "-m512", "--huge-dir=/x", "--huge-dir /x": the value of an EAL option, or
// nullopt when args[i] is not that option. Advances i past a separate value.
std::optional<std::string> option_value(const std::vector<std::string>& args, size_t& i,
                                        std::string_view short_name, std::string_view long_name) {
  const std::string& a = args[i];
  for (std::string_view name : {short_name, long_name}) {
    if (name.empty() || !std::string_view(a).starts_with(name)) continue;
    if (a.size() == name.size()) {
      if (i + 1 >= args.size()) return std::string();
      return args[++i];
    }
    if (name.size() == 2 && name[1] != '-') return a.substr(2);  // -m512
    if (a[name.size()] == '=') return a.substr(name.size() + 1);
  }
  return std::nullopt;
}

// A hex core mask (-c 0x6) as its lcores.
std::optional<std::vector<unsigned>> core_mask(std::string text) {
  if (text.starts_with("0x") || text.starts_with("0X")) text = text.substr(2);
  if (text.empty()) return std::nullopt;
  std::vector<unsigned> out;
  unsigned bit = 0;
  for (auto it = text.rbegin(); it != text.rend(); ++it, bit += 4) {
    char* end = nullptr;
    const char digit[2] = {*it, 0};
    const unsigned long v = std::strtoul(digit, &end, 16);
    if (*end != '\0') return std::nullopt;
    for (unsigned b = 0; b < 4; ++b) {
      if (v & (1u << b)) out.push_back(bit + b);
    }
  }
  return out;
}

// One group of an --lcores value at text[i]: "(0-3,5)", "2" or "1-3"; advances i.
std::optional<std::vector<unsigned>> lcore_group(std::string_view text, size_t& i) {
  size_t end = 0;
  std::string_view inner;
  if (i < text.size() && text[i] == '(') {
    end = text.find(')', i);
    if (end == std::string_view::npos) return std::nullopt;
    inner = text.substr(i + 1, end - i - 1);
    ++end;
  } else {
    end = std::min(text.find_first_of("@,", i), text.size());
    inner = text.substr(i, end - i);
  }
  i = end;
  auto cpus = sys::parse_cpu_list(inner);
  if (!cpus || cpus->empty()) return std::nullopt;
  return cpus;
}

// EAL's --lcores: "lcores[@cpus],...", each a number, a range or a (list); lcores without
// @cpus run on the CPU of the same number.
bool parse_lcores(std::string_view text, EalView& e) {
  std::vector<unsigned> all;
  size_t i = 0;
  while (i < text.size()) {
    auto lcores = lcore_group(text, i);
    if (!lcores) return false;
    std::optional<std::vector<unsigned>> cpus;
    if (i < text.size() && text[i] == '@') {
      cpus = lcore_group(text, ++i);
      if (!cpus) return false;
    }
    for (unsigned l : *lcores) {
      all.push_back(l);
      e.cpu_of[l] = cpus ? cpus->front() : l;
    }
    if (i < text.size() && text[i] != ',') return false;
    if (i < text.size()) ++i;
  }
  e.lcores = all;
  return !all.empty();
}

}  // namespace

EalView eal_view(const std::vector<std::string>& args) {
  EalView e;
  e.given = args.size() > 1;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--no-huge") {
      e.no_huge = true;
    } else if (auto m = option_value(args, i, "-m", "")) {
      char* end = nullptr;
      const unsigned long long mib = std::strtoull(m->c_str(), &end, 10);
      if (!m->empty() && *end == '\0') e.mem_mib = mib;
    } else if (auto d = option_value(args, i, "", "--huge-dir")) {
      e.huge_dir = *d;
    } else if (auto l = option_value(args, i, "-l", "")) {
      e.lcores = sys::parse_cpu_list(*l);
      e.bad_lcores = !e.lcores;
    } else if (auto lm = option_value(args, i, "", "--lcores")) {
      e.bad_lcores = !parse_lcores(*lm, e);
    } else if (auto c = option_value(args, i, "-c", "")) {
      e.lcores = core_mask(*c);
      e.bad_lcores = !e.lcores;
    } else if (auto ml = option_value(args, i, "", "--main-lcore")) {
      char* end = nullptr;
      const unsigned long n = std::strtoul(ml->c_str(), &end, 10);
      if (!ml->empty() && *end == '\0') e.main_lcore = static_cast<unsigned>(n);
    }
  }
  // EAL's main lcore is the lowest of the set unless --main-lcore says otherwise.
  if (!e.main_lcore && e.lcores && !e.lcores->empty()) {
    e.main_lcore = *std::min_element(e.lcores->begin(), e.lcores->end());
  }
  return e;
}

std::string doctor_text(const std::vector<Check>& checks) {
  std::string out;
  for (const auto& c : checks) {
    out += fmt::format("{:<4}  {}: {}", status_name(c.status), c.name, c.detail);
    if (!c.fix.empty()) out += " -> fix: " + c.fix;
    out += '\n';
  }
  const Counts n = count(checks);
  out += fmt::format("doctor: {} OK, {} WARN, {} FAIL{}\n", n.ok, n.warn, n.fail,
                     n.fail > 0 ? ": sluice will not start (or not work) until the FAILs are fixed"
                     : n.warn > 0 ? ": sluice starts; the WARNs cost packets or safety"
                                  : "");
  return out;
}

std::string doctor_json(const std::vector<Check>& checks) {
  std::string out = "{\"checks\":[";
  for (size_t i = 0; i < checks.size(); ++i) {
    const auto& c = checks[i];
    out += fmt::format("{}{{\"name\":{},\"status\":\"{}\",\"detail\":{},\"fix\":{}}}",
                       i == 0 ? "" : ",", sys::json_string(c.name), status_name(c.status),
                       sys::json_string(c.detail), sys::json_string(c.fix));
  }
  const Counts n = count(checks);
  out += fmt::format("],\"ok\":{},\"warn\":{},\"fail\":{}}}\n", n.ok, n.warn, n.fail);
  return out;
}

int run_doctor(const Options& opt) {
  auto cfg = config::load(opt.config);
  const std::vector<Check> checks = doctor_checks(
      cfg ? cfg->get() : nullptr, cfg ? std::string() : cfg.error(), eal_view(opt.eal_args));
  const std::string out = opt.json ? doctor_json(checks) : doctor_text(checks);
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  return count(checks).fail > 0 ? 1 : 0;
}

}  // namespace sluice::app
