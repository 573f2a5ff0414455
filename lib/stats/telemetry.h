#pragma once
// rte_telemetry commands (dpdk-telemetry.py or sluice-ctl, socket
// <runtime dir>/dpdk/<prefix>/dpdk_telemetry.v2):
//   /sluice/stats    uptime, mempool, latency, default/non_ip, reload, capture: flat keys
//   /sluice/drops    every drop reason -> packets
//   /sluice/ports    port names;  /sluice/port,NAME   that port's counters
//   /sluice/rules    rule key -> [packets, bytes], in rule order (current rules, then those the
//                    last reload removed), as many as one answer holds (DPDK 22.11: 256
//                    entries, 16 KiB). /sluice/rules,N starts at rule N and adds "/total" (rules
//                    in all) and "/next" (the N of the next page; "/total" after the last).
//                    Keys are rule names in DPDK's key alphabet, one to one (telemetry_rule_key)
//   /sluice/rule,NAME  one rule by its real name: name, index, packets, bytes (null: no rule)
//   /sluice/workers  per worker, as columns (arrays in worker order): index, lcore, rx_packets,
//                    loops (the heartbeat), idle_ms (since it last moved), stalled (0 or 1)
//   /sluice/capture  the capture object of the statistics JSON and state (off, ok, failing)
//   /sluice/health   status (ok, degraded, stalled), reason, capture (off, ok, failing), and
//                    per worker workers/index, workers/lcore, workers/idle_ms, workers/stalled
//   /sluice/reload   reloads the flows file (registered by app/, see app/reload_control.h)
// DPDK 22.11 cannot nest dictionaries (a dict's values are numbers, strings or flat arrays),
// so the statistics JSON of --stats-out is split into these commands and rows are columns.
// Callbacks run on the telemetry threads and read the latest snapshot the main lcore
// published (never the counters themselves).

#include <string>
#include <string_view>

#include "lib/stats/snapshot.h"

namespace sluice::stats {

void telemetry_register();
void telemetry_publish(const Snapshot& s);

// A string value DPDK 22.11 telemetry can carry: it does not escape JSON, so quotes,
// backslashes and control characters are replaced, and it keeps at most 127 bytes.
std::string telemetry_text(std::string_view s);

// A rule name as a /sluice/rules key. DPDK 22.11 accepts only letters, digits, '_' and '/' in
// dict keys, so: '-' -> '_', '_' -> "/_", '.' -> "//" (any other byte -> '/' and two hex
// digits). The code is prefix-free, so keys are unique and decode back to the name: "a-b" is
// "a_b", "a_b" is "a/_b", "a.b" is "a//b". Keys of other entries ("/total") start with '/'
// and a letter after 'f', which no rule key does.
std::string telemetry_rule_key(std::string_view name);

}  // namespace sluice::stats
