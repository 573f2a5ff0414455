// sluice: startup order, signals, the control-plane loop, a clean stop, exit codes.
// Only this file decides to exit the process.

#include <malloc.h>
#include <poll.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>
#include <rte_ring.h>
#include <rte_vect.h>
#include <rte_version.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <vector>

#include "app/check.h"
#include "app/options.h"
#include "app/reload_control.h"
#include "lib/capture/capture_lcore.h"
#include "lib/capture/handoff.h"
#include "lib/config/config.h"
#include "lib/flow/rule_store.h"
#include "lib/pipeline/worker.h"
#include "lib/port/ports.h"
#include "lib/stats/prometheus.h"
#include "lib/stats/snapshot.h"
#include "lib/stats/telemetry.h"
#include "lib/sys/log.h"
#include "lib/sys/notify.h"
#include "lib/sys/topology.h"
#include "sluice_build_config.h"

namespace {

using namespace sluice;
using Clock = std::chrono::steady_clock;

enum Exit : int { kExitOk = 0, kExitConfig = 1, kExitStartup = 2, kExitRuntime = 3 };

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_signal(int sig) {
  if (sig == SIGHUP) {
    app::ReloadControl::request_from_signal();
    return;
  }
  g_signal.store(sig);
  g_stop.store(true);
  app::ReloadControl::wake();
}

void install_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

std::string eal_lcore_list() {
  std::vector<unsigned> ids;
  unsigned id;
  RTE_LCORE_FOREACH(id) {
    ids.push_back(id);
  }
  return fmt::format("{}", fmt::join(ids, ","));
}

// Everything the running appliance owns; torn down in reverse order.
struct Appliance {
  std::shared_ptr<const config::Config> cfg;
  std::unique_ptr<port::Ports> ports;
  std::unique_ptr<flow::RuleStore> rules;
  std::unique_ptr<app::ReloadControl> reload;
  std::vector<std::unique_ptr<pipeline::Worker>> workers;
  std::vector<rte_ring*> capture_rings;  // one per worker
  std::unique_ptr<capture::CaptureLcore> capture;
  std::unique_ptr<stats::PrometheusServer> prometheus;
  simd::Kernel kernel = simd::Kernel::kScalar;
  Clock::time_point started;

  stats::Snapshot snapshot() const {
    stats::Snapshot s;
    s.uptime_s = std::chrono::duration<double>(Clock::now() - started).count();
    s.simd = std::string(simd::kernel_name(kernel));
    for (size_t i = 0; i < ports->size(); ++i) s.ports.push_back(ports->stats(i));
    std::vector<const stats::WorkerCounters*> wc;
    for (const auto& w : workers) wc.push_back(&w->counters);
    stats::sum_workers(s, wc);
    s.rules = rules->rule_totals();
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
    return s;
  }

  // Stops the workers, then the capture lcore once nothing more can reach its rings.
  void stop_lcores() {
    for (const auto& w : workers) {
      rte_eal_wait_lcore(w->lcore);
      while (!w->exited.load(std::memory_order_acquire)) rte_pause();  // true once waited
    }
    if (capture) {
      capture->request_stop();
      rte_eal_wait_lcore(cfg->appliance.capture->lcore);
      while (!capture->exited()) rte_pause();
    }
  }
};

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

// The validation kernel: --simd NAME (checked against the CPU and EAL's max SIMD bitwidth), or
// auto, the best the CPU runs within that bitwidth (DPDK's x86 default is 256 bits).
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

int write_stats(const std::string& path, const stats::Snapshot& s) {
  std::ofstream f(path, std::ios::trunc);
  f << stats::to_json(s);
  f.close();
  if (!f) {
    spdlog::error("--stats-out: cannot write {}", path);
    return 1;
  }
  spdlog::info("statistics written to {}", path);
  return 0;
}

int run(const app::Options& opt, std::shared_ptr<const config::Config> cfg) {
  const auto& conf = cfg->appliance;
  // EAL may not see the lcore list we expect; everything after this is exit 2 on failure.
  std::vector<char*> eal_argv;
  std::vector<std::string> eal_args = opt.eal_args;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    spdlog::error(
        "EAL initialisation failed: {}; check the EAL options before \"--\" "
        "(hugepages: echo 512 > /proc/sys/vm/nr_hugepages and a hugetlbfs mount, or run with "
        "--no-huge)",
        rte_strerror(rte_errno));
    return kExitStartup;
  }
  install_signals();
  spdlog::info("sluice {} on {}, main lcore {}, EAL lcores {}, TSC {} Hz", SLUICE_VERSION,
               rte_version(), rte_get_main_lcore(), eal_lcore_list(), rte_get_tsc_hz());

