#include "lib/port/ports.h"

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_interrupts.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pdump.h>
#include <rte_rcu_qsbr.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <new>
#include <set>
#include <string_view>
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

// The name DPDK gives the device: a vdev string's driver instance, or the PCI address in
// DPDK's spelling (config::device_name).
std::string device_name(const std::string& device) {
  return config::device_name(device);
}

bool looks_like_pci(const std::string& name) {
  return config::pci_address(name).has_value();
}

Result<uint16_t> attach(const config::PortConfig& p) {
  const std::string name = device_name(p.device);
  uint16_t id = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &id) == 0) return id;
  // EAL finds a device by its exact name: a PCI address is probed as DPDK spells it
  // ("3B:00.0" as 0000:3b:00.0), its arguments after the first comma kept.
  const size_t comma = p.device.find(',');
  const std::string probe = comma == std::string::npos ? name : name + p.device.substr(comma);
  int rc = rte_dev_probe(probe.c_str());
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

bool link_up(uint16_t port_id) {
  rte_eth_link link{};
  return rte_eth_link_get_nowait(port_id, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

bool read_counters(uint16_t port_id, PortCounterValues& raw) {
  rte_eth_stats st{};
  if (rte_eth_stats_get(port_id, &st) != 0) return false;
  raw = {st.ipackets, st.ibytes,    st.opackets, st.obytes,
         st.imissed,  st.rx_nombuf, st.oerrors,  st.ierrors};
  return true;
}

// The EAL file prefix, which a secondary process (dpdk-dumpcap) must name to attach.
std::string_view file_prefix() {
  std::string_view dir = rte_eal_get_runtime_dir();
  return dir.substr(dir.rfind('/') + 1);
}

// rte_pdump's server in this (primary) process: a secondary asks it over EAL's multi-process
// channel to put its RX/TX callbacks on our queues, which copy packets into the secondary's
// pool and ring. Without it dpdk-dumpcap says "Packet dump enable failed". A secondary maps the
// primary's hugepage files, so there is nothing to attach to without hugepages, with
// --in-memory or --no-shconf (no channel either) or --huge-unlink (no files).
bool init_pdump() {
  if (rte_eal_process_type() != RTE_PROC_PRIMARY) return false;
  if (!rte_eal_has_hugepages()) {
    spdlog::info(
        "pdump: not initialised: EAL runs without hugepages (--no-huge), so no secondary "
        "process (dpdk-dumpcap, dpdk-pdump, dpdk-proc-info) can attach");
    return false;
  }
  rte_errno = 0;
  if (rte_pdump_init() != 0) {
    spdlog::warn("pdump: cannot initialise ({}): dpdk-dumpcap and dpdk-pdump cannot attach",
                 rte_strerror(rte_errno));
    return false;
  }
  if (rte_errno == ENOTSUP) {  // rte_pdump_init's quiet way of saying EAL has no channel
    rte_pdump_uninit();
    spdlog::info(
        "pdump: not initialised: EAL has no multi-process channel (--in-memory or --no-shconf), "
        "so dpdk-dumpcap and dpdk-pdump cannot attach");
    return false;
  }
  // --huge-unlink keeps the channel but leaves no files to map; EAL does not say which it ran.
  spdlog::info(
      "pdump: ready: dpdk-dumpcap --file-prefix={} -i PORT captures from a port (unless EAL runs "
      "with --huge-unlink: a secondary maps sluice's hugepage files)",
      file_prefix());
  return true;
}

}  // namespace

namespace {

std::atomic<rte_rcu_qsbr*> g_callback_readers{nullptr};
// Waits in progress: set_callback_readers(nullptr) returns only once none still uses the old
// variable (the rules' RCU, freed after it).
std::atomic<unsigned> g_waiting{0};

// Polls done() every `step` until it holds (true) or `limit` has passed (false).
template <typename Done>
bool poll_until(Done done, std::chrono::steady_clock::duration limit,
                std::chrono::microseconds step = std::chrono::microseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
  return true;
}

// Waits until every online worker has passed a quiescent state started now: none is still
// inside a burst (an RX or TX callback, a driver's burst function) that began before the call.
// `what` names the caller, `otherwise` what happens when a stalled worker is given up on.
void wait_callback_readers(const char* what, const char* otherwise) {
  g_waiting.fetch_add(1);
  rte_rcu_qsbr* q = g_callback_readers.load();
  if (q != nullptr) {
    const uint64_t token = rte_rcu_qsbr_start(q);
    if (!poll_until([&] { return rte_rcu_qsbr_check(q, token, false) == 1; },
                    std::chrono::seconds(1))) {
      spdlog::warn("{}: a worker did not pass a quiescent state within 1 s (stalled?); {}", what,
                   otherwise);
    }
  }
  g_waiting.fetch_sub(1);
}

template <typename Fn>
Fn next_definition(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}

}  // namespace

void set_callback_readers(rte_rcu_qsbr* workers) {
  rte_rcu_qsbr* const old = g_callback_readers.exchange(workers);
  if (old != nullptr && old != workers) {
    // Each wait in progress gives up after 1 s.
    while (g_waiting.load() != 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  // The wait on munmap only helps where the drivers' calls land here: the executable must
  // export it (a -fvisibility=hidden build, --exclude-libs or a shared sluice_port would not).
  if (workers != nullptr && dlsym(RTLD_DEFAULT, "munmap") != reinterpret_cast<void*>(&munmap)) {
    spdlog::error(
        "munmap: the drivers' calls do not reach sluice's (not exported from the executable); "
        "a memif peer that leaves under load can crash a worker");
  }
}

}  // namespace sluice::port

// These definitions interpose on librte_ethdev's (the executable's symbols come first in the
// dynamic linker's search order, so rte_pdump's calls land here too), call it, and then wait
// out the workers: see set_callback_readers.
extern "C" int rte_eth_remove_rx_callback(uint16_t port_id, uint16_t queue_id,
                                          const struct rte_eth_rxtx_callback* user_cb) {
  using Fn = int (*)(uint16_t, uint16_t, const rte_eth_rxtx_callback*);
  static const Fn real = sluice::port::next_definition<Fn>("rte_eth_remove_rx_callback");
  if (real == nullptr) return -ENOTSUP;
  const int r = real(port_id, queue_id, user_cb);
  if (r == 0) {
    sluice::port::wait_callback_readers("rte_eth_remove_rx_callback",
                                        "the callback is removed without waiting for it");
  }
  return r;
}

extern "C" int rte_eth_remove_tx_callback(uint16_t port_id, uint16_t queue_id,
                                          const struct rte_eth_rxtx_callback* user_cb) {
  using Fn = int (*)(uint16_t, uint16_t, const rte_eth_rxtx_callback*);
  static const Fn real = sluice::port::next_definition<Fn>("rte_eth_remove_tx_callback");
  if (real == nullptr) return -ENOTSUP;
  const int r = real(port_id, queue_id, user_cb);
  if (r == 0) {
    sluice::port::wait_callback_readers("rte_eth_remove_tx_callback",
                                        "the callback is removed without waiting for it");
  }
  return r;
}

// munmap on EAL's interrupt thread waits out the workers first: that is where net_memif handles
// its control channel, and when a peer leaves (or dies) DPDK 22.11's memif_disconnect marks the
// port down and then unmaps the peer's shared regions at once, while a worker that checked the
// link just before may still be reading them in rte_eth_rx_burst or rte_eth_tx_burst: it
// faulted (SIGSEGV in librte_net_memif; CI saw it once, a peer SIGKILLed in a loop with the
// worker's CPU shared showed it within 20 kills). After a grace period every burst that began
// before the port went down has ended, and later ones see it down and touch nothing. Any other
// munmap (any thread but the interrupt thread, or no workers running) goes straight through; the
// interrupt thread's others (rare: EAL alarms, device events) wait a quiescent state too, about
// 100 us. The next munmap in the search order (libc's, or a sanitizer's interceptor) does the
// unmapping.
extern "C" [[gnu::visibility("default")]] int munmap(void* addr, size_t length) noexcept {
  using Fn = int (*)(void*, size_t);
  static std::atomic<Fn> real{nullptr};
  // dlsym may itself unmap: a call made while this thread resolves it goes to the kernel.
  static thread_local bool resolving = false;
  Fn f = real.load(std::memory_order_acquire);
  if (f == nullptr) {
    if (resolving) return static_cast<int>(syscall(SYS_munmap, addr, length));
    resolving = true;
    f = sluice::port::next_definition<Fn>("munmap");
    resolving = false;
    if (f == nullptr) return static_cast<int>(syscall(SYS_munmap, addr, length));
    real.store(f, std::memory_order_release);
  }
  if (rte_thread_is_intr() != 0) {
    sluice::port::wait_callback_readers("munmap on EAL's interrupt thread (a memif peer left)",
                                        "the memory is unmapped without waiting for it");
  }
  return f(addr, length);
}

namespace sluice::port {

namespace {

// Drivers without RSS (sluice --check's guess; at start the device itself says).
bool driver_has_rss(const std::string& device) {
  static constexpr std::string_view kNoRss[] = {"net_memif", "net_af_packet",   "net_tap",
                                                "net_pcap",  "net_ring",        "net_af_xdp",
                                                "net_vhost", "net_virtio_user", "net_kni"};
  const std::string name = device_name(device);
  for (std::string_view d : kNoRss) {
    if (name.compare(0, d.size(), d) == 0) return false;
  }
  return true;  // net_null, and PCI NICs (most have RSS; start-up checks)
}

}  // namespace

Result<void> decide_distribution(const config::Appliance& app, const config::PortConfig& p,
                                 const std::string& driver, bool dev_rss,
                                 uint16_t dev_max_rx_queues, PortInfo& info) {
  const auto workers = static_cast<uint16_t>(app.workers.lcores.size());
  const uint16_t wanted = rx_queues_of(app, p);
  const bool rss_ok = dev_rss && dev_max_rx_queues >= wanted;
  info.ring = false;
  info.rx_queues = wanted;
  switch (p.distribute) {
    case config::Distribute::kRss:
      if (wanted > 1 && !rss_ok) {
        return Error{fmt::format(
            "{}: port '{}': distribute: rss, but {} {}; say distribute: ring (or leave it out: "
            "auto picks ring for such devices)",
            p.distribute_mark.str(), p.name, driver,
            dev_rss ? fmt::format("offers {} RX queues, not {}", dev_max_rx_queues, wanted)
                    : std::string("has no RSS"))};
      }
      info.distribute = wanted > 1 ? fmt::format("rss over {} queues (symmetric key)", wanted)
                                   : std::string("rss (one queue)");
      return {};
    case config::Distribute::kRing:
      if (workers > 1) {
        info.ring = true;
        info.rx_queues = 1;
        info.distribute = fmt::format("ring: one RX queue spread over {} workers", workers);
      } else {
        info.distribute = "ring (one worker: nothing to spread)";
      }
      return {};
    case config::Distribute::kAuto:
      break;
  }
  if (workers <= 1 || wanted <= 1) {
    info.distribute = workers <= 1 ? "one worker" : "one RX queue (rx_queues: 1)";
  } else if (rss_ok) {
    info.distribute =
        fmt::format("rss over {} queues, symmetric key (auto: {} has RSS)", wanted, driver);
  } else if (p.rx_queues) {
    // rx_queues said explicitly: keep the queues (the queue count check explains a shortfall).
    info.distribute = fmt::format("{} queues without RSS (auto; rx_queues given)", wanted);
  } else {
    info.ring = true;
    info.rx_queues = 1;
    info.distribute =
        fmt::format("ring: one RX queue spread over {} workers (auto: {} {})", workers, driver,
                    dev_rss ? fmt::format("offers only {} RX queues", dev_max_rx_queues)
                            : std::string("has no RSS"));
  }
  return {};
}

PortInfo expected_distribution(const config::Appliance& app, const config::PortConfig& p) {
  PortInfo info;
  const bool rss = driver_has_rss(p.device);
  std::string driver = device_name(p.device);  // "net_memif0": the driver is net_memif
  if (!looks_like_pci(driver)) {
    while (!driver.empty() && std::isdigit(static_cast<unsigned char>(driver.back()))) {
      driver.pop_back();
    }
  }
  if (auto r = decide_distribution(app, p, driver, rss, 1024, info); !r) {
    info.distribute = r.error();
  }
  return info;
}

namespace {

uint32_t hand_off_mbufs(const config::Appliance& app, const std::vector<size_t>& ports,
                        const std::vector<bool>& ring_ports) {
  const auto workers = static_cast<uint32_t>(app.workers.lcores.size());
  uint32_t n = 0;
  for (size_t i : ports) {
    if (i < ring_ports.size() && ring_ports[i]) n += (workers - 1) * app.rings.size;
  }
  return n;
}

}  // namespace

PoolSizing size_pool(const config::Appliance& app, const std::vector<size_t>& ports,
                     const std::vector<bool>& ring_ports) {
  PoolSizing s;
  const auto workers = static_cast<uint32_t>(app.workers.lcores.size());
  uint32_t rx = 0, tx = 0;
  uint16_t max_mtu = RTE_ETHER_MTU;
  for (size_t i : ports) {
    const auto& p = app.ports[i];
    const bool ring = i < ring_ports.size() && ring_ports[i];
    rx += uint32_t{ring ? uint16_t{1} : rx_queues_of(app, p)} * p.rx_descriptors;
    tx += workers * uint32_t{p.tx_descriptors};
    max_mtu = std::max<uint16_t>(max_mtu, p.mtu.value_or(RTE_ETHER_MTU));
  }
  // In flight per worker: the RX burst, plus a TX buffer of one burst per port; and for each
  // ring port, its spreading worker's hand-off stages (under a burst each, pipeline::HandOffStage).
  uint32_t bursts = workers * app.workers.burst * static_cast<uint32_t>(1 + ports.size());
  for (size_t i : ports) {
    if (i < ring_ports.size() && ring_ports[i]) bursts += (workers - 1) * app.workers.burst;
  }
  // Capture: every worker's hand-off ring full, plus the burst the capture lcore holds, so a
  // capture path that falls behind never takes an mbuf RX needs.
  const uint32_t capture = app.capture ? workers * app.rings.size + kCaptureBurst : 0;
  // Per-lcore caches may hold up to 1.5x their size each (rte_mempool's flush threshold).
  const uint32_t lcores = workers + 1 + (app.capture ? 1 : 0);
  uint32_t caches = lcores * app.mempool.cache * 3 / 2;
  const uint32_t handoff = hand_off_mbufs(app, ports, ring_ports);
  uint32_t needed = rx + tx + bursts + capture + handoff + caches + kSlackMbufs;
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
      "rx descriptors {} + tx descriptors {} + bursts {} + {}{}caches {} + "
      "slack {} = {}{}",
      rx, tx, bursts, app.capture ? fmt::format("capture rings {} + ", capture) : "",
      handoff ? fmt::format("hand-off rings {} + ", handoff) : "", caches, kSlackMbufs, needed,
      app.mempool.mbufs ? fmt::format(" (configured: {})", s.mbufs) : "");
  return s;
}

Result<std::unique_ptr<Ports>> Ports::open(const config::Appliance& app, const sys::Topology* topo,
                                           uint64_t other_mib) {
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
    rte_eth_dev_info dev{};
    if (int rc = rte_eth_dev_info_get(*id, &dev); rc != 0) {
      return Error{
          fmt::format("port '{}': cannot read device info: {}", p.name, rte_strerror(-rc))};
    }
    if (auto r = decide_distribution(app, p, dev.driver_name, dev.flow_type_rss_offloads != 0,
                                     dev.max_rx_queues, info);
        !r) {
      return Error{r.error()};
    }
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
  self->counting_.resize(self->ports_.size());

  // One pool per socket that has ports.
  std::set<int> sockets;
  for (const auto& pi : self->ports_) sockets.insert(pi.socket);
  for (int socket : sockets) {
    std::vector<size_t> on_socket;
    for (size_t i = 0; i < self->ports_.size(); ++i) {
      if (self->ports_[i].socket == socket) on_socket.push_back(i);
    }
    std::vector<bool> ring_ports;
    for (const auto& pi : self->ports_) ring_ports.push_back(pi.ring);
    PoolSizing s = size_pool(app, on_socket, ring_ports);
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
          socket, s.mib(), s.mbufs, s.object_bytes, rte_strerror(rte_errno),
          s.mib() + 64 + other_mib, app.path)};
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
    if (pi.rx_queues <= dev.max_rx_queues && pi.tx_queues > dev.max_tx_queues) {
      return Error{fmt::format(
          "{}: port '{}' ({}) has {} TX queue{} but every worker sends on a queue of its own ({} "
          "workers): give the device more TX queues (net_pcap: one tx_pcap or tx_iface per "
          "worker; memif: the peer opens one queue pair per worker) or use fewer workers",
          cfg.mark.str(), pi.name, dev.driver_name, dev.max_tx_queues,
          dev.max_tx_queues == 1 ? "" : "s", pi.tx_queues)};
    }
    if (pi.rx_queues > dev.max_rx_queues || pi.tx_queues > dev.max_tx_queues) {
      return Error{fmt::format(
          "{}: port '{}' ({}) supports {} RX and {} TX queues but sluice needs {} RX and {} TX "
          "(one TX queue per worker); lower rx_queues or the number of workers",
          cfg.mark.str(), pi.name, dev.driver_name, dev.max_rx_queues, dev.max_tx_queues,
          pi.rx_queues, pi.tx_queues)};
    }
    rte_eth_conf conf{};
    // A Toeplitz key of one repeated 16-bit pattern hashes (src, dst) and (dst, src) alike, so
    // both directions of a flow reach one worker (Woo and Park, "Scalable TCP Session
    // Monitoring with Symmetric Receive-side Scaling").
    std::array<uint8_t, 52> symmetric_key{};
    for (size_t k = 0; k < symmetric_key.size(); k += 2) {
      symmetric_key[k] = 0x6d;
      symmetric_key[k + 1] = 0x5a;
    }
    if (!pi.ring && pi.rx_queues > 1 && dev.flow_type_rss_offloads != 0) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf =
          (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & dev.flow_type_rss_offloads;
      const uint8_t key_len = dev.hash_key_size != 0 ? dev.hash_key_size : 40;
      if (key_len <= symmetric_key.size()) {
        conf.rx_adv_conf.rss_conf.rss_key = symmetric_key.data();
        conf.rx_adv_conf.rss_conf.rss_key_len = key_len;
      }
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
    self->count_rx(i);
    spdlog::info(
        "port {} '{}': {} ({}), socket {}, {} RX / {} TX queues, {}/{} descriptors; distribute: {}",
        pi.port_id, pi.name, pi.device, dev.driver_name, pi.socket, pi.rx_queues, pi.tx_queues,
        nb_rxd, nb_txd, pi.distribute);
  }
  self->pdump_ = init_pdump();
  return self;
}

void Ports::count_rx(size_t port) {
  const auto& pi = ports_[port];
  auto& c = counting_[port];
  const size_t bytes = sizeof(RxQueueCounters) * pi.rx_queues;
  void* mem = rte_zmalloc_socket("sluice_rx_counters", bytes, alignof(RxQueueCounters), pi.socket);
  if (mem == nullptr) mem = rte_zmalloc("sluice_rx_counters", bytes, alignof(RxQueueCounters));
  if (mem == nullptr) {
    spdlog::warn("port '{}': no memory for RX counters: its counters are the driver's only",
                 pi.name);
    return;
  }
  c.rx = static_cast<RxQueueCounters*>(mem);
  for (uint16_t q = 0; q < pi.rx_queues; ++q) new (&c.rx[q]) RxQueueCounters();
}

RxQueueCounters* Ports::rx_counters(size_t port, uint16_t queue) const {
  const Counting& c = counting_[port];
  return c.rx != nullptr && queue < ports_[port].rx_queues ? &c.rx[queue] : nullptr;
}

Ports::~Ports() {
  close();
  for (auto& c : counting_) rte_free(c.rx);
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
  // A last reading with the links up: some drivers hide their counters once stopped.
  for (size_t i = 0; i < ports_.size(); ++i) stats(i);
  for (const auto& pi : ports_) {
    int rc = rte_eth_dev_stop(pi.port_id);
    if (rc != 0) spdlog::warn("port '{}': stop failed: {}", pi.name, rte_strerror(-rc));
  }
  started_ = false;
}

void Ports::close() {
  if (closed_) return;
  stop();
  // The workers are stopped: these are the totals stats() answers from now on.
  for (size_t i = 0; i < counting_.size(); ++i) stats(i);
  if (pdump_) {
    rte_pdump_uninit();
    pdump_ = false;
  }
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
  const PortInfo& pi = ports_[port];
  Counting& c = counting_[port];
  if (closed_) return c.last;
  PortCounterValues raw{};
  if (read_counters(pi.port_id, raw)) {
    bool up = true;
    if (c.driver.lower(raw)) {
      // A reset or a hide: the link tells them apart, up around a second reading.
      up = link_up(pi.port_id) && read_counters(pi.port_id, raw) && link_up(pi.port_id);
    }
    const auto reading = c.driver.update(raw, up);
    if (reading == MonotonicCounters::Reading::kReset) {
      spdlog::info("port '{}': the driver reset its counters (reset {}); sluice's go on", pi.name,
                   c.driver.resets());
    } else if ((reading == MonotonicCounters::Reading::kIgnored) != c.hidden) {
      c.hidden = !c.hidden;
      spdlog::debug("port '{}': the driver {} its counters (link down); sluice keeps its own",
                    pi.name, c.hidden ? "hides" : "shows again");
    }
  }
  const PortCounterValues t = c.driver.totals();
  auto at = [&t](PortCounter k) { return t[static_cast<size_t>(k)]; };
  // RX: the larger of two lower bounds. A NIC counts what reached its ring before sluice polls
  // it; sluice counts what it polled, which memif hides with its peer gone.
  uint64_t rx_packets = 0, rx_bytes = 0;
  if (c.rx != nullptr) {
    for (uint16_t q = 0; q < pi.rx_queues; ++q) {
      rx_packets += c.rx[q].packets.get();
      rx_bytes += c.rx[q].bytes.get();
    }
  }
  stats::PortSnapshot s;
  s.name = pi.name;
  s.rx_packets = std::max(at(PortCounter::kRxPackets), rx_packets);
  s.rx_bytes = std::max(at(PortCounter::kRxBytes), rx_bytes);
  s.tx_packets = at(PortCounter::kTxPackets);
  s.tx_bytes = at(PortCounter::kTxBytes);
  s.rx_missed = at(PortCounter::kRxMissed);
  s.rx_nombuf = at(PortCounter::kRxNombuf);
  s.tx_errors = at(PortCounter::kTxErrors);
  s.rx_errors = at(PortCounter::kRxErrors);
  c.last = s;
  return s;
}

}  // namespace sluice::port
