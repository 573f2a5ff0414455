#pragma once
// Ethernet ports from the appliance config: device attach (PCI or vdev), one mbuf pool per
// NUMA socket in use (sized from the config), one RX and one TX queue per worker per port.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/stats/snapshot.h"
#include "lib/sys/result.h"

struct rte_mempool;

namespace sluice::sys {
class Topology;
}

namespace sluice::port {

// How big one socket's mbuf pool must be, and why.
struct PoolSizing {
  uint32_t mbufs = 0;
  uint32_t cache = 0;
  uint16_t data_room = 0;     // bytes per mbuf, headroom included
  uint64_t object_bytes = 0;  // bytes per mbuf in the pool, header and padding included
  uint64_t bytes = 0;         // whole pool
  std::string breakdown;      // "rx 2048 + tx 2048 + bursts 64 + caches 768 + slack 1024"
  uint64_t mib() const { return (bytes + (1u << 20) - 1) >> 20; }
};

// Sizes the pool for the given ports (indices into app.ports) and workers. Pure: no EAL.
PoolSizing size_pool(const config::Appliance& app, const std::vector<size_t>& ports);

struct PortInfo {
  std::string name;
  std::string device;
  uint16_t port_id = 0;
  int socket = 0;
  uint16_t rx_queues = 0;
  uint16_t tx_queues = 0;
};

class Ports {
 public:
  // Attaches every device, creates the pools, configures queues. Errors name the port, the
  // config line and the fix.
  static Result<std::unique_ptr<Ports>> open(const config::Appliance& app,
                                             const sys::Topology* topo);
  ~Ports();
  Ports(const Ports&) = delete;
  Ports& operator=(const Ports&) = delete;

  // Starts every port and waits (bounded) for links to come up.
  Result<void> start();
  // Stops every port; then close() releases their queues (and every mbuf they held).
  void stop();
  void close();

  const std::vector<PortInfo>& ports() const { return ports_; }
  size_t size() const { return ports_.size(); }
  // Pool of a port's socket.
  rte_mempool* pool_of(size_t port) const;

  struct PoolLevels {
    uint64_t total = 0;
    uint64_t available = 0;
  };
  PoolLevels pool_levels() const;
  stats::PortSnapshot stats(size_t port) const;

 private:
  Ports() = default;
  std::vector<PortInfo> ports_;
  struct Pool {
    int socket;
    rte_mempool* mp;
  };
  std::vector<Pool> pools_;
  bool started_ = false;
  bool closed_ = false;
};

}  // namespace sluice::port
