#pragma once
// The running appliance: what it owns, how it is assembled after rte_eal_init, how its lcores
// are launched and stopped, and how it is torn down. Assembly and teardown are in reverse
// order of each other; the control loop (control_loop.h) runs in between.

#include <rte_ring.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/options.h"
#include "app/reload_control.h"
#include "lib/capture/capture_lcore.h"
#include "lib/config/config.h"
#include "lib/flow/rule_store.h"
#include "lib/pipeline/liveness.h"
#include "lib/pipeline/worker.h"
#include "lib/port/ports.h"
#include "lib/stats/prometheus.h"
#include "lib/stats/snapshot.h"
#include "lib/sys/result.h"
#include "simd/validate.h"

namespace sluice::app {

// The workers' stop flag, set by signals, --duration and faults.
extern std::atomic<bool> g_stop;

// The validation kernel: --simd NAME (checked against the CPU and EAL's max SIMD bitwidth), or
// auto, the best the CPU runs within that bitwidth.
Result<simd::Kernel> choose_kernel(const std::string& choice);

// "0,1,2": the EAL's lcores, for messages.
std::string eal_lcore_list();

struct Appliance {
  using Clock = std::chrono::steady_clock;

  std::shared_ptr<const config::Config> cfg;
  std::unique_ptr<port::Ports> ports;
  std::unique_ptr<flow::RuleStore> rules;
  std::unique_ptr<ReloadControl> reload;
  std::vector<std::unique_ptr<pipeline::Worker>> workers;
  size_t launched = 0;                   // workers[0, launched) were launched
  std::vector<rte_ring*> capture_rings;  // one per worker
  // distribute: ring: hand_off[port][worker], the ring port's poller fills for worker (null
  // for the poller itself, and for RSS ports the whole row is empty).
  std::vector<std::vector<rte_ring*>> hand_off;
  std::unique_ptr<capture::CaptureLcore> capture;
  std::unique_ptr<stats::PrometheusServer> prometheus;
  simd::Kernel kernel = simd::Kernel::kScalar;
  Clock::time_point started;
  std::optional<pipeline::Liveness> liveness;  // from launch()
  // Capture write errors as last seen, and when they last grew (health: capture failing).
  uint64_t capture_errors_seen = 0;
  Clock::time_point capture_errors_at{};

  Appliance() = default;
  Appliance(const Appliance&) = delete;
  Appliance& operator=(const Appliance&) = delete;
  ~Appliance();

  // Everything between rte_eal_init and launch: ports, rules, workers, capture, Prometheus,
  // the reload triggers; starts the ports. An error is a startup error (exit 2).
  Result<void> assemble(std::shared_ptr<const config::Config> config, simd::Kernel k);
  // Launches the capture lcore and the workers (their launch results checked).
  Result<void> launch();

  // Samples heartbeats and capture errors; logs a worker that stalls or recovers, once, and
  // holds the systemd watchdog while any worker is stalled. Returns true when something
  // changed (the caller publishes at once).
  bool observe(Clock::time_point now);

  stats::Snapshot snapshot() const;

  // Stops the workers, then the capture lcore once nothing more can reach its rings, waiting
  // at most `limit` for each. Returns the lcores that did not stop (stuck: their memory cannot
  // be freed), each already logged.
  std::vector<unsigned> stop_lcores(Clock::duration limit);

  // After a clean stop: the final counters (read before the ports stop: some drivers forget
  // them), then the ports stopped and closed, every mbuf back, the pool levels checked.
  stats::Snapshot teardown();
};

}  // namespace sluice::app
