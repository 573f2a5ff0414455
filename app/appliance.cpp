#include "app/appliance.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>

// DPDK 22.11's x86 rte_vect.h declares rte_vect_get_max_simd_bitwidth outside extern "C"
// when it is the first to include the generic header.
extern "C" {
#include <rte_vect.h>
}

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "app/check.h"
#include "lib/capture/handoff.h"
#include "lib/pipeline/queue_map.h"
#include "lib/stats/telemetry.h"
#include "lib/sys/host.h"
#include "lib/sys/notify.h"
#include "lib/sys/topology.h"
#include "sluice_build_config.h"

namespace sluice::app {

std::atomic<bool> g_stop{false};

namespace {

Result<void> check_lcores(const config::Appliance& app) {
  const unsigned main_lcore = rte_get_main_lcore();
  for (size_t i = 0; i < app.workers.lcores.size(); ++i) {
    unsigned l = app.workers.lcores[i];
    const std::string where = app.workers.lcore_marks[i].str();
    if (l >= RTE_MAX_LCORE || !rte_lcore_is_enabled(l)) {
      return Error{fmt::format(
          "{}: workers.lcores: lcore {} is not in the EAL lcore set ({}); add it to EAL's -l "
          "(for example -l {},{}) or use one of the listed lcores",
          where, l, eal_lcore_list(), main_lcore, l)};
    }
    if (l == main_lcore) {
      return Error{fmt::format(
          "{}: workers.lcores: lcore {} is the EAL main lcore, which runs the control plane; "
          "give workers other lcores (the main lcore is the first of -l, or --main-lcore)",
          where, l)};
    }
  }
  if (app.capture) {
    const unsigned l = app.capture->lcore;
    const std::string where = app.capture->lcore_mark.str();
    if (l >= RTE_MAX_LCORE || !rte_lcore_is_enabled(l)) {
      return Error{fmt::format(
          "{}: capture.lcore: lcore {} is not in the EAL lcore set ({}); add it to EAL's -l or "
          "use another listed lcore that is neither the main lcore nor a worker",
          where, l, eal_lcore_list())};
    }
    if (l == main_lcore) {
      return Error{fmt::format(
          "{}: capture.lcore: lcore {} is the EAL main lcore, which runs the control plane; "
          "give the capture loop an lcore of its own",
          where, l)};
    }
  }
  return {};
}

// The capture path: one SP/SC ring per worker into the capture lcore, which takes mbuf
// references (their RX TSC in a dynamic field) and writes chunks through its queue pair.
Result<void> setup_capture(Appliance& a) {
  const config::CaptureConfig& cc = *a.cfg->appliance.capture;
  const int field = capture::register_rx_tsc_field();
  if (field < 0) {
    return Error{fmt::format("capture: cannot register the mbuf RX timestamp field: {}",
                             rte_strerror(rte_errno))};
  }
  const int socket = static_cast<int>(rte_lcore_to_socket_id(cc.lcore));
  for (auto& w : a.workers) {
    const std::string name = fmt::format("sluice_cap_{}", w->index);
    rte_ring* r = rte_ring_create(name.c_str(), a.cfg->appliance.rings.size, socket,
                                  RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (r == nullptr) {
      return Error{fmt::format("capture: cannot create ring {} of {} entries on socket {}: {}",
                               name, a.cfg->appliance.rings.size, socket, rte_strerror(rte_errno))};
    }
    a.capture_rings.push_back(r);
    w->capture_ring = r;
    w->capture_malformed = cc.malformed;
    w->rx_tsc_field = field;
  }
  capture::CaptureLcore::Options o;
  o.cfg = &cc;
  for (size_t p = 0; p < a.ports->size(); ++p) {
    const auto& pi = a.ports->ports()[p];
    o.port_names.push_back(a.cfg->appliance.ports[p].name);
    o.port_index[pi.port_id % capture::kMaxEthPorts] = static_cast<uint8_t>(p);
  }
  o.rings = a.capture_rings;
  o.rx_tsc_field = field;
  o.socket = socket;
  o.userappl = fmt::format("sluice {}", SLUICE_VERSION);
  auto c = capture::CaptureLcore::create(o);
  if (!c) return Error{c.error()};
  a.capture = std::move(*c);
  return {};
}

// SLUICE_TEST_STALL=WORKER:MS (tests only): worker WORKER hangs MS milliseconds after launch.
struct TestStall {
  unsigned worker = 0;
  uint64_t after_ms = 0;
};
std::optional<TestStall> test_stall() {
  const char* v = std::getenv("SLUICE_TEST_STALL");
  if (v == nullptr || *v == '\0') return std::nullopt;
  TestStall t;
  if (std::sscanf(v, "%u:%lu", &t.worker, &t.after_ms) != 2) {
    spdlog::warn("SLUICE_TEST_STALL={}: ignored (expected WORKER:MILLISECONDS)", v);
    return std::nullopt;
  }
  return t;
}

// SLUICE_TEST_SLOW=WORKER:NS (tests only): worker WORKER spins NS ns per packet it processes.
struct TestSlow {
  unsigned worker = 0;
  uint64_t ns_per_packet = 0;
};
std::optional<TestSlow> test_slow() {
  const char* v = std::getenv("SLUICE_TEST_SLOW");
  if (v == nullptr || *v == '\0') return std::nullopt;
  TestSlow t;
  if (std::sscanf(v, "%u:%lu", &t.worker, &t.ns_per_packet) != 2) {
    spdlog::warn("SLUICE_TEST_SLOW={}: ignored (expected WORKER:NANOSECONDS)", v);
    return std::nullopt;
  }
  return t;
}

// distribute: ring: one SP/SC ring of rings.size from each ring port's poller (worker
// port mod workers, pipeline::rx_queues_of) to every other worker, on the receiver's socket.
Result<void> setup_hand_off(Appliance& a) {
  const auto& conf = a.cfg->appliance;
  const size_t nw = conf.workers.lcores.size();
  a.hand_off.assign(a.ports->size(), {});
  for (size_t p = 0; p < a.ports->size(); ++p) {
    const auto& pi = a.ports->ports()[p];
    if (!pi.ring) continue;
    auto& row = a.hand_off[p];
    row.assign(nw, nullptr);
    const size_t poller = p % nw;
    for (size_t k = 0; k < nw; ++k) {
      if (k == poller) continue;
      const std::string name = fmt::format("sluice_ho_{}_{}", p, k);
      const auto socket = static_cast<int>(rte_lcore_to_socket_id(conf.workers.lcores[k]));
      rte_ring* r =
          rte_ring_create(name.c_str(), conf.rings.size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (r == nullptr) {
        return Error{
            fmt::format("port '{}': cannot create hand-off ring {} of {} entries on "
                        "socket {}: {}",
                        pi.name, name, conf.rings.size, socket, rte_strerror(rte_errno))};
      }
      row[k] = r;
    }
    spdlog::info(
        "port '{}': worker {} (lcore {}) spreads its RX queue over {} workers by "
        "symmetric flow hash, rings of {}",
        pi.name, poller, conf.workers.lcores[poller], nw, conf.rings.size);
  }
  return {};
}

// Frees the hand-off rings and whatever they still hold, which it returns: nothing after a
// clean stop (each worker drains its inboxes once their producers stop, worker_main).
uint64_t free_hand_off(Appliance& a) {
  uint64_t left = 0;
  std::array<rte_mbuf*, 64> m;
  for (auto& row : a.hand_off) {
    for (rte_ring*& r : row) {
      if (r == nullptr) continue;
      unsigned n;
      while ((n = rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(m.data()), m.size(),
                                            nullptr)) != 0) {
        rte_pktmbuf_free_bulk(m.data(), n);
        left += n;
      }
      rte_ring_free(r);
      r = nullptr;
    }
  }
  a.hand_off.clear();
  return left;
}

// Waits until lcore has returned from its function, at most until deadline.
bool wait_lcore_until(unsigned lcore, Appliance::Clock::time_point deadline) {
  while (rte_eal_get_lcore_state(lcore) == RUNNING) {
    if (Appliance::Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  rte_eal_wait_lcore(lcore);
  return true;
}

}  // namespace

std::string eal_lcore_list() {
  std::vector<unsigned> ids;
  unsigned id;
  RTE_LCORE_FOREACH(id) {
    ids.push_back(id);
  }
  return fmt::format("{}", fmt::join(ids, ","));
}

Result<simd::Kernel> choose_kernel(const std::string& choice) {
  const unsigned max_bits = rte_vect_get_max_simd_bitwidth();
  std::string has;
  for (simd::Kernel k : simd::kKernels) {
    if (simd::kernel_supported(k)) has += (has.empty() ? "" : ", ") + std::string(kernel_name(k));
  }
  simd::Kernel k = simd::best_kernel(max_bits);
  if (choice == "avx512") {
    return Error{fmt::format(
        "--simd avx512: this build has no AVX-512 kernel: one was written and measured slower "
        "than the AVX2 kernel on 64 B IPv4/UDP (8.5 against 7.9 TSC cycles per packet on a Xeon "
        "with AVX-512, 8.3 against 5.8 on AMD Zen 4), so sluice ships AVX2; use --simd avx2 or "
        "--simd auto (this CPU runs: {})",
        has)};
  }
  if (choice != "auto") {
    k = *simd::kernel_from_name(choice);  // parse_options checked the name
    if (!simd::kernel_supported(k)) {
      return Error{fmt::format(
          "--simd {}: this CPU does not support {} (it runs: {}); use --simd auto or --simd "
          "scalar",
          choice, choice, has)};
    }
    if (simd::kernel_bitwidth(k) > max_bits) {
      return Error{
          fmt::format("--simd {}: needs {}-bit SIMD but EAL allows {} bits; add "
                      "--force-max-simd-bitwidth={} to the EAL options, or use --simd auto",
                      choice, simd::kernel_bitwidth(k), max_bits, simd::kernel_bitwidth(k))};
    }
  }
  spdlog::info("simd: {} kernel ({}; CPU runs {}; EAL max SIMD bitwidth {})", kernel_name(k),
               choice == "auto" ? "auto" : "--simd", has, max_bits);
  return k;
}

Result<void> Appliance::assemble(std::shared_ptr<const config::Config> config, simd::Kernel k) {
  cfg = std::move(config);
  kernel = k;
  const auto& conf = cfg->appliance;
  if (auto r = check_lcores(conf); !r) return r;
  // Worker lcores that share their CPU with the kernel's housekeeping see its jitter.
  std::vector<unsigned> cpus;
  for (unsigned l : conf.workers.lcores) {
    const rte_cpuset_t set = rte_lcore_cpuset(l);
    unsigned cpu = l;
    for (unsigned c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) {
        cpu = c;
        break;
      }
    }
    cpus.push_back(cpu);
  }
  for (const auto& w : sys::isolation_warnings(conf.workers.lcores, cpus)) spdlog::warn("{}", w);
  auto topo = sys::Topology::load();
  if (!topo) spdlog::warn("{}; NUMA placement falls back to DPDK's view", topo.error());

  auto p = port::Ports::open(conf, topo ? &*topo : nullptr, capture_buffer_mib(conf));
  if (!p) return Error{p.error()};
  ports = std::move(*p);

  // Generation 1 of the rules; the flows stay shared with the config (no copy).
  std::vector<int> worker_sockets;
  for (unsigned l : conf.workers.lcores) {
    worker_sockets.push_back(static_cast<int>(rte_lcore_to_socket_id(l)));
  }
  auto store = flow::RuleStore::create(std::shared_ptr<const config::Flows>(cfg, &cfg->flows),
                                       worker_sockets, ports->ports()[0].socket);
  if (!store) {
    return Error{
        fmt::format("{}: cannot compile the flow rules: {}", cfg->flows.path, store.error())};
  }
  rules = std::move(*store);
  // A callback dpdk-dumpcap's rte_pdump removes is waited out by these readers.
  port::set_callback_readers(rules->qsbr());
  const flow::FlowTable& table = *rules->current().table;
  spdlog::info("flows {}: {} rules (IPv4 table {}, IPv6 table {})", cfg->flows.path,
               table.rule_count(), table.rules_v4(), table.rules_v6());

  std::vector<uint16_t> port_ids;
  std::vector<pipeline::PortQueues> queues;
  for (size_t i = 0; i < ports->size(); ++i) {
    const auto& pi = ports->ports()[i];
    port_ids.push_back(pi.port_id);
    queues.push_back({pi.port_id, static_cast<uint8_t>(i), pi.rx_queues, pi.ring});
  }
  if (auto r = setup_hand_off(*this); !r) return r;
  const auto stall = test_stall();
  const auto slow = test_slow();
  const size_t nw = conf.workers.lcores.size();
  Result<void> failed;
  for (size_t wi = 0; wi < nw; ++wi) {
    auto w = std::make_unique<pipeline::Worker>();
    w->lcore = conf.workers.lcores[wi];
    w->index = static_cast<unsigned>(wi);
    w->tx_queue = static_cast<uint16_t>(wi);
    w->burst = static_cast<uint16_t>(conf.workers.burst);
    w->rules = rules->published();
    w->qsbr = rules->qsbr();
    w->stop = &g_stop;
    pipeline::use_kernel(*w, kernel);
    w->flow_cache_entries = conf.workers.flow_cache;
    w->rx = pipeline::rx_queues_of(w->index, static_cast<unsigned>(nw), queues);
    w->nb_workers = static_cast<unsigned>(nw);
    for (auto& q : w->rx) {
      if (!hand_off[q.port_index].empty()) q.spread = hand_off[q.port_index].data();
      q.counted = ports->rx_counters(q.port_index, q.queue);
    }
    for (size_t pi = 0; pi < hand_off.size(); ++pi) {
      if (!hand_off[pi].empty() && hand_off[pi][wi] != nullptr) {
        w->inbox.push_back({hand_off[pi][wi], static_cast<uint8_t>(pi)});
      }
    }
    if (slow && slow->worker == wi) {
      w->test_slow_cycles = slow->ns_per_packet * rte_get_tsc_hz() / 1'000'000'000;
      spdlog::warn("test hook SLUICE_TEST_SLOW: worker {} on lcore {} spins {} ns per packet", wi,
                   w->lcore, slow->ns_per_packet);
    }
    if (stall && stall->worker == wi) {
      w->test_stall_tsc = rte_rdtsc() + stall->after_ms * rte_get_tsc_hz() / 1000;
      spdlog::warn("test hook SLUICE_TEST_STALL: worker {} on lcore {} hangs {} ms from now", wi,
                   w->lcore, stall->after_ms);
    }
    // Every worker is kept, prepared or not, so teardown releases what each did allocate.
    if (auto r = pipeline::worker_prepare(*w, port_ids, worker_sockets[wi]); !r && failed) {
      failed = r;
    }
    workers.push_back(std::move(w));
  }
  // Each inbox's producer: the worker whose RX queue spreads into that ring. At stop the
  // receiver drains the ring until that worker has stopped handing packets on.
  for (auto& w : workers) {
    for (auto& in : w->inbox) {
      for (const auto& p : workers) {
        for (const auto& q : p->rx) {
          if (q.spread != nullptr && q.spread[w->index] == in.ring) {
            in.producer_stopped = &p->rx_stopped;
          }
        }
      }
      if (in.producer_stopped == nullptr) {
        return Error{
            fmt::format("internal error: worker {}'s hand-off ring for port {} has no "
                        "distributor",
                        w->index, in.port_index)};
      }
    }
  }
  if (!failed) return failed;
  if (conf.capture) {
    if (auto r = setup_capture(*this); !r) return r;
  }
  if (conf.telemetry.prometheus) {
    prometheus = std::make_unique<stats::PrometheusServer>();
    if (auto r = prometheus->start(*conf.telemetry.prometheus); !r) {
      return Error{fmt::format("{}: {}", conf.telemetry.prometheus_mark.str(), r.error())};
    }
    spdlog::info("prometheus: serving http://{}/metrics", *conf.telemetry.prometheus);
  }
  reload = std::make_unique<ReloadControl>(*rules, conf, cfg->flows.path);
  if (auto r = reload->start(); !r) return r;
  return ports->start();
}

Result<void> Appliance::launch() {
  const auto& conf = cfg->appliance;
  started = Clock::now();
  liveness.emplace(workers.size(), started);
  if (capture) {
    if (int r =
            rte_eal_remote_launch(capture::CaptureLcore::main, capture.get(), conf.capture->lcore);
        r != 0) {
      capture.reset();
      return Error{fmt::format("capture: cannot launch on lcore {}: {}", conf.capture->lcore,
                               rte_strerror(-r))};
    }
    spdlog::info("capture on lcore {}: {} rings of {} from the workers", conf.capture->lcore,
                 capture_rings.size(), conf.rings.size);
  }
  for (auto& w : workers) {
    if (int r = rte_eal_remote_launch(pipeline::worker_main, w.get(), w->lcore); r != 0) {
      // This worker and the ones after it never ran: nothing to wait for, and nothing they
      // will hand on for the running ones to drain at stop.
      for (size_t k = launched; k < workers.size(); ++k) workers[k]->rx_stopped.store(true);
      return Error{fmt::format("worker {}: cannot launch on lcore {}: {}", w->index, w->lcore,
                               rte_strerror(-r))};
    }
    ++launched;
    spdlog::info("worker {} on lcore {}: {} RX queues", w->index, w->lcore, w->rx.size());
  }
  return {};
}

bool Appliance::observe(Clock::time_point now) {
  bool changed = false;
  // A reading of every port's counters moves sluice's totals on: TX is the driver's count
  // alone, and net_memif hides it once its peer leaves, so what was sent is kept only if it
  // was read while the peer was there. Read at every liveness sample, asked for or not.
  for (size_t i = 0; i < ports->size(); ++i) (void)ports->stats(i);
  std::vector<uint64_t> beats;
  beats.reserve(workers.size());
  for (const auto& w : workers) beats.push_back(w->counters.loops.get());
  for (const auto& c : liveness->update(beats, now)) {
    const auto& w = *workers[c.worker];
    if (c.stalled) {
      spdlog::error(
          "worker {} on lcore {}: no progress for {} ms (stalled); /sluice/health says stalled "
          "and the systemd watchdog is no longer fed",
          w.index, w.lcore, c.idle_ms);
    } else {
      spdlog::warn("worker {} on lcore {}: making progress again after {} ms", w.index, w.lcore,
                   c.idle_ms);
    }
    changed = true;
  }
  sys::watchdog_hold(liveness->any_stalled());
  if (capture) {
    const uint64_t e = capture->counters().write_errors.get();
    if (e != capture_errors_seen) {
      if (capture_errors_seen == 0 || now - capture_errors_at > std::chrono::seconds(5)) {
        changed = true;
      }
      capture_errors_seen = e;
      capture_errors_at = now;
    }
  }
  return changed;
}

stats::Snapshot Appliance::snapshot() const {
  const auto now = Clock::now();
  stats::Snapshot s;
  s.uptime_s = std::chrono::duration<double>(now - started).count();
  s.simd = std::string(simd::kernel_name(kernel));
  for (size_t i = 0; i < ports->size(); ++i) s.ports.push_back(ports->stats(i));
  std::vector<const stats::WorkerCounters*> wc;
  for (const auto& w : workers) {
    wc.push_back(&w->counters);
    stats::WorkerSnapshot ws = stats::worker_snapshot(w->counters, w->index, w->lcore);
    if (liveness) {
      ws.idle_ms = liveness->idle_ms(w->index);
      ws.stalled = liveness->stalled(w->index);
    }
    s.workers.push_back(std::move(ws));
  }
  stats::sum_workers(s, wc);
  s.rules = rules->rule_totals(workers.size() > 1 ? &s.rule_workers : nullptr);
  if (reload) {
    const flow::ReloadStats& r = reload->stats();
    s.reload.generation = r.generation;
    s.reload.ok = r.ok;
    s.reload.failed = r.failed;
    s.reload.last_error = r.last_error;
  }
  auto levels = ports->pool_levels();
  s.mempool.total = levels.total;
  s.mempool.available = levels.available;
  s.flow_cache.entries = cfg->appliance.workers.flow_cache;
  if (capture) {
    const capture::CaptureCounters& c = capture->counters();
    const uint64_t cut = c.cut.get();
    s.capture.enabled = true;
    s.capture.packets = c.packets.get() - std::min(cut, c.packets.get());
    s.capture.bytes = c.bytes.get();
    s.capture.chunks = c.chunks.get();
    s.capture.segments = c.segments.get();
    // Copies refused by a full ring (the workers' capture_full) and those the capture lcore
    // could not record.
    s.capture.dropped = s.drops[static_cast<size_t>(stats::Drop::kCaptureFull)] + c.dropped.get();
    s.capture.write_errors = c.write_errors.get();
    s.capture.bytes_written = c.bytes_written.get();
    s.capture.busy_cycles = c.busy_cycles.get();
    for (rte_ring* r : capture_rings) {
      s.capture.ring_used += rte_ring_count(r);
      s.capture.ring_capacity += rte_ring_get_capacity(r);
    }
  }

  // Health: the worst of what is wrong, and every reason.
  std::vector<std::string> why;
  for (const auto& w : s.workers) {
    if (w.stalled) {
      why.push_back(
          fmt::format("worker {} on lcore {}: no progress for {} ms", w.index, w.lcore, w.idle_ms));
    }
  }
  s.health.status = why.empty() ? "ok" : "stalled";
  if (rules->retiring() >= flow::RuleStore::kMaxRetiring) {
    why.push_back(
        fmt::format("{} replaced rule generations wait for their grace period: reloads "
                    "are refused",
                    rules->retiring()));
  }
  if (capture) {
    s.health.capture = "ok";
    if (capture_errors_seen != 0 && now - capture_errors_at < std::chrono::seconds(5)) {
      s.health.capture = "failing";
      why.push_back(fmt::format("capture: {} write errors, the last {:.1f} s ago",
                                capture_errors_seen,
                                std::chrono::duration<double>(now - capture_errors_at).count()));
    }
  }
  if (s.health.status == "ok" && !why.empty()) s.health.status = "degraded";
  s.health.reason = fmt::format("{}", fmt::join(why, "; "));
  return s;
}

std::vector<unsigned> Appliance::stop_lcores(Clock::duration limit) {
  g_stop.store(true);
  std::vector<unsigned> stuck;
  const auto deadline = Clock::now() + limit;
  for (size_t i = 0; i < launched; ++i) {
    const auto& w = workers[i];
    if (!wait_lcore_until(w->lcore, deadline)) {
      spdlog::error(
          "worker {} on lcore {} did not stop within {:.1f} s (no progress for {} ms): it is "
          "stuck; sluice exits without freeing what it uses",
          w->index, w->lcore, std::chrono::duration<double>(limit).count(),
          liveness ? liveness->idle_ms(w->index) : 0);
      stuck.push_back(w->lcore);
      continue;
    }
    while (!w->exited.load(std::memory_order_acquire)) rte_pause();  // true once waited
  }
  // With a worker stuck, its capture ring may still be written: leave the capture lcore be.
  if (capture && stuck.empty()) {
    capture->request_stop();
    if (!wait_lcore_until(cfg->appliance.capture->lcore, Clock::now() + 2 * limit)) {
      spdlog::error("capture on lcore {} did not stop within {:.1f} s: it is stuck",
                    cfg->appliance.capture->lcore,
                    std::chrono::duration<double>(2 * limit).count());
      stuck.push_back(cfg->appliance.capture->lcore);
    } else {
      while (!capture->exited()) rte_pause();
    }
  }
  return stuck;
}

stats::Snapshot Appliance::teardown() {
  if (prometheus) prometheus->stop();
  stats::Snapshot s;
  if (!ports) return s;
  // Port counters are final once the workers have returned; read them before stopping the
  // ports, because some drivers forget them on stop (net_memif hides them on disconnect).
  if (rules) s = snapshot();
  ports->stop();
  ports->close();
  for (auto& w : workers) pipeline::worker_release(*w);
  if (const uint64_t left = free_hand_off(*this); left != 0) {
    spdlog::warn("hand-off rings: {} packets in flight at stop were freed", left);
  }
  capture.reset();
  for (rte_ring* r : capture_rings) rte_ring_free(r);
  capture_rings.clear();
  auto levels = ports->pool_levels();
  s.mempool.total = levels.total;
  s.mempool.available = levels.available;
  if (levels.available != levels.total) {
    spdlog::error("mempool: {} of {} mbufs not returned at exit (leak)",
                  levels.total - levels.available, levels.total);
  } else {
    spdlog::info("mempool: all {} mbufs returned", levels.total);
  }
  return s;
}

Appliance::~Appliance() {
  reload.reset();
  capture.reset();
  for (rte_ring* r : capture_rings) rte_ring_free(r);
  free_hand_off(*this);
  workers.clear();
  port::set_callback_readers(nullptr);
  rules.reset();  // every generation: the workers are stopped
  ports.reset();
}

}  // namespace sluice::app
