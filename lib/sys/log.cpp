#include "lib/sys/log.h"

#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace sluice::sys {

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  if (name == "trace") return spdlog::level::trace;
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warn") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  return std::nullopt;
}

void log_setup(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("sluice");
  // Under systemd (JOURNAL_STREAM set) the journal stamps each line already.
  logger->set_pattern(std::getenv("JOURNAL_STREAM") ? "[%l] %v" : "%H:%M:%S.%e [%l] %v");
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

}  // namespace sluice::sys
