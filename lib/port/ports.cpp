#include "lib/port/ports.h"

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "lib/sys/topology.h"

namespace sluice::port {

namespace {

constexpr auto kLinkTimeout = std::chrono::seconds(5);
constexpr uint32_t kSlackMbufs = 1024;
// The capture lcore dequeues at most this many mbufs at a time (lib/capture kBurst).
constexpr uint32_t kCaptureBurst = 64;
constexpr uint16_t kL2Overhead = RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + 2 * 4;  // + QinQ

uint16_t rx_queues_of(const config::Appliance& app, const config::PortConfig& p) {
  return p.rx_queues.value_or(static_cast<uint16_t>(app.workers.lcores.size()));
}

// The name DPDK gives the device: a vdev string's driver instance, or the PCI address.
std::string device_name(const std::string& device) {
  return device.substr(0, device.find(','));
}

bool looks_like_pci(const std::string& name) {
  unsigned a, b, c, d;
  return std::sscanf(name.c_str(), "%x:%x:%x.%x", &a, &b, &c, &d) == 4 ||
         std::sscanf(name.c_str(), "%x:%x.%x", &b, &c, &d) == 3;
}

Result<uint16_t> attach(const config::PortConfig& p) {
  const std::string name = device_name(p.device);
  uint16_t id = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &id) == 0) return id;
  int rc = rte_dev_probe(p.device.c_str());
  if (rc == 0 && rte_eth_dev_get_port_by_name(name.c_str(), &id) == 0) return id;
  std::string why = rc < 0 ? rte_strerror(-rc) : "no ethdev port appeared";
  std::string fix =
      looks_like_pci(name)
          ? fmt::format(
                "bind it to a DPDK driver (dpdk-devbind.py --bind=vfio-pci {}) and "
                "make sure EAL may use it (no -b for it; -a {} if you allow-list)",
                name, name)
          : "check the driver name and its arguments (a vdev looks like "
            "\"net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap\"; files must exist and be readable)";
  return Error{fmt::format("{}: port '{}': cannot attach device \"{}\": {}; {}",
                           p.device_mark.str(), p.name, p.device, why, fix)};
}

// NUMA socket of an lcore: hwloc's view of the CPU it runs on, EAL's when hwloc has none.
int socket_of_lcore(unsigned lcore, const sys::Topology* topo) {
  if (topo != nullptr) {
    int s =
        topo->socket_of_cpu(static_cast<unsigned>(rte_lcore_to_cpu_id(static_cast<int>(lcore))));
    if (s >= 0) return s;
  }
  return static_cast<int>(rte_lcore_to_socket_id(lcore));
}

}  // namespace

PoolSizing size_pool(const config::Appliance& app, const std::vector<size_t>& ports) {
  PoolSizing s;
  const auto workers = static_cast<uint32_t>(app.workers.lcores.size());
  uint32_t rx = 0, tx = 0;
  uint16_t max_mtu = RTE_ETHER_MTU;
  for (size_t i : ports) {
    const auto& p = app.ports[i];
    rx += uint32_t{rx_queues_of(app, p)} * p.rx_descriptors;
    tx += workers * uint32_t{p.tx_descriptors};
    max_mtu = std::max<uint16_t>(max_mtu, p.mtu.value_or(RTE_ETHER_MTU));
  }
  // In flight per worker: the RX burst, plus a TX buffer of one burst per port.
  uint32_t bursts = workers * app.workers.burst * static_cast<uint32_t>(1 + ports.size());
  // Capture: every worker's hand-off ring full, plus the burst the capture lcore holds, so a
  // capture path that falls behind never takes an mbuf RX needs.
  const uint32_t capture = app.capture ? workers * app.rings.size + kCaptureBurst : 0;
  // Per-lcore caches may hold up to 1.5x their size each (rte_mempool's flush threshold).
  const uint32_t lcores = workers + 1 + (app.capture ? 1 : 0);
  uint32_t caches = lcores * app.mempool.cache * 3 / 2;
  uint32_t needed = rx + tx + bursts + capture + caches + kSlackMbufs;
  if (app.mempool.mbufs) {
    s.mbufs = *app.mempool.mbufs;
  } else {
    // 2^n - 1 is the mempool's most memory-efficient size.
    s.mbufs = static_cast<uint32_t>(rte_align32pow2(needed) - 1);
    if (s.mbufs < needed) s.mbufs = static_cast<uint32_t>(rte_align32pow2(needed + 1) - 1);
  }
  s.cache = std::min<uint32_t>(app.mempool.cache, RTE_MEMPOOL_CACHE_MAX_SIZE);
  s.data_room = static_cast<uint16_t>(RTE_PKTMBUF_HEADROOM +
                                      std::max<uint32_t>(2048, uint32_t{max_mtu} + kL2Overhead));
  rte_mempool_objsz sz{};
  s.object_bytes =
      rte_mempool_calc_obj_size(static_cast<uint32_t>(sizeof(rte_mbuf)) + s.data_room, 0, &sz);
  // Objects, plus the ring (8 bytes a slot) and the pool header with its caches.
  s.bytes = uint64_t{s.mbufs} * s.object_bytes + rte_align32pow2(s.mbufs + 1) * 8 + (1u << 20);
  s.breakdown = fmt::format(
      "rx descriptors {} + tx descriptors {} + bursts {} + {}caches {} + "
      "slack {} = {}{}",
      rx, tx, bursts, app.capture ? fmt::format("capture rings {} + ", capture) : "", caches,
      kSlackMbufs, needed, app.mempool.mbufs ? fmt::format(" (configured: {})", s.mbufs) : "");
  return s;
}

