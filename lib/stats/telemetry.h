#pragma once
// rte_telemetry commands (dpdk-telemetry.py, /var/run/dpdk/<prefix>/dpdk_telemetry.v2):
//   /sluice/stats   uptime, mempool, latency, default/non_ip, reload, capture: flat keys
//   /sluice/drops   every drop reason -> packets
//   /sluice/ports   port names;  /sluice/port,NAME   that port's counters
//   /sluice/rules   rule -> packets (the first 256 rules; DPDK 22.11's dict limit; its keys
//                   allow letters, digits, '_' and '/' only, so '-' shows as '_', '.' as '/')
//   /sluice/reload  reloads the flows file (registered by app/, see app/reload_control.h)
// DPDK 22.11 cannot nest dictionaries, so the statistics JSON of --stats-out is split into
// these commands. Callbacks run on the telemetry thread and read the latest snapshot the
// main lcore published (never the counters themselves).

#include <string>
#include <string_view>

#include "lib/stats/snapshot.h"

namespace sluice::stats {

void telemetry_register();
void telemetry_publish(const Snapshot& s);

// A string value DPDK 22.11 telemetry can carry: it does not escape JSON, so quotes,
// backslashes and control characters are replaced, and it keeps at most 127 bytes.
std::string telemetry_text(std::string_view s);

}  // namespace sluice::stats
