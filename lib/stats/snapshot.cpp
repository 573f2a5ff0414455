#include "lib/stats/snapshot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "lib/sys/json.h"

namespace sluice::stats {

namespace {

std::string quote(std::string_view s) {
  return sys::json_string(s);
}

std::string pkt_bytes(const Totals& t) {
  return fmt::format("{{\"packets\": {}, \"bytes\": {}}}", t.packets, t.bytes);
}

}  // namespace

uint64_t percentile(const std::vector<const WorkerCounters*>& workers, double q) {
  uint64_t total = 0;
  for (unsigned b = 0; b < LatencyHistogram::kBuckets; ++b) {
    for (auto* w : workers) total += w->latency.bucket(b);
  }
  if (total == 0) return 0;
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  rank = std::max<uint64_t>(rank, 1);
  uint64_t seen = 0;
  for (unsigned b = 0; b < LatencyHistogram::kBuckets; ++b) {
    for (auto* w : workers) seen += w->latency.bucket(b);
    if (seen >= rank) return LatencyHistogram::upper_bound(b);
  }
  return 0;
}

void sum_workers(Snapshot& snap, const std::vector<const WorkerCounters*>& workers) {
  snap.drops.fill(0);
  snap.fallback = {};
  snap.non_ip = {};
  snap.latency_ns = {};
  snap.flow_cache.hits = snap.flow_cache.misses = snap.flow_cache.bypassed = 0;
  for (auto* w : workers) {
    snap.flow_cache.hits += w->cache_hits.get();
    snap.flow_cache.misses += w->cache_misses.get();
    snap.flow_cache.bypassed += w->cache_bypassed.get();
    for (size_t d = 0; d < kDropCount; ++d) snap.drops[d] += w->drops[d].get();
    snap.fallback.packets += w->fallback.packets.get();
    snap.fallback.bytes += w->fallback.bytes.get();
    snap.non_ip.packets += w->non_ip.packets.get();
    snap.non_ip.bytes += w->non_ip.bytes.get();
    snap.latency_ns.max = std::max(snap.latency_ns.max, w->latency.max());
  }
  snap.latency_ns.p50 = percentile(workers, 0.50);
  snap.latency_ns.p99 = percentile(workers, 0.99);
  snap.latency_ns.p999 = percentile(workers, 0.999);
  // A bucket's upper bound can exceed the largest value seen; never report p > max.
  for (uint64_t* p : {&snap.latency_ns.p50, &snap.latency_ns.p99, &snap.latency_ns.p999}) {
    *p = std::min(*p, snap.latency_ns.max);
  }
}

WorkerSnapshot worker_snapshot(const WorkerCounters& c, unsigned index, unsigned lcore) {
  WorkerSnapshot w;
  w.index = index;
  w.lcore = lcore;
  w.rx_packets = c.rx_packets.get();
  for (const auto& d : c.drops) w.drops += d.get();
  w.handed_off = c.handed_off.get();
  w.ring_full = c.drops[static_cast<size_t>(Drop::kRingFull)].get();
  w.polls = c.polls.get();
  w.busy_polls = c.busy_polls.get();
  w.loops = c.loops.get();
  // One pass over the buckets, so the +Inf count equals the sum of what was read, and the
  // cumulative counts never decrease across bounds even while the worker records.
  size_t le = 0;
  for (unsigned b = 0; b < LatencyHistogram::kBuckets; ++b) {
    while (le < kLatencyBoundsNs.size() &&
           LatencyHistogram::upper_bound(b) > kLatencyBoundsNs[le]) {
      w.latency_le[le++] = w.latency_count;
    }
    w.latency_count += c.latency.bucket(b);
  }
  while (le < kLatencyBoundsNs.size()) w.latency_le[le++] = w.latency_count;
  w.latency_sum_ns = c.latency.sum_ns();
  w.latency_max_ns = c.latency.max();
  return w;
}

std::string to_json(const Snapshot& s) {
  std::string o = "{\n";
  o += fmt::format("  \"uptime_s\": {:.3f},\n", s.uptime_s);
  o += fmt::format("  \"simd\": {},\n", quote(s.simd));
  o += "  \"ports\": {";
  for (size_t i = 0; i < s.ports.size(); ++i) {
    const auto& p = s.ports[i];
    o += fmt::format(
        "{}\n    {}: {{\"rx_packets\": {}, \"rx_bytes\": {}, \"tx_packets\": {}, \"tx_bytes\": {}, "
        "\"rx_missed\": {}, \"rx_nombuf\": {}, \"tx_errors\": {}}}",
        i ? "," : "", quote(p.name), p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes,
        p.rx_missed, p.rx_nombuf, p.tx_errors);
  }
  o += s.ports.empty() ? "},\n" : "\n  },\n";
  o += "  \"drops\": {";
  for (size_t d = 0; d < kDropCount; ++d) {
    o += fmt::format("{}\n    {}: {}", d ? "," : "", quote(kDropNames[d]), s.drops[d]);
  }
  o += "\n  },\n";
  o += "  \"rules\": {";
  for (size_t r = 0; r < s.rules.size(); ++r) {
    o += fmt::format("{}\n    {}: {}", r ? "," : "", quote(s.rules[r].first),
                     pkt_bytes(s.rules[r].second));
  }
  o += s.rules.empty() ? "},\n" : "\n  },\n";
  o += fmt::format("  \"default\": {},\n", pkt_bytes(s.fallback));
  o += fmt::format("  \"non_ip\": {},\n", pkt_bytes(s.non_ip));
  o += fmt::format(
      "  \"capture\": {{\"packets\": {}, \"bytes\": {}, \"chunks\": {}, \"segments\": {}, "
      "\"dropped\": {}, \"write_errors\": {}, \"bytes_written\": {}, \"ring_used\": {}, "
      "\"ring_capacity\": {}, \"busy_cycles\": {}}},\n",
      s.capture.packets, s.capture.bytes, s.capture.chunks, s.capture.segments, s.capture.dropped,
      s.capture.write_errors, s.capture.bytes_written, s.capture.ring_used, s.capture.ring_capacity,
      s.capture.busy_cycles);
  o += fmt::format(
      "  \"reload\": {{\"generation\": {}, \"ok\": {}, \"failed\": {}, \"last_error\": {}}},\n",
      s.reload.generation, s.reload.ok, s.reload.failed, quote(s.reload.last_error));
  o += fmt::format("  \"mempool\": {{\"total\": {}, \"available\": {}}},\n", s.mempool.total,
                   s.mempool.available);
  o += fmt::format(
      "  \"flow_cache\": {{\"entries\": {}, \"hits\": {}, \"misses\": {}, \"bypassed\": {}}},\n",
      s.flow_cache.entries, s.flow_cache.hits, s.flow_cache.misses, s.flow_cache.bypassed);
  o += fmt::format("  \"latency_ns\": {{\"p50\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}},\n",
                   s.latency_ns.p50, s.latency_ns.p99, s.latency_ns.p999, s.latency_ns.max);
  o += "  \"workers\": [";
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const auto& w = s.workers[i];
    o += fmt::format(
        "{}\n    {{\"index\": {}, \"lcore\": {}, \"rx_packets\": {}, \"drops\": {}, "
        "\"handed_off\": {}, \"ring_full\": {}, \"polls\": {}, \"busy_polls\": {}, "
        "\"loops\": {}, \"idle_ms\": {}, \"stalled\": {}}}",
        i ? "," : "", w.index, w.lcore, w.rx_packets, w.drops, w.handed_off, w.ring_full, w.polls,
        w.busy_polls, w.loops, w.idle_ms, w.stalled);
  }
  o += s.workers.empty() ? "],\n" : "\n  ],\n";
  o += fmt::format("  \"health\": {{\"status\": {}, \"capture\": {}, \"reason\": {}}}\n",
                   quote(s.health.status), quote(s.health.capture), quote(s.health.reason));
  o += "}\n";
  return o;
}

