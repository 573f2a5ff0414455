#pragma once
// The published rule set and its counters, replaced whole by a reload.
//
// A Generation is one flows file compiled (FlowTable) plus every worker's per-rule hit
// counters for it: one row per worker, allocated on that worker's socket, written only by that
// worker. Workers read the current generation with one acquire load per burst and report an
// RCU quiescent state (rte_rcu_qsbr, thread id = worker index) in their housekeeping, between
// bursts, when they hold no reference.
//
// The control plane (one thread, the main lcore) builds a new generation off the data path,
// publishes it with one atomic pointer swap and starts a grace period. The old generation
// keeps counting whatever its readers still classify; poll() retires it once every online
// worker has passed a quiescent state: its final counts are added, by rule name, to the
// totals carried from earlier generations, and its memory is freed. Nothing ever waits for a
// worker, and a worker never waits for the control plane.
//
// Counts of a rule are carried over while its name survives. A rule removed by a reload stays
// listed, with its final count, until the next reload.

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lib/config/config.h"
#include "lib/flow/flow_table.h"
#include "lib/stats/counters.h"
#include "lib/stats/snapshot.h"
#include "lib/sys/result.h"

namespace sluice::flow {

struct Generation {
  uint64_t number = 0;
  std::shared_ptr<const config::Flows> flows;
  std::unique_ptr<FlowTable> table;
  // hits[w][r]: worker w's count of rule r. Each row is cache-line aligned and written by one
  // worker only.
  std::vector<stats::PacketBytes*> hits;

  Generation() = default;
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;
  ~Generation();
};

class RuleStore {
 public:
  using Clock = std::chrono::steady_clock;

  // Compiles flows as generation 1. worker_sockets[w] is where worker w's counter rows live
  // (SOCKET_ID_ANY is fine); acl_socket is where the ACL tries live. Build attempt k names its
  // ACL contexts "<name>-<k>-v4" (rte_acl names are process-wide: one name per store).
  static Result<std::unique_ptr<RuleStore>> create(std::shared_ptr<const config::Flows> flows,
                                                   std::vector<int> worker_sockets, int acl_socket,
                                                   std::string name = "sluice");
  // Frees every generation. Workers must have stopped (or gone offline) first.
  ~RuleStore();
  RuleStore(const RuleStore&) = delete;
  RuleStore& operator=(const RuleStore&) = delete;

  // ---- data path ----
  const std::atomic<const Generation*>* published() const noexcept { return &current_; }
  rte_rcu_qsbr* qsbr() const noexcept { return qsbr_; }

  // ---- control plane (one thread) ----

  struct Built {
    std::unique_ptr<Generation> gen;
    double build_ms = 0;
  };
  // Compiles flows into a generation that is not yet published. On error nothing changes.
  Result<Built> build(std::shared_ptr<const config::Flows> flows);

  // Publishes a built generation: one pointer swap, then a grace period starts for the one it
  // replaces. Returns the number of the generation replaced.
  uint64_t publish(std::unique_ptr<Generation> gen);

  // Retires every replaced generation whose grace period has ended (never blocks). Returns the
  // generations retired by this call with their grace time (publish to retirement).
  struct Retired {
    uint64_t number;
    double grace_ms;
  };
  std::vector<Retired> poll();
  // Replaced generations still waiting for their grace period, and since when the oldest has
  // waited (meaningless when none is).
  size_t retiring() const noexcept { return retiring_.size(); }
  Clock::time_point oldest_retiring_since() const noexcept {
    return retiring_.empty() ? Clock::now() : retiring_.front().since;
  }
  // A grace period that cannot end (a worker that stopped reporting quiescent states) would
  // keep every replaced generation alive; the Reloader refuses reloads while this many wait.
  static constexpr size_t kMaxRetiring = 4;

  const Generation& current() const noexcept { return *current_.load(std::memory_order_relaxed); }
  uint64_t generation() const noexcept { return current().number; }

  // Per-rule totals over every generation: the current rules in file order, then the rules the
  // last reload removed (their final counts), each carried over by name.
  // per_worker (optional): packets[rule * workers() + worker], in the same rule order, counted
  // by the generations still held (a reload's carried totals have no worker split).
  std::vector<std::pair<std::string, stats::Totals>> rule_totals(
      std::vector<uint64_t>* per_worker = nullptr) const;

  size_t workers() const noexcept { return sockets_.size(); }

 private:
  RuleStore() = default;
  // Rebuilds the slot table after a swap: `before` is the generation just replaced.
  void renumber(const Generation* before);

  std::atomic<const Generation*> current_{nullptr};
  std::unique_ptr<Generation> owned_;  // what current_ points at
  struct Pending {
    std::unique_ptr<Generation> gen;
    uint64_t token;
    Clock::time_point since;
  };
  std::vector<Pending> retiring_;  // oldest first
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::vector<int> sockets_;
  int acl_socket_ = 0;
  std::string name_;
  uint64_t next_number_ = 1;
  uint64_t builds_ = 0;  // every build attempt gets unique ACL context names

  // Totals by slot: the current rules in file order, then the rules the last reload removed.
  std::vector<std::string> names_;
  std::vector<stats::Totals> carried_;  // counts of retired generations, by slot
  // For each live generation (by number), its rule index -> slot, kNoSlot when not listed.
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  std::vector<std::pair<const Generation*, std::vector<uint32_t>>> slots_;
};

}  // namespace sluice::flow
