// Micro-benchmarks of the data-path stages, so each stage's "Cost:" comment quotes a
// measurement. cycles_per_pkt is TSC cycles (rte_rdtsc around the whole timed loop) divided
// by packets processed; items_per_second is packets per second.
//
//   sluice-bench-stages --benchmark_min_time=0.2
//
// The EAL runs like the unit tests' (no hugepages, no PCI, no shared files, no telemetry): rte_acl
// needs DPDK memory, nothing here touches a device.

#include <arpa/inet.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_ring.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "lib/config/config.h"
#include "lib/flow/flow_table.h"
#include "lib/flow/rule_store.h"
#include "lib/packet/frame_builder.h"
#include "lib/pipeline/worker.h"
#include "simd/validate.h"
#include "tools/bench/bench_eal.h"
#include "tools/bench/validate_anchor.h"

namespace {

using sluice::config::Action;
using sluice::config::Cidr;
using sluice::config::Flows;
using sluice::config::PortRange;
using sluice::config::Rule;
using sluice::flow::FlowTable;
using sluice::simd::CksumHint;
using sluice::simd::Family;
using sluice::simd::FlowKey;
using sluice::simd::PacketView;
using sluice::simd::Verdict;

constexpr uint16_t kBurst = 32;
constexpr size_t kPool = 256;         // distinct frames / flows, cycled a burst at a time
constexpr size_t kViews = 16384;      // validate: bursts drawn from the frames, in this order
constexpr size_t kFrameStride = 128;  // bytes per frame slot (two cache lines)
constexpr uint32_t kMinFrame = 64;    // frame_len floor: the smallest frame benchmarked
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

// One frame of the benchmark traffic: Ethernet [+ VLAN] + IPv4/IPv6 + TCP/UDP.
struct FrameSpec {
  bool vlan = false;
  bool ipv6 = false;
  uint8_t proto = kProtoUdp;
  uint32_t payload = 0;  // L4 payload bytes
};

// Writes the frame at p (kFrameStride bytes, zeroed) and returns its length. Random fields
// are drawn in this order: VLAN id, IPv4 id, addresses, ports.
uint32_t build_frame(uint8_t* p, const FrameSpec& s, std::mt19937& rng) {
  sluice::packet::Frame f;  // dst and src MAC left zero: the validator does not read them
  if (s.vlan) f.vlan = static_cast<uint16_t>(rng() % 4095 + 1);
  f.ipv6 = s.ipv6;
  f.proto = s.proto;
  if (s.ipv6) {
    constexpr std::array<uint8_t, 4> kDoc = {0x20, 0x01, 0x0d, 0xb8};  // 2001:db8::/32
    std::copy(kDoc.begin(), kDoc.end(), f.src_ip.begin());
    std::copy(kDoc.begin(), kDoc.end(), f.dst_ip.begin());
    for (int i = 4; i < 16; ++i) f.src_ip[i] = static_cast<uint8_t>(rng());
    for (int i = 4; i < 16; ++i) f.dst_ip[i] = static_cast<uint8_t>(rng());
  } else {
    f.ip_id = static_cast<uint16_t>(rng());
    f.ip_frag = 0x4000;  // DF
    f.src_ip[0] = 10;
    f.dst_ip[0] = 192;
    f.dst_ip[1] = 168;
    for (int i = 1; i < 4; ++i) f.src_ip[i] = static_cast<uint8_t>(rng());
    for (int i = 2; i < 4; ++i) f.dst_ip[i] = static_cast<uint8_t>(rng());
  }
  f.sport = static_cast<uint16_t>(rng() % 64512 + 1024);
  f.dport = static_cast<uint16_t>(rng() % 64512 + 1024);
  return std::max(sluice::packet::write_frame(p, f, s.payload).len, kMinFrame);
}

enum class Traffic { kUdp64, kMix };

// kPool frames of the given traffic (in L1), and kViews views of them: the frames in order for
// udp64, a random draw for the mix (a 256-packet cycle would let branch predictors learn the
// sequence, which real traffic does not allow).
struct FramePool {
  std::vector<uint8_t> bytes;
  std::vector<PacketView> views;