  Appliance a;
  a.cfg = cfg;
  int rc = kExitOk;
  {
    auto kernel = choose_kernel(opt.simd);
    if (!kernel) {
      spdlog::error("{}", kernel.error());
      rte_eal_cleanup();
      return kExitStartup;
    }
    a.kernel = *kernel;
    if (auto r = check_lcores(conf); !r) {
      spdlog::error("{}", r.error());
      rte_eal_cleanup();
      return kExitStartup;
    }
    auto topo = sys::Topology::load();
    if (!topo) spdlog::warn("{}; NUMA placement falls back to DPDK's view", topo.error());

    auto ports = port::Ports::open(conf, topo ? &*topo : nullptr);
    if (!ports) {
      spdlog::error("{}", ports.error());
      rte_eal_cleanup();
      return kExitStartup;
    }
    a.ports = std::move(*ports);

    // Generation 1 of the rules; the flows stay shared with the config (no copy).
    std::vector<int> worker_sockets;
    for (unsigned l : conf.workers.lcores) {
      worker_sockets.push_back(static_cast<int>(rte_lcore_to_socket_id(l)));
    }
    auto rules = flow::RuleStore::create(std::shared_ptr<const config::Flows>(cfg, &cfg->flows),
                                         worker_sockets, a.ports->ports()[0].socket);
    if (!rules) {
      spdlog::error("{}: cannot compile the flow rules: {}", cfg->flows.path, rules.error());
      a.ports.reset();
      rte_eal_cleanup();
      return kExitStartup;
    }
    a.rules = std::move(*rules);
    const flow::FlowTable& table = *a.rules->current().table;
    spdlog::info("flows {}: {} rules (IPv4 table {}, IPv6 table {})", cfg->flows.path,
                 table.rule_count(), table.rules_v4(), table.rules_v6());

    std::vector<uint16_t> port_ids;
    for (const auto& p : a.ports->ports()) port_ids.push_back(p.port_id);
    const size_t nw = conf.workers.lcores.size();
    for (size_t wi = 0; wi < nw; ++wi) {
      auto w = std::make_unique<pipeline::Worker>();
      w->lcore = conf.workers.lcores[wi];
      w->index = static_cast<unsigned>(wi);
      w->tx_queue = static_cast<uint16_t>(wi);
      w->burst = static_cast<uint16_t>(conf.workers.burst);
      w->rules = a.rules->published();
      w->qsbr = a.rules->qsbr();
      w->stop = &g_stop;
      w->validate = simd::kernel_fn(a.kernel);
      w->flow_cache_entries = conf.workers.flow_cache;
      for (size_t p = 0; p < a.ports->size(); ++p) {
        const auto& pi = a.ports->ports()[p];
        for (uint16_t q = 0; q < pi.rx_queues; ++q) {
          if (q % nw == wi) w->rx.push_back({pi.port_id, static_cast<uint8_t>(p), q});
        }
      }
      auto r = pipeline::worker_prepare(*w, port_ids, worker_sockets[wi]);
      if (!r) {
        spdlog::error("{}", r.error());
        rc = kExitStartup;
      }
      a.workers.push_back(std::move(w));
    }
    if (rc == kExitOk && conf.capture) {
      if (auto r = setup_capture(a); !r) {
        spdlog::error("{}", r.error());
        rc = kExitStartup;
      }
    }
    if (rc == kExitOk && conf.telemetry.prometheus) {
      a.prometheus = std::make_unique<stats::PrometheusServer>();
      if (auto r = a.prometheus->start(*conf.telemetry.prometheus); !r) {
        spdlog::error("{}: {}", conf.telemetry.prometheus_mark.str(), r.error());
        rc = kExitStartup;
      } else {
        spdlog::info("prometheus: serving http://{}/metrics", *conf.telemetry.prometheus);
      }
    }
    if (rc == kExitOk) {
      a.reload = std::make_unique<app::ReloadControl>(*a.rules, conf, cfg->flows.path);
      if (auto r = a.reload->start(); !r) {
        spdlog::error("{}", r.error());
        rc = kExitStartup;
      }
    }
    if (rc == kExitOk) {
      if (auto r = a.ports->start(); !r) {
        spdlog::error("{}", r.error());
        rc = kExitStartup;
      }
    }
  }

