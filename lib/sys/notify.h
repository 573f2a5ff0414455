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
// Feeds the watchdog, unless it is held.
void notify_watchdog();
// While held, notify_watchdog() feeds nothing, so systemd restarts a service whose workers have
// stalled even though its control plane (which feeds the watchdog) still runs.
void watchdog_hold(bool held);

}  // namespace sluice::sys
