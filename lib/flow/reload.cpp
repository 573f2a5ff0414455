#include "lib/flow/reload.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <utility>

namespace sluice::flow {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

std::string_view trigger_name(Trigger t) noexcept {
  switch (t) {
    case Trigger::kSignal:
      return "SIGHUP";
    case Trigger::kTelemetry:
      return "telemetry";
    case Trigger::kFileChange:
      return "file change";
    case Trigger::kCall:
      break;
  }
  return "request";
}

std::string_view kind_name(ReloadOutcome::Kind k) noexcept {
  switch (k) {
    case ReloadOutcome::Kind::kApplied:
      return "ok";
    case ReloadOutcome::Kind::kRejected:
      return "failed";
    case ReloadOutcome::Kind::kUnchanged:
      break;
  }
  return "unchanged";
}

Reloader::Reloader(RuleStore& store, const config::Appliance& app, std::string path)
    : store_(store), app_(app), path_(std::move(path)) {
  stats_.generation = store_.generation();
  if (auto text = config::read_text(path_); text) {
    last_ = Attempt{.valid = true, .hash = std::hash<std::string>{}(*text), .size = text->size()};
    last_.outcome.kind = ReloadOutcome::Kind::kApplied;
    last_.outcome.trigger = Trigger::kCall;
    last_.outcome.generation = stats_.generation;
  }
}

ReloadOutcome Reloader::reload(Trigger trigger) {
  try {
    return attempt(trigger);
  } catch (const std::bad_alloc&) {
    // Out of process memory while reading, parsing or diffing: the running rules stay.
    ReloadOutcome out;
    out.trigger = trigger;
    out.kind = ReloadOutcome::Kind::kRejected;
    out.generation = store_.generation();
    out.error = path_ + ": out of memory while loading the flows file";
    ++stats_.failed;
    stats_.last_error = out.error;
    last_ = Attempt{.retryable = true};
    return out;
  }
}

ReloadOutcome Reloader::attempt(Trigger trigger) {
  const auto t0 = Clock::now();
  ReloadOutcome out;
  out.trigger = trigger;
  out.generation = store_.generation();

  auto finish = [&](Attempt a) {
    out.took_ms = ms_between(t0, Clock::now());
    if (out.kind == ReloadOutcome::Kind::kRejected) {
      ++stats_.failed;
      stats_.last_error = out.error;
    }
    a.outcome = out;
    last_ = std::move(a);
    return out;
  };
  auto reject = [&](std::string error, Attempt a) {
    out.kind = ReloadOutcome::Kind::kRejected;
    out.error = std::move(error);
    return finish(std::move(a));
  };

  if (store_.retiring() >= RuleStore::kMaxRetiring) {
    // Memory stays bounded: no new generation while the old ones cannot be freed.
    const double waited =
        std::chrono::duration<double>(t0 - store_.oldest_retiring_since()).count();
    return reject(fmt::format("{}: reload refused: {} replaced rule generations are still in their "
                              "grace period (the oldest for {:.1f} s) because a worker has not "
                              "passed a quiescent state; the running rules stay; see "
                              "/sluice/health for a stalled worker, or restart sluice",
                              path_, store_.retiring(), waited),
                  Attempt{.retryable = true});
  }

  Result<config::Flows> flows = Error{""};
  Attempt tried;
  {
    auto text = config::read_text(path_);
    if (!text && trigger == Trigger::kFileChange && !std::filesystem::exists(path_)) {
      return out;  // kUnchanged: moved away or deleted; the next event brings the new file
    }
    if (!text) return reject(text.error(), Attempt{.retryable = true});
    tried = Attempt{.valid = true, .hash = std::hash<std::string>{}(*text), .size = text->size()};
    if (last_.valid && last_.hash == tried.hash && last_.size == tried.size) {
      if (trigger == Trigger::kFileChange) {
        out.parse_ms = ms_between(t0, Clock::now());
        return out;  // kUnchanged: nothing new to apply
      }
      if (last_.outcome.trigger == Trigger::kFileChange && !last_.retryable) {
        ReloadOutcome again = last_.outcome;
        again.trigger = trigger;
        again.repeated = true;
        again.generation = store_.generation();
        return again;
      }
    }
    flows = config::parse_flows(path_, *text, app_);
  }  // the text is released here: a 100k-rule file is megabytes
  const auto t1 = Clock::now();
  out.parse_ms = ms_between(t0, t1);
  if (!flows) return reject(flows.error(), tried);
  progress_();

  auto shared = std::make_shared<const config::Flows>(std::move(*flows));
  auto built = store_.build(shared);
  const auto t2 = Clock::now();
  out.build_ms = ms_between(t1, t2);
  if (!built) {
    tried.retryable = true;
    return reject(built.error(), tried);
  }

  progress_();
  const auto t2d = Clock::now();
  out.diff = std::make_shared<const FlowsDiff>(
      diff_flows(*store_.current().flows, *shared, app_, DiffDetail::kNames));
  const auto t3 = Clock::now();
  out.diff_ms = ms_between(t2d, t3);
  out.replaced = store_.publish(std::move(built->gen));
  out.publish_ms = ms_between(t3, Clock::now());
  out.kind = ReloadOutcome::Kind::kApplied;
  out.generation = store_.generation();
  stats_.generation = out.generation;
  ++stats_.ok;
  return finish(tried);
}

}  // namespace sluice::flow
