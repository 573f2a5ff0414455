#pragma once
// Liveness of the worker lcores, seen by the control plane. Each worker bumps its heartbeat
// (WorkerCounters::loops) in its housekeeping, every drain period (about 100 us), whether or not
// packets arrive; the control plane samples the heartbeats and calls a worker stalled when its
// heartbeat has not moved for longer than stats::kStallMs. A stalled worker is logged once per
// episode (by the caller, from the changes update() returns), shown in /sluice/health and the
// metrics, and stops the systemd watchdog from being fed.
//
// Pure bookkeeping (no DPDK, no clock of its own): the caller passes the time.

#include <chrono>
#include <cstdint>
#include <vector>

namespace sluice::pipeline {

class Liveness {
 public:
  using Clock = std::chrono::steady_clock;

  Liveness(size_t workers, Clock::time_point now);

  struct Change {
    size_t worker;
    bool stalled;      // true: became stalled; false: made progress again
    uint64_t idle_ms;  // how long it had not moved when the change was seen
  };
  // beats[w] is worker w's heartbeat now. Returns the workers whose state changed.
  std::vector<Change> update(const std::vector<uint64_t>& beats, Clock::time_point now);

  // Milliseconds since worker w's heartbeat last moved, as of the last update().
  uint64_t idle_ms(size_t w) const noexcept;
  bool stalled(size_t w) const noexcept { return state_[w].stalled; }
  bool any_stalled() const noexcept;
  size_t size() const noexcept { return state_.size(); }

 private:
  struct State {
    uint64_t beat = 0;
    Clock::time_point moved;
    bool stalled = false;
  };
  std::vector<State> state_;
  Clock::time_point last_;
};

}  // namespace sluice::pipeline
