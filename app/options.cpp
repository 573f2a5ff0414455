#include "app/options.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "lib/sys/log.h"
#include "simd/validate.h"

namespace sluice::app {

namespace {

constexpr double kMaxSeconds = 1e9;

Result<double> parse_seconds(const std::string& opt, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  // At most about 31 years: steady_clock time points hold a few hundred years of nanoseconds,
  // and a larger value overflowed them into "stop at once".
  if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < 0 || v > kMaxSeconds) {
    return Error{fmt::format("{}: expected a number of seconds 0..{:.0f}, got \"{}\"", opt,
                             kMaxSeconds, text)};
  }
  return v;
}

// "scalar|avx2|auto": the kernels this build has, then auto.
std::string simd_choices() {
  std::string names;
  for (simd::Kernel k : simd::kKernels) names += std::string(simd::kernel_name(k)) + "|";
  return names + "auto";
}

}  // namespace

std::string usage(const std::string& argv0) {
  return fmt::format(
      "Usage: {0} [EAL options] -- [options]\n"
      "\n"
      "sluice: a DPDK appliance that validates, classifies and forwards, drops or mirrors\n"
      "packets by YAML flow rules.\n"
      "\n"
      "Options (after --):\n"
      "  -c, --config FILE        appliance config (default {1})\n"
      "      --check              validate the appliance config and its flows file, print a\n"
      "                           summary (ports, lcores, rules per family, memory needed);\n"
      "                           exit 0 when valid, 1 with file:line:col errors when not.\n"
      "                           Needs no hugepages, no devices and no root.\n"
      "      --diff OLD.yaml      with --check: also print what reloading the config's flows\n"
      "                           file would change against flows file OLD.yaml (rules\n"
      "                           added, removed, changed): a dry run of a reload\n"
      "      --doctor             check this host against the config before starting it:\n"
      "                           hugepages per NUMA node, hugetlbfs, PCI ports (NUMA node,\n"
      "                           driver, IOMMU), worker lcore isolation, CPU governor,\n"
      "                           memlock and capabilities, io_uring, the capture path.\n"
      "                           One OK/WARN/FAIL line each, with the command that fixes\n"
      "                           it; exit 1 when something FAILs. Starts nothing, needs no\n"
      "                           root. EAL options before -- are taken into account\n"
      "                           (--no-huge, -m, -l, --huge-dir)\n"
      "      --json               with --doctor: print one JSON object instead\n"
      "      --duration SECONDS   stop by itself after SECONDS (at most 1e9)\n"
      "      --stats-period SECS  print a testpmd-style statistics table every SECS (0: off)\n"
      "      --stats-out FILE     on exit, write the final statistics JSON to FILE (checked at\n"
      "                           start: a path that cannot be written is exit 1)\n"
      "      --log-level LEVEL    trace|debug|info|warn|error (default: the config's, or info)\n"
      "      --simd KERNEL        validation and flow hash kernel: {2} (default auto:\n"
      "                           the best the CPU has within EAL's SIMD bitwidth, which is\n"
      "                           256 unless --force-max-simd-bitwidth says otherwise; no\n"
      "                           AVX-512 kernel is built: it measured slower than AVX2)\n"
      "      --version            print the version and exit\n"
      "  -h, --help               print this help and exit\n"
      "\n"
      "EAL options (before --) are DPDK's: -l LCORES, --no-huge, -m MiB, --vdev, -a PCI, ...\n"
      "The main lcore (the first of -l) runs the control plane; workers.lcores in the config\n"
      "must be other lcores of the -l set.\n"
      "\n"
      "Exit codes: 0 clean stop, 1 config or usage error, 2 startup error (EAL, ports,\n"
      "memory), 3 runtime fault. SIGINT/SIGTERM stop cleanly.\n"
      "\n"
      "Live reload: SIGHUP, the telemetry command /sluice/reload (dpdk-telemetry.py) or a change\n"
      "to the flows file reloads it: all of it is validated and compiled first; a bad file\n"
      "keeps the running rules (reload.failed, reload.last_error in the statistics).\n"
      "\n"
      "Example (the demo config: lcore 2 captures into /tmp/sluice-demo/capture, which must\n"
      "exist; with fewer than 3 CPUs use --lcores 0@0,1@1,2@0 instead of -l 0-2):\n"
      "  {0} -l 0-2 --no-huge -m 512 -- -c config/demo/sluice.yaml --duration 10 --stats-period "
      "1\n",
      argv0, kDefaultConfig, simd_choices());
}

