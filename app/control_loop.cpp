#include "app/control_loop.h"

#include <poll.h>
#include <rte_launch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "lib/stats/on_demand.h"
#include "lib/stats/telemetry.h"
#include "lib/sys/notify.h"

namespace sluice::app {

namespace {

using Clock = Appliance::Clock;

// How often the heartbeats are sampled when nothing else wakes the loop: a worker stalled for
// kStallMs is seen at most this much later. Each wake-up of the main lcore costs tens of
// microseconds of a CPU (measured: 50 wake-ups a second took ~2.5 ms/s of the CPU a busy lcore
// shared, the kernel's context switch most of it), so the loop sleeps until it has work and
// this is the only timer it keeps for itself.
constexpr auto kLivenessPeriod = std::chrono::milliseconds(250);

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Milliseconds poll() may sleep to reach `deadline` (rounded up: waking early only loops).
int ms_until(Clock::time_point deadline, Clock::time_point now) {
  if (deadline <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::min<int64_t>(ms, 60'000));
}

// Builds a snapshot and hands it to telemetry and Prometheus, which serve it from their own
// threads, and lets the requests that waited for it go.
void publish(Appliance& a, Clock::time_point now) {
  stats::Snapshot s = a.snapshot();
  if (a.prometheus) a.prometheus->publish(stats::to_prometheus(s));
  stats::telemetry_publish(s);
  stats::on_demand().published(now);
}

}  // namespace

int control_loop(Appliance& a, const Options& opt) {
  int rc = 0;
  const auto& conf = a.cfg->appliance;
  const auto watchdog = sys::watchdog_interval();
  const bool stats_table = opt.stats_period_s > 0;
  const bool until = opt.duration_s > 0;
  const auto end = a.started + seconds(opt.duration_s);
  auto next_stats = a.started + seconds(opt.stats_period_s);
  auto next_watchdog = a.started;
  auto next_liveness = a.started;
  stats::Snapshot prev = a.snapshot();
  auto prev_time = a.started;
  // The first copy at once (a scrape before any request is not a 503); later ones on request.
  publish(a, Clock::now());
  stats::on_demand().attach(&ReloadControl::wake);
  while (!g_stop.load()) {
    // Sleep until there is work: a signal, a reload trigger or its timer, a statistics
    // request (telemetry, Prometheus), the stats period, the watchdog, the liveness sample.
    const auto before = Clock::now();
    auto deadline = next_liveness;
    if (stats_table) deadline = std::min(deadline, next_stats);
    if (watchdog.count() > 0) deadline = std::min(deadline, next_watchdog);
    if (until) deadline = std::min(deadline, end);
    int timeout = ms_until(deadline, before);
    if (int t = a.reload->timeout_ms(before); t >= 0) timeout = std::min(timeout, t);
    auto fds = a.reload->fds();
    if (!stats::on_demand().wanted()) poll(fds.data(), fds.size(), timeout);
    const auto now = Clock::now();
    if (now - before > std::chrono::milliseconds(timeout) + std::chrono::seconds(1)) {
      spdlog::warn("control loop: a {} ms wait took {:.1f} s (main lcore starved of CPU?)", timeout,
                   std::chrono::duration<double>(now - before).count());
    }
    if (until && now >= end) break;
    a.reload->run(now);
    const bool wanted = stats::on_demand().wanted();
    bool changed = false;
    if (now >= next_liveness || wanted) {
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
      // A stall (or a recovery) is published at once, asked for or not.
      changed = a.observe(now);
      next_liveness = now + kLivenessPeriod;
    }
    if (stats_table && now >= next_stats) {
      stats::Snapshot s = a.snapshot();
      std::fputs(
          stats::to_table(s, &prev, std::chrono::duration<double>(now - prev_time).count()).c_str(),
          stdout);
      std::fflush(stdout);
      prev = std::move(s);
      prev_time = now;
      next_stats = now + seconds(opt.stats_period_s);
    }
    if (wanted || changed) publish(a, now);
    if (watchdog.count() > 0 && now >= next_watchdog) {
      sys::notify_watchdog();  // held (feeds nothing) while a worker is stalled
      next_watchdog = now + watchdog / 2;
    }
  }
  // Requests from now on are served from the last copy at once.
  stats::on_demand().attach(nullptr);
  return rc;
}

}  // namespace sluice::app
