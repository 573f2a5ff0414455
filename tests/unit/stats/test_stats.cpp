#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lib/stats/prometheus.h"
#include "lib/stats/snapshot.h"

namespace sluice::stats {
namespace {

TEST(LatencyHistogram, BucketsCoverEveryValueAndBoundsHold) {
  for (uint64_t v : {0ull, 1ull, 15ull, 16ull, 17ull, 31ull, 32ull, 1000ull, 123456789ull,
                     (1ull << 40) + 12345, ~0ull >> 1}) {
    unsigned b = LatencyHistogram::bucket_of(v);
    ASSERT_LT(b, LatencyHistogram::kBuckets) << v;
    EXPECT_LE(v, LatencyHistogram::upper_bound(b)) << v;
    if (b > 0) {
      EXPECT_GT(v, LatencyHistogram::upper_bound(b - 1)) << v;
    }
  }
  // Relative error stays within one sub-bucket (1/16).
  for (uint64_t v = 16; v < 1'000'000; v = v * 3 / 2 + 1) {
    uint64_t ub = LatencyHistogram::upper_bound(LatencyHistogram::bucket_of(v));
    EXPECT_LE(static_cast<double>(ub - v), static_cast<double>(v) / 16.0 + 1) << v;
  }
}

TEST(Snapshot, SumsWorkersAndPercentiles) {
  auto a = std::make_unique<WorkerCounters>();
  auto b = std::make_unique<WorkerCounters>();
  a->drops[static_cast<size_t>(Drop::kRunt)].add(2);
  b->drops[static_cast<size_t>(Drop::kRunt)].add(3);
  b->drops[static_cast<size_t>(Drop::kTxFull)].add(7);
  a->fallback.add(100);
  b->non_ip.add(60);
  a->latency.record(100, 98);
  b->latency.record(5000, 2);
  Snapshot s;
  sum_workers(s, {a.get(), b.get()});
  EXPECT_EQ(s.drops[static_cast<size_t>(Drop::kRunt)], 5u);
  EXPECT_EQ(s.drops[static_cast<size_t>(Drop::kTxFull)], 7u);
  EXPECT_EQ(s.fallback.packets, 1u);
  EXPECT_EQ(s.fallback.bytes, 100u);
  EXPECT_EQ(s.non_ip.bytes, 60u);
  EXPECT_GE(s.latency_ns.p50, 100u);
  EXPECT_LT(s.latency_ns.p50, 107u);
  EXPECT_GE(s.latency_ns.p99, 5000u);
  EXPECT_EQ(s.latency_ns.max, 5000u);
}

TEST(Snapshot, JsonHasEveryContractKeyAndEscapes) {
  Snapshot s;
  s.ports.push_back({"wan", 1, 2, 3, 4, 5, 6, 7, 0});
  s.reload.last_error = "flows.yaml:3:4: bad \"x\"\n";
  std::string j = to_json(s);
  for (const char* key :
       {"\"uptime_s\"",
        "\"ports\"",
        "\"wan\"",
        "\"rx_packets\": 1",
        "\"rx_bytes\": 2",
        "\"tx_packets\": 3",
        "\"tx_bytes\": 4",
        "\"rx_missed\": 5",
        "\"rx_nombuf\": 6",
        "\"tx_errors\": 7",
        "\"drops\"",
        "\"rules\"",
        "\"default\"",
        "\"non_ip\"",
        "\"capture\"",
        "\"chunks\"",
        "\"segments\"",
        "\"dropped\"",
        "\"reload\"",
        "\"generation\": 1",
        "\"last_error\": \"flows.yaml:3:4: bad \\\"x\\\"\\n\"",
        "\"mempool\"",
        "\"available\"",
        "\"flow_cache\": {\"entries\": 0, \"hits\": 0, \"misses\": 0, \"bypassed\": 0}",
        "\"latency_ns\"",
        "\"p50\"",
        "\"p99\"",
        "\"p999\"",
        "\"max\""}) {
    EXPECT_NE(j.find(key), std::string::npos) << key << "\n" << j;
  }
  for (size_t d = 0; d < kDropCount; ++d) {
    std::string key = "\"" + std::string(drop_name(static_cast<Drop>(d))) + "\": 0";
    EXPECT_NE(j.find(key), std::string::npos) << key;
  }
}

TEST(Snapshot, PrometheusHasTheReloadCounters) {
  Snapshot s;
  s.reload.generation = 7;
  s.reload.ok = 6;
  s.reload.failed = 2;
  const std::string p = to_prometheus(s);
  EXPECT_NE(p.find("sluice_reload_generation 7\n"), std::string::npos) << p;
  EXPECT_NE(p.find("sluice_reloads_total{result=\"ok\"} 6\n"), std::string::npos) << p;
  EXPECT_NE(p.find("sluice_reloads_total{result=\"failed\"} 2\n"), std::string::npos) << p;
}

TEST(Snapshot, TheKernelIsInTheTableHeaderAndTheJson) {
  Snapshot s;
  s.simd = "avx2";
  s.uptime_s = 2.5;
  EXPECT_NE(to_table(s, nullptr, 0).find("sluice (simd avx2, up 2.5 s)"), std::string::npos)
      << to_table(s, nullptr, 0);
  EXPECT_NE(to_json(s).find("\"simd\": \"avx2\""), std::string::npos) << to_json(s);
}

TEST(Snapshot, FlowCacheCountsAreSummedAndShown) {
  WorkerCounters a, b;
  a.cache_hits.add(90);
  a.cache_misses.add(10);
  b.cache_hits.add(10);
  b.cache_bypassed.add(5);
  Snapshot s;
  s.flow_cache.entries = 8192;
  sum_workers(s, {&a, &b});
  EXPECT_EQ(s.flow_cache.hits, 100u);
  EXPECT_EQ(s.flow_cache.misses, 10u);
  EXPECT_EQ(s.flow_cache.bypassed, 5u);
  const std::string j = to_json(s);
  EXPECT_NE(
      j.find("\"flow_cache\": {\"entries\": 8192, \"hits\": 100, \"misses\": 10, \"bypassed\": 5}"),
      std::string::npos)
      << j;
  const std::string t = to_table(s, nullptr, 0);
  EXPECT_NE(
      t.find("flow cache: 8192 entries per worker, 100 hits, 10 misses (90.9% hits), 5 bypassed"),
      std::string::npos)
      << t;
  const std::string p = to_prometheus(s);
  EXPECT_NE(p.find("sluice_flow_cache_lookups_total{result=\"miss\"} 10\n"), std::string::npos)
      << p;
}

}  // namespace
}  // namespace sluice::stats
