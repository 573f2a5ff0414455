#include "app/reload_control.h"

#include <rte_telemetry.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <utility>

#include "lib/stats/telemetry.h"
#include "lib/sys/notify.h"

namespace sluice::app {

// One /sluice/reload request: filled by the control loop, read by the telemetry thread.
struct ReloadWaiter {
  bool done = false;
  std::vector<std::pair<std::string, uint64_t>> numbers;
  std::vector<std::pair<std::string, std::string>> strings;
};

namespace {

// A reply a client waits for at most this long (a 100k-rule build takes seconds).
constexpr std::chrono::seconds kReplyTimeout{120};

std::atomic<int> g_wake_fd{-1};
std::atomic<bool> g_sighup{false};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

// Telemetry requests, handed from the telemetry threads to the control loop. Never destroyed:
// a telemetry thread may call in while the process exits.
struct Mailbox {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::shared_ptr<ReloadWaiter>> queue;  // waiting for the queued reload
  bool queued = false;   // a telemetry reload is queued (with or without waiters)
  unsigned waiting = 0;  // telemetry threads blocked in cmd_reload
  // Since the last reload started: the most requests that waited at once, and those turned
  // away busy. Either past one request says callers compete (kReloadBusyGap).
  unsigned peak = 0;
  unsigned turned_away = 0;
  bool open = false;
};
Mailbox& mailbox() {
  static auto* mb = new Mailbox();
  return *mb;
}

uint64_t us(double ms) {
  return static_cast<uint64_t>(ms * 1000.0 + 0.5);
}

// Runs on a telemetry thread: queue the request, wake the control loop, wait for the answer;
// or, when kMaxReloadWaiters requests wait already, queue a reload and answer "busy" at once.
int cmd_reload(const char*, const char*, rte_tel_data* d) {
  auto w = std::make_shared<ReloadWaiter>();
  Mailbox& mb = mailbox();
  std::unique_lock lock(mb.m);
  if (!mb.open) return -EBUSY;
  const bool wake = !mb.queued;
  mb.queued = true;
  if (mb.waiting >= kMaxReloadWaiters) {
    ++mb.turned_away;
    lock.unlock();
    if (wake) ReloadControl::wake();
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "result", "busy");
    rte_tel_data_add_dict_string(d, "error", "busy: a reload is already queued; retry");
    rte_tel_data_add_dict_u64(
        d, "retry_ms", static_cast<uint64_t>(std::chrono::milliseconds(kReloadBusyGap).count()));
    return 0;
  }
  mb.queue.push_back(w);
  mb.peak = std::max(mb.peak, ++mb.waiting);
  if (wake) ReloadControl::wake();
  const bool answered = mb.cv.wait_for(lock, kReplyTimeout, [&] { return w->done; });
  --mb.waiting;
  if (!answered) {
    w->strings = {{"result", "timeout"}};
    w->numbers.clear();
  }
  rte_tel_data_start_dict(d);
  for (const auto& [k, v] : w->strings) {
    rte_tel_data_add_dict_string(d, k.c_str(), stats::telemetry_text(v).c_str());
  }
  for (const auto& [k, v] : w->numbers) rte_tel_data_add_dict_u64(d, k.c_str(), v);
  return 0;
}

}  // namespace

ReloadControl::ReloadControl(flow::RuleStore& store, const config::Appliance& app,
                             const std::string& path)
    : store_(store), reloader_(store, app, path) {
  // A reload runs on this thread for seconds when the file is large (100k rules: parse under
  // a second, rte_acl_build about 9 s): keep systemd's watchdog fed between its phases.
  if (sys::watchdog_interval().count() > 0) reloader_.on_progress([] { sys::notify_watchdog(); });
}

ReloadControl::~ReloadControl() {
  stop();
}

