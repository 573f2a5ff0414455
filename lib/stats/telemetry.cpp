#include "lib/stats/telemetry.h"

#include <rte_telemetry.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lib/stats/on_demand.h"

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

// The capture object's counters, keys under prefix ("capture/" in /sluice/stats).
void add_capture(rte_tel_data* d, const Snapshot& s, const std::string& prefix) {
  const std::pair<const char*, uint64_t> fields[] = {
      {"packets", s.capture.packets},
      {"bytes", s.capture.bytes},
      {"chunks", s.capture.chunks},
      {"segments", s.capture.segments},
      {"dropped", s.capture.dropped},
      {"write_errors", s.capture.write_errors},
      {"bytes_written", s.capture.bytes_written},
      {"ring_used", s.capture.ring_used},
      {"ring_capacity", s.capture.ring_capacity},
      {"busy_cycles", s.capture.busy_cycles},
  };
  for (const auto& [k, v] : fields) rte_tel_data_add_dict_u64(d, (prefix + k).c_str(), v);
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
  add_capture(d, s, "capture/");
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

// What one answer holds: DPDK 22.11 writes at most 16 KiB (MAX_OUTPUT_LEN in telemetry.c) and
// silently leaves out entries that do not fit, so /sluice/rules stops before that, keeping room
// for the command's name and the "/total" and "/next" entries.
constexpr size_t kOutputBudget = 16 * 1024 - 128;

size_t digits(uint64_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

// A non-negative decimal parameter ("/sluice/rules,20").
bool parse_index(const char* params, size_t& out) {
  if (params == nullptr || *params == '\0') return false;
  size_t v = 0;
  for (const char* p = params; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9' || v > (SIZE_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<size_t>(*p - '0');
  }
  out = v;
  return true;
}

// A dict entry whose value is a flat array of numbers (DPDK frees it with the answer).
bool add_u64_array(rte_tel_data* d, const char* key, const std::vector<uint64_t>& values) {
  rte_tel_data* a = rte_tel_data_alloc();
  if (a == nullptr) return false;
  rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
  for (uint64_t v : values) {
    if (rte_tel_data_add_array_u64(a, v) != 0) break;  // RTE_TEL_MAX_ARRAY_ENTRIES
  }
  if (rte_tel_data_add_dict_container(d, key, a, 0) != 0) {
    rte_tel_data_free(a);
    return false;
  }
  return true;
}

int cmd_rules(const char*, const char* params, rte_tel_data* d) {
  size_t first = 0;
  const bool paged = params != nullptr && *params != '\0';
  if (paged && !parse_index(params, first)) return -EINVAL;
  std::lock_guard lock(published().mutex);
  const auto& rules = published().snap.rules;
  rte_tel_data_start_dict(d);
  size_t entries = RTE_TEL_MAX_DICT_ENTRIES - (paged ? 2 : 0);
  size_t budget = kOutputBudget;
  size_t i = std::min(first, rules.size());
  for (; i < rules.size() && entries > 0; ++i) {
    const auto& [name, t] = rules[i];
    const std::string key = telemetry_rule_key(name);
    const size_t cost = key.size() + digits(t.packets) + digits(t.bytes) + 8;  // "k":[p,b],
    if (cost > budget || key.size() >= RTE_TEL_MAX_STRING_LEN) break;
    if (!add_u64_array(d, key.c_str(), {t.packets, t.bytes})) break;
    budget -= cost;
    --entries;
  }
  if (paged) {
    rte_tel_data_add_dict_u64(d, "/total", rules.size());
    rte_tel_data_add_dict_u64(d, "/next", i);
  }
  return 0;
}

int cmd_rule(const char*, const char* params, rte_tel_data* d) {
  if (params == nullptr) return -EINVAL;
  std::lock_guard lock(published().mutex);
  const auto& rules = published().snap.rules;
  for (size_t i = 0; i < rules.size(); ++i) {
    const auto& [name, t] = rules[i];
    if (name != params) continue;
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "name", telemetry_text(name).c_str());
    rte_tel_data_add_dict_u64(d, "index", i);
    rte_tel_data_add_dict_u64(d, "packets", t.packets);
    rte_tel_data_add_dict_u64(d, "bytes", t.bytes);
    const size_t nw = published().snap.workers.size();
    if (nw > 1 && published().snap.rule_workers.size() >= (i + 1) * nw) {
      const auto* row = &published().snap.rule_workers[i * nw];
      add_u64_array(d, "workers", std::vector<uint64_t>(row, row + nw));
    }
    return 0;
  }
  return -EINVAL;  // no such rule: the client sees null
}

// Per-worker columns, keys under prefix ("" or "workers/"); counters adds rx_packets, drops,
// handed_off, ring_full, polls, busy_polls and loops.
void add_worker_columns(rte_tel_data* d, const std::vector<WorkerSnapshot>& ws,
                        const std::string& prefix, bool counters) {
  std::vector<uint64_t> index, lcore, rx, drops, handed, ring_full, polls, busy, loops, idle,
      stalled;
  for (const auto& w : ws) {
    index.push_back(w.index);
    lcore.push_back(w.lcore);
    rx.push_back(w.rx_packets);
    drops.push_back(w.drops);
    handed.push_back(w.handed_off);
    ring_full.push_back(w.ring_full);
    polls.push_back(w.polls);
    busy.push_back(w.busy_polls);
    loops.push_back(w.loops);
    idle.push_back(w.idle_ms);
    stalled.push_back(w.stalled ? 1 : 0);
  }
  add_u64_array(d, (prefix + "index").c_str(), index);
  add_u64_array(d, (prefix + "lcore").c_str(), lcore);
  if (counters) {
    add_u64_array(d, (prefix + "rx_packets").c_str(), rx);
    add_u64_array(d, (prefix + "drops").c_str(), drops);
    add_u64_array(d, (prefix + "handed_off").c_str(), handed);
    add_u64_array(d, (prefix + "ring_full").c_str(), ring_full);
    add_u64_array(d, (prefix + "polls").c_str(), polls);
    add_u64_array(d, (prefix + "busy_polls").c_str(), busy);
    add_u64_array(d, (prefix + "loops").c_str(), loops);
  }
  add_u64_array(d, (prefix + "idle_ms").c_str(), idle);
  add_u64_array(d, (prefix + "stalled").c_str(), stalled);
}

int cmd_workers(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  rte_tel_data_start_dict(d);
  add_worker_columns(d, published().snap.workers, "", true);
  return 0;
}

int cmd_capture(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  const auto& s = published().snap;
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_string(d, "state", telemetry_text(s.health.capture).c_str());
  add_capture(d, s, "");
  return 0;
}

int cmd_health(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(published().mutex);
  const auto& s = published().snap;
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_string(d, "status", telemetry_text(s.health.status).c_str());
  rte_tel_data_add_dict_string(d, "reason", telemetry_text(s.health.reason).c_str());
  rte_tel_data_add_dict_string(d, "capture", telemetry_text(s.health.capture).c_str());
  add_worker_columns(d, s.workers, "workers/", false);
  return 0;
}

// Each command first asks the control loop for a fresh snapshot (on_demand.h).
template <int (*Cmd)(const char*, const char*, rte_tel_data*)>
int fresh(const char* cmd, const char* params, rte_tel_data* d) {
  on_demand().await_fresh();
  return Cmd(cmd, params, d);
}

}  // namespace

