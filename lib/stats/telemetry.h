#pragma once
// rte_telemetry commands (dpdk-telemetry.py, /var/run/dpdk/<prefix>/dpdk_telemetry.v2):
//   /sluice/stats   uptime, mempool, latency, default/non_ip, reload, capture: flat keys
//   /sluice/drops   every drop reason -> packets
//   /sluice/ports   port names;  /sluice/port,NAME   that port's counters
//   /sluice/rules   rule -> packets (the first 256 rules; DPDK 22.11's dict limit)
// DPDK 22.11 cannot nest dictionaries, so the statistics JSON of --stats-out is split into
// these commands. Callbacks run on the telemetry thread and read the latest snapshot the
// main lcore published (never the counters themselves).

#include "lib/stats/snapshot.h"

namespace sluice::stats {

void telemetry_register();
void telemetry_publish(const Snapshot& s);

}  // namespace sluice::stats
