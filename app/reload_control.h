#pragma once
// Reload triggers and their answers, on the main lcore's control loop:
//   - SIGHUP (the handler only sets a flag and wakes the loop);
//   - the telemetry command /sluice/reload, answered when the reload is done: for an applied
//     one, once the generation it replaced is freed (its reply carries the grace time);
//   - a change to the flows file (inotify on its folder, debounced; symlinks followed).
// Each reload is wrapped in sd_notify RELOADING=1 / READY=1 and logged in one line.
//
// Rate limit and coalescing, so that a loop of callers can neither keep the main lcore
// reloading nor hold DPDK's telemetry connections (10 in DPDK 22.11; a /sluice/reload request
// holds its connection's thread until it is answered):
//   - a reload starts at least kReloadMinGap after the last one ended; kReloadBusyGap when
//     callers compete (since the last reload started, two or more telemetry requests waited at
//     once, or one was answered busy); and never sooner than the last one took (parse, build,
//     publish), so reloads use at most half the main lcore. A trigger in between waits,
//     whatever it is (SIGHUP, telemetry, file change);
//   - every request that arrives before the waiting reload starts joins it: one reload answers
//     them all (its reply counts them in "coalesced");
//   - at most kMaxReloadWaiters requests wait for an answer at a time; one more is answered at
//     once with result "busy" ("busy: a reload is already queued; retry"), and a reload is
//     queued if none was, so the file as it is now is read all the same.

#include <poll.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/config/config.h"
#include "lib/flow/reload.h"
#include "lib/flow/rule_store.h"
#include "lib/sys/file_watch.h"
#include "lib/sys/result.h"

namespace sluice::app {

struct ReloadWaiter;  // a telemetry request waiting for its answer

// The debounce of file-change reloads: editors write, rename and chmod within milliseconds.
inline constexpr std::chrono::milliseconds kWatchDebounce{200};
// The pause between two reloads: a lone caller reloading in turn (an operator, a test) waits
// kReloadMinGap, so at most 10 reloads a second; callers that compete get one a second. A small
// file reloads in a millisecond, so the pause is what keeps the main lcore from being pinned.
inline constexpr std::chrono::milliseconds kReloadMinGap{100};
inline constexpr std::chrono::milliseconds kReloadBusyGap{1000};
// Telemetry requests waiting for a reload's answer at a time (each holds one of DPDK's 10
// telemetry connections): the other 6 stay free for statistics.
inline constexpr unsigned kMaxReloadWaiters = 4;

class ReloadControl {
 public:
  using Clock = std::chrono::steady_clock;

  ReloadControl(flow::RuleStore& store, const config::Appliance& app, const std::string& path);
  ~ReloadControl();
  ReloadControl(const ReloadControl&) = delete;
  ReloadControl& operator=(const ReloadControl&) = delete;

  // Opens the wake-up eventfd and the file watch (a watch that cannot be set up is a warning:
  // SIGHUP and telemetry still work) and registers /sluice/reload.
  Result<void> start();
  // Answers every waiting telemetry request ("stopping") and refuses new ones.
  void stop();

  // Async-signal-safe: asks for a reload and wakes the control loop.
  static void request_from_signal() noexcept;
  // Async-signal-safe: wakes the control loop (e.g. to stop).
  static void wake() noexcept;

  // What the control loop polls, and for how long at most (ms) before run() has work.
  std::vector<pollfd> fds() const;
  int timeout_ms(Clock::time_point now) const;
  // Handles whatever is due: triggers, grace periods, answers.
  void run(Clock::time_point now);

  const flow::ReloadStats& stats() const noexcept { return reloader_.stats(); }

 private:
  struct PendingReply {
    uint64_t replaced;  // answered when this generation is freed
    flow::ReloadOutcome outcome;
    std::vector<std::shared_ptr<ReloadWaiter>> waiters;
  };

  // Runs a reload now and sets when the next one may start.
  flow::ReloadOutcome reload(flow::Trigger trigger);
  // result overrides the outcome's ok/failed/unchanged (e.g. "stopping").
  void answer(const std::vector<std::shared_ptr<ReloadWaiter>>& waiters,
              const flow::ReloadOutcome& o, double grace_ms, std::string_view result = {}) const;

  flow::RuleStore& store_;
  flow::Reloader reloader_;
  std::unique_ptr<sys::FileWatch> watch_;
  std::vector<PendingReply> pending_;
  // When the next reload may start (the rate limit), given whether callers compete.
  Clock::time_point next_allowed() const;

  bool signalled_ = false;  // a SIGHUP waits for the rate limit
  Clock::time_point last_end_{};
  Clock::duration last_took_{};
};

}  // namespace sluice::app
