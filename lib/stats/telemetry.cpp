#include "lib/stats/telemetry.h"

#include <rte_telemetry.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>

namespace sluice::stats {

namespace {

// The snapshot the telemetry commands answer from. Never destroyed: DPDK's telemetry threads are
// never joined, and one may answer a request while the process exits (its static destructors
// would free the snapshot under the reader; ThreadSanitizer saw it).
struct Published {
  std::mutex mutex;
  Snapshot snap;
};
Published& published() {
  static auto* p = new Published();
  return *p;
}

int cmd_stats(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  const auto& s = published().snap;
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "uptime_ms", static_cast<uint64_t>(s.uptime_s * 1000));
  rte_tel_data_add_dict_string(d, "simd", s.simd.c_str());
  rte_tel_data_add_dict_u64(d, "default/packets", s.fallback.packets);
  rte_tel_data_add_dict_u64(d, "default/bytes", s.fallback.bytes);
  rte_tel_data_add_dict_u64(d, "non_ip/packets", s.non_ip.packets);
  rte_tel_data_add_dict_u64(d, "non_ip/bytes", s.non_ip.bytes);
  rte_tel_data_add_dict_u64(d, "capture/packets", s.capture.packets);
  rte_tel_data_add_dict_u64(d, "capture/bytes", s.capture.bytes);
  rte_tel_data_add_dict_u64(d, "capture/chunks", s.capture.chunks);
  rte_tel_data_add_dict_u64(d, "capture/segments", s.capture.segments);
  rte_tel_data_add_dict_u64(d, "capture/dropped", s.capture.dropped);
  rte_tel_data_add_dict_u64(d, "capture/write_errors", s.capture.write_errors);
  rte_tel_data_add_dict_u64(d, "capture/bytes_written", s.capture.bytes_written);
  rte_tel_data_add_dict_u64(d, "capture/ring_used", s.capture.ring_used);
  rte_tel_data_add_dict_u64(d, "capture/ring_capacity", s.capture.ring_capacity);
  rte_tel_data_add_dict_u64(d, "reload/generation", s.reload.generation);
  rte_tel_data_add_dict_u64(d, "reload/ok", s.reload.ok);
  rte_tel_data_add_dict_u64(d, "reload/failed", s.reload.failed);
  rte_tel_data_add_dict_string(d, "reload/last_error", telemetry_text(s.reload.last_error).c_str());
  rte_tel_data_add_dict_u64(d, "mempool/total", s.mempool.total);
  rte_tel_data_add_dict_u64(d, "mempool/available", s.mempool.available);
  rte_tel_data_add_dict_u64(d, "flow_cache/hits", s.flow_cache.hits);
  rte_tel_data_add_dict_u64(d, "flow_cache/misses", s.flow_cache.misses);
  rte_tel_data_add_dict_u64(d, "flow_cache/bypassed", s.flow_cache.bypassed);
  rte_tel_data_add_dict_u64(d, "latency_ns/p50", s.latency_ns.p50);
  rte_tel_data_add_dict_u64(d, "latency_ns/p99", s.latency_ns.p99);
  rte_tel_data_add_dict_u64(d, "latency_ns/p999", s.latency_ns.p999);
  rte_tel_data_add_dict_u64(d, "latency_ns/max", s.latency_ns.max);
  return 0;
}

int cmd_drops(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  rte_tel_data_start_dict(d);
  for (size_t r = 0; r < kDropCount; ++r) {
    rte_tel_data_add_dict_u64(d, std::string(drop_name(static_cast<Drop>(r))).c_str(),
                              published().snap.drops[r]);
  }
  return 0;
}

int cmd_ports(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  for (const auto& p : published().snap.ports) rte_tel_data_add_array_string(d, p.name.c_str());
  return 0;
}

int cmd_port(const char*, const char* params, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  for (const auto& p : published().snap.ports) {
    if (params == nullptr || p.name != params) continue;
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_u64(d, "rx_packets", p.rx_packets);
    rte_tel_data_add_dict_u64(d, "rx_bytes", p.rx_bytes);
    rte_tel_data_add_dict_u64(d, "tx_packets", p.tx_packets);
    rte_tel_data_add_dict_u64(d, "tx_bytes", p.tx_bytes);
    rte_tel_data_add_dict_u64(d, "rx_missed", p.rx_missed);
    rte_tel_data_add_dict_u64(d, "rx_nombuf", p.rx_nombuf);
    rte_tel_data_add_dict_u64(d, "tx_errors", p.tx_errors);
    return 0;
  }
  return -EINVAL;  // unknown port: the client sees null
}

int cmd_rules(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  rte_tel_data_start_dict(d);
  size_t n = 0;
  for (const auto& [name, t] : published().snap.rules) {
    if (++n > RTE_TEL_MAX_DICT_ENTRIES) break;
    // DPDK 22.11 refuses dict keys other than letters, digits, '_' and '/'.
    std::string key = name;
    std::replace(key.begin(), key.end(), '-', '_');
    std::replace(key.begin(), key.end(), '.', '/');
    rte_tel_data_add_dict_u64(d, key.c_str(), t.packets);
  }
  return 0;
}

}  // namespace

void telemetry_register() {
  rte_telemetry_register_cmd("/sluice/stats", cmd_stats,
                             "sluice statistics (flat keys). No parameters");
  rte_telemetry_register_cmd("/sluice/drops", cmd_drops, "Drops by reason. No parameters");
  rte_telemetry_register_cmd("/sluice/ports", cmd_ports, "sluice port names. No parameters");
  rte_telemetry_register_cmd("/sluice/port", cmd_port, "One port's counters. Parameter: name");
  rte_telemetry_register_cmd("/sluice/rules", cmd_rules,
                             "Packets per rule (first 256). No parameters");
}

std::string telemetry_text(std::string_view s) {
  std::string out(s.substr(0, RTE_TEL_MAX_STRING_LEN - 1));
  for (char& c : out) {
    if (c == '"') {
      c = '\'';
    } else if (c == '\\') {
      c = '/';
    } else if (static_cast<unsigned char>(c) < 0x20) {
      c = ' ';
    }
  }
  return out;
}

void telemetry_publish(const Snapshot& s) {
  std::lock_guard lock(published().mutex);
  published().snap = s;
}

}  // namespace sluice::stats
