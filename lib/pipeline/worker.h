#pragma once
// The run-to-completion worker: receive a burst, validate, classify, act, send; every
// drain period, housekeeping. One Worker per worker lcore, written only by that lcore
// (the main lcore reads its counters).
//
// The rules are an RCU reader's: each burst loads the published generation once and uses
// only it (its table, its per-rule counter row for this worker); housekeeping, between
// bursts, reports the quiescent state (thread id = index) that lets the control plane free a
// replaced generation. The worker never waits for the control plane.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "lib/flow/flow_cache.h"
#include "lib/flow/rule_store.h"
#include "lib/stats/counters.h"
#include "lib/sys/result.h"
#include "simd/flow_hash.h"
#include "simd/validate.h"

struct rte_mbuf;
struct rte_ring;
struct rte_rcu_qsbr;
struct rte_eth_dev_tx_buffer;

namespace sluice::pipeline {

inline constexpr uint16_t kMaxBurst = 64;
inline constexpr unsigned kMaxPorts = 32;
// Workers a port's ring distributor spreads over (lib/pipeline/distributor.h).
inline constexpr unsigned kMaxWorkers = 64;
// TX buffers are flushed at least this often (l3fwd uses the same order of magnitude).
inline constexpr unsigned kDrainUs = 100;
// The longest a packet waits in a hand-off stage while its distributor is busy (HandOffStage).
inline constexpr unsigned kHandOffWaitUs = 10;
// At stop, the longest a worker waits for the producers of its inboxes to stop handing packets
// on (a stuck one never does); well inside the main lcore's limit for a worker to return.
inline constexpr unsigned kStopDrainMs = 1000;

struct RxQueue {
  uint16_t port_id;    // ethdev id
  uint8_t port_index;  // config index: what rules and flow keys call the port
  uint16_t queue;
  // distribute: ring: the hand-off ring to each worker (indexed by worker; this worker's own
  // entry is null: it keeps its share). Null: the worker processes the whole burst (RSS).
  rte_ring* const* spread = nullptr;
  // What this queue's bursts are counted into (port::Ports::rx_counters); null: not counted.
  stats::RxQueueCounters* counted = nullptr;
};

// A ring another worker's distributor fills for this one, with packets of one port.
struct Inbox {
  rte_ring* ring;
  uint8_t port_index;
  // The filling worker's Worker::rx_stopped; null: nothing fills the ring any more (tests).
  const std::atomic<bool>* producer_stopped = nullptr;
};

// distribute: ring: what spread_burst gathered for one worker and not yet put in its ring. A
// ring enqueue costs its two shared cache lines (the ring's head and the consumer's tail) however
// few it carries, so spreading each burst of 32 over 14 workers enqueued about two packets at a
// time, and the spreading worker's rate fell 4x (scale --mode ring on 16 CPUs, 2026-12-04). The
// stage sends a worker's packets when a burst's worth is there, when a poll round brings nothing
// new, at housekeeping (kDrainUs) and at stop: the policy of the TX buffers.
// A stage also goes out once its oldest packet has waited kHandOffWaitUs, so that a worker
// with a small share of a loaded port (rounds never idle) is not held to the 100 us drain.
struct HandOffStage {
  uint16_t n = 0;
  uint64_t since = 0;                         // RX TSC of the oldest packet staged
  std::array<rte_mbuf*, 2 * kMaxBurst> pkts;  // below burst between calls, + one burst's share
};

// The stages of one spreading port: one per worker (this worker's own is unused), on the
// worker's socket.
struct HandOff {
  struct Free {
    void operator()(HandOffStage* p) const noexcept;
  };
  uint8_t port_index = 0;
  rte_ring* const* rings = nullptr;  // RxQueue::spread
  std::unique_ptr<HandOffStage[], Free> to;
};

struct alignas(64) Worker {
  // Set up by the main lcore before launch; read-only afterwards.
  unsigned lcore = 0;
  unsigned index = 0;  // also the RCU thread id and the row in each generation's counters
  uint16_t tx_queue = 0;
  uint16_t burst = 32;
  std::vector<RxQueue> rx;
  std::vector<Inbox> inbox;  // drained after each RX round
  unsigned nb_workers = 1;   // what a distributor spreads over
  uint16_t nb_ports = 0;
  std::array<uint16_t, kMaxPorts> port_ids{};  // config index -> ethdev id
  std::array<rte_eth_dev_tx_buffer*, kMaxPorts> tx{};
  const std::atomic<const flow::Generation*>* rules = nullptr;
  rte_rcu_qsbr* qsbr = nullptr;  // null: no reader registration (unit tests)
  const std::atomic<bool>* stop = nullptr;
  // The validator (use_kernel sets these): the mbuf entry for bursts, the view entry for a
  // frame whose headers it linearised first.
  simd::ValidateMbufsFn validate_mbufs = nullptr;
  simd::ValidateBurstFn validate = nullptr;
  uint32_t flow_cache_entries = flow::FlowCache::kDefaultEntries;  // 0: every key to rte_acl
  uint64_t drain_cycles = 0;
  // kHandOffWaitUs in TSC cycles (worker_prepare sets it; until then no stage ages out).
  uint64_t hand_off_wait_cycles = UINT64_MAX;
  double ns_per_cycle = 0;
  // Capture hand-off (null: capture off): copies of packets whose rule says capture (and with
  // capture_malformed, of every packet that fails validation) go to the capture lcore as mbuf
  // references, their RX TSC in the dynamic field at rx_tsc_field.
  rte_ring* capture_ring = nullptr;
  bool capture_malformed = false;
  int rx_tsc_field = -1;
  // Test hook (SLUICE_TEST_STALL, app/): at this TSC the worker hangs for good, as a worker
  // stuck in a driver would: no heartbeat, no quiescent state, deaf to stop. 0: never.
  uint64_t test_stall_tsc = 0;
  // Test hook (SLUICE_TEST_SLOW, app/): after each burst the worker spins this many TSC cycles
  // per packet, as a worker with costly rules would, so its hand-off ring fills. 0: never.
  uint64_t test_slow_cycles = 0;
  // At stop, how long the worker waits for a producer of its inboxes to stop (TSC cycles; 0:
  // kStopDrainMs).
  uint64_t stop_drain_cycles = 0;

