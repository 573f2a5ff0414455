#pragma once
// systemd integration: readiness, status, watchdog. No-ops when not run by systemd or when
// built without libsystemd.

#include <chrono>
#include <string>

namespace sluice::sys {

void notify_ready();
void notify_stopping();
void notify_reloading();
void notify_status(const std::string& status);
// The watchdog interval systemd asked for (WatchdogSec), or zero when none.
std::chrono::microseconds watchdog_interval();
void notify_watchdog();

}  // namespace sluice::sys