Result<std::unique_ptr<Ports>> Ports::open(const config::Appliance& app,
                                           const sys::Topology* topo) {
  std::unique_ptr<Ports> self(new Ports());
  const auto workers = static_cast<uint16_t>(app.workers.lcores.size());
  const int worker_socket = socket_of_lcore(app.workers.lcores.front(), topo);

  for (const auto& p : app.ports) {
    auto id = attach(p);
    if (!id) return Error{id.error()};
    PortInfo info;
    info.name = p.name;
    info.device = p.device;
    info.port_id = *id;
    int socket = rte_eth_dev_socket_id(*id);
    if (socket < 0 && topo != nullptr && looks_like_pci(device_name(p.device))) {
      socket = topo->socket_of_pci(device_name(p.device));
    }
    info.socket = socket < 0 ? worker_socket : socket;
    info.rx_queues = rx_queues_of(app, p);
    info.tx_queues = workers;
    for (size_t w = 0; w < app.workers.lcores.size(); ++w) {
      unsigned lcore = app.workers.lcores[w];
      int ls = socket_of_lcore(lcore, topo);
      if (ls != info.socket) {
        spdlog::warn(
            "port '{}' is on NUMA socket {} but worker lcore {} is on socket {}: every "
            "packet crosses the interconnect; put the worker on socket {} ({})",
            p.name, info.socket, lcore, ls, info.socket, app.workers.lcore_marks[w].str());
      }
    }
    self->ports_.push_back(info);
  }

  // One pool per socket that has ports.
  std::set<int> sockets;
  for (const auto& pi : self->ports_) sockets.insert(pi.socket);
  for (int socket : sockets) {
    std::vector<size_t> on_socket;
    for (size_t i = 0; i < self->ports_.size(); ++i) {
      if (self->ports_[i].socket == socket) on_socket.push_back(i);
    }
    PoolSizing s = size_pool(app, on_socket);
    std::string name = fmt::format("sluice_mbuf_s{}", socket);
    spdlog::info("mempool {}: {} mbufs x {} B = {} MiB on socket {} ({})", name, s.mbufs,
                 s.object_bytes, s.mib(), socket, s.breakdown);
    rte_mempool* mp =
        rte_pktmbuf_pool_create(name.c_str(), s.mbufs, s.cache, 0, s.data_room, socket);
    if (mp == nullptr) {
      return Error{fmt::format(
          "mempool for socket {} needs {} MiB ({} mbufs x {} B) and EAL could not provide it "
          "({}); give EAL more memory (-m {} or --socket-mem), reserve more hugepages "
          "(echo N > /proc/sys/vm/nr_hugepages), or lower mempool.mbufs in {}",
          socket, s.mib(), s.mbufs, s.object_bytes, rte_strerror(rte_errno), s.mib() + 64,
          app.path)};
    }
    self->pools_.push_back({socket, mp});
  }

  for (size_t i = 0; i < self->ports_.size(); ++i) {
    const auto& cfg = app.ports[i];
    auto& pi = self->ports_[i];
    rte_eth_dev_info dev{};
    int rc = rte_eth_dev_info_get(pi.port_id, &dev);
    if (rc != 0)
      return Error{
          fmt::format("port '{}': cannot read device info: {}", pi.name, rte_strerror(-rc))};
    if (pi.rx_queues > dev.max_rx_queues || pi.tx_queues > dev.max_tx_queues) {
      return Error{fmt::format(
          "{}: port '{}' ({}) supports {} RX and {} TX queues but sluice needs {} RX and {} TX "
          "(one TX queue per worker); lower rx_queues or the number of workers",
          cfg.mark.str(), pi.name, dev.driver_name, dev.max_rx_queues, dev.max_tx_queues,
          pi.rx_queues, pi.tx_queues)};
    }
    rte_eth_conf conf{};
    if (pi.rx_queues > 1 && dev.flow_type_rss_offloads != 0) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf =
          (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & dev.flow_type_rss_offloads;
    }
    if (dev.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) {
      conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
    }
    rc = rte_eth_dev_configure(pi.port_id, pi.rx_queues, pi.tx_queues, &conf);
    if (rc != 0) {
      return Error{fmt::format("{}: port '{}': configure failed: {}", cfg.mark.str(), pi.name,
                               rte_strerror(-rc))};
    }
    if (cfg.mtu) {
      rc = rte_eth_dev_set_mtu(pi.port_id, *cfg.mtu);
      if (rc != 0) {
        return Error{fmt::format("{}: port '{}': cannot set mtu {}: {} (device allows {}..{})",
                                 cfg.mark.str(), pi.name, *cfg.mtu, rte_strerror(-rc), dev.min_mtu,
                                 dev.max_mtu)};
      }
    }
    uint16_t nb_rxd = cfg.rx_descriptors, nb_txd = cfg.tx_descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(pi.port_id, &nb_rxd, &nb_txd);
    rte_mempool* mp = self->pool_of(i);
    for (uint16_t q = 0; q < pi.rx_queues; ++q) {
      rc = rte_eth_rx_queue_setup(pi.port_id, q, nb_rxd, static_cast<unsigned>(pi.socket), nullptr,
                                  mp);
      if (rc != 0) {
        return Error{
            fmt::format("port '{}': RX queue {} setup failed: {}", pi.name, q, rte_strerror(-rc))};
      }
    }
    for (uint16_t q = 0; q < pi.tx_queues; ++q) {
      rc = rte_eth_tx_queue_setup(pi.port_id, q, nb_txd, static_cast<unsigned>(pi.socket), nullptr);
      if (rc != 0) {
        return Error{
            fmt::format("port '{}': TX queue {} setup failed: {}", pi.name, q, rte_strerror(-rc))};
      }
    }
    spdlog::info("port {} '{}': {} ({}), socket {}, {} RX / {} TX queues, {}/{} descriptors",
                 pi.port_id, pi.name, pi.device, dev.driver_name, pi.socket, pi.rx_queues,
                 pi.tx_queues, nb_rxd, nb_txd);
  }
  return self;
}

