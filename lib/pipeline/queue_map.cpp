#include "lib/pipeline/queue_map.h"

namespace sluice::pipeline {

std::vector<RxQueue> rx_queues_of(unsigned worker, unsigned workers,
                                  const std::vector<PortQueues>& ports) {
  std::vector<RxQueue> out;
  if (workers == 0) return out;
  for (const auto& p : ports) {
    if (p.ring) {
      if (p.port_index % workers == worker) out.push_back({p.port_id, p.port_index, 0});
      continue;
    }
    for (uint16_t q = 0; q < p.rx_queues; ++q) {
      if (q % workers == worker) out.push_back({p.port_id, p.port_index, q});
    }
  }
  return out;
}

}  // namespace sluice::pipeline