void telemetry_register() {
  rte_telemetry_register_cmd("/sluice/stats", fresh<cmd_stats>,
                             "sluice statistics (flat keys). No parameters");
  rte_telemetry_register_cmd("/sluice/drops", fresh<cmd_drops>, "Drops by reason. No parameters");
  rte_telemetry_register_cmd("/sluice/ports", fresh<cmd_ports>, "sluice port names. No parameters");
  rte_telemetry_register_cmd("/sluice/port", fresh<cmd_port>,
                             "One port's counters. Parameter: name");
  rte_telemetry_register_cmd("/sluice/rules", fresh<cmd_rules>,
                             "Rule key -> [packets, bytes]. Parameter: first rule (paging)");
  rte_telemetry_register_cmd("/sluice/rule", fresh<cmd_rule>,
                             "One rule's counters (and packets per worker). Parameter: name");
  rte_telemetry_register_cmd("/sluice/workers", fresh<cmd_workers>,
                             "Per worker (columns): lcore, packets, drops, hand-off, polls, "
                             "heartbeat, idle. No parameters");
  rte_telemetry_register_cmd("/sluice/capture", fresh<cmd_capture>,
                             "The capture store's counters and state. No parameters");
  rte_telemetry_register_cmd("/sluice/health", fresh<cmd_health>,
                             "ok, degraded or stalled; per worker idle ms. No parameters");
}

std::string telemetry_rule_key(std::string_view name) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string k;
  k.reserve(name.size() * 2);
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '-') {
      k += '_';
    } else if (c == '_') {
      k += "/_";
    } else if (c == '.') {
      k += "//";
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      k += c;
    } else {  // rule names allow none of these; kept reversible all the same
      k += '/';
      k += kHex[u >> 4];
      k += kHex[u & 15];
    }
  }
  return k;
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
