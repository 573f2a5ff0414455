#pragma once
// The command line: sluice [EAL options] -- [options]

#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "lib/sys/result.h"

namespace sluice::app {

inline constexpr const char* kDefaultConfig = "/etc/sluice/sluice.yaml";

struct Options {
  std::vector<std::string> eal_args;  // argv[0] first
  std::string config = kDefaultConfig;
  bool check = false;
  bool doctor = false;  // --doctor: check the host against the config (app/doctor.h)
  bool json = false;    // --json: with --doctor, one JSON object instead of lines
  bool help = false;
  bool version = false;
  double duration_s = 0;      // 0: run until a signal
  double stats_period_s = 0;  // 0: no periodic table
  std::string stats_out;
  std::string diff;  // --check --diff OLD: the flows file's changes against OLD
  std::optional<spdlog::level::level_enum> log_level;
  std::string simd = "auto";  // a kernel name (simd::kernel_from_name) or "auto"
};

// Splits argv at "--". Without "--" every argument is an application option.
Result<Options> parse_options(int argc, char** argv);

std::string usage(const std::string& argv0);

}  // namespace sluice::app