  if (rc == kExitOk) {
    a.started = Clock::now();
    if (a.capture) {
      if (rte_eal_remote_launch(capture::CaptureLcore::main, a.capture.get(),
                                conf.capture->lcore) != 0) {
        spdlog::error("capture: cannot launch on lcore {}", conf.capture->lcore);
        rc = kExitStartup;
        g_stop.store(true);
        a.capture.reset();
      } else {
        spdlog::info("capture on lcore {}: {} rings of {} from the workers", conf.capture->lcore,
                     a.capture_rings.size(), conf.rings.size);
      }
    }
    for (auto& w : a.workers) {
      // A worker that never ran has nothing to wait for.
      if (g_stop.load()) {
        w->exited.store(true);
        continue;
      }
      if (rte_eal_remote_launch(pipeline::worker_main, w.get(), w->lcore) != 0) {
        spdlog::error("worker {}: cannot launch on lcore {}", w->index, w->lcore);
        rc = kExitStartup;
        g_stop.store(true);
        w->exited.store(true);
        continue;
      }
      spdlog::info("worker {} on lcore {}: {} RX queues", w->index, w->lcore, w->rx.size());
    }
    stats::telemetry_register();
    sys::notify_ready();
    sys::notify_status("forwarding");
    spdlog::info("running{}", opt.duration_s > 0 ? fmt::format(" for {} s", opt.duration_s) : "");

    const auto watchdog = sys::watchdog_interval();
    auto next_stats = a.started + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(opt.stats_period_s));
    auto next_watchdog = a.started;
    auto next_metrics = a.started;
    stats::Snapshot prev = a.snapshot();
    auto prev_time = a.started;
    while (!g_stop.load()) {
      // Sleep until a reload trigger, a signal, or the next 20 ms tick (stats, watchdog).
      auto fds = a.reload->fds();
      int timeout = 20;
      const auto before = Clock::now();
      if (int t = a.reload->timeout_ms(before); t >= 0) timeout = std::min(timeout, t);
      poll(fds.data(), fds.size(), timeout);
      const auto now = Clock::now();
      if (now - before > std::chrono::milliseconds(timeout) + std::chrono::seconds(1)) {
        spdlog::warn("control loop: a {} ms wait took {:.1f} s (main lcore starved of CPU?)",
                     timeout, std::chrono::duration<double>(now - before).count());
      }
      if (opt.duration_s > 0 &&
          std::chrono::duration<double>(now - a.started).count() >= opt.duration_s) {
        break;
      }
      for (const auto& w : a.workers) {
        if (rte_eal_get_lcore_state(w->lcore) != RUNNING && !g_stop.load()) {
          spdlog::error("worker on lcore {} stopped unexpectedly", w->lcore);
          rc = kExitRuntime;
          g_stop.store(true);
        }
      }
      if (a.capture && rte_eal_get_lcore_state(conf.capture->lcore) != RUNNING && !g_stop.load()) {
        spdlog::error("capture on lcore {} stopped unexpectedly", conf.capture->lcore);
        rc = kExitRuntime;
        g_stop.store(true);
      }
      a.reload->run(now);
      if (opt.stats_period_s > 0 && now >= next_stats) {
        stats::Snapshot s = a.snapshot();
        std::fputs(stats::to_table(s, &prev, std::chrono::duration<double>(now - prev_time).count())
                       .c_str(),
                   stdout);
        std::fflush(stdout);
        prev = std::move(s);
        prev_time = now;
        next_stats = now + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(opt.stats_period_s));
      }
      if (now >= next_metrics) {
        // Telemetry and Prometheus serve this copy from their own threads.
        stats::Snapshot s = a.snapshot();
        if (a.prometheus) a.prometheus->publish(stats::to_prometheus(s));
        stats::telemetry_publish(s);
        next_metrics = now + std::chrono::milliseconds(500);
      }
      if (watchdog.count() > 0 && now >= next_watchdog) {
        sys::notify_watchdog();
        next_watchdog = now + watchdog / 2;
      }
    }
    if (int sig = g_signal.load()) spdlog::info("signal {} received: stopping", strsignal(sig));
    sys::notify_stopping();
    a.reload->stop();
    g_stop.store(true);
    a.stop_lcores();
  }

  // Clean stop: workers have flushed their TX buffers; read the final counters, stop and
  // close the ports (their queues give every mbuf back), then check the pools.
  if (a.prometheus) a.prometheus->stop();
  if (a.ports) {
    // Port counters are final once the workers have returned; read them before stopping the
    // ports, because some drivers forget them on stop (net_memif hides them on disconnect).
    stats::Snapshot s;
    if (a.rules) s = a.snapshot();
    a.ports->stop();
    a.ports->close();
    for (auto& w : a.workers) pipeline::worker_release(*w);
    a.capture.reset();
    for (rte_ring* r : a.capture_rings) rte_ring_free(r);
    a.capture_rings.clear();
    auto levels = a.ports->pool_levels();
    s.mempool.total = levels.total;
    s.mempool.available = levels.available;
    if (levels.available != levels.total) {
      spdlog::error("mempool: {} of {} mbufs not returned at exit (leak)",
                    levels.total - levels.available, levels.total);
    } else {
      spdlog::info("mempool: all {} mbufs returned", levels.total);
    }
    if (a.rules && rc != kExitStartup) {
      if (opt.stats_period_s > 0) std::fputs(stats::to_table(s, nullptr, 0).c_str(), stdout);
      uint64_t drops = 0;
      for (auto d : s.drops) drops += d;
      uint64_t rx = 0, tx = 0;
      for (const auto& p : s.ports) {
        rx += p.rx_packets;
        tx += p.tx_packets;
      }
      spdlog::info("stopped after {:.1f} s: rx {} packets, tx {} packets, dropped {}", s.uptime_s,
                   rx, tx, drops);
      if (!opt.stats_out.empty() && write_stats(opt.stats_out, s) != 0 && rc == kExitOk) {
        rc = kExitRuntime;
      }
    }
  }
  a.reload.reset();
  a.capture.reset();
  for (rte_ring* r : a.capture_rings) rte_ring_free(r);
  a.workers.clear();
  a.rules.reset();  // every generation: the workers are stopped
  a.ports.reset();
  rte_eal_cleanup();
  return rc;
}