Result<Options> parse_options(int argc, char** argv) {
  Options o;
  o.eal_args.emplace_back(argc > 0 ? argv[0] : "sluice");
  int split = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      split = i;
      break;
    }
  }
  int first_app = 1;
  if (split >= 0) {
    for (int i = 1; i < split; ++i) o.eal_args.emplace_back(argv[i]);
    first_app = split + 1;
  }
  auto value = [&](int& i, const std::string& opt) -> Result<std::string> {
    if (i + 1 >= argc) return Error{fmt::format("{} needs a value (see --help)", opt)};
    return std::string(argv[++i]);
  };
  for (int i = first_app; i < argc; ++i) {
    std::string a = argv[i];
    std::string inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      if (auto eq = a.find('='); eq != std::string::npos) {
        inline_value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    auto get = [&]() -> Result<std::string> {
      if (has_inline) return inline_value;
      return value(i, a);
    };
    if (a == "-h" || a == "--help") {
      o.help = true;
    } else if (a == "--version") {
      o.version = true;
    } else if (a == "--check") {
      o.check = true;
    } else if (a == "--doctor") {
      o.doctor = true;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "-c" || a == "--config") {
      auto v = get();
      if (!v) return Error{v.error()};
      o.config = *v;
    } else if (a == "--duration" || a == "--stats-period") {
      auto v = get();
      if (!v) return Error{v.error()};
      auto s = parse_seconds(a, *v);
      if (!s) return Error{s.error()};
      (a == "--duration" ? o.duration_s : o.stats_period_s) = *s;
    } else if (a == "--stats-out") {
      auto v = get();
      if (!v) return Error{v.error()};
      o.stats_out = *v;
    } else if (a == "--diff") {
      auto v = get();
      if (!v) return Error{v.error()};
      o.diff = *v;
    } else if (a == "--log-level") {
      auto v = get();
      if (!v) return Error{v.error()};
      o.log_level = sys::parse_log_level(*v);
      if (!o.log_level) {
        return Error{
            fmt::format("--log-level: expected trace|debug|info|warn|error, got \"{}\"", *v)};
      }
    } else if (a == "--simd") {
      auto v = get();
      if (!v) return Error{v.error()};
      // avx512 is a name users expect; choose_kernel (app/main.cpp) says why it is not built.
      if (*v != "auto" && *v != "avx512" && !simd::kernel_from_name(*v)) {
        return Error{fmt::format("--simd: expected {}, got \"{}\"", simd_choices(), *v)};
      }
      o.simd = *v;
    } else if (split < 0 && !a.empty() && a[0] == '-') {
      return Error{
          fmt::format("unknown option \"{}\"; EAL options go before \"--\" "
                      "(sluice [EAL options] -- [options]), see --help",
                      a)};
    } else {
      return Error{fmt::format("unknown option \"{}\" (see --help)", a)};
    }
  }
  if (!o.diff.empty() && !o.check) {
    return Error{"--diff needs --check (sluice --check -c CONFIG --diff OLD.yaml)"};
  }
  if (o.json && !o.doctor) return Error{"--json needs --doctor (sluice --doctor -c CONFIG --json)"};
  if (o.doctor && o.check) return Error{"--doctor and --check: choose one"};
  return o;
}

}  // namespace sluice::app
