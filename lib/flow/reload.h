#pragma once
// A reload of the flows file: read it, parse and validate all of it, compile it, publish it
// (RuleStore), all or nothing. Any failure - unreadable file, YAML syntax, schema, unknown
// port, ACL build, out of memory - leaves the running generation untouched.
//
// Triggers: SIGHUP, the telemetry command /sluice/reload, and a change to the file (inotify,
// debounced). A change-triggered reload is skipped when the file's bytes are those of the last
// attempt (a touch or an editor's no-op save). An explicit trigger always reloads, except when
// the last attempt was the watcher's on these same bytes and its outcome cannot change (applied,
// or rejected by validation): that outcome is reported again rather than counted twice, so an
// operator who saves and then signals gets one reload, not two.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lib/config/config.h"
#include "lib/flow/diff.h"
#include "lib/flow/rule_store.h"

namespace sluice::flow {

enum class Trigger : uint8_t { kSignal, kTelemetry, kFileChange, kCall };
std::string_view trigger_name(Trigger t) noexcept;

// The "reload" object of the statistics JSON.
struct ReloadStats {
  uint64_t generation = 1;
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::string last_error;  // file:line:col: what is wrong (empty until a reload fails)
};

struct ReloadOutcome {
  enum class Kind : uint8_t { kApplied, kRejected, kUnchanged };
  Kind kind = Kind::kUnchanged;
  Trigger trigger = Trigger::kCall;
  bool repeated = false;    // the outcome of an identical earlier attempt, reported again
  uint64_t generation = 0;  // running after this reload
  uint64_t replaced = 0;    // kApplied: the generation now in its grace period (0: none)
  // kApplied: against the generation it replaced (shared: a 100k-rule diff is large, and an
  // outcome is copied into the last attempt and into a waiting telemetry reply).
  std::shared_ptr<const FlowsDiff> diff = std::make_shared<const FlowsDiff>();
  std::string error;      // kRejected
  double parse_ms = 0;    // read + parse + validate
  double build_ms = 0;    // ACL contexts and counters
  double diff_ms = 0;     // what changed, by rule name (diff)
  double publish_ms = 0;  // pointer swap, counter slots renumbered, grace start
  double took_ms = 0;  // the whole attempt (applied or rejected), the above and what lies between
};
std::string_view kind_name(ReloadOutcome::Kind k) noexcept;

class Reloader {
 public:
  // path is the flows file; app resolves its port names. Remembers the file's current bytes
  // as those of the running generation.
  Reloader(RuleStore& store, const config::Appliance& app, std::string path);

  ReloadOutcome reload(Trigger trigger);

  // Called between the phases of a reload (read and parse, build, publish): a large file
  // takes seconds per phase, and the control plane keeps its watchdog fed from here.
  void on_progress(std::function<void()> f) { progress_ = std::move(f); }

  const ReloadStats& stats() const noexcept { return stats_; }
  const std::string& path() const noexcept { return path_; }

 private:
  ReloadOutcome attempt(Trigger trigger);

  struct Attempt {
    bool valid = false;
    size_t hash = 0;
    size_t size = 0;
    bool retryable = false;  // failed for a reason that may pass on retry (memory, build)
    ReloadOutcome outcome;
  };

  RuleStore& store_;
  const config::Appliance& app_;
  std::string path_;
  ReloadStats stats_;
  Attempt last_;
  std::function<void()> progress_ = [] {};
};

}  // namespace sluice::flow