Result<void> ReloadControl::start() {
  // The eventfd lives as long as the process: a signal handler may write to it at any time,
  // and a closed descriptor's number could be reused by another file.
  if (g_wake_fd.load() < 0) {
    const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return Error{fmt::format("eventfd: {}", std::strerror(errno))};
    g_wake_fd.store(fd);
  }
  if (auto w = sys::FileWatch::open(reloader_.path(), kWatchDebounce); w) {
    watch_ = std::move(*w);
  } else {
    spdlog::warn("{}; {} is reloaded on SIGHUP and /sluice/reload only", w.error(),
                 reloader_.path());
  }
  {
    std::lock_guard lock(mailbox().m);
    mailbox().open = true;
  }
  static bool registered = false;  // rte_telemetry has no unregister; register once
  if (!registered) {
    rte_telemetry_register_cmd(
        "/sluice/reload", cmd_reload,
        "Reloads the flows file; answers when done. Returns result, generation, diff, times");
    registered = true;
  }
  return {};
}

void ReloadControl::stop() {
  std::vector<std::shared_ptr<ReloadWaiter>> queued;
  {
    std::lock_guard lock(mailbox().m);
    mailbox().open = false;
    mailbox().queued = false;
    queued.swap(mailbox().queue);
  }
  flow::ReloadOutcome stopping;
  stopping.error = "sluice is stopping";
  stopping.generation = store_.generation();
  answer(queued, stopping, 0, "stopping");
  for (const auto& p : pending_) answer(p.waiters, p.outcome, 0);
  pending_.clear();
}

void ReloadControl::request_from_signal() noexcept {
  g_sighup.store(true);
  wake();
}

void ReloadControl::wake() noexcept {
  const int fd = g_wake_fd.load();
  if (fd < 0) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);  // EAGAIN: already awake
}

std::vector<pollfd> ReloadControl::fds() const {
  std::vector<pollfd> v;
  if (int fd = g_wake_fd.load(); fd >= 0) v.push_back(pollfd{fd, POLLIN, 0});
  if (watch_) v.push_back(pollfd{watch_->fd(), POLLIN, 0});
  return v;
}

int ReloadControl::timeout_ms(Clock::time_point now) const {
  int t = -1;
  auto take = [&](int v) {
    if (v >= 0 && (t < 0 || v < t)) t = v;
  };
  // A trigger that waits for the rate limit is due when the limit lets it start.
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(next_allowed() - now).count();
  const int until_allowed = left > 0 ? static_cast<int>(left) : 0;
  bool queued = signalled_ || g_sighup.load();
  {
    std::lock_guard lock(mailbox().m);
    queued = queued || mailbox().queued;
  }
  if (queued) take(until_allowed);
  if (store_.retiring() > 0) take(1);  // grace periods take about one worker drain period
  if (watch_) {
    if (int w = watch_->timeout_ms(now); w >= 0) take(std::max(w, until_allowed));
  }
  return t;
}

ReloadControl::Clock::time_point ReloadControl::next_allowed() const {
  bool compete = false;
  {
    std::lock_guard lock(mailbox().m);
    compete = mailbox().peak > 1 || mailbox().turned_away > 0;
  }
  const Clock::duration gap = compete ? kReloadBusyGap : kReloadMinGap;
  return last_end_ + std::max(gap, last_took_);
}

void ReloadControl::run(Clock::time_point now) {
  if (int fd = g_wake_fd.load(); fd >= 0) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(fd, &v, sizeof v);
  }
  if (g_sighup.exchange(false)) signalled_ = true;
  if (watch_) {
    watch_->drain(now);
    if (!watch_->alive()) {
      spdlog::warn(
          "the folder of {} was removed or moved: file changes are no longer watched "
          "(SIGHUP and /sluice/reload still reload)",
          reloader_.path());
      watch_.reset();
    }
  }

  if (now >= next_allowed()) {
    // Every request queued by now joins this one reload, which reads the file as it is now, so
    // a change the watcher was still debouncing is included.
    bool telemetry = false;
    std::vector<std::shared_ptr<ReloadWaiter>> waiters;
    {
      Mailbox& mb = mailbox();
      std::lock_guard lock(mb.m);
      telemetry = mb.queued;
      mb.queued = false;
      waiters.swap(mb.queue);
    }
    if (signalled_ || telemetry) {
      signalled_ = false;
      if (watch_) watch_->cancel();
      const flow::ReloadOutcome o =
          reload(telemetry ? flow::Trigger::kTelemetry : flow::Trigger::kSignal);
      if (!waiters.empty()) {
        if (o.kind == flow::ReloadOutcome::Kind::kApplied && !o.repeated && o.replaced != 0) {
          pending_.push_back(PendingReply{o.replaced, o, std::move(waiters)});
        } else {
          answer(waiters, o, 0);
        }
      }
    } else if (watch_ && watch_->due(now)) {
      reload(flow::Trigger::kFileChange);
    }
  }

  for (const auto& r : store_.poll()) {
    spdlog::debug("rules generation {} freed after a {:.3f} ms grace period", r.number, r.grace_ms);
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [&](const PendingReply& p) { return p.replaced == r.number; });
    if (it != pending_.end()) {
      answer(it->waiters, it->outcome, r.grace_ms);
      pending_.erase(it);
    }
  }
}

