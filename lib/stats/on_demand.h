#pragma once
// Statistics built when someone asks, not on a tick. The telemetry commands and Prometheus
// scrapes run on their own threads and serve the snapshot the main lcore last published; before
// they answer, they ask for one no older than kFreshFor: the request wakes the control loop
// (which otherwise sleeps until it has work), which builds and publishes a snapshot and lets
// the waiting threads go. A burst of requests (sluice-ctl's several commands, /sluice/rules
// pages) shares one snapshot. If the main lcore does not answer within kWaitAtMost (a long
// reload on it), the request is served from the last snapshot, as before.
//
// Why: a fixed 500 ms tick built a snapshot, the Prometheus text (per rule: 1,000 rules are
// ~100 KiB) and the telemetry copy whether or not anyone read them, on a CPU that in small
// deployments (and in the e2e bench) is shared with a busy lcore.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace sluice::stats {

inline constexpr std::chrono::milliseconds kFreshFor{100};
inline constexpr std::chrono::milliseconds kWaitAtMost{500};

class OnDemand {
 public:
  using Clock = std::chrono::steady_clock;

  // Server threads: returns once a snapshot at most `fresh_for` old is published, or after
  // `wait_at_most`, or at once while the control loop is not running.
  void await_fresh(Clock::duration fresh_for = kFreshFor,
                   Clock::duration wait_at_most = kWaitAtMost);

  // The control loop: how to wake it (async-signal-safe, e.g. an eventfd write); from now on
  // requests wait for it. Null: the loop is gone, requests are served at once.
  void attach(void (*wake)() noexcept);
  // The control loop: someone waits for a snapshot.
  bool wanted() const;
  // The control loop: a snapshot was published at `at`; the waiting threads go.
  void published(Clock::time_point at);

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  void (*wake_)() noexcept = nullptr;
  bool wanted_ = false;
  uint64_t generation_ = 0;
  Clock::time_point at_{};
};

// The process's one (never destroyed: DPDK's telemetry threads are never joined).
OnDemand& on_demand();

}  // namespace sluice::stats