std::string to_table(const Snapshot& s, const Snapshot* prev, double interval_s) {
  std::string o;
  auto rate = [&](uint64_t now, uint64_t before) -> uint64_t {
    if (prev == nullptr || interval_s <= 0 || now < before) return 0;
    return static_cast<uint64_t>(static_cast<double>(now - before) / interval_s);
  };
  for (size_t i = 0; i < s.ports.size(); ++i) {
    const auto& p = s.ports[i];
    const PortSnapshot* q = prev && i < prev->ports.size() ? &prev->ports[i] : nullptr;
    o += fmt::format(
        "  ######################## NIC statistics for port {:<2} ({}) "
        "########################\n",
        i, p.name);
    o += fmt::format("  RX-packets: {:<12} RX-missed: {:<12} RX-bytes:  {}\n", p.rx_packets,
                     p.rx_missed, p.rx_bytes);
    o += fmt::format("  RX-errors: {:<13} RX-nombuf: {}\n", p.rx_errors, p.rx_nombuf);
    o += fmt::format("  TX-packets: {:<12} TX-errors: {:<12} TX-bytes:  {}\n", p.tx_packets,
                     p.tx_errors, p.tx_bytes);
    if (prev != nullptr) {  // the final table (no previous sample) has no rates
      o += fmt::format("\n  Throughput (since last show)\n");
      o += fmt::format("  Rx-pps: {:>12}          Rx-bps: {:>12}\n",
                       rate(p.rx_packets, q ? q->rx_packets : 0),
                       8 * rate(p.rx_bytes, q ? q->rx_bytes : 0));
      o += fmt::format("  Tx-pps: {:>12}          Tx-bps: {:>12}\n",
                       rate(p.tx_packets, q ? q->tx_packets : 0),
                       8 * rate(p.tx_bytes, q ? q->tx_bytes : 0));
    }
    o += "  ############################################################################\n";
  }
  o +=
      fmt::format("  ---------------------- sluice (simd {}, up {:.1f} s) ----------------------\n",
                  s.simd, s.uptime_s);
  std::string drops;
  for (size_t d = 0; d < kDropCount; ++d) {
    if (s.drops[d] == 0) continue;
    drops += fmt::format(" {}={}", kDropNames[d], s.drops[d]);
  }
  o += fmt::format("  drops:{}\n", drops.empty() ? " none" : drops);
  o += fmt::format("  default: {} pkts   non_ip: {} pkts   rules hit:", s.fallback.packets,
                   s.non_ip.packets);
  size_t shown = 0;
  for (const auto& [name, t] : s.rules) {
    if (t.packets == 0) continue;
    if (++shown > 8) {
      o += " ...";
      break;
    }
    o += fmt::format(" {}={}", name, t.packets);
  }
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const auto& w = s.workers[i];
    const WorkerSnapshot* v = prev && i < prev->workers.size() ? &prev->workers[i] : nullptr;
    const uint64_t polls = w.polls - (v ? v->polls : 0),
                   busy = w.busy_polls - (v ? v->busy_polls : 0);
    o += fmt::format(
        "{}  worker {} (lcore {}): {} pkts{}, drops {}, handed off {}{}, busy {:.0f}%{}",
        i ? "\n" : "\n", w.index, w.lcore, w.rx_packets,
        prev ? fmt::format(" ({} pps)", rate(w.rx_packets, v ? v->rx_packets : 0)) : "", w.drops,
        w.handed_off, w.ring_full ? fmt::format(" (ring_full {})", w.ring_full) : "",
        polls ? 100.0 * static_cast<double>(busy) / static_cast<double>(polls) : 0.0,
        w.stalled ? "  STALLED" : "");
  }
  o += fmt::format("\n  mempool: {}/{} available   latency p50/p99/max: {}/{}/{} ns\n",
                   s.mempool.available, s.mempool.total, s.latency_ns.p50, s.latency_ns.p99,
                   s.latency_ns.max);
  if (s.capture.enabled) {
    o += fmt::format(
        "  capture: {} pkts {} bytes, {} chunks, {} segments closed, {} bytes written, "
        "dropped {}, write errors {}, rings {}/{}, {:.0f} cycles/pkt\n",
        s.capture.packets, s.capture.bytes, s.capture.chunks, s.capture.segments,
        s.capture.bytes_written, s.capture.dropped, s.capture.write_errors, s.capture.ring_used,
        s.capture.ring_capacity,
        s.capture.packets
            ? static_cast<double>(s.capture.busy_cycles) / static_cast<double>(s.capture.packets)
            : 0.0);
  }
  if (s.flow_cache.entries != 0) {
    const uint64_t looked = s.flow_cache.hits + s.flow_cache.misses;
    o += fmt::format(
        "  flow cache: {} entries per worker, {} hits, {} misses ({:.1f}% hits), {} bypassed\n",
        s.flow_cache.entries, s.flow_cache.hits, s.flow_cache.misses,
        looked ? 100.0 * static_cast<double>(s.flow_cache.hits) / static_cast<double>(looked) : 0.0,
        s.flow_cache.bypassed);
  }
  return o;
}

}  // namespace sluice::stats