flow::ReloadOutcome ReloadControl::reload(flow::Trigger trigger) {
  using Kind = flow::ReloadOutcome::Kind;
  const std::string& path = reloader_.path();
  sys::notify_reloading();
  sys::notify_status("reloading " + path);
  {
    std::lock_guard lock(mailbox().m);  // competition for the next reload counts from here
    mailbox().peak = mailbox().waiting;
    mailbox().turned_away = 0;
  }
  const auto start = Clock::now();
  flow::ReloadOutcome o = reloader_.reload(trigger);
  last_end_ = Clock::now();
  last_took_ = last_end_ - start;
  const auto trig = flow::trigger_name(trigger);
  if (o.repeated && o.kind == Kind::kRejected) {
    // The bytes its file change already tried: the same error, not a second attempt.
    spdlog::error(
        "reload ({}) rejected, rules generation {} keeps running: {} (unchanged since its file "
        "change was rejected; not parsed again)",
        trig, o.generation, o.error);
  } else if (o.repeated) {
    spdlog::info(
        "reload ({}): {} is what generation {} already runs (applied on its file change); "
        "not reloaded again",
        trig, path, o.generation);
  } else if (o.kind == Kind::kApplied) {
    spdlog::info(
        "reload ({}): {}: generation {} ({} rules): {}; parse {:.1f} ms, build {:.1f} ms, "
        "diff {:.1f} ms, publish {:.3f} ms",
        trig, path, o.generation, store_.current().flows->rules.size(), flow::diff_line(*o.diff),
        o.parse_ms, o.build_ms, o.diff_ms, o.publish_ms);
  } else if (o.kind == Kind::kRejected) {
    spdlog::error("reload ({}) rejected, rules generation {} keeps running: {}", trig, o.generation,
                  o.error);
  } else {
    spdlog::debug("reload ({}): {} holds the bytes of the last attempt; nothing to do", trig, path);
  }
  sys::notify_ready();
  sys::notify_status(fmt::format("forwarding; rules generation {}", store_.generation()));
  return o;
}

void ReloadControl::answer(const std::vector<std::shared_ptr<ReloadWaiter>>& waiters,
                           const flow::ReloadOutcome& o, double grace_ms,
                           std::string_view result) const {
  if (waiters.empty()) return;
  const flow::ReloadStats& s = reloader_.stats();
  const uint64_t coalesced = waiters.size();
  {
    std::lock_guard lock(mailbox().m);
    for (const auto& w : waiters) {
      w->strings = {{"result", std::string(result.empty() ? flow::kind_name(o.kind) : result)},
                    {"trigger", std::string(flow::trigger_name(o.trigger))},
                    {"diff", flow::diff_line(*o.diff, 3)},
                    {"error", o.error}};
      w->numbers = {{"repeated", o.repeated ? 1u : 0u},
                    {"generation", o.generation},
                    {"ok", s.ok},
                    {"failed", s.failed},
                    {"added", o.diff->added.size()},
                    {"removed", o.diff->removed.size()},
                    {"changed", o.diff->changed.size()},
                    {"parse_us", us(o.parse_ms)},
                    {"build_us", us(o.build_ms)},
                    {"diff_us", us(o.diff_ms)},
                    {"publish_us", us(o.publish_ms)},
                    {"took_us", us(o.took_ms)},
                    {"grace_us", us(grace_ms)},
                    {"coalesced", coalesced}};
      w->done = true;
    }
  }
  mailbox().cv.notify_all();
}

}  // namespace sluice::app
