#include "app/control_loop.h"

#include <poll.h>
#include <rte_launch.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>

#include "lib/stats/telemetry.h"
#include "lib/sys/notify.h"

namespace sluice::app {

namespace {

using Clock = Appliance::Clock;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

int control_loop(Appliance& a, const Options& opt) {
  int rc = 0;
  const auto& conf = a.cfg->appliance;
  const auto watchdog = sys::watchdog_interval();
  auto next_stats = a.started + seconds(opt.stats_period_s);
  auto next_watchdog = a.started;
  auto next_metrics = a.started;
  stats::Snapshot prev = a.snapshot();
  auto prev_time = a.started;
  while (!g_stop.load()) {
    // Sleep until a reload trigger, a signal, or the next 20 ms tick (liveness, stats,
    // watchdog).
    auto fds = a.reload->fds();
    int timeout = 20;
    const auto before = Clock::now();
    if (int t = a.reload->timeout_ms(before); t >= 0) timeout = std::min(timeout, t);
    poll(fds.data(), fds.size(), timeout);
    const auto now = Clock::now();
    if (now - before > std::chrono::milliseconds(timeout) + std::chrono::seconds(1)) {
      spdlog::warn("control loop: a {} ms wait took {:.1f} s (main lcore starved of CPU?)", timeout,
                   std::chrono::duration<double>(now - before).count());
    }
    if (opt.duration_s > 0 && now - a.started >= seconds(opt.duration_s)) break;
    for (const auto& w : a.workers) {
      if (rte_eal_get_lcore_state(w->lcore) != RUNNING && !g_stop.load()) {
        spdlog::error("worker on lcore {} stopped unexpectedly", w->lcore);
        rc = 3;
        g_stop.store(true);
      }
    }
    if (a.capture && rte_eal_get_lcore_state(conf.capture->lcore) != RUNNING && !g_stop.load()) {
      spdlog::error("capture on lcore {} stopped unexpectedly", conf.capture->lcore);
      rc = 3;
      g_stop.store(true);
    }
    a.reload->run(now);
    // A stall (or a recovery) is published at once rather than at the next tick.
    if (a.observe(now)) next_metrics = now;
    if (opt.stats_period_s > 0 && now >= next_stats) {
      stats::Snapshot s = a.snapshot();
      std::fputs(
          stats::to_table(s, &prev, std::chrono::duration<double>(now - prev_time).count()).c_str(),
          stdout);
      std::fflush(stdout);
      prev = std::move(s);
      prev_time = now;
      next_stats = now + seconds(opt.stats_period_s);
    }
    if (now >= next_metrics) {
      // Telemetry and Prometheus serve this copy from their own threads.
      stats::Snapshot s = a.snapshot();
      if (a.prometheus) a.prometheus->publish(stats::to_prometheus(s));
      stats::telemetry_publish(s);
      next_metrics = now + std::chrono::milliseconds(500);
    }
    if (watchdog.count() > 0 && now >= next_watchdog) {
      sys::notify_watchdog();  // held (feeds nothing) while a worker is stalled
      next_watchdog = now + watchdog / 2;
    }
  }
  return rc;
}

}  // namespace sluice::app
