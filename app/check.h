#pragma once
// sluice --check: the config summary. Needs no EAL, no devices, no root.

#include <string>

#include "lib/config/config.h"

namespace sluice::app {

std::string check_summary(const config::Config& cfg);

}  // namespace sluice::app
