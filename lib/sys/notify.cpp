#include "lib/sys/notify.h"

#include <atomic>

#include "sluice_build_config.h"

#if SLUICE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace sluice::sys {

namespace {
std::atomic<bool> g_watchdog_held{false};
}  // namespace

void watchdog_hold(bool held) {
  g_watchdog_held.store(held, std::memory_order_relaxed);
}

#if SLUICE_HAVE_SYSTEMD
void notify_ready() {
  sd_notify(0, "READY=1");
}
void notify_stopping() {
  sd_notify(0, "STOPPING=1");
}
void notify_reloading() {
  sd_notify(0, "RELOADING=1");
}
void notify_status(const std::string& status) {
  sd_notifyf(0, "STATUS=%s", status.c_str());
}
std::chrono::microseconds watchdog_interval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) return std::chrono::microseconds(usec);
  return std::chrono::microseconds(0);
}
void notify_watchdog() {
  if (!g_watchdog_held.load(std::memory_order_relaxed)) sd_notify(0, "WATCHDOG=1");
}
#else
void notify_ready() {}
void notify_stopping() {}
void notify_reloading() {}
void notify_status(const std::string&) {}
std::chrono::microseconds watchdog_interval() {
  return std::chrono::microseconds(0);
}
void notify_watchdog() {}
#endif

}  // namespace sluice::sys