// A reload parses and compiles on the main lcore with malloc (yaml-cpp, rte_acl's build pool).
// Memory glibc hands back to the kernel and takes again next time is first touched anew, and
// replacing those zero-page mappings flushes the TLB of every CPU the process runs on: the
// workers took about 1,200 shootdown interrupts per 1,000-rule reload. Keeping up to 256 MiB
// of freed heap (and serving blocks up to 32 MiB from it rather than from fresh mmaps) lets
// the next reload reuse warm pages: 3 interrupts in 47 reloads. A reload that needs more
// (100k rules: about 1.7 GB for a moment) still gives the excess back.
void keep_reload_heap() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  keep_reload_heap();
  auto opt = app::parse_options(argc, argv);
  if (!opt) {
    std::fprintf(stderr, "sluice: %s\n", opt.error().c_str());
    return kExitConfig;
  }
  if (opt->help) {
    std::fputs(app::usage(argv[0]).c_str(), stdout);
    return kExitOk;
  }
  if (opt->version) {
    std::printf("sluice %s (%s)\n", SLUICE_VERSION, rte_version());
    return kExitOk;
  }
  sys::log_setup(opt->log_level.value_or(spdlog::level::info));

  auto cfg = config::load(opt->config);
  if (!cfg) {
    spdlog::error("{}", cfg.error());
    return kExitConfig;
  }
  if (!opt->log_level) {
    static constexpr spdlog::level::level_enum kLevels[] = {
        spdlog::level::trace, spdlog::level::debug, spdlog::level::info, spdlog::level::warn,
        spdlog::level::err};
    spdlog::set_level(kLevels[static_cast<int>((*cfg)->appliance.logging.level)]);
  }
  if (opt->check) {
    Result<std::string> diff = std::string();
    if (!opt->diff.empty()) diff = app::check_diff(**cfg, opt->diff);
    if (!diff) {
      spdlog::error("{}", diff.error());
      return kExitConfig;
    }
    std::fputs(app::check_summary(**cfg).c_str(), stdout);
    std::fputs(diff->c_str(), stdout);
    return kExitOk;
  }
  return run(*opt, *cfg);
}
