#pragma once
// sluice --check: the config summary. Needs no EAL, no devices, no root.

#include <cstdint>
#include <string>

#include "lib/config/config.h"
#include "lib/sys/result.h"

namespace sluice::app {

std::string check_summary(const config::Config& cfg);

// MiB sluice takes from EAL beside the mbuf pools: the capture chunk buffers (0 without a
// capture section). --check's "EAL needs -m" and the startup error's agree through it.
uint64_t capture_buffer_mib(const config::Appliance& app);

// sluice --check --diff OLD: what reloading cfg's flows file would change against the flows
// file at old_path (decoded against the same appliance). An error when OLD is not valid.
Result<std::string> check_diff(const config::Config& cfg, const std::string& old_path);

}  // namespace sluice::app
