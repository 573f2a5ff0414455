// sluice-gen: startup, ports, lanes, the statistics table, the final report, exit codes.

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_version.h>

#include <fmt/format.h>

#include <optional>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "lib/port/eal_exit.h"
#include "lib/stats/snapshot.h"
#include "sluice_build_config.h"
#include "tools/gen/engine.h"
#include "tools/gen/options.h"

namespace {

using namespace sluice;
using namespace sluice::gen;
using Clock = std::chrono::steady_clock;

enum Exit : int { kExitOk = 0, kExitUsage = 1, kExitStartup = 2, kExitRuntime = 3 };

constexpr uint16_t kDescriptors = 1024;
constexpr unsigned kMaxStreamsInJson = 1024;

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) {
  g_signal.store(sig);
  g_stop.store(true);
}

void say(const std::string& line) {
  std::fputs(("sluice-gen: " + line + "\n").c_str(), stderr);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void sleep_s(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

struct Latency {
  uint64_t p50 = 0, p99 = 0, p999 = 0, max = 0;
};

Latency latency_of(const LiveCounters& live) {
  const std::vector<const stats::WorkerCounters*> h = {&live.latency};
  Latency l;
  l.max = live.latency.latency.max();
  // A bucket's upper bound can exceed the largest value seen; never report p > max.
  l.p50 = std::min(stats::percentile(h, 0.50), l.max);
  l.p99 = std::min(stats::percentile(h, 0.99), l.max);
  l.p999 = std::min(stats::percentile(h, 0.999), l.max);
  return l;
}

struct Sample {
  double t = 0;
  uint64_t tx = 0, tx_bytes = 0, rx = 0, rx_bytes = 0;
};

Sample sample(const LiveCounters& c, Clock::time_point start) {
  return {seconds_since(start), c.tx_sent.get(), c.tx_bytes.get(), c.rx_packets.get(),
          c.rx_bytes.get()};
}

std::string table(const Options& o, const Engine& e, const Sample& now, const Sample& prev) {
  const double dt = now.t - prev.t;
  auto rate = [&](uint64_t a, uint64_t b) {
    return dt > 0 ? static_cast<uint64_t>(static_cast<double>(a - b) / dt) : 0;
  };
  const auto& c = e.live;
  std::string out;
  if (o.tx_port != kNoPort) {
    out += fmt::format(
        "  ######################## sluice-gen TX port {} ({}) ########################\n",
        o.tx_port, mode_name(o.mode));
    out += fmt::format("  TX-packets: {:<12} TX-dropped: {:<12} TX-bytes:  {}\n", c.tx_sent.get(),
                       c.tx_attempted.get() - c.tx_sent.get(), c.tx_bytes.get());
    out += fmt::format("  Tx-pps: {:>12}          Tx-bps: {:>12}\n", rate(now.tx, prev.tx),
                       8 * rate(now.tx_bytes, prev.tx_bytes));
  }
  if (o.rx_port != kNoPort) {
    const Latency l = latency_of(c);
    out += fmt::format(
        "  ######################## sluice-gen RX port {} ##############################\n",
        o.rx_port);
    out += fmt::format("  RX-packets: {:<12} RX-stamped: {:<11} RX-bytes:  {}\n",
                       c.rx_packets.get(), c.rx_stamped.get(), c.rx_bytes.get());
    out += fmt::format("  Rx-pps: {:>12}          Rx-bps: {:>12}\n", rate(now.rx, prev.rx),
                       8 * rate(now.rx_bytes, prev.rx_bytes));
    out += fmt::format("  duplicated: {}  reordered: {}  unstamped: {}  unknown stream: {}\n",
                       c.rx_duplicated.get(), c.rx_reordered.get(), c.rx_unstamped.get(),
                       c.rx_unknown_stream.get());
    out +=
        fmt::format("  latency p50/p99/p99.9/max: {}/{}/{}/{} ns\n", l.p50, l.p99, l.p999, l.max);
  }
  out += "  ############################################################################\n";
  return out;
}

struct Ports {
  std::vector<uint16_t> used;
  rte_mempool* pool = nullptr;
  bool started = false;

  void close() {
    for (uint16_t p : used) {
      if (started) rte_eth_dev_stop(p);
      rte_eth_dev_close(p);
    }
    used.clear();
    started = false;
  }
};

Result<void> setup_port(uint16_t port, rte_mempool* pool, uint16_t rx_queues) {
  rte_eth_conf conf{};
  int rc = rte_eth_dev_configure(port, rx_queues, 1, &conf);
  if (rc != 0) return Error{fmt::format("port {}: configure failed: {}", port, rte_strerror(-rc))};
  uint16_t rxd = kDescriptors, txd = kDescriptors;
  rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
  const int socket = rte_eth_dev_socket_id(port);
  const auto sock = static_cast<unsigned>(socket < 0 ? 0 : socket);
  for (uint16_t q = 0; q < rx_queues; ++q) {
    rc = rte_eth_rx_queue_setup(port, q, rxd, sock, nullptr, pool);
    if (rc != 0) {
      return Error{fmt::format("port {}: RX queue {} setup: {}", port, q, rte_strerror(-rc))};
    }
  }
  rc = rte_eth_tx_queue_setup(port, 0, txd, sock, nullptr);
  if (rc != 0) return Error{fmt::format("port {}: TX queue setup: {}", port, rte_strerror(-rc))};
  return {};
}

std::string port_name(uint16_t port) {
  char name[RTE_ETH_NAME_MAX_LEN] = "";
  rte_eth_dev_get_name_by_port(port, name);
  return name;
}

// The CPUs an lcore may run on (EAL's -l N is CPU N; --lcores may map it elsewhere).
std::string cpus_of(unsigned lcore) {
  const rte_cpuset_t set = rte_lcore_cpuset(lcore);
  std::string out;
  for (unsigned c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) out += fmt::format("{}{}", out.empty() ? "" : ",", c);
  }
  return out;
}

bool link_up(uint16_t port) {
  rte_eth_link link{};
  return rte_eth_link_get_nowait(port, &link) == 0 && link.link_status;
}

// The final results: what was sent, what came back, per stream.
std::string results_json(const Options& o, const Engine& e, double tx_seconds, double run_seconds,
                         const std::string& error) {
  const auto& c = e.live;
  const TrafficPlan& plan = *e.txc.plan;
  const bool sender = o.tx_port != kNoPort;
  const bool receiver = o.rx_port != kNoPort;
  std::string j = "{\n";
  j += fmt::format("  \"tool\": \"sluice-gen\", \"version\": \"{}\", \"mode\": \"{}\",\n",
                   SLUICE_VERSION, mode_name(o.mode));
  j += fmt::format("  \"ok\": {}, \"error\": \"{}\",\n", error.empty() ? "true" : "false", error);
  j += fmt::format("  \"rate_pps\": {}, \"burst\": {}, \"tsc_hz\": {}, \"seconds\": {:.6f},\n",
                   o.rate_pps, o.burst, rte_get_tsc_hz(), run_seconds);
  if (sender) {
    const uint64_t attempted = c.tx_attempted.get(), sent = c.tx_sent.get();
    uint64_t valid = 0;
    std::string mal;
    for (size_t i = 0; i < plan.templates.size(); ++i) {
      if (plan.templates[i].expect == simd::Verdict::kOk) valid += e.txs.sent_per_tpl[i];
    }
    for (uint32_t t : plan.malformed) {
      mal += fmt::format("{}\"{}\": {}", mal.empty() ? "" : ", ",
                         simd::verdict_name(plan.templates[t].expect), e.txs.sent_per_tpl[t]);
    }
    j += fmt::format(
        "  \"tx\": {{\"port\": {}, \"attempted\": {}, \"sent\": {}, \"dropped\": {}, \"bytes\": "
        "{}, \"nombuf\": {}, \"skipped\": {}, \"seconds\": {:.6f}, \"offered_pps\": {:.1f}, "
        "\"sent_pps\": {:.1f}, \"valid\": {}, \"malformed\": {{{}}}}},\n",
        o.tx_port, attempted, sent, attempted - sent, c.tx_bytes.get(), c.tx_nombuf.get(),
        c.tx_skipped.get(), tx_seconds,
        tx_seconds > 0 ? static_cast<double>(attempted) / tx_seconds : 0,
        tx_seconds > 0 ? static_cast<double>(sent) / tx_seconds : 0, valid, mal);
  }
  if (receiver) {
    // Lost: packets a stream built that never arrived (as a sender), or gaps below the
    // highest sequence number seen (receive only: the tail of a stream cannot be seen).
    uint64_t lost = 0, unique = 0;
    std::string streams;
    const unsigned ns = e.tracker->streams();
    for (unsigned s = 0; s < ns; ++s) {
      const StreamCounts& sc = e.tracker->counts(s);
      const uint64_t expected = sender ? e.txs.seq[s] : sc.next;
      const uint64_t l = expected > sc.unique ? expected - sc.unique : 0;
      lost += l;
      unique += sc.unique;
      if (s < kMaxStreamsInJson) {
        streams += fmt::format(
            "{}\n    {{\"stream\": {}, \"tx\": {}, \"received\": {}, \"lost\": {}, "
            "\"duplicated\": {}, \"reordered\": {}}}",
            s ? "," : "", s, sender ? e.txs.seq[s] : 0, sc.received, l, sc.duplicated,
            sc.reordered);
      }
    }
    const Latency lat = latency_of(c);
    const double rx_s = sender && tx_seconds > 0 ? tx_seconds : run_seconds;
    j += fmt::format(
        "  \"rx\": {{\"port\": {}, \"packets\": {}, \"bytes\": {}, \"stamped\": {}, \"unique\": "
        "{}, \"unstamped\": {}, \"unknown_stream\": {}, \"lost\": {}, \"duplicated\": {}, "
        "\"reordered\": {}, \"pps\": {:.1f},\n"
        "         \"latency_ns\": {{\"p50\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}}}},\n",
        o.rx_port, c.rx_packets.get(), c.rx_bytes.get(), c.rx_stamped.get(), unique,
        c.rx_unstamped.get(), c.rx_unknown_stream.get(), lost, c.rx_duplicated.get(),
        c.rx_reordered.get(), rx_s > 0 ? static_cast<double>(c.rx_packets.get()) / rx_s : 0,
        lat.p50, lat.p99, lat.p999, lat.max);
    j += fmt::format("  \"streams_listed\": {}, \"streams\": [{}\n  ]\n",
                     std::min(ns, kMaxStreamsInJson), streams);
  } else {
    j += "  \"streams_listed\": 0, \"streams\": []\n";
  }
  j += "}\n";
  return j;
}

int run(Options& o) {
  std::vector<char*> eal_argv;
  for (auto& a : o.eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    say(fmt::format(
        "EAL initialisation failed: {}; check the EAL options before \"--\" (memif between "
        "processes needs hugepages: echo 512 > /proc/sys/vm/nr_hugepages and a hugetlbfs "
        "mount)",
        rte_strerror(rte_errno)));
    return kExitStartup;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM}) sigaction(sig, &sa, nullptr);

  int rc = kExitOk;
  Engine e;
  Ports ports;
  TrafficPlan plan;
  auto fail = [&](const std::string& why, int code) {
    say(why);
    ports.close();
    if (ports.pool) rte_mempool_free(ports.pool);
    port::eal_cleanup_and_tidy();
    return code;
  };

  const unsigned nb_ports = rte_eth_dev_count_avail();
  if (nb_ports == 0) {
    return fail(
        "no ports: give EAL a device, e.g. --vdev "
        "net_memif0,role=client,socket=/tmp/sluice.sock,socket-abstract=no",
        kExitStartup);
  }
  const bool sending = o.mode != Mode::kRxOnly;
  if (o.tx_port == kDefaultPort) o.tx_port = sending ? 0 : kNoPort;
  if (o.rx_port == kDefaultPort) o.rx_port = !sending ? 0 : (nb_ports >= 2 ? 1 : kNoPort);
  if (!sending && o.tx_port != kNoPort)
    return fail("--mode rxonly sends nothing: drop --tx-port", kExitUsage);
  if (sending && o.tx_port == kNoPort) {
    return fail(fmt::format("--mode {} needs a --tx-port", mode_name(o.mode)), kExitUsage);
  }
  for (int p : {o.tx_port, o.rx_port}) {
    if (p != kNoPort && static_cast<unsigned>(p) >= nb_ports) {
      return fail(fmt::format("port {} does not exist: EAL found {} port{} (0..{})", p, nb_ports,
                              nb_ports == 1 ? "" : "s", nb_ports - 1),
                  kExitUsage);
    }
  }
  if (o.tx_port == kNoPort && o.rx_port == kNoPort) return fail("no TX and no RX port", kExitUsage);

  // What to send.
  if (o.mode == Mode::kPcap) {
    auto p = pcap_plan(o.pcap, RTE_MBUF_DEFAULT_DATAROOM);
    if (!p) return fail(p.error(), kExitUsage);
    plan = std::move(*p);
  } else {
    auto p = flow_plan(o.flow);
    if (!p) return fail(p.error(), kExitUsage);
    plan = std::move(*p);
    if (o.mode == Mode::kMalformed) add_malformed(plan, o.flow);
  }
  if (auto v = verify_plan(plan); !v) return fail("internal: " + v.error(), kExitRuntime);
  if (sending) say(plan.summary);
  if (o.mode == Mode::kMalformed) {
    say(fmt::format("malformed: {:.4g}% of frames, {} kinds (every CONTRACT validation reason)",
                    o.malformed_share * 100, plan.malformed.size()));
  }
  // A receiver without a sender knows the streams from the trailers: accept them all.
  const unsigned streams = sending ? std::max(plan.streams, 1u) : kMaxStreams;

  // Ports and lanes.
  ports.pool =
      rte_pktmbuf_pool_create("sluice_gen_pool", o.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                              static_cast<int>(rte_socket_id()));
  if (ports.pool == nullptr) {
    return fail(fmt::format("cannot create a pool of {} mbufs: {}; give EAL more memory "
                            "(--socket-mem) or lower --mbufs",
                            o.mbufs, rte_strerror(rte_errno)),
                kExitStartup);
  }
  for (int p : {o.tx_port, o.rx_port}) {
    if (p == kNoPort) continue;
    const auto port = static_cast<uint16_t>(p);
    if (std::find(ports.used.begin(), ports.used.end(), port) != ports.used.end()) continue;
    ports.used.push_back(port);
    const auto queues = static_cast<uint16_t>(p == o.rx_port ? o.rx_queues : 1);
    if (auto r = setup_port(port, ports.pool, queues); !r) return fail(r.error(), kExitStartup);
  }
  for (uint16_t p : ports.used) {
    int r = rte_eth_dev_start(p);
    if (r != 0) {
      return fail(fmt::format("port {} ({}): start failed: {}", p, port_name(p), rte_strerror(-r)),
                  kExitStartup);
    }
    ports.started = true;
    rte_eth_promiscuous_enable(p);
  }

  std::vector<unsigned> workers;
  unsigned l;
  RTE_LCORE_FOREACH_WORKER(l) {
    workers.push_back(l);
  }
  if (workers.empty()) {
    return fail(
        fmt::format("needs a second lcore to run TX/RX on: give EAL -l {},N", rte_get_main_lcore()),
        kExitUsage);
  }
  const bool tx = o.tx_port != kNoPort, rx = o.rx_port != kNoPort;
  if (tx && rx && workers.size() >= 2) {
    e.lanes = {{workers[0], true, false}, {workers[1], false, true}};
  } else {
    e.lanes = {{workers[0], tx, rx}};
  }
  for (const auto& lane : e.lanes) {
    say(fmt::format("lcore {} (cpu {}): {}", lane.lcore, cpus_of(lane.lcore),
                    lane.tx && lane.rx
                        ? fmt::format("TX port {} + RX port {}", o.tx_port, o.rx_port)
                    : lane.tx ? fmt::format("TX port {}", o.tx_port)
                              : fmt::format("RX port {}", o.rx_port)));
  }

  e.txc.port = static_cast<uint16_t>(std::max(o.tx_port, 0));
  e.txc.pool = ports.pool;
  e.txc.plan = &plan;
  e.txc.malformed_ppm =
      o.mode == Mode::kMalformed ? static_cast<uint32_t>(o.malformed_share * 1e6 + 0.5) : 0;
  e.txc.pps = o.rate_pps;
  e.txc.pkts_per_cycle = o.rate_pps / static_cast<double>(rte_get_tsc_hz());
  e.txc.count = o.count;
  e.txc.duration_cycles =
      static_cast<uint64_t>(o.duration_s * static_cast<double>(rte_get_tsc_hz()));
  e.txc.burst = o.burst;
  e.txc.retry = o.tx_retry;
  e.txc.max_lag_pkts = static_cast<uint64_t>(o.max_lag_us * 1e-6 * o.rate_pps);
  if (o.max_lag_us > 0 && o.rate_pps > 0 && e.txc.max_lag_pkts < o.burst) {
    e.txc.max_lag_pkts = o.burst;  // at least a burst's worth of jitter is made up
  }
  e.rxc.port = static_cast<uint16_t>(std::max(o.rx_port, 0));
  e.rxc.burst = o.burst;
  e.rxc.queues = static_cast<uint16_t>(o.rx_queues);
  e.rxc.ns_per_cycle = 1e9 / static_cast<double>(rte_get_tsc_hz());
  e.txs.seq.assign(streams, 0);
  e.txs.sent_per_tpl.assign(plan.templates.size(), 0);
  e.tracker = std::make_unique<StreamTracker>(rx ? streams : 1);

  // Links: memif comes up when the peer connects.
  const auto link_start = Clock::now();
  for (uint16_t p : ports.used) {
    auto retry_at = Clock::now() + std::chrono::seconds(2);
    while (!link_up(p) && !g_stop.load()) {
      if (Clock::now() > retry_at) {
        // A memif client that knocked before its server's port was started is turned away
        // for good: stopping and starting the port connects again.
        rte_eth_dev_stop(p);
        rte_eth_dev_start(p);
        retry_at = Clock::now() + std::chrono::seconds(2);
      }
      if (seconds_since(link_start) > o.link_timeout_s) {
        return fail(fmt::format("port {} ({}): no link after {} s; is the peer running and "
                                "using the same socket, with the other role?",
                                p, port_name(p), o.link_timeout_s),
                    kExitStartup);
      }
      sleep_s(0.01);
    }
  }
  say(fmt::format("links up after {:.2f} s", seconds_since(link_start)));
  if (!o.start_file.empty()) {
    say(fmt::format("waiting for {} to exist", o.start_file));
    while (access(o.start_file.c_str(), F_OK) != 0 && !g_stop.load()) sleep_s(0.005);
  }
  if (o.start_delay_s > 0) sleep_s(o.start_delay_s);

  // Run.
  std::vector<LaneArg> args;
  args.reserve(e.lanes.size());
  for (const auto& lane : e.lanes) args.push_back({&e, &lane});
  const auto start = Clock::now();
  for (auto& a : args) rte_eal_remote_launch(lane_main, &a, a.lane->lcore);
  // Receivers have polled once (their memif buffers are posted) before "running" is said.
  if (!tx) {
    while (e.live.rx_polls.get() == 0 && !g_stop.load()) sleep_s(0.001);
  }
  say(fmt::format("running: {}{}{}{}", mode_name(o.mode),
                  o.rate_pps > 0 ? fmt::format(", {:.0f} pps", o.rate_pps) : ", unpaced",
                  o.duration_s > 0 ? fmt::format(", {} s", o.duration_s) : "",
                  o.count > 0 ? fmt::format(", {} packets", o.count) : ""));
  Sample prev = sample(e.live, start);
  auto next_table = start + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(o.stats_period_s));
  std::string error;
  std::optional<Clock::time_point> tx_finished;
  const bool rx_bounded = !tx && o.duration_s > 0;
  while (true) {
    sleep_s(0.005);
    const auto now = Clock::now();
    if (g_stop.load()) break;
    if (tx && !tx_finished && e.tx_done.load(std::memory_order_acquire)) tx_finished = now;
    if (tx_finished && std::chrono::duration<double>(now - *tx_finished).count() >= o.drain_s) {
      break;
    }
    if (!tx && rx_bounded && seconds_since(start) >= o.duration_s) break;
    if (!tx_finished) {
      for (uint16_t p : ports.used) {
        if (!link_up(p))
          error = fmt::format(
              "port {} ({}): link went down during the run; the peer stopped or restarted", p,
              port_name(p));
      }
      if (!error.empty()) break;
    }
    if (o.stats_period_s > 0 && now >= next_table) {
      Sample s = sample(e.live, start);
      std::fputs(table(o, e, s, prev).c_str(), stdout);
      std::fflush(stdout);
      prev = s;
      next_table = now + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(o.stats_period_s));
    }
  }
  e.tx_stop.store(true);
  e.rx_stop.store(true);
  rte_eal_mp_wait_lcore();
  if (!tx && o.hold)
    g_stop.store(false);  // the signal that ended receiving; the next ends the hold
  const double run_seconds = seconds_since(start);
  const double tx_seconds = e.txs.end_tsc > e.txs.start_tsc
                                ? static_cast<double>(e.txs.end_tsc - e.txs.start_tsc) /
                                      static_cast<double>(rte_get_tsc_hz())
                                : 0;
  if (int sig = g_signal.load()) say(fmt::format("signal {}: stopped", strsignal(sig)));
  if (error.empty() && tx && e.live.tx_sent.get() == 0) {
    error = fmt::format("port {} took none of the {} packets offered", o.tx_port,
                        e.live.tx_attempted.get());
  }
  if (!error.empty()) {
    say("error: " + error);
    rc = kExitRuntime;
  }

  if (o.stats_period_s > 0) {
    std::fputs(table(o, e, sample(e.live, start), prev).c_str(), stdout);
  }
  const std::string json = results_json(o, e, tx_seconds, run_seconds, error);
  const auto& c = e.live;
  if (tx) {
    say(fmt::format(
        "sent {} of {} packets in {:.3f} s ({:.0f} pps offered), {} refused by the "
        "port{}",
        c.tx_sent.get(), c.tx_attempted.get(), tx_seconds,
        tx_seconds > 0 ? static_cast<double>(c.tx_attempted.get()) / tx_seconds : 0,
        c.tx_attempted.get() - c.tx_sent.get(),
        c.tx_skipped.get() != 0 ? fmt::format(", {} skipped (the sender fell behind by more than "
                                              "--max-lag-us)",
                                              c.tx_skipped.get())
                                : std::string()));
  }
  if (rx) {
    const Latency lat = latency_of(c);
    say(
        fmt::format("received {} packets ({} stamped, {} duplicated, {} reordered), latency "
                    "p50/p99/p99.9/max {}/{}/{}/{} ns",
                    c.rx_packets.get(), c.rx_stamped.get(), c.rx_duplicated.get(),
                    c.rx_reordered.get(), lat.p50, lat.p99, lat.p999, lat.max));
  }
  if (!o.json_out.empty()) {
    // Written whole under a temporary name, then renamed: a reader never sees half a file.
    const std::string tmp = o.json_out + ".tmp";
    std::ofstream f(tmp, std::ios::trunc);
    f << json;
    f.close();
    if (!f || std::rename(tmp.c_str(), o.json_out.c_str()) != 0) {
      say(fmt::format("--json-out: cannot write {}", o.json_out));
      if (rc == kExitOk) rc = kExitRuntime;
    }
  }
  // Hold when the run ended by itself, or, receiving only, on its first signal.
  if (o.hold && error.empty() && (!g_stop.load() || !tx)) {
    say("results written; holding the ports up until SIGINT/SIGTERM");
    while (!g_stop.load()) sleep_s(0.02);
  }

  ports.close();
  const unsigned avail = rte_mempool_avail_count(ports.pool), size = ports.pool->size;
  if (avail != size) {
    say(fmt::format("mempool: {} of {} mbufs not returned at exit (leak)", size - avail, size));
    if (rc == kExitOk) rc = kExitRuntime;
  }
  rte_mempool_free(ports.pool);
  port::eal_cleanup_and_tidy();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = parse_options(argc, argv);
  if (!opt) {
    std::fprintf(stderr, "sluice-gen: %s\n", opt.error().c_str());
    return kExitUsage;
  }
  if (opt->help) {
    std::fputs(usage(argv[0]).c_str(), stdout);
    return kExitOk;
  }
  if (opt->version) {
    std::printf("sluice-gen %s (%s)\n", SLUICE_VERSION, rte_version());
    return kExitOk;
  }
  return run(*opt);
}
