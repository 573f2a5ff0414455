#include "lib/stats/prometheus.h"

#include <fmt/format.h>

#include <initializer_list>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::stats {

namespace {

// The metric families of Prometheus' text format: HELP and TYPE once, then the samples.
class Text {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    o_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  // labels: already rendered (`a="x",b="y"`), empty for none.
  template <class V>
  void sample(std::string_view name, std::string_view labels, V value) {
    if (labels.empty()) {
      o_ += fmt::format("{} {}\n", name, value);
    } else {
      o_ += fmt::format("{}{{{}}} {}\n", name, labels, value);
    }
  }
  std::string take() { return std::move(o_); }

 private:
  std::string o_;
};

// A label value as the text format escapes it.
std::string escaped(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

std::string label(std::string_view key, std::string_view value) {
  return fmt::format("{}=\"{}\"", key, escaped(value));
}

// Nanoseconds as decimal seconds, exactly and without trailing zeros (500 -> "0.0000005").
std::string seconds(uint64_t ns) {
  std::string s = fmt::format("{}.{:09}", ns / 1'000'000'000, ns % 1'000'000'000);
  s.erase(s.find_last_not_of('0') + 1);
  if (s.back() == '.') s.pop_back();
  return s;
}

// A state set: one sample per state, 1 for the current one (which is added if it is not known).
void states(Text& t, std::string_view name, std::string_view key, std::string_view current,
            std::initializer_list<std::string_view> known) {
  bool seen = false;
  for (std::string_view s : known) {
    seen |= s == current;
    t.sample(name, label(key, s), s == current ? 1 : 0);
  }
  if (!seen) t.sample(name, label(key, current), 1);
}

void ports(Text& t, const Snapshot& s) {
  struct PortMetric {
    const char* name;
    const char* help;
    uint64_t PortSnapshot::*field;
  };
  static constexpr PortMetric kMetrics[] = {
      {"sluice_port_rx_packets_total", "Packets received by the port.", &PortSnapshot::rx_packets},
      {"sluice_port_rx_bytes_total", "Bytes received by the port.", &PortSnapshot::rx_bytes},
      {"sluice_port_tx_packets_total", "Packets sent by the port.", &PortSnapshot::tx_packets},
      {"sluice_port_tx_bytes_total", "Bytes sent by the port.", &PortSnapshot::tx_bytes},
      {"sluice_port_rx_missed_total", "Packets the NIC dropped for lack of descriptors.",
       &PortSnapshot::rx_missed},
      {"sluice_port_rx_errors_total", "Erroneous packets the port received.",
       &PortSnapshot::rx_errors},
      {"sluice_port_rx_nombuf_total", "RX mbuf allocation failures.", &PortSnapshot::rx_nombuf},
      {"sluice_port_tx_errors_total", "Packets the port failed to send.", &PortSnapshot::tx_errors},
  };
  for (const auto& m : kMetrics) {
    t.family(m.name, "counter", m.help);
    for (const auto& p : s.ports) t.sample(m.name, label("port", p.name), p.*m.field);
  }
}

void workers(Text& t, const Snapshot& s) {
  std::vector<std::string> labels;
  for (const auto& w : s.workers) {
    labels.push_back(fmt::format("worker=\"{}\",lcore=\"{}\"", w.index, w.lcore));
  }
  struct Column {
    const char* name;
    const char* help;
    uint64_t WorkerSnapshot::*field;
  };
  static constexpr Column kColumns[] = {
      {"sluice_worker_rx_packets_total",
       "Packets the worker processed: its RX share and what other workers handed it.",
       &WorkerSnapshot::rx_packets},
      {"sluice_worker_drops_total", "Packets the worker dropped, every reason.",
       &WorkerSnapshot::drops},
      {"sluice_worker_handed_off_total",
       "Packets the worker's ring distributor put in other workers' rings.",
       &WorkerSnapshot::handed_off},
      {"sluice_worker_polls_total", "RX rounds of the worker's loop.", &WorkerSnapshot::polls},
      {"sluice_worker_busy_polls_total",
       "RX rounds that brought packets (busy share = busy_polls / polls).",
       &WorkerSnapshot::busy_polls},
  };
  for (const auto& col : kColumns) {
    t.family(col.name, "counter", col.help);
    for (size_t i = 0; i < s.workers.size(); ++i) {
      t.sample(col.name, labels[i], s.workers[i].*col.field);
    }
  }
  t.family("sluice_worker_loops_total", "counter",
           "Housekeeping rounds of the worker's loop (its heartbeat).");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    t.sample("sluice_worker_loops_total", labels[i], s.workers[i].loops);
  }
  t.family("sluice_worker_idle_seconds", "gauge", "Seconds since the worker's heartbeat moved.");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    t.sample("sluice_worker_idle_seconds", labels[i],
             static_cast<double>(s.workers[i].idle_ms) / 1000.0);
  }
  t.family("sluice_worker_stalled", "gauge",
           "1 while the worker has made no progress for longer than a second.");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    t.sample("sluice_worker_stalled", labels[i], s.workers[i].stalled ? 1 : 0);
  }
  t.family("sluice_latency_seconds", "histogram",
           "Seconds from a burst's RX to the end of its processing, per packet.");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const auto& w = s.workers[i];
    for (size_t b = 0; b < kLatencyBoundsNs.size(); ++b) {
      t.sample("sluice_latency_seconds_bucket",
               fmt::format("{},le=\"{}\"", labels[i], seconds(kLatencyBoundsNs[b])),
               w.latency_le[b]);
    }
    t.sample("sluice_latency_seconds_bucket", labels[i] + ",le=\"+Inf\"", w.latency_count);
    t.sample("sluice_latency_seconds_sum", labels[i], seconds(w.latency_sum_ns));
    t.sample("sluice_latency_seconds_count", labels[i], w.latency_count);
  }
  t.family("sluice_latency_max_seconds", "gauge", "The longest burst latency seen, per worker.");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    t.sample("sluice_latency_max_seconds", labels[i], seconds(s.workers[i].latency_max_ns));
  }
}

