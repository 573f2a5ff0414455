#pragma once
// A point-in-time view of every statistic, summed over lcores, and its two renderings:
// the statistics JSON of CONTRACT and a testpmd-style table.

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lib/stats/counters.h"

namespace sluice::stats {

struct PortSnapshot {
  std::string name;
  uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
  uint64_t rx_missed = 0, rx_nombuf = 0, tx_errors = 0, rx_errors = 0;
};

// The histogram's bucket bounds (Prometheus le, rendered in seconds): 0.5 us to 100 ms.
inline constexpr std::array<uint64_t, 15> kLatencyBoundsNs = {
    500,     1'000,   2'000,     5'000,     10'000,    20'000,     50'000,     100'000,
    200'000, 500'000, 1'000'000, 2'000'000, 5'000'000, 10'000'000, 100'000'000};

// One worker lcore: its heartbeat and what it has done. Filled by worker_snapshot(); idle_ms and
// stalled by the control plane's liveness check (the heartbeat is the worker's loops counter).
struct WorkerSnapshot {
  unsigned index = 0;
  unsigned lcore = 0;
  uint64_t rx_packets = 0;  // processed: its own RX share and what other workers handed it
  uint64_t drops = 0;       // every drop reason this worker counted
  uint64_t handed_off = 0;  // distribute: ring: put in other workers' rings
  uint64_t ring_full = 0;   // ... and refused by a full one (also in drops)
  uint64_t polls = 0;       // RX rounds, and those that brought packets (load skew)
  uint64_t busy_polls = 0;
  uint64_t loops = 0;    // heartbeat: housekeeping rounds
  uint64_t idle_ms = 0;  // since the heartbeat last moved
  bool stalled = false;  // no progress for longer than kStallMs
  // Burst latency for Prometheus' histogram: cumulative packet counts at kLatencyBoundsNs (a
  // LatencyHistogram bucket counts at a bound when its upper end is at most the bound, so a count
  // is exact to the histogram's 1/16 resolution), then all packets, their exact sum and the max.
  std::array<uint64_t, kLatencyBoundsNs.size()> latency_le{};
  uint64_t latency_count = 0;
  uint64_t latency_sum_ns = 0;
  uint64_t latency_max_ns = 0;
};

// A worker whose heartbeat has not moved for longer than this is stalled (CONTRACT).
inline constexpr uint64_t kStallMs = 1000;

struct Totals {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

struct Snapshot {
  double uptime_s = 0;
  std::string simd;
  std::vector<PortSnapshot> ports;
  std::vector<WorkerSnapshot> workers;
  std::array<uint64_t, kDropCount> drops{};
  // The current rules in file order, then those the last reload removed (final counts).
  std::vector<std::pair<std::string, Totals>> rules;
  // Packets per rule per worker, [rule * workers.size() + worker], rules as above (for
  // /sluice/rule's worker split; empty with one worker).
  std::vector<uint64_t> rule_workers;
  Totals fallback;
  Totals non_ip;
  struct {
    bool enabled = false;
    uint64_t packets = 0, bytes = 0, chunks = 0, segments = 0, dropped = 0;
    uint64_t write_errors = 0, bytes_written = 0;
    uint64_t ring_used = 0, ring_capacity = 0;  // summed over the workers' hand-off rings
    uint64_t busy_cycles = 0;  // TSC cycles the capture lcore spent on packets (not polling)
  } capture;
  struct {
    uint64_t generation = 1, ok = 0, failed = 0;
    std::string last_error;
  } reload;
  struct {
    uint64_t total = 0, available = 0;
  } mempool;
  struct {
    uint64_t entries = 0, hits = 0, misses = 0, bypassed = 0;  // entries: per worker, 0 when off
  } flow_cache;
  struct {
    uint64_t p50 = 0, p99 = 0, p999 = 0, max = 0;
  } latency_ns;
  // /sluice/health: status "ok", "degraded" (reloads refused, capture failing) or "stalled"
  // (a worker made no progress for longer than kStallMs); capture "off", "ok" or "failing".
  struct {
    std::string status = "ok";
    std::string capture = "off";
    std::string reason;  // empty when ok: what is wrong, for people
  } health;
};

// A worker's own counters as a WorkerSnapshot (idle_ms and stalled are left to the caller).
WorkerSnapshot worker_snapshot(const WorkerCounters& c, unsigned index, unsigned lcore);

// Sums workers' counters into the snapshot's drops, default, non_ip and latency. (Rules are
// summed by their generation's owner, flow::RuleStore::rule_totals.)
void sum_workers(Snapshot& snap, const std::vector<const WorkerCounters*>& workers);

// Percentile (0..1) of a histogram summed over workers, as a bucket's upper bound in ns.
uint64_t percentile(const std::vector<const WorkerCounters*>& workers, double q);

// The statistics JSON of CONTRACT (pretty-printed, stable key order).
std::string to_json(const Snapshot& snap);

// testpmd-style table; prev (may be null) and interval_s give the rates.
std::string to_table(const Snapshot& snap, const Snapshot* prev, double interval_s);

}  // namespace sluice::stats
