#pragma once
// The control plane's loop on the main lcore, between launch and stop: reload triggers,
// liveness of the workers, statistics (the periodic table, telemetry, Prometheus) and the
// systemd watchdog. Returns when a signal, --duration or a fault stops the appliance.

#include <atomic>

#include "app/appliance.h"
#include "app/options.h"

namespace sluice::app {

// The exit code so far: 0, or 3 when a worker or the capture lcore stopped unexpectedly.
int control_loop(Appliance& a, const Options& opt);

}  // namespace sluice::app
