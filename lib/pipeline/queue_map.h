#pragma once
// Which RX queues each worker polls. An RSS port has one RX queue per worker (lib/port), and
// queue q of every port goes to worker q mod workers, so each worker polls one queue of every
// port and no queue is polled twice. A port distributed by ring has one RX queue, polled by
// worker port_index mod workers (so several such ports share the spreading out).

#include <cstdint>
#include <vector>

#include "lib/pipeline/worker.h"

namespace sluice::pipeline {

struct PortQueues {
  uint16_t port_id;    // ethdev id
  uint8_t port_index;  // config index
  uint16_t rx_queues;
  bool ring = false;  // distribute: ring
};

std::vector<RxQueue> rx_queues_of(unsigned worker, unsigned workers,
                                  const std::vector<PortQueues>& ports);

}  // namespace sluice::pipeline
