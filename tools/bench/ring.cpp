// sluice-bench-ring: the ring distributor's hand-off cost on one lcore, in the manner of DPDK's
// ring_perf_autotest ("SP/SC: burst (size: 32)": TSC cycles per element to enqueue a burst of
// 32 on an SP/SC ring and dequeue it again). Two figures, TSC cycles per packet:
//   ring     the same loop as ring_perf's, on the same build and machine as the next one;
//   hash     the flow hash of those frames as spread_burst takes it (frame pointers and lengths
//            from the mbufs, the best burst kernel this CPU has, the scalar hash for what it
//            leaves), one direction each, the same 256 again and again;
//   hash_mixed  the same on 16,384 frames of those flows, each sent either way at random, as a
//            link carrying both directions gives them (no pattern to learn);
//   handoff  pipeline::spread_burst on bursts of 32 64-byte IPv4/UDP frames of 256 flows over
//            three workers (as worker 2, on flows that hash to workers 0 and 1: the whole burst
//            is handed off), then the receivers' burst dequeues: hash, sort by worker, RX TSC
//            stamp, enqueue and dequeue, what a packet costs to cross from one worker to another.
// Prints "ring", "hash", "hash_mixed" and "handoff", each CYCLES (median of --reps repetitions).
//   sluice-bench-ring [EAL options] -- [--reps N] [--iterations N]

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lib/packet/frame_builder.h"
#include "lib/pipeline/distributor.h"
#include "lib/pipeline/worker.h"
#include "lib/port/eal_exit.h"
#include "simd/flow_hash.h"