  // Made by worker_prepare (null when flow_cache_entries is 0); the worker's alone.
  std::unique_ptr<flow::FlowCache> cache;
  // Made by prepare_hand_off (worker_prepare, for each RX queue with spread): one per spreading
  // port; hand_off_of[port_index] is its index + 1 (0: none).
  std::vector<HandOff> hand_off;
  std::array<uint8_t, kMaxPorts> hand_off_of{};

  // Written by the worker, read by the main lcore.
  stats::WorkerCounters counters;
  // Stored (release) as worker_main's last act. After rte_eal_wait_lcore the main lcore loads
  // it (acquire) before freeing what the worker used: EAL's own handshake is in uninstrumented
  // DPDK code, so this is the edge ThreadSanitizer sees.
  std::atomic<bool> exited{false};
  // Stored (release) when the worker has left its RX loop: it hands nothing more to the
  // workers whose inboxes it fills, which drain them until then (worker_main).
  std::atomic<bool> rx_stopped{false};

  // Set up with validate: the distributor's burst hash (the same kernel). Here, not beside
  // validate, so that the fields the burst loop reads keep their cache lines.
  simd::FlowHashBurstFn flow_hash_burst = &simd::flow_hash_burst_scalar;

  // Headers of multi-segment frames are linearised here (per packet slot in the burst).
  alignas(64) std::array<std::array<uint8_t, simd::kMaxHeaderBytes>, kMaxBurst> scratch{};
};

// The validation kernel's entries, and the distributor's burst hash of the same kernel.
void use_kernel(Worker& w, simd::Kernel k) noexcept;

// Allocates the worker's TX buffers (one per port, burst-sized) and its flow cache on socket.
// port_ids maps config index to ethdev id.
Result<void> worker_prepare(Worker& w, const std::vector<uint16_t>& port_ids, int socket);
// Frees the TX buffers, the flow cache and the hand-off stages with any mbufs still in them
// (call after worker_flush, once the lcore has returned).
void worker_release(Worker& w);

// Processes one received burst from port_index: every mbuf is sent, handed on, or freed; n
// packets and their bytes are added to `counted` when given (the RX queue's counters).
// Returns the TSC at its end (what its latency was measured to; the next poll's start).
uint64_t process_burst(Worker& w, uint8_t port_index, rte_mbuf** pkts, uint16_t n, uint64_t rx_tsc,
                       stats::RxQueueCounters* counted = nullptr) noexcept;
// distribute: ring: spreads a burst received from q over the workers by flow_hash; this
// worker's share is processed at once, the others' go to their stages, and to their rings
// (full: ring_full) once a burst's worth is staged (HandOffStage). prepare_hand_off(q) first.
// Returns the TSC at its end, or rx_tsc when it processed nothing itself.
uint64_t spread_burst(Worker& w, const RxQueue& q, rte_mbuf** pkts, uint16_t n,
                      uint64_t rx_tsc) noexcept;
// The hand-off stages for q (q.spread set, nb_workers known), on socket; worker_prepare calls
// it for each RX queue in w.rx that spreads. Idempotent per port.
Result<void> prepare_hand_off(Worker& w, const RxQueue& q, int socket);
// Sends the stages of q's port whose oldest packet has waited hand_off_wait_cycles at TSC now
// (spread_burst does this after each burst; the worker also on an empty poll of q).
void age_hand_off(Worker& w, const RxQueue& q, uint64_t now) noexcept;
// Puts what the hand-off stages hold in the workers' rings (full: ring_full).
void flush_hand_off(Worker& w) noexcept;
// Sends whatever the TX buffers hold, after what the hand-off stages hold.
void worker_flush(Worker& w) noexcept;

// The RX TSC of a handed-off packet, at TSC now, from the low 32 bits spread_burst stamped on
// it (about 1.6 s at 2.6 GHz, far more than a packet waits in a ring). A stamp ahead of now
// (the cores' TSCs skewed) counts as no wait, not as 2^32 cycles.
inline uint64_t rx_tsc_of_stamp(uint64_t now, uint32_t stamp) noexcept {
  const uint32_t waited = static_cast<uint32_t>(now) - stamp;
  return waited < (uint32_t{1} << 31) ? now - waited : now;
}

// rte_eal_remote_launch entry point; arg is a Worker*.
int worker_main(void* arg);

}  // namespace sluice::pipeline
