#pragma once
// sluice-gen's data path: the TX lane (paced by the TSC, stamps every frame) and the RX lane
// (reads trailers, tracks streams, records latency). One lcore runs a Lane with TX, RX or
// both. Like sluice's worker: fixed burst arrays, no allocation, no locks, no logging.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "lib/stats/counters.h"
#include "tools/gen/packets.h"
#include "tools/gen/streams.h"

struct rte_mempool;
struct rte_mbuf;

namespace sluice::gen {

inline constexpr unsigned kMaxBurst = 64;

// Written by the lanes, read by the main lcore at any time.
struct alignas(64) LiveCounters {
  stats::Counter tx_attempted;  // packets built (sent + refused by the port)
  stats::Counter tx_sent;       // accepted by rte_eth_tx_burst
  stats::Counter tx_bytes;
  stats::Counter tx_nombuf;   // bursts skipped for want of mbufs
  stats::Counter tx_skipped;  // packets a late loop did not make up for (--max-lag-us)
  stats::Counter rx_packets;
  stats::Counter rx_bytes;
  stats::Counter rx_stamped;
  stats::Counter rx_unstamped;
  stats::Counter rx_unknown_stream;
  stats::Counter rx_duplicated;
  stats::Counter rx_reordered;
  stats::Counter rx_polls;        // 1 after the receiver's first poll (then no longer counted)
  stats::WorkerCounters latency;  // only .latency is used: sluice's histogram and percentiles
};

struct TxConfig {
  uint16_t port = 0;
  rte_mempool* pool = nullptr;
  const TrafficPlan* plan = nullptr;
  uint32_t malformed_ppm = 0;    // malformed frames per million
  double pps = 0;                // 0: unpaced
  double pkts_per_cycle = 0;     // pps / TSC Hz
  uint64_t count = 0;            // 0: unlimited
  uint64_t duration_cycles = 0;  // 0: unlimited
  // Most packets a paced loop that fell behind sends to catch up (0: all it is due); what is
  // due beyond is skipped and counted, not offered in one burst.
  uint64_t max_lag_pkts = 0;
  unsigned burst = 32;
  bool retry = false;  // keep what the port refused and offer it again (lossless sender)
};

struct RxConfig {
  uint16_t port = 0;
  uint16_t queues = 1;  // polled in turn; a flow keeps to one queue, so its order holds
  unsigned burst = 32;
  double ns_per_cycle = 0;
};

// State of one sending lane; the main lcore reads the arrays after the lane has returned.
struct TxState {
  std::vector<uint64_t> seq;           // per stream: next sequence number = packets built
  std::vector<uint64_t> sent_per_tpl;  // per template: accepted by the port
  uint64_t start_tsc = 0;
  uint64_t end_tsc = 0;
  size_t cursor = 0;
  size_t mal_cursor = 0;
  uint32_t mal_acc = 0;
  // Refused packets kept for the next try (retry only), with their template ids.
  std::array<rte_mbuf*, kMaxBurst> pending{};
  std::array<uint32_t, kMaxBurst> pending_tpl{};
  uint16_t nb_pending = 0;
};

struct Lane {
  unsigned lcore = 0;
  bool tx = false;
  bool rx = false;
};

struct Engine {
  TxConfig txc;
  RxConfig rxc;
  TxState txs;
  std::unique_ptr<StreamTracker> tracker;
  LiveCounters live;
  std::atomic<bool> tx_stop{false};
  std::atomic<bool> rx_stop{false};
  std::atomic<bool> tx_done{false};  // set by the TX lane: count or duration reached
  std::vector<Lane> lanes;
};

struct LaneArg {
  Engine* engine;
  const Lane* lane;
};

// rte_eal_remote_launch entry point; arg is a LaneArg*.
int lane_main(void* arg);

}  // namespace sluice::gen