namespace {

using sluice::pipeline::flow_hash;
using sluice::pipeline::worker_of;

constexpr unsigned kBurst = 32;
constexpr unsigned kFlows = 256;

// A 60-byte IPv4/UDP frame of flow i (10.0.x.y:1024+i -> 192.168.0.1:5001), or its reply.
std::array<uint8_t, 60> frame(unsigned i, bool reply = false) {
  std::array<uint8_t, 60> f{};
  sluice::packet::Frame spec;
  spec.src_ip = {10, 0, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
  spec.dst_ip = {192, 168, 0, 1};
  spec.sport = static_cast<uint16_t>(1024 + i);
  spec.dport = 5001;
  if (reply) {
    std::swap(spec.src_ip, spec.dst_ip);
    std::swap(spec.sport, spec.dport);
  }
  sluice::packet::write_frame(f.data(), spec, 18);
  return f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int eal = rte_eal_init(argc, argv);
  if (eal < 0) {
    std::fprintf(stderr, "sluice-bench-ring: EAL init failed\n");
    return 2;
  }
  unsigned reps = 5;
  uint64_t iterations = 1u << 20;
  for (int i = eal + 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--iterations" && i + 1 < argc) {
      iterations = std::strtoull(argv[++i], nullptr, 10);
    } else if (a != "--") {
      std::fprintf(stderr,
                   "usage: sluice-bench-ring [EAL options] -- [--reps N] [--iterations N]\n");
      return 1;
    }
  }
  rte_mempool* pool =
      rte_pktmbuf_pool_create("bench_ring", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  std::array<rte_ring*, 3> rings{};
  for (int k = 0; k < 2; ++k) {
    rings[k] = rte_ring_create(("bench_ring" + std::to_string(k)).c_str(), 4096, SOCKET_ID_ANY,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
  }
  if (pool == nullptr || rings[0] == nullptr || rings[1] == nullptr) {
    std::fprintf(stderr, "sluice-bench-ring: cannot create the pool or rings\n");
    return 2;
  }
  // kBurst * 8 mbufs of flows that hash to workers 0 and 1 of 3, reused every iteration.
  std::vector<rte_mbuf*> pkts;
  for (unsigned i = 0; pkts.size() < kBurst * 8; ++i) {
    const auto f = frame(i % (kFlows * 3));
    if (worker_of(flow_hash(f.data(), f.size()), 3) == 2) continue;
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    std::memcpy(rte_pktmbuf_append(m, f.size()), f.data(), f.size());
    pkts.push_back(m);
  }
  // 16,384 frames of the 256 flows, each direction chosen at random (a fixed seed): 960 KiB.
  constexpr unsigned kMixed = 16384;
  std::vector<std::array<uint8_t, 64>> mixed(kMixed);
  std::mt19937 rng(11);
  for (auto& m : mixed) {
    const auto f = frame(rng() % kFlows, (rng() & 1) != 0);
    std::memcpy(m.data(), f.data(), f.size());
  }
  // The burst hash of the best kernel this CPU has, as the appliance picks it.
  const sluice::simd::FlowHashBurstFn burst_hash =
      sluice::simd::flow_hash_fn(sluice::simd::best_kernel(256));
  sluice::pipeline::Worker w;
  w.index = 2;
  w.nb_workers = 3;
  w.flow_hash_burst = burst_hash;
  sluice::pipeline::RxQueue q{};
  q.spread = rings.data();
  if (!sluice::pipeline::prepare_hand_off(w, q, SOCKET_ID_ANY)) {
    std::fprintf(stderr, "sluice-bench-ring: cannot allocate the hand-off stages\n");
    return 2;
  }

  std::vector<double> ring_c, handoff_c, hash_c, mixed_c;
  std::array<rte_mbuf*, kBurst> out;
  for (unsigned r = 0; r < reps; ++r) {
    // ring_perf's burst loop: enqueue a burst, dequeue it, per element.
    uint64_t t0 = rte_rdtsc();
    for (uint64_t it = 0; it < iterations; ++it) {
      rte_mbuf** b = &pkts[(it % 8) * kBurst];
      rte_ring_sp_enqueue_burst(rings[0], reinterpret_cast<void**>(b), kBurst, nullptr);
      rte_ring_sc_dequeue_burst(rings[0], reinterpret_cast<void**>(out.data()), kBurst, nullptr);
    }
    ring_c.push_back(static_cast<double>(rte_rdtsc() - t0) /
                     static_cast<double>(iterations * kBurst));
    // The flow hash alone, as spread_burst takes it: each burst's frames from their mbufs,
    // the burst kernel, the scalar hash for what it leaves.
    t0 = rte_rdtsc();
    uint32_t sink = 0;
    std::array<const uint8_t*, kBurst> frames;
    std::array<uint32_t, kBurst> lens, hashes;
    for (uint64_t it = 0; it < iterations; ++it) {
      rte_mbuf** b = &pkts[(it % 8) * kBurst];
      for (unsigned i = 0; i < kBurst; ++i) {
        frames[i] = rte_pktmbuf_mtod(b[i], const uint8_t*);
        lens[i] = b[i]->data_len;
      }
      const uint64_t done = burst_hash(frames.data(), lens.data(), kBurst, hashes.data());
      for (uint64_t rest = ~done & 0xFFFFFFFFu; rest != 0; rest &= rest - 1)
        hashes[__builtin_ctzll(rest)] = flow_hash(b[__builtin_ctzll(rest)]);
      for (unsigned i = 0; i < kBurst; ++i) sink += hashes[i];
    }
    hash_c.push_back(static_cast<double>(rte_rdtsc() - t0) /
                     static_cast<double>(iterations * kBurst));
    // The same on both directions in random order, a pass over the frames per kMixed / kBurst
    // iterations of the loop above.
    std::fill(lens.begin(), lens.end(), 60u);
    t0 = rte_rdtsc();
    for (uint64_t it = 0; it < iterations; ++it) {
      const auto* b = &mixed[(it * kBurst) % kMixed];
      for (unsigned i = 0; i < kBurst; ++i) frames[i] = b[i].data();
      const uint64_t done = burst_hash(frames.data(), lens.data(), kBurst, hashes.data());
      for (uint64_t rest = ~done & 0xFFFFFFFFu; rest != 0; rest &= rest - 1)
        hashes[__builtin_ctzll(rest)] = flow_hash(frames[__builtin_ctzll(rest)], 60);
      for (unsigned i = 0; i < kBurst; ++i) sink += hashes[i];
    }
    mixed_c.push_back(static_cast<double>(rte_rdtsc() - t0) /
                      static_cast<double>(iterations * kBurst));
    if (sink == 1) std::printf(" ");
    // The hand-off: spread, then each receiver drains its ring.
    t0 = rte_rdtsc();
    for (uint64_t it = 0; it < iterations; ++it) {
      sluice::pipeline::spread_burst(w, q, &pkts[(it % 8) * kBurst], kBurst, t0);
      for (int k = 0; k < 2; ++k) {
        rte_ring_sc_dequeue_burst(rings[k], reinterpret_cast<void**>(out.data()), kBurst, nullptr);
      }
    }
    handoff_c.push_back(static_cast<double>(rte_rdtsc() - t0) /
                        static_cast<double>(iterations * kBurst));
  }
  const uint64_t refused =
      w.counters.drops[static_cast<size_t>(sluice::stats::Drop::kRingFull)].get();
  std::printf("ring %.2f\nhandoff %.2f\nhash %.2f\nhash_mixed %.2f\nrefused %lu\n", median(ring_c),
              median(handoff_c), median(hash_c), median(mixed_c),
              static_cast<unsigned long>(refused));
  // What the stages still hold goes to the rings, the rings are emptied (every mbuf there is
  // one of pkts), and the worker's stages are freed while DPDK's heap still exists.
  sluice::pipeline::flush_hand_off(w);
  for (rte_ring* r : rings) {
    while (r != nullptr && rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(out.data()),
                                                     kBurst, nullptr) != 0) {
    }
  }
  sluice::pipeline::worker_release(w);
  for (rte_mbuf* m : pkts) rte_pktmbuf_free(m);
  for (rte_ring* r : rings) rte_ring_free(r);
  rte_mempool_free(pool);
  sluice::port::eal_cleanup_and_tidy();
  return refused == 0 ? 0 : 3;
}