  explicit FramePool(Traffic t) : bytes(kPool * kFrameStride), views(kViews) {
    std::vector<PacketView> frames(kPool);
    std::mt19937 rng(7);
    for (size_t i = 0; i < kPool; ++i) {
      FrameSpec s;
      if (t == Traffic::kUdp64) {
        s.payload = 64 - 14 - 20 - 8;
      } else {
        // 40% IPv4 TCP, 30% IPv4 UDP, 20% IPv6 TCP, 10% VLAN-tagged IPv4 TCP/UDP, drawn per frame.
        const unsigned pick = rng() % 10;
        if (pick < 4) {
          s.proto = kProtoTcp;
        } else if (pick < 7) {
          s.proto = kProtoUdp;
        } else if (pick < 9) {
          s.ipv6 = true;
          s.proto = kProtoTcp;
        } else {
          s.vlan = true;
          s.proto = rng() % 2 ? kProtoTcp : kProtoUdp;
        }
        s.payload = rng() % 24;
      }
      uint8_t* p = bytes.data() + i * kFrameStride;
      const uint32_t len = build_frame(p, s, rng);
      frames[i] = PacketView{p, len, len, CksumHint::kUnknown};
    }
    for (size_t i = 0; i < kViews; ++i) {
      views[i] = frames[t == Traffic::kUdp64 ? i % kPool : rng() % kPool];
    }
  }
};

// The validators benchmarked side by side: the scalar reference, the SIMD kernels this CPU
// runs, and the DPDK anchor (validate_anchor.cpp).
struct Validator {
  std::string name;
  sluice::simd::ValidateBurstFn fn;
};

std::vector<Validator> validators() {
  std::vector<Validator> v;
  for (auto k : sluice::simd::kKernels) {
    if (sluice::simd::kernel_supported(k)) {
      v.push_back({std::string(sluice::simd::kernel_name(k)), sluice::simd::kernel_fn(k)});
    } else {
      std::fprintf(stderr, "sluice-bench-stages: this CPU lacks %s; not benchmarked\n",
                   std::string(sluice::simd::kernel_name(k)).c_str());
    }
  }
  v.push_back({"anchor", &sluice::bench::validate_burst_anchor});
  return v;
}

// The timed loop of the validate benchmarks: burst(b) validates the kBurst packets from b,
// cycling through kViews; TSC cycles per packet.
template <typename Burst>
void time_bursts(benchmark::State& state, Burst&& burst) {
  uint64_t pkts = 0;
  size_t b = 0;
  const uint64_t start = rte_rdtsc();
  for (auto _ : state) {
    auto got = burst(b);
    benchmark::DoNotOptimize(got);
    benchmark::ClobberMemory();
    pkts += kBurst;
    b = (b + kBurst) % kViews;
  }
  const uint64_t cycles = rte_rdtsc() - start;
  state.counters["cycles_per_pkt"] =
      benchmark::Counter(static_cast<double>(cycles) / static_cast<double>(pkts));
  state.SetItemsProcessed(static_cast<int64_t>(pkts));
}

// Bursts of kBurst prebuilt frames in memory (headers in L1), cycling through kViews views.
void BM_Validate(benchmark::State& state, Traffic traffic, sluice::simd::ValidateBurstFn fn) {
  const FramePool pool(traffic);
  alignas(64) std::array<FlowKey, kBurst> keys{};
  alignas(64) std::array<FlowKey, kBurst> ref_keys{};
  std::array<Verdict, kBurst> verdicts{};
  std::array<Verdict, kBurst> ref_verdicts{};
  std::array<uint32_t, kBurst> hashes{};
  std::array<uint32_t, kBurst> ref_hashes{};

  // Every frame validates, and exactly as the reference says (keys and flow hashes), or this
  // measures something else.
  for (size_t b = 0; b < kViews; b += kBurst) {
    const uint16_t ok = fn(&pool.views[b], kBurst, 1, keys.data(), hashes.data(), verdicts.data());
    sluice::simd::validate_burst_scalar(&pool.views[b], kBurst, 1, ref_keys.data(),
                                        ref_hashes.data(), ref_verdicts.data());
    if (ok != kBurst) {
      state.SkipWithError("benchmark traffic does not validate");
      return;
    }
    if (std::memcmp(keys.data(), ref_keys.data(), sizeof keys) != 0 || hashes != ref_hashes) {
      state.SkipWithError("keys or flow hashes differ from the scalar reference");
      return;
    }
  }

  // Validation alone, as the history of this figure measured it: no flow hashes (BM_Worker
  // has them, in the worker's whole burst).
  time_bursts(state, [&](size_t b) {
    return fn(&pool.views[b], kBurst, 1, keys.data(), nullptr, verdicts.data());
  });
}

// The data path's entry on the same bursts: each frame behind an rte_mbuf header (one per pool
// frame, like the views), the kernel reading the views from the mbufs itself and summing the
// bytes. What BM_Validate leaves out of the worker's burst: the mbuf fields' loads.
void BM_ValidateMbufs(benchmark::State& state, Traffic traffic, sluice::simd::Kernel kernel) {
  const FramePool pool(traffic);
  std::vector<rte_mbuf> heads(kPool);
  std::map<const uint8_t*, const rte_mbuf*> of_frame;
  for (size_t i = 0; i < kPool; ++i) {
    const uint8_t* frame = pool.bytes.data() + i * kFrameStride;
    rte_mbuf& m = heads[i];
    std::memset(&m, 0, sizeof m);
    m.buf_addr = const_cast<uint8_t*>(frame) - RTE_PKTMBUF_HEADROOM;
    m.data_off = RTE_PKTMBUF_HEADROOM;
    of_frame[frame] = &m;
  }
  std::vector<const void*> mbufs(kViews);
  for (size_t i = 0; i < kViews; ++i) {
    auto* m = const_cast<rte_mbuf*>(of_frame.at(pool.views[i].data));
    m->pkt_len = pool.views[i].frame_len;
    m->data_len = static_cast<uint16_t>(pool.views[i].data_len);
    mbufs[i] = m;
  }
  const sluice::simd::ValidateMbufsFn fn = sluice::simd::mbuf_kernel_fn(kernel);
  alignas(64) std::array<FlowKey, kBurst> keys{};
  alignas(64) std::array<FlowKey, kBurst> ref_keys{};
  std::array<Verdict, kBurst> verdicts{};
  std::array<Verdict, kBurst> ref_verdicts{};
  for (size_t b = 0; b < kViews; b += kBurst) {
    const sluice::simd::MbufBurst got =
        fn(&mbufs[b], kBurst, 1, keys.data(), nullptr, verdicts.data());
    sluice::simd::validate_burst_scalar(&pool.views[b], kBurst, 1, ref_keys.data(), nullptr,
                                        ref_verdicts.data());
    if (got.nb_ok != kBurst || got.split != 0 ||
        std::memcmp(keys.data(), ref_keys.data(), sizeof keys) != 0) {
      state.SkipWithError("the mbuf entry does not validate the traffic as the reference");
      return;
    }
  }

  time_bursts(state, [&](size_t b) {
    return fn(&mbufs[b], kBurst, 1, keys.data(), nullptr, verdicts.data());
  });
}

void register_validate_benchmarks() {
  for (const Validator& v : validators()) {
    for (auto [name, traffic] : {std::pair{"udp64", Traffic::kUdp64}, {"mix", Traffic::kMix}}) {
      benchmark::RegisterBenchmark(("BM_Validate/" + std::string(name) + "/" + v.name).c_str(),
                                   BM_Validate, traffic, v.fn);
    }
  }
  for (auto k : sluice::simd::kKernels) {
    if (!sluice::simd::kernel_supported(k)) continue;
    for (auto [name, traffic] : {std::pair{"udp64", Traffic::kUdp64}, {"mix", Traffic::kMix}}) {
      benchmark::RegisterBenchmark(("BM_ValidateMbufs/" + std::string(name) + "/" +
                                    std::string(sluice::simd::kernel_name(k)))
                                       .c_str(),
                                   BM_ValidateMbufs, traffic, k);
    }
  }
}

Cidr v4_cidr(uint32_t host_order_addr, uint8_t prefix) {
  Cidr c;
  c.family = 4;
  const uint32_t mask = prefix == 0 ? 0 : UINT32_MAX << (32 - prefix);
  const uint32_t a = host_order_addr & mask;
  c.addr[0] = static_cast<uint8_t>(a >> 24);
  c.addr[1] = static_cast<uint8_t>(a >> 16);
  c.addr[2] = static_cast<uint8_t>(a >> 8);
  c.addr[3] = static_cast<uint8_t>(a);
  c.prefix = prefix;
  return c;
}

// N IPv4 rules as tools/bench/rules.py makes them: random src (/8../32) and dst (/16../32)
// prefixes outside 10/8, tcp or udp, a dst_port range, random priority, forward or drop; rule
// n/2 is "bench-hit", the one the benchmark traffic (UDP 10/8 -> 192.168/16) matches.
Flows bench_flows(size_t n) {
  std::mt19937 rng(7);
  auto pick = [&](uint32_t lo, uint32_t hi_excl) { return lo + rng() % (hi_excl - lo); };
  constexpr std::array<uint8_t, 4> kSrcLens = {8, 16, 24, 32};
  constexpr std::array<uint8_t, 3> kDstLens = {16, 24, 32};
  constexpr std::array<uint16_t, 4> kSpans = {0, 0, 10, 1000};

  Flows flows;
  flows.path = "bench";
  flows.non_ip.action = Action::kDrop;
  flows.fallback.action = Action::kDrop;
  flows.rules.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Rule r;
    if (i == n / 2) {
      r.name = "bench-hit";
      r.priority = 1000;
      r.match.proto = kProtoUdp;
      r.match.src = v4_cidr(0x0a000000, 8);
      r.match.dst = v4_cidr(0xc0a80000, 16);
      r.match.dst_port = PortRange{1024, 65535};
      r.action = Action::kForward;
      r.to = 0;
      flows.rules.push_back(std::move(r));
      continue;
    }
    const uint8_t plen_s = kSrcLens[rng() % kSrcLens.size()];
    const uint8_t plen_d = kDstLens[rng() % kDstLens.size()];
    const uint32_t src = pick(11, 223) << 24 | pick(0, 256) << 16 | pick(0, 256) << 8;
    const uint32_t dst = pick(11, 223) << 24 | pick(0, 256) << 16 | pick(0, 256) << 8;
    std::array<char, 24> name{};  // snprintf: GCC 12 warns -Wrestrict on "r" + to_string(i)
    std::snprintf(name.data(), name.size(), "r%zu", i);
    r.name = name.data();
    r.match.proto = rng() % 2 ? kProtoTcp : kProtoUdp;
    r.match.src = v4_cidr(src, plen_s);
    r.match.dst = v4_cidr(dst, plen_d);
    const uint16_t lo = static_cast<uint16_t>(pick(1, 60000));
    r.match.dst_port = PortRange{lo, static_cast<uint16_t>(lo + kSpans[rng() % kSpans.size()])};
    r.priority = static_cast<uint16_t>(pick(0, 2000));
    r.action = rng() % 2 ? Action::kForward : Action::kDrop;
    if (r.action == Action::kForward) r.to = 0;
    flows.rules.push_back(std::move(r));
  }
  return flows;
}