Ports::~Ports() {
  close();
  for (auto& p : pools_) rte_mempool_free(p.mp);
}

rte_mempool* Ports::pool_of(size_t port) const {
  for (const auto& p : pools_) {
    if (p.socket == ports_[port].socket) return p.mp;
  }
  return nullptr;
}

Result<void> Ports::start() {
  for (const auto& p : pools_) {
    spdlog::info("mempool {}: {}/{} mbufs available before start", p.mp->name,
                 rte_mempool_avail_count(p.mp), p.mp->size);
  }
  for (const auto& pi : ports_) {
    int rc = rte_eth_dev_start(pi.port_id);
    if (rc != 0) {
      return Error{
          fmt::format("port '{}' ({}): start failed: {}", pi.name, pi.device, rte_strerror(-rc))};
    }
    started_ = true;
    rte_eth_promiscuous_enable(pi.port_id);  // not every vdev supports it; that's fine
  }
  // Wait for links, bounded: a port without link still starts, with a warning.
  const auto deadline = std::chrono::steady_clock::now() + kLinkTimeout;
  for (const auto& pi : ports_) {
    rte_eth_link link{};
    while (true) {
      if (rte_eth_link_get_nowait(pi.port_id, &link) == 0 && link.link_status) break;
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (link.link_status) {
      spdlog::info("port '{}': link up, {} Mbps, {}", pi.name, link.link_speed,
                   link.link_duplex ? "full-duplex" : "half-duplex");
    } else {
      spdlog::warn("port '{}': link still down after {} s; continuing (check cabling/peer)",
                   pi.name, kLinkTimeout.count());
    }
  }
  return {};
}

void Ports::stop() {
  if (!started_) return;
  for (const auto& pi : ports_) {
    int rc = rte_eth_dev_stop(pi.port_id);
    if (rc != 0) spdlog::warn("port '{}': stop failed: {}", pi.name, rte_strerror(-rc));
  }
  started_ = false;
}

void Ports::close() {
  if (closed_) return;
  stop();
  for (const auto& pi : ports_) {
    int rc = rte_eth_dev_close(pi.port_id);
    if (rc != 0) spdlog::warn("port '{}': close failed: {}", pi.name, rte_strerror(-rc));
  }
  closed_ = true;
}

Ports::PoolLevels Ports::pool_levels() const {
  PoolLevels l;
  for (const auto& p : pools_) {
    l.total += p.mp->size;
    l.available += rte_mempool_avail_count(p.mp);
  }
  return l;
}

stats::PortSnapshot Ports::stats(size_t port) const {
  stats::PortSnapshot s;
  s.name = ports_[port].name;
  rte_eth_stats st{};
  if (!closed_ && rte_eth_stats_get(ports_[port].port_id, &st) == 0) {
    s.rx_packets = st.ipackets;
    s.rx_bytes = st.ibytes;
    s.tx_packets = st.opackets;
    s.tx_bytes = st.obytes;
    s.rx_missed = st.imissed;
    s.rx_nombuf = st.rx_nombuf;
    s.tx_errors = st.oerrors;
    s.rx_errors = st.ierrors;
  }
  return s;
}

}  // namespace sluice::port
