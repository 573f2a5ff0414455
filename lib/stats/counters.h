#pragma once
// Per-lcore counters. Each worker writes only its own (alignas(64), no sharing); the main
// lcore reads them all and sums. Counter is a relaxed atomic written by one thread with a
// plain load+store, which costs the same as a non-atomic add on x86 and keeps readers
// race-free.

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "simd/validate.h"

namespace sluice::stats {

class Counter {
 public:
  void add(uint64_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Every reason a packet is dropped (CONTRACT): the validation reasons in check order, then
// the policy reasons. Validation reasons share their values with simd::Verdict - 1.
enum class Drop : uint8_t {
  kRunt = 0,
  kL3Truncated,
  kIpv4Version,
  kIpv4Ihl,
  kIpv4Length,
  kIpv4Checksum,
  kIpv6Version,
  kIpv6Length,
  kIpv6Ext,
  kL4Truncated,
  kTcpOffset,
  kUdpLength,
  kNonIp,
  kRule,
  kDefault,
  kTxFull,
  kRingFull,
  kCaptureFull,
};
inline constexpr size_t kDropCount = 18;
static_assert(simd::kVerdictCount - 1 == static_cast<size_t>(Drop::kNonIp));

constexpr Drop drop_of(simd::Verdict v) noexcept {
  return static_cast<Drop>(static_cast<uint8_t>(v) - 1);
}
// CONTRACT names of every drop reason, the one table everything prints from (JSON,
// telemetry, Prometheus): the validation reasons' from simd::kVerdictNames, then the policy
// reasons'.
inline constexpr std::array<std::string_view, kDropCount> kDropNames = [] {
  std::array<std::string_view, kDropCount> names{};
  constexpr size_t kValidation = static_cast<size_t>(Drop::kNonIp);
  for (size_t i = 0; i < kValidation; ++i) names[i] = simd::kVerdictNames[i + 1];
  constexpr std::array<std::string_view, kDropCount - kValidation> kPolicy = {
      "non_ip", "rule", "default", "tx_full", "ring_full", "capture_full"};
  for (size_t i = 0; i < kPolicy.size(); ++i) names[kValidation + i] = kPolicy[i];
  return names;
}();
constexpr std::string_view drop_name(Drop d) noexcept {
  return kDropNames[static_cast<size_t>(d)];
}

struct PacketBytes {
  Counter packets;
  Counter bytes;
  void add(uint64_t len) noexcept {
    packets.add(1);
    bytes.add(len);
  }
  void add_n(uint64_t n, uint64_t total_len) noexcept {
    packets.add(n);
    bytes.add(total_len);
  }
};

// What sluice polled from one RX queue, whatever the driver's counters say: written by the
// worker that polls the queue (one add of each per burst), read by the main lcore.
struct alignas(64) RxQueueCounters {
  Counter packets;
  Counter bytes;
};

// Latency histogram in nanoseconds: 16 linear sub-buckets per power of two (about 6% error),
// so recording is a shift and an add.
class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 4;
  static constexpr unsigned kBuckets = (64 - kSubBits + 1) << kSubBits;

  static constexpr unsigned bucket_of(uint64_t ns) noexcept {
    if (ns < (1u << kSubBits)) return static_cast<unsigned>(ns);
    unsigned msb = 63 - static_cast<unsigned>(__builtin_clzll(ns));
    unsigned shift = msb - kSubBits;
    return ((shift + 1) << kSubBits) +
           static_cast<unsigned>((ns >> shift) & ((1u << kSubBits) - 1));
  }
  // The largest value that falls in bucket b.
  static constexpr uint64_t upper_bound(unsigned b) noexcept {
    if (b < (1u << kSubBits)) return b;
    unsigned shift = (b >> kSubBits) - 1;
    uint64_t mantissa = (1ull << kSubBits) | (b & ((1u << kSubBits) - 1));
    return ((mantissa + 1) << shift) - 1;
  }

  // Once per burst: count packets that each took ns.
  void record(uint64_t ns, uint64_t count) noexcept {
    buckets_[bucket_of(ns)].add(count);
    sum_ns_.add(ns * count);
    if (ns > max_.get()) max_.store(ns);
  }
  uint64_t bucket(unsigned b) const noexcept { return buckets_[b].get(); }
  uint64_t max() const noexcept { return max_.get(); }
  // Exact sum of every recorded value (Prometheus' _sum); read apart from the buckets, so it may
  // be one burst ahead of or behind them.
  uint64_t sum_ns() const noexcept { return sum_ns_.get(); }

 private:
  struct Max {
    std::atomic<uint64_t> v{0};
    uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
    void store(uint64_t x) noexcept { v.store(x, std::memory_order_relaxed); }
  };
  std::array<Counter, kBuckets> buckets_{};
  Counter sum_ns_;
  Max max_;
};

// One worker's counters. Per-rule counters belong to the rule generation they count for
// (lib/flow/rule_store.h): a reload replaces them with the rules.
struct alignas(64) WorkerCounters {
  std::array<Counter, kDropCount> drops{};
  PacketBytes fallback;  // packets that matched no rule ("default")
  PacketBytes non_ip;
  Counter rx_packets;    // packets this worker processed: its RX share and its inbox
  Counter handed_off;    // packets its distributor put in other workers' rings (ring_full: refused)
  Counter polls;         // RX rounds (every queue and inbox polled once) ...
  Counter busy_polls;    // ... and those that brought packets: busy share = busy / polls
  Counter cache_hits;    // classify answers from the worker's flow cache
  Counter cache_misses;  // ... and from rte_acl after a lookup
  Counter cache_bypassed;    // ... from rte_acl while the cache stands aside (no locality)
  Counter capture_enqueued;  // copies handed to the capture lcore (capture_full: refused)
  Counter loops;             // heartbeat: the main lcore sees a stuck worker
  LatencyHistogram latency;
};

}  // namespace sluice::stats
