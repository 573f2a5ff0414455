#pragma once
// Control-plane logging (spdlog). Nothing on the data path logs.

#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace sluice::sys {

// trace|debug|info|warn|error -> spdlog level; nullopt for anything else.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// One logger for the process: "[time] [level] message" on stderr (journald adds its own
// timestamp, so under systemd the pattern drops it).
void log_setup(spdlog::level::level_enum level);

}  // namespace sluice::sys
