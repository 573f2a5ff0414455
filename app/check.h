#pragma once
// sluice --check: the config summary. Needs no EAL, no devices, no root.

#include <string>

#include "lib/config/config.h"
#include "lib/sys/result.h"

namespace sluice::app {

std::string check_summary(const config::Config& cfg);

// sluice --check --diff OLD: what reloading cfg's flows file would change against the flows
// file at old_path (decoded against the same appliance). An error when OLD is not valid.
Result<std::string> check_diff(const config::Config& cfg, const std::string& old_path);

}  // namespace sluice::app
