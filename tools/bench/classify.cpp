// sluice's classify stage on a dpdk-test-acl trace, measured the way dpdk-test-acl measures
// (tools/bench/run classify runs both on the same rules and trace):
//
//   sluice-bench-classify --flows FLOWS.yaml --trace TRACE [--iter N] [--step 32]
//                         [--results FILE] [-m MiB]
//
// The trace is dpdk-test-acl's ClassBench format, one packet per line: "src dst sport dport
// proto", numbers (addresses as host-order integers). Each packet becomes the flow key the
// validator would make (IPv4, ports valid). Like dpdk-test-acl's search loop, every step of
// --step packets fills an array of key pointers and makes one classify call; TSC cycles over
// all iterations divided by packets classified is the result. --results writes each packet's
// winning rule as its position in rank order (dpdk-test-acl's numbering: the order of its rule
// file), 4294967295 for none, so the two tools' answers can be compared.

#include <arpa/inet.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_memory.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/flow/flow_table.h"
#include "simd/validate.h"
#include "tools/bench/bench_eal.h"

namespace {

using sluice::flow::FlowTable;
using sluice::simd::FlowKey;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string flows, trace, results;
  unsigned iter = 1, step = 32, mem_mib = 2048;
};

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (k == "--flows") {
      a.flows = v;
    } else if (k == "--trace") {
      a.trace = v;
    } else if (k == "--results") {
      a.results = v;
    } else if (k == "--iter") {
      a.iter = static_cast<unsigned>(std::strtoul(v, nullptr, 0));
    } else if (k == "--step") {
      a.step = static_cast<unsigned>(std::strtoul(v, nullptr, 0));
    } else if (k == "-m") {
      a.mem_mib = static_cast<unsigned>(std::strtoul(v, nullptr, 0));
    } else {
      return false;
    }
  }
  return !a.flows.empty() && !a.trace.empty() && a.iter > 0 && a.step >= 1 && a.step <= 64;
}

void put_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

std::vector<FlowKey> read_trace(const std::string& path) {
  std::vector<FlowKey> keys;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    unsigned long src, dst, sport, dport, proto;
    if (std::sscanf(line.c_str(), "%li %li %li %li %li", &src, &dst, &sport, &dport, &proto) != 5)
      continue;
    FlowKey k{};
    k.proto = static_cast<uint8_t>(proto);
    k.family = sluice::simd::Family::kIpv4;
    k.l4_valid = 1;
    k.src_port = htons(static_cast<uint16_t>(sport));
    k.dst_port = htons(static_cast<uint16_t>(dport));
    put_be32(k.src.data(), static_cast<uint32_t>(src));
    put_be32(k.dst.data(), static_cast<uint32_t>(dst));
    keys.push_back(k);
  }
  return keys;
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int run(const Args& a) {
  sluice::config::Appliance app;
  sluice::config::PortConfig out;
  out.name = "out";
  app.ports.push_back(out);
  auto t0 = Clock::now();
  auto flows = sluice::config::load_flows(a.flows, app);
  if (!flows) {
    std::fprintf(stderr, "%s\n", flows.error().c_str());
    return 1;
  }
  const double parse_ms = ms_since(t0);
  t0 = Clock::now();
  auto table = FlowTable::build(*flows, "bench-classify", SOCKET_ID_ANY);
  if (!table) {
    std::fprintf(stderr, "%s\n", table.error().c_str());
    return 1;
  }
  const double build_ms = ms_since(t0);
  const std::vector<FlowKey> keys = read_trace(a.trace);
  if (keys.empty()) {
    std::fprintf(stderr, "%s: no trace records\n", a.trace.c_str());
    return 1;
  }

  std::vector<uint32_t> results(keys.size());
  std::vector<const FlowKey*> ptrs(a.step);
  uint64_t pkts = 0;
  const uint64_t start = rte_rdtsc_precise();
  for (unsigned it = 0; it < a.iter; ++it) {
    for (size_t i = 0; i < keys.size(); i += a.step) {
      const auto n = static_cast<uint16_t>(std::min<size_t>(a.step, keys.size() - i));
      for (uint16_t j = 0; j < n; ++j) ptrs[j] = &keys[i + j];
      (*table)->classify(ptrs.data(), n, results.data() + i);
      pkts += n;
    }
  }
  const uint64_t cycles = rte_rdtsc_precise() - start;

  if (!a.results.empty()) {
    // File index -> rank (higher priority first, then file order), dpdk-test-acl's numbering.
    std::vector<uint32_t> order(flows->rules.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
      return flows->rules[x].priority > flows->rules[y].priority;
    });
    std::vector<uint32_t> rank(order.size());
    for (uint32_t r = 0; r < order.size(); ++r) rank[order[r]] = r;
    std::ofstream f(a.results);
    for (uint32_t r : results) f << (r < rank.size() ? rank[r] : UINT32_MAX) << "\n";
  }
  std::printf(
      "sluice-bench-classify: %zu rules, %zu traces x %u iterations, step %u: %.2f cycles/pkt "
      "(%" PRIu64 " cycles; parse %.1f ms, build %.1f ms)\n",
      flows->rules.size(), keys.size(), a.iter, a.step,
      static_cast<double>(cycles) / static_cast<double>(pkts), cycles, parse_ms, build_ms);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse_args(argc, argv, a)) {
    std::fprintf(stderr,
                 "usage: %s --flows FLOWS.yaml --trace TRACE [--iter N] [--step 1..64] "
                 "[--results FILE] [-m MiB]\n",
                 argv[0]);
    return 2;
  }
  if (!sluice::bench::eal_init("sluice-bench-classify", a.mem_mib)) return 1;
  const int rc = run(a);
  sluice::bench::eal_cleanup();
  return rc;
}
