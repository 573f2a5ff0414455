// Memory across reloads: two generations of 100,000 rules fit side by side, and a replaced
// generation is freed - DPDK's heap (rte_malloc_get_socket_stats) and the process heap
// (mallinfo2) are back where they were after the reloads.
//
// Tolerance: DPDK's heap must match to the byte and the allocation. The process heap may
// differ by at most kMallocSlack: glibc keeps small free-list and arena bookkeeping that moves
// by a few KiB with allocation history; a leaked generation is megabytes (100k rules: ~185 MB
// of DPDK memory, ~10 MB of parsed rules).

#include <malloc.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_rcu_qsbr.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "lib/flow/reload.h"
#include "lib/flow/rule_store.h"
#include "tests/unit/flow/flows_text.h"

namespace sluice::flow {
namespace {

constexpr size_t kMallocSlack = 64 << 10;

struct Heaps {
  uint64_t rte_bytes = 0;
  uint64_t rte_allocs = 0;
  uint64_t malloc_bytes = 0;  // in use: small blocks and mmapped ones
};

Heaps heaps() {
  Heaps h;
  rte_malloc_socket_stats s{};
  for (unsigned socket = 0; socket < rte_socket_count(); ++socket) {
    rte_malloc_get_socket_stats(rte_socket_id_by_idx(socket), &s);
    h.rte_bytes += s.heap_allocsz_bytes;
    h.rte_allocs += s.alloc_count;
  }
  const struct mallinfo2 m = mallinfo2();
  h.malloc_bytes = m.uordblks + m.hblkhd;
  return h;
}

void expect_same(const Heaps& before, const Heaps& after) {
  EXPECT_EQ(after.rte_bytes, before.rte_bytes) << "DPDK heap bytes";
  EXPECT_EQ(after.rte_allocs, before.rte_allocs) << "DPDK heap allocations";
  const auto diff = static_cast<int64_t>(after.malloc_bytes - before.malloc_bytes);
  EXPECT_LE(std::llabs(diff), static_cast<int64_t>(kMallocSlack))
      << "process heap: " << before.malloc_bytes << " -> " << after.malloc_bytes;
  std::printf("[ heaps    ] DPDK %llu B in %llu allocations; process %llu B (%+lld)\n",
              static_cast<unsigned long long>(after.rte_bytes),
              static_cast<unsigned long long>(after.rte_allocs),
              static_cast<unsigned long long>(after.malloc_bytes), static_cast<long long>(diff));
}

// n IPv4 5-tuple rules of the benchmark's shape: src /8../32, dst /16../32, tcp or udp, a
// dst_port range.
std::shared_ptr<const config::Flows> big_flows(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  auto prefix = [&](std::initializer_list<uint8_t> lens) {
    config::Cidr c;
    c.prefix = *(lens.begin() + rng() % lens.size());
    const uint32_t a = rng() & (UINT32_MAX << (32 - c.prefix));
    for (int b = 0; b < 4; ++b) c.addr[b] = static_cast<uint8_t>(a >> (24 - 8 * b));
    return c;
  };
  auto f = std::make_shared<config::Flows>();
  f->rules.resize(n);
  for (size_t i = 0; i < n; ++i) {
    config::Rule& r = f->rules[i];
    r.name = "r";
    r.name += std::to_string(i);
    r.priority = static_cast<uint16_t>(rng() % 2000);
    r.match.proto = rng() % 2 ? 6 : 17;
    r.match.src = prefix({8, 16, 24, 32});
    r.match.dst = prefix({16, 24, 32});
    const auto lo = static_cast<uint16_t>(1 + rng() % 60000);
    static constexpr uint16_t kSpan[] = {0, 0, 10, 1000};
    r.match.dst_port = config::PortRange{lo, static_cast<uint16_t>(lo + kSpan[rng() % 4])};
  }
  return f;
}

TEST(Memory, TwoGenerationsOf100kRulesFitAndTheReplacedOneIsFreed) {
  auto a = big_flows(100000, 1), b = big_flows(100000, 2);
  auto s = RuleStore::create(a, {SOCKET_ID_ANY}, SOCKET_ID_ANY, "mem100k");
  ASSERT_TRUE(s.ok()) << s.error();
  RuleStore& store = **s;
  rte_rcu_qsbr_thread_online(store.qsbr(), 0);  // this thread reads, so grace periods are real
  const Heaps one = heaps();

  auto built = store.build(b);
  ASSERT_TRUE(built.ok()) << built.error();
  store.publish(std::move(built->gen));
  EXPECT_TRUE(store.poll().empty());  // the reader has not passed a quiescent state
  const Heaps two = heaps();
  std::printf("[ heaps    ] one generation of 100k rules: %llu B of DPDK memory; two: %llu B\n",
              static_cast<unsigned long long>(one.rte_bytes),
              static_cast<unsigned long long>(two.rte_bytes));
  EXPECT_GT(two.rte_bytes, one.rte_bytes + (one.rte_bytes >> 2));

  rte_rcu_qsbr_quiescent(store.qsbr(), 0);
  ASSERT_EQ(store.poll().size(), 1u);
  built = store.build(a);  // back to the first rule set: the same figures as at the start
  ASSERT_TRUE(built.ok()) << built.error();
  store.publish(std::move(built->gen));
  rte_rcu_qsbr_quiescent(store.qsbr(), 0);
  ASSERT_EQ(store.poll().size(), 1u);
  rte_rcu_qsbr_thread_offline(store.qsbr(), 0);
  expect_same(one, heaps());
}

TEST(Memory, HundredReloadsUnderAReaderLeaveBothHeapsAsTheyWere) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("sluice-mem-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "flows.yaml").string();
  auto yaml = [](uint32_t seed) {
    std::string t = "version: 1\nrules:\n";
    std::mt19937 rng(seed);
    for (int i = 0; i < 1000; ++i) {
      t += "  - name: r" + std::to_string(i) + "\n    priority: " + std::to_string(rng() % 100) +
           "\n    match: { proto: udp, dst: 10." + std::to_string(rng() % 256) + "." +
           std::to_string(rng() % 256) + ".0/24, dst_port: " + std::to_string(rng() % 60000) +
           " }\n    action: drop\n";
    }
    return t;
  };
  const std::string texts[2] = {yaml(1), yaml(2)};
  std::ofstream(path) << texts[0];
  auto flows = config::load_flows(path, test::test_appliance());
  ASSERT_TRUE(flows.ok()) << flows.error();
  auto s = RuleStore::create(std::make_shared<const config::Flows>(std::move(*flows)),
                             {SOCKET_ID_ANY}, SOCKET_ID_ANY, "mem100");
  ASSERT_TRUE(s.ok()) << s.error();
  RuleStore& store = **s;
  Reloader reloader(store, test::test_appliance(), path);

  std::atomic<bool> stop{false};
  std::thread reader([&] {  // a worker: reads the generation, reports quiescent states
    rte_rcu_qsbr_thread_online(store.qsbr(), 0);
    while (!stop.load(std::memory_order_relaxed)) {
      const Generation* g = store.published()->load(std::memory_order_acquire);
      g->hits[0][0].add(64);
      rte_rcu_qsbr_quiescent(store.qsbr(), 0);
      std::this_thread::yield();
    }
    rte_rcu_qsbr_thread_offline(store.qsbr(), 0);
  });
  auto reload_to = [&](int which) {
    std::ofstream(path, std::ios::trunc) << texts[which];
    const ReloadOutcome o = reloader.reload(Trigger::kSignal);
    while (store.retiring() > 0) {
      store.poll();
      std::this_thread::yield();
    }
    return o.kind == ReloadOutcome::Kind::kApplied;
  };
  // Warm up: the first reloads size what every later one reuses (vectors, the slot table).
  ASSERT_TRUE(reload_to(1) && reload_to(0));
  const Heaps before = heaps();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(reload_to((i + 1) % 2)) << i;
  const Heaps after = heaps();
  stop = true;
  reader.join();
  EXPECT_EQ(reloader.stats().ok, 102u);
  expect_same(before, after);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::flow
