#pragma once
// sluice --doctor: a preflight of this host against the config (CONTRACT "Operations"),
// before anything starts: no EAL, no device touched, no root needed. Each check is OK, WARN
// or FAIL, says what it saw and, unless OK, the command or boot parameter that fixes it.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "app/options.h"
#include "lib/config/config.h"

namespace sluice::app {

enum class Status : uint8_t { kOk, kWarn, kFail };

struct Check {
  std::string name;  // "hugepages", "port wan", "isolation lcore 1", ...
  Status status = Status::kOk;
  std::string detail;  // what was seen
  std::string fix;     // for WARN and FAIL: the command or boot parameter; else ""
};

// What the EAL options before "--" tell the doctor (it does not start EAL).
struct EalView {
  bool given = false;                           // any EAL option at all
  bool no_huge = false;                         // --no-huge
  std::optional<uint64_t> mem_mib;              // -m
  std::optional<std::string> huge_dir;          // --huge-dir
  std::optional<std::vector<unsigned>> lcores;  // -l, -c or --lcores
  std::map<unsigned, unsigned> cpu_of;          // --lcores lcore@cpu: the (first) CPU of an lcore
  std::optional<unsigned> main_lcore;           // --main-lcore, else the first of lcores
  bool bad_lcores = false;                      // -l/-c/--lcores given but not understood

  // The CPU an lcore runs on: as --lcores maps it, else the same number (-l, -c).
  unsigned cpu(unsigned lcore) const {
    auto it = cpu_of.find(lcore);
    return it == cpu_of.end() ? lcore : it->second;
  }
};
EalView eal_view(const std::vector<std::string>& eal_args);  // argv[0] first

// Every check of cfg against this host. cfg null: the config did not load (config_error
// says why); the host's own checks still run.
std::vector<Check> doctor_checks(const config::Config* cfg, const std::string& config_error,
                                 const EalView& eal);

// One line per check ("WARN  isolation lcore 1: ... -> fix: ..."), then the counts.
std::string doctor_text(const std::vector<Check>& checks);
// {"checks":[{"name","status","detail","fix"}...],"ok":N,"warn":N,"fail":N}
std::string doctor_json(const std::vector<Check>& checks);

// sluice --doctor [-c FILE] [--json]: prints the checks on stdout and returns the exit code:
// 1 when a check FAILs (a config that does not load is one), else 0.
int run_doctor(const Options& opt);

}  // namespace sluice::app
