#pragma once
// Ethernet ports from the appliance config: device attach (PCI or vdev), one mbuf pool per
// NUMA socket in use (sized from the config), one RX and one TX queue per worker per port,
// counters that never go backwards, and rte_pdump, so dpdk-dumpcap can capture from the ports.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/port/monotonic.h"
#include "lib/stats/snapshot.h"
#include "lib/sys/result.h"

struct rte_mempool;
struct rte_rcu_qsbr;

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
// ring_ports (indexed like app.ports, may be empty: none) marks the ports distributed by ring,
// whose hand-off rings may hold mbufs too.
PoolSizing size_pool(const config::Appliance& app, const std::vector<size_t>& ports,
                     const std::vector<bool>& ring_ports = {});

using stats::RxQueueCounters;

struct PortInfo {
  std::string name;
  std::string device;
  uint16_t port_id = 0;
  int socket = 0;
  uint16_t rx_queues = 0;
  uint16_t tx_queues = 0;
  // distribute: ring (one RX queue, spread over the workers' rings by its poller); else the
  // NIC's RSS with a symmetric key over rx_queues queues (or a single worker).
  bool ring = false;
  std::string distribute;  // how it was decided, for the log and --check
};

// How a port's packets will reach the workers, decided from the config and what the driver
// offers (dev_rss: it reports RSS hash types; dev_max_rx_queues). Sets info.ring,
// info.rx_queues and info.distribute; an explicit `distribute: rss` the device cannot honour is
// an error naming the fix.
Result<void> decide_distribution(const config::Appliance& app, const config::PortConfig& p,
                                 const std::string& driver, bool dev_rss,
                                 uint16_t dev_max_rx_queues, PortInfo& info);
// The same before any device is attached (sluice --check): what the driver's name suggests.
PortInfo expected_distribution(const config::Appliance& app, const config::PortConfig& p);

// The RCU readers of the port queues' callbacks: the workers, which call rte_eth_rx_burst and
// rte_eth_tx_burst (where callbacks run) only between the quiescent states they report. With
// it set, removing an RX or TX callback from any port - rte_pdump does it on EAL's
// multi-process thread when dpdk-dumpcap detaches, then the tool frees the ring and pool the
// callback copies into - returns only once every online worker has left the callback (or, a
// worker being stalled, after 1 s, logged). DPDK 22.11's rte_eth_remove_rx_callback does not
// wait, and its rte_pdump relies on that; DPDK 25.11 fixed it in rte_pdump itself. null: no
// wait (unit tests, or before the workers exist).
// The same readers make munmap on EAL's interrupt thread wait (ports.cpp interposes on it):
// net_memif unmaps a departed peer's shared memory there, under a worker still in its burst.
// Setting null returns once no wait still uses the old readers.
void set_callback_readers(rte_rcu_qsbr* workers);

class Ports {
 public:
  // Attaches every device, creates the pools, configures queues, and initialises rte_pdump
  // (where EAL lets a secondary process attach: hugepages and a multi-process channel; else it
  // says so and goes on). Errors name the port, the config line and the fix.
  // other_mib: what sluice takes from EAL beside the pools (capture buffers), for the -m a
  // pool that does not fit suggests.
  static Result<std::unique_ptr<Ports>> open(const config::Appliance& app,
                                             const sys::Topology* topo, uint64_t other_mib = 0);
  ~Ports();
  Ports(const Ports&) = delete;
  Ports& operator=(const Ports&) = delete;

  // Starts every port and waits (bounded) for links to come up.
  Result<void> start();
  // Stops every port; then close() releases their queues (and every mbuf they held) and
  // rte_pdump. Call both with the workers stopped.
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
  // A port's counters, from the main lcore only (each call is a reading that moves the totals
  // on). They never go backwards: a driver that resets its counters or hides them (net_memif
  // while its peer is away) does not take sluice's back (lib/port/monotonic.h). RX packets and
  // bytes are at least what the workers received from the port (an RX callback counts every
  // queue), so what arrived after the last reading before a memif peer left still counts. TX
  // is the driver's count alone (a callback runs before the driver takes the packets, so it
  // cannot count what was sent): what went to a memif peer since the last reading is lost if
  // the peer leaves for good before the next one (the control loop reads every 250 ms). After
  // close() the last totals.
  stats::PortSnapshot stats(size_t port) const;
  // Where the worker polling RX queue `queue` of port `port` counts what it received (null
  // without memory for it: then the port's counters are the driver's only).
  stats::RxQueueCounters* rx_counters(size_t port, uint16_t queue) const;

 private:
  Ports() = default;
  std::vector<PortInfo> ports_;
  struct Pool {
    int socket;
    rte_mempool* mp;
  };
  std::vector<Pool> pools_;
  struct Counting {
    RxQueueCounters* rx = nullptr;  // one per RX queue, on the port's socket
    MonotonicCounters driver;       // the driver's counters, made monotonic
    stats::PortSnapshot last;       // the last totals (what stats() says after close())
    bool hidden = false;            // the last reading was lower, with the link down
  };
  void count_rx(size_t port);
  // Main lcore only: stats() is a reading that banks what a driver reset.
  mutable std::vector<Counting> counting_;
  bool started_ = false;
  bool closed_ = false;
  bool pdump_ = false;
};

}  // namespace sluice::port