void capture(Text& t, const Snapshot& s) {
  if (!s.capture.enabled) return;
  struct CaptureMetric {
    const char* name;
    const char* help;
    uint64_t value;
  };
  const CaptureMetric counters[] = {
      {"sluice_capture_packets_total", "Packets recorded in the capture store.", s.capture.packets},
      {"sluice_capture_bytes_total", "Frame bytes of the packets recorded.", s.capture.bytes},
      {"sluice_capture_chunks_total", "Chunks written to the capture store.", s.capture.chunks},
      {"sluice_capture_segments_total", "Capture segments closed.", s.capture.segments},
      {"sluice_capture_dropped_total",
       "Copies for capture not recorded (ring full, no buffer, write failed).", s.capture.dropped},
      {"sluice_capture_write_errors_total", "Chunk writes that failed.", s.capture.write_errors},
      {"sluice_capture_written_bytes_total", "Bytes of chunks written.", s.capture.bytes_written},
      {"sluice_capture_busy_cycles_total",
       "TSC cycles the capture lcore spent on packets rather than polling.", s.capture.busy_cycles},
  };
  for (const auto& m : counters) {
    t.family(m.name, "counter", m.help);
    t.sample(m.name, "", m.value);
  }
  t.family("sluice_capture_ring_entries", "gauge",
           "Copies waiting in the workers' capture hand-off rings, and their capacity.");
  t.sample("sluice_capture_ring_entries", "state=\"used\"", s.capture.ring_used);
  t.sample("sluice_capture_ring_entries", "state=\"capacity\"", s.capture.ring_capacity);
}

}  // namespace

std::string to_prometheus(const Snapshot& s) {
  Text t;
  t.family("sluice_info", "gauge", "Always 1; the labels say how sluice runs.");
  t.sample("sluice_info", label("simd", s.simd), 1);
  t.family("sluice_uptime_seconds", "gauge", "Seconds since sluice started forwarding.");
  t.sample("sluice_uptime_seconds", "", fmt::format("{:.3f}", s.uptime_s));
  t.family("sluice_health_status", "gauge",
           "1 for the appliance's health now: ok, degraded (reloads refused, capture failing) "
           "or stalled (a worker makes no progress).");
  states(t, "sluice_health_status", "status", s.health.status, {"ok", "degraded", "stalled"});
  t.family("sluice_capture_status", "gauge",
           "1 for the capture store's state: off, ok or failing.");
  states(t, "sluice_capture_status", "status", s.health.capture, {"off", "ok", "failing"});
  ports(t, s);
  t.family("sluice_drops_total", "counter", "Packets dropped, by reason.");
  for (size_t d = 0; d < kDropCount; ++d) {
    t.sample("sluice_drops_total", label("reason", drop_name(static_cast<Drop>(d))), s.drops[d]);
  }
  t.family("sluice_rule_packets_total", "counter", "Packets that matched a rule.");
  for (const auto& [name, n] : s.rules) {
    t.sample("sluice_rule_packets_total", label("rule", name), n.packets);
  }
  t.family("sluice_rule_bytes_total", "counter", "Bytes that matched a rule.");
  for (const auto& [name, n] : s.rules) {
    t.sample("sluice_rule_bytes_total", label("rule", name), n.bytes);
  }
  t.family("sluice_default_packets_total", "counter", "Packets that matched no rule.");
  t.sample("sluice_default_packets_total", "", s.fallback.packets);
  t.family("sluice_default_bytes_total", "counter", "Bytes of the packets that matched no rule.");
  t.sample("sluice_default_bytes_total", "", s.fallback.bytes);
  t.family("sluice_non_ip_packets_total", "counter", "Non-IP frames.");
  t.sample("sluice_non_ip_packets_total", "", s.non_ip.packets);
  t.family("sluice_non_ip_bytes_total", "counter", "Bytes of the non-IP frames.");
  t.sample("sluice_non_ip_bytes_total", "", s.non_ip.bytes);
  t.family("sluice_mempool_mbufs", "gauge", "Mbufs in the pools, by state.");
  t.sample("sluice_mempool_mbufs", "state=\"total\"", s.mempool.total);
  t.sample("sluice_mempool_mbufs", "state=\"available\"", s.mempool.available);
  t.family("sluice_reload_generation", "gauge", "Generation of the running flow rules.");
  t.sample("sluice_reload_generation", "", s.reload.generation);
  t.family("sluice_reloads_total", "counter", "Reloads of the flows file, by result.");
  t.sample("sluice_reloads_total", "result=\"ok\"", s.reload.ok);
  t.sample("sluice_reloads_total", "result=\"failed\"", s.reload.failed);
  t.family("sluice_flow_cache_entries", "gauge", "Entries of each worker's flow cache (0: off).");
  t.sample("sluice_flow_cache_entries", "", s.flow_cache.entries);
  t.family("sluice_flow_cache_lookups_total", "counter",
           "Classifications by the workers' flow caches: hit, miss (rte_acl after a lookup), "
           "bypassed (rte_acl while the cache stands aside).");
  t.sample("sluice_flow_cache_lookups_total", "result=\"hit\"", s.flow_cache.hits);
  t.sample("sluice_flow_cache_lookups_total", "result=\"miss\"", s.flow_cache.misses);
  t.sample("sluice_flow_cache_lookups_total", "result=\"bypassed\"", s.flow_cache.bypassed);
  capture(t, s);
  workers(t, s);
  return t.take();
}

}  // namespace sluice::stats