// Tables are built once per N and outlive the benchmark runs (Google Benchmark calls a
// benchmark function several times); main frees them before rte_eal_cleanup.
std::map<int64_t, std::unique_ptr<FlowTable>>& tables() {
  static std::map<int64_t, std::unique_ptr<FlowTable>> t;
  return t;
}

// kPool distinct IPv4 UDP flows 10/8 -> 192.168/16, dst ports >= 1024, as the validator
// would key them (network byte order).
std::vector<FlowKey> bench_keys() {
  std::mt19937 rng(11);
  std::vector<FlowKey> keys(kPool);
  for (size_t i = 0; i < kPool; ++i) {
    FlowKey k{};
    k.proto = kProtoUdp;
    k.l4_valid = 1;
    k.family = Family::kIpv4;
    k.src_port = htons(static_cast<uint16_t>(rng() % 64512 + 1024));
    k.dst_port = htons(static_cast<uint16_t>(rng() % 64512 + 1024));
    k.src = {10, static_cast<uint8_t>(i), static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng())};
    k.dst = {192, 168, static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng())};
    k.l3_offset = 14;
    k.l4_offset = 34;
    keys[i] = k;
  }
  return keys;
}

void BM_Classify(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto& slot = tables()[n];
  if (!slot) {
    auto t = FlowTable::build(bench_flows(static_cast<size_t>(n)), "bench-cls-" + std::to_string(n),
                              SOCKET_ID_ANY);
    if (!t) {
      state.SkipWithError(t.error().c_str());
      return;
    }
    slot = std::move(*t);
  }
  const FlowTable& table = *slot;

  const std::vector<FlowKey> keys = bench_keys();
  std::vector<const FlowKey*> ptrs(kPool);
  for (size_t i = 0; i < kPool; ++i) ptrs[i] = &keys[i];
  std::array<uint32_t, kBurst> out{};

  // Every flow must land on bench-hit, or the benchmark measures something else.
  const uint32_t hit = static_cast<uint32_t>(n / 2);
  for (size_t b = 0; b < kPool; b += kBurst) {
    table.classify(&ptrs[b], kBurst, out.data());
    for (uint32_t r : out) {
      if (r != hit) {
        state.SkipWithError("benchmark flows do not hit the bench-hit rule");
        return;
      }
    }
  }

  uint64_t pkts = 0;
  size_t b = 0;
  const uint64_t start = rte_rdtsc();
  for (auto _ : state) {
    table.classify(&ptrs[b], kBurst, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    pkts += kBurst;
    b = (b + kBurst) % kPool;
  }
  const uint64_t cycles = rte_rdtsc() - start;
  state.counters["cycles_per_pkt"] =
      benchmark::Counter(static_cast<double>(cycles) / static_cast<double>(pkts));
  state.counters["rules_v4"] = benchmark::Counter(static_cast<double>(table.rules_v4()));
  state.SetItemsProcessed(static_cast<int64_t>(pkts));
}
BENCHMARK(BM_Classify)->Arg(100)->Arg(1000)->Arg(10000);

// The worker's whole burst (lib/pipeline process_burst: views, validate, classify through the
// flow cache, act, TX buffer) on 64-byte IPv4/UDP frames that all hit bench-hit among 1,000
// rules, as in tools/bench/run forward but without a PMD. The frames go out of a net_ring port
// whose TX ring is emptied back into the frame cycle, so nothing is allocated or freed in the
// timed loop. Args: flow cache entries (0: off), distinct flows cycled, kernel (0: scalar, 1: the
// best this CPU runs). Up to kFrames flows are
// kFrames frames; more (more than the cache holds: every lookup misses) rewrite the UDP source
// port of each frame before its burst (a store per packet; the frames stay in cache, as a
// NIC's mbufs do).
struct WorkerBench {
  rte_mempool* pool = nullptr;
  rte_ring* rx = nullptr;
  rte_ring* tx = nullptr;
  uint16_t port = 0;
  std::unique_ptr<sluice::flow::RuleStore> store;
  std::vector<rte_mbuf*> mbufs;                // every frame, in cycle order
  std::vector<std::array<uint8_t, 2>> sports;  // each frame's UDP source port as built
  bool ready = false;
  std::string error;

  static constexpr size_t kFrames = 256;

  WorkerBench() {
    pool = rte_pktmbuf_pool_create("bench_worker", kFrames + 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   SOCKET_ID_ANY);
    rx = rte_ring_create("bench_worker_rx", 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    tx = rte_ring_create("bench_worker_tx", 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (pool == nullptr || rx == nullptr || tx == nullptr) {
      error = "cannot create the mbuf pool or rings";
      return;
    }
    const int id = rte_eth_from_rings("bench_worker", &rx, 1, &tx, 1, SOCKET_ID_ANY);
    rte_eth_conf conf{};
    if (id < 0 || rte_eth_dev_configure(static_cast<uint16_t>(id), 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(static_cast<uint16_t>(id), 0, 64, SOCKET_ID_ANY, nullptr, pool) !=
            0 ||
        rte_eth_tx_queue_setup(static_cast<uint16_t>(id), 0, 64, SOCKET_ID_ANY, nullptr) != 0 ||
        rte_eth_dev_start(static_cast<uint16_t>(id)) != 0) {
      error = "cannot set up the net_ring port";
      return;
    }
    port = static_cast<uint16_t>(id);
    auto s = sluice::flow::RuleStore::create(std::make_shared<const Flows>(bench_flows(1000)),
                                             {SOCKET_ID_ANY}, SOCKET_ID_ANY, "bench-worker");
    if (!s) {
      error = s.error();
      return;
    }
    store = std::move(*s);
    std::mt19937 rng(5);
    for (size_t i = 0; i < kFrames; ++i) {
      rte_mbuf* m = rte_pktmbuf_alloc(pool);
      if (m == nullptr) {
        error = "mbuf pool too small";
        return;
      }
      std::array<uint8_t, kFrameStride> frame{};
      FrameSpec spec;
      spec.payload = 64 - 14 - 20 - 8;
      const uint32_t len = build_frame(frame.data(), spec, rng);
      std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(len)), frame.data(), len);
      mbufs.push_back(m);
      sports.push_back({frame[14 + 20], frame[14 + 20 + 1]});
    }
    ready = true;
  }
  ~WorkerBench() {
    for (rte_mbuf* m : mbufs) rte_pktmbuf_free(m);
    store.reset();
    if (ready) {
      rte_eth_dev_stop(port);
      rte_eth_dev_close(port);
    }
    rte_ring_free(rx);
    rte_ring_free(tx);
    rte_mempool_free(pool);
  }
};

std::unique_ptr<WorkerBench>& worker_bench() {
  static std::unique_ptr<WorkerBench> b;
  return b;
}

void BM_Worker(benchmark::State& state) {
  auto& bench = worker_bench();
  if (!bench) bench = std::make_unique<WorkerBench>();
  if (!bench->ready) {
    state.SkipWithError(bench->error.c_str());
    return;
  }
  const auto flows = static_cast<size_t>(state.range(1));
  sluice::pipeline::Worker w;
  w.burst = kBurst;
  w.rules = bench->store->published();
  const auto kernel = state.range(2) == 0
                          ? sluice::simd::Kernel::kScalar
                          : sluice::simd::best_kernel(rte_vect_get_max_simd_bitwidth());
  sluice::pipeline::use_kernel(w, kernel);
  state.SetLabel(std::string(sluice::simd::kernel_name(kernel)));
  w.flow_cache_entries = static_cast<uint32_t>(state.range(0));
  if (auto r = sluice::pipeline::worker_prepare(w, {bench->port}, SOCKET_ID_ANY); !r) {
    state.SkipWithError(r.error().c_str());
    return;
  }
  rte_mbuf** frames = bench->mbufs.data();
  const size_t cycle = std::min(flows, WorkerBench::kFrames);
  uint64_t pkts = 0;
  size_t b = 0;
  uint32_t next_flow = 0;
  bool lost = false;
  const uint64_t start = rte_rdtsc();
  for (auto _ : state) {
    if (flows > cycle) {
      for (unsigned i = 0; i < kBurst; ++i) {  // UDP source port: a new flow, same checksums
        const auto sport = static_cast<uint16_t>(next_flow++ % flows);
        sluice::packet::put16(rte_pktmbuf_mtod_offset(frames[b + i], uint8_t*, 14 + 20), sport);
      }
    }
    sluice::pipeline::process_burst(w, 0, frames + b, kBurst, rte_rdtsc());
    // The TX buffer holds a burst: it went out whole, in order, into the ring.
    lost |= rte_ring_dequeue_bulk(bench->tx, reinterpret_cast<void**>(frames + b), kBurst,
                                  nullptr) != kBurst;
    pkts += kBurst;
    b = (b + kBurst) % cycle;
  }
  const uint64_t cycles = rte_rdtsc() - start;
  sluice::pipeline::worker_flush(w);
  sluice::pipeline::worker_release(w);
  if (flows > cycle) {  // the frames' own source ports again, for the runs that follow
    for (size_t i = 0; i < cycle; ++i) {
      std::memcpy(rte_pktmbuf_mtod_offset(frames[i], uint8_t*, 14 + 20), &bench->sports[i], 2);
    }
  }
  if (lost) {
    state.SkipWithError("a burst did not come back whole from the TX ring");
    return;
  }
  const auto hits = w.counters.cache_hits.get(), misses = w.counters.cache_misses.get();
  const auto bypassed = w.counters.cache_bypassed.get();
  state.counters["cycles_per_pkt"] =
      benchmark::Counter(static_cast<double>(cycles) / static_cast<double>(pkts));
  state.counters["cache_hit_pct"] = benchmark::Counter(
      hits + misses ? 100.0 * static_cast<double>(hits) / static_cast<double>(hits + misses) : 0);
  state.counters["bypassed_pct"] =
      benchmark::Counter(100.0 * static_cast<double>(bypassed) / static_cast<double>(pkts));
  state.SetItemsProcessed(static_cast<int64_t>(pkts));
}
BENCHMARK(BM_Worker)
    ->ArgNames({"cache", "flows", "simd"})  // simd 0: the scalar reference, 1: the best kernel
    ->Args({8192, 256, 1})
    ->Args({0, 256, 1})
    ->Args({8192, 65536, 1})
    ->Args({0, 65536, 1})
    ->Args({8192, 256, 0});

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  if (!sluice::bench::eal_init("sluice-bench-stages", 512)) return 1;
  std::fprintf(stderr, "sluice-bench-stages: TSC %.3f GHz\n",
               static_cast<double>(rte_get_tsc_hz()) / 1e9);

  register_validate_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  tables().clear();
  worker_bench().reset();
  sluice::bench::eal_cleanup();
  return 0;
}
