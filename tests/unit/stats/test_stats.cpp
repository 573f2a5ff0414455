#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
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

TEST(Snapshot, WorkerLatencyIsCumulativeAtTheBoundsWithCountAndSum) {
  WorkerCounters c;
  c.latency.record(400, 3);        // under 0.5 us
  c.latency.record(1'500, 2);      // 1..2 us
  c.latency.record(3'000'000, 1);  // 2..5 ms
  const WorkerSnapshot w = worker_snapshot(c, 2, 5);
  EXPECT_EQ(w.index, 2u);
  EXPECT_EQ(w.lcore, 5u);
  EXPECT_EQ(w.latency_count, 6u);
  EXPECT_EQ(w.latency_sum_ns, 3u * 400 + 2u * 1'500 + 3'000'000);
  EXPECT_EQ(w.latency_max_ns, 3'000'000u);
  const auto at = [&](uint64_t bound_ns) {
    for (size_t b = 0; b < kLatencyBoundsNs.size(); ++b) {
      if (kLatencyBoundsNs[b] == bound_ns) return w.latency_le[b];
    }
    ADD_FAILURE() << "no bound " << bound_ns;
    return uint64_t{0};
  };
  EXPECT_EQ(at(500), 3u);
  EXPECT_EQ(at(1'000), 3u);
  EXPECT_EQ(at(2'000), 5u);
  EXPECT_EQ(at(2'000'000), 5u);
  EXPECT_EQ(at(5'000'000), 6u);
  EXPECT_EQ(at(100'000'000), 6u);
  for (size_t b = 1; b < kLatencyBoundsNs.size(); ++b) {
    EXPECT_LT(kLatencyBoundsNs[b - 1], kLatencyBoundsNs[b]);
    EXPECT_LE(w.latency_le[b - 1], w.latency_le[b]);
  }
  // A value in a bucket that straddles a bound counts above it, never below (le means <=).
  WorkerCounters d;
  d.latency.record(1'001, 1);
  EXPECT_EQ(worker_snapshot(d, 0, 1).latency_le[1], 0u);  // le 1 us
}

// A snapshot with every family populated: workers, rules, capture, a state nobody knows.
Snapshot full_snapshot() {
  Snapshot s;
  s.simd = "avx2";
  s.uptime_s = 12.5;
  s.ports.push_back({"wan", 1, 2, 3, 4, 5, 6, 7, 8});
  s.ports.push_back({"lan\"x", 0, 0, 0, 0, 0, 0, 0, 0});
  s.rules.push_back({"drop-telnet", {3, 180}});
  s.capture.enabled = true;
  s.capture.ring_used = 3;
  s.capture.ring_capacity = 4096;
  s.health.status = "stalled";
  s.health.capture = "ok";
  WorkerCounters c;
  c.latency.record(1'500, 2);
  c.latency.record(30'000, 1);
  for (unsigned i = 0; i < 2; ++i) {
    WorkerSnapshot w = worker_snapshot(c, i, i + 1);
    w.idle_ms = 1500 * i;
    w.stalled = i == 1;
    s.workers.push_back(w);
  }
  return s;
}

TEST(Prometheus, LatencyIsAHistogramInSecondsPerWorker) {
  const std::string p = to_prometheus(full_snapshot());
  EXPECT_EQ(p.find("nanoseconds"), std::string::npos) << p;
  EXPECT_EQ(p.find("quantile"), std::string::npos) << p;
  EXPECT_NE(p.find("# TYPE sluice_latency_seconds histogram\n"), std::string::npos) << p;
  for (const char* line : {
           "sluice_latency_seconds_bucket{worker=\"0\",lcore=\"1\",le=\"0.0000005\"} 0\n",
           "sluice_latency_seconds_bucket{worker=\"0\",lcore=\"1\",le=\"0.000002\"} 2\n",
           "sluice_latency_seconds_bucket{worker=\"0\",lcore=\"1\",le=\"0.00002\"} 2\n",
           "sluice_latency_seconds_bucket{worker=\"0\",lcore=\"1\",le=\"0.00005\"} 3\n",
           "sluice_latency_seconds_bucket{worker=\"1\",lcore=\"2\",le=\"0.1\"} 3\n",
           "sluice_latency_seconds_bucket{worker=\"1\",lcore=\"2\",le=\"+Inf\"} 3\n",
           "sluice_latency_seconds_sum{worker=\"1\",lcore=\"2\"} 0.000033\n",
           "sluice_latency_seconds_count{worker=\"1\",lcore=\"2\"} 3\n",
           "sluice_latency_max_seconds{worker=\"0\",lcore=\"1\"} 0.00003\n",
           "sluice_worker_stalled{worker=\"1\",lcore=\"2\"} 1\n",
           "sluice_worker_stalled{worker=\"0\",lcore=\"1\"} 0\n",
           "sluice_worker_idle_seconds{worker=\"1\",lcore=\"2\"} 1.5\n",
           "sluice_health_status{status=\"stalled\"} 1\n",
           "sluice_health_status{status=\"ok\"} 0\n",
           "sluice_capture_status{status=\"ok\"} 1\n",
           "sluice_capture_ring_entries{state=\"capacity\"} 4096\n",
           "sluice_port_rx_errors_total{port=\"wan\"} 8\n",
           "sluice_port_rx_packets_total{port=\"lan\\\"x\"} 0\n",
           "sluice_rule_bytes_total{rule=\"drop-telnet\"} 180\n",
           "sluice_info{simd=\"avx2\"} 1\n",
       }) {
    EXPECT_NE(p.find(line), std::string::npos) << line << p;
  }
}

TEST(Prometheus, AStateNobodyKnowsIsStillShown) {
  Snapshot s;
  s.health.status = "confused";
  const std::string p = to_prometheus(s);
  EXPECT_NE(p.find("sluice_health_status{status=\"confused\"} 1\n"), std::string::npos) << p;
  EXPECT_NE(p.find("sluice_health_status{status=\"ok\"} 0\n"), std::string::npos) << p;
}

// promtool (package prometheus) lints the text: no output, exit 0.
TEST(Prometheus, PromtoolFindsNothingToSay) {
  if (access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool not installed";
  for (const Snapshot& s : {full_snapshot(), Snapshot{}}) {
    char path[] = "/tmp/sluice-prom-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    const std::string text = to_prometheus(s);
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
    const std::string cmd = std::string("/usr/bin/promtool check metrics < ") + path + " 2>&1";
    FILE* f = popen(cmd.c_str(), "r");
    ASSERT_NE(f, nullptr);
    std::string out;
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof(buf), f)) out.append(buf, n);
    const int rc = pclose(f);
    unlink(path);
    EXPECT_EQ(rc, 0) << out << text;
    EXPECT_EQ(out, "") << text;
  }
}

// ---- the HTTP endpoint ----

int connect_to(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  return fd;
}

// One HTTP/1.0 exchange: the whole response (headers and body), "" on a timeout.
std::string http(uint16_t port, const std::string& request) {
  const int fd = connect_to(port);
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// The status code of a response ("HTTP/1.1 200 OK" -> 200), 0 for none.
int status(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::atoi(response.c_str() + 9);
}

std::string get(uint16_t port, const std::string& path) {
  return http(port, "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n");
}

TEST(PrometheusServer, ServesMetricsOnlyAndSaysWhatItServes) {
  PrometheusServer server;
  ASSERT_TRUE(server.start("127.0.0.1:0").ok());
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(status(get(server.port(), "/metrics")), 503);
  server.publish("# HELP x y\n# TYPE x gauge\nx 1\n");
  const std::string r = get(server.port(), "/metrics");
  EXPECT_EQ(status(r), 200) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos)
      << r;
  EXPECT_NE(r.find("\r\n\r\n# HELP x y\n# TYPE x gauge\nx 1\n"), std::string::npos) << r;
  const std::string head = http(server.port(), "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(status(head), 200) << head;
  EXPECT_EQ(head.find("x 1"), std::string::npos) << head;
  EXPECT_EQ(status(get(server.port(), "/")), 404);
  EXPECT_EQ(status(get(server.port(), "/metrics/x")), 404);
  EXPECT_EQ(status(http(server.port(), "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")),
            405);
  server.stop();
  server.stop();  // idempotent
}

TEST(PrometheusServer, BindErrorsSayWhatToChange) {
  PrometheusServer a;
  ASSERT_TRUE(a.start("127.0.0.1:0").ok());
  PrometheusServer b;
  auto r = b.start(fmt::format("127.0.0.1:{}", a.port()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("in use"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("pick a free port"), std::string::npos) << r.error();
  for (const char* bad :
       {"localhost:9464", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "127.0.0.1:"}) {
    auto e = PrometheusServer().start(bad);
    EXPECT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.error().find("telemetry.prometheus"), std::string::npos) << e.error();
  }
  auto v = PrometheusServer().start("192.0.2.1:9464");  // TEST-NET-1: not this host's
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().find("not one of this host's"), std::string::npos) << v.error();
  PrometheusServer six;
  if (six.start("[::1]:0").ok()) {  // where the host has IPv6 loopback
    EXPECT_NE(six.port(), 0);
  }
}

// A client that sends a request and never reads, one that sends half a request and one that
// sends nothing hold a connection each; others are served at once and stop() does not wait.
TEST(PrometheusServer, StuckClientsBlockNeitherOthersNorStop) {
  auto server = std::make_unique<PrometheusServer>();
  ASSERT_TRUE(server->start("127.0.0.1:0").ok());
  server->publish(std::string(200'000, '#') + "\n");  // more than the socket buffers take
  std::vector<int> stuck;
  for (int i = 0; i < 3; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    stuck.push_back(fd);
  }
  std::string pipelined;
  for (int i = 0; i < 50; ++i) pipelined += "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  send(stuck[0], pipelined.data(), pipelined.size(), MSG_NOSIGNAL);
  send(stuck[1], "GET /metr", 9, MSG_NOSIGNAL);
  usleep(200'000);
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string r = get(server->port(), "/metrics");
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(status(r), 200);
    EXPECT_LT(took, std::chrono::milliseconds(500));
  }
  const auto t0 = std::chrono::steady_clock::now();
  server.reset();  // stop() with the stuck clients still connected
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  for (int fd : stuck) close(fd);
}

}  // namespace
}  // namespace sluice::stats
