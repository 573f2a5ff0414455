#include "tools/gen/options.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <type_traits>

namespace sluice::gen {

namespace {

Result<double> number(const std::string& opt, const std::string& text, double lo, double hi) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < lo || v > hi) {
    return Error{fmt::format("{}: expected a number in {}..{}, got \"{}\"", opt, lo, hi, text)};
  }
  return v;
}

Result<uint64_t> integer(const std::string& opt, const std::string& text, uint64_t lo,
                         uint64_t hi) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || *end != '\0' || errno != 0 || v < lo || v > hi) {
    return Error{fmt::format("{}: expected an integer in {}..{}, got \"{}\"", opt, lo, hi, text)};
  }
  return static_cast<uint64_t>(v);
}

Result<int> port(const std::string& opt, const std::string& text) {
  if (text == "none") return kNoPort;
  auto v = integer(opt, text, 0, 31);
  if (!v) return Error{v.error() + " or \"none\""};
  return static_cast<int>(*v);
}

Result<std::vector<uint16_t>> sizes(const std::string& text) {
  if (text == "imix") return imix_sizes();
  std::vector<uint16_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string part =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto v = integer("--size", part, 64, 1526);
    if (!v) return Error{v.error() + " (or a comma-separated list, or \"imix\")"};
    out.push_back(static_cast<uint16_t>(*v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

std::string_view mode_name(Mode m) noexcept {
  switch (m) {
    case Mode::kTxOnly:
      return "txonly";
    case Mode::kFlowGen:
      return "flowgen";
    case Mode::kPcap:
      return "pcap";
    case Mode::kMalformed:
      return "malformed";
    case Mode::kRxOnly:
      return "rxonly";
  }
  return "?";
}

std::string usage(const std::string& argv0) {
  return fmt::format(
      "Usage: {0} [EAL options] -- [options]\n"
      "\n"
      "sluice-gen: a DPDK traffic generator and checker in the manner of testpmd. Every frame\n"
      "with room carries an 18-byte trailer (stream id, sequence number, TSC at send); the\n"
      "receiver counts received, lost, duplicated and reordered packets per stream and the\n"
      "latency from send to receive (same host, same TSC).\n"
      "\n"
      "Modes (--mode):\n"
      "  txonly      one template (flow 0, the first size)\n"
      "  flowgen     --flows N flows, IPv4 or IPv6, UDP or TCP, --size sizes or imix\n"
      "  pcap        replay --pcap FILE in a loop (frames with room are stamped)\n"
      "  malformed   flowgen plus --malformed-share of frames, one per CONTRACT drop reason\n"
      "              in turn (runt, l3_truncated, ..., udp_length)\n"
      "  rxonly      receive, count and verify only\n"
      "A sending mode also receives when it has an RX port: send on --tx-port, check on\n"
      "--rx-port (by default port 1 when there are two ports).\n"
      "\n"
      "Options (after --):\n"
      "  --mode MODE            txonly|flowgen|pcap|malformed|rxonly (default txonly)\n"
      "  --tx-port N|none       port to send on (default 0; none in rxonly)\n"
      "  --rx-port N|none       port to receive on (default 1 with two ports, 0 in rxonly)\n"
      "  --rate PPS             packets per second, TSC-paced (default 0: as fast as the port\n"
      "                         takes them)\n"
      "  --max-lag-us US        with --rate: a loop late by more than US microseconds of\n"
      "                         packets skips the excess (counted, tx skipped) instead of\n"
      "                         sending it all at once (default 0: catch up in full)\n"
      "  --duration S           send for S seconds\n"
      "  --count N              send N packets (with --duration: whichever comes first)\n"
      "  --burst N              packets per TX/RX burst, 1..64 (default 32)\n"
      "  --rx-queues N          RX queues on the receiving port, 1..16, all polled (default 1;\n"
      "                         a memif peer gets a ring per queue: one per sluice worker)\n"
      "  --flows N              flows (streams) 1..65535 (default 1)\n"
      "  --proto udp|tcp        (default udp)\n"
      "  --src ADDR, --dst ADDR IPv4 or IPv6 addresses of flow 0 (default 10.0.0.1 ->\n"
      "                         192.168.0.1); flow i adds i to the source. IPv6 with --ipv6\n"
      "                         or IPv6 addresses (default 2001:db8::1 -> 2001:db8:1::1)\n"
      "  --ipv6                 IPv6 flows\n"
      "  --sport N, --dport N   ports of flow 0 (default 1024, 5001); flow i uses sport + i\n"
      "  --dport-count N        flow i uses dport + i % N (default 1)\n"
      "  --size LIST|imix       wire sizes with FCS, e.g. 64 or 64,512,1518 (default 64);\n"
      "                         imix = 7:4:1 of 64, 594, 1518. Raised to fit the trailer.\n"
      "  --pcap FILE            frames to replay (mode pcap)\n"
      "  --malformed-share F    share of malformed frames, 0..1 (default 0.1)\n"
      "  --mac-src MAC, --mac-dst MAC\n"
      "  --stats-period S       print a testpmd-style table every S seconds (0: off)\n"
      "  --json-out FILE        write the final results as JSON to FILE\n"
      "  --drain S              keep receiving S seconds after the last send (default 0.5)\n"
      "  --start-delay S        wait S seconds after the links are up before sending\n"
      "  --link-timeout S       give up when a port has no link after S seconds (default 10)\n"
      "  --tx-retry             offer refused packets again instead of dropping them: a\n"
      "                         lossless sender for exact counts (not for NDR trials)\n"
      "  --start-file FILE      after the links are up, wait for FILE to exist before sending\n"
      "                         (a runner starts several processes, then releases them)\n"
      "  --hold                 after the results, keep the ports up until SIGINT/SIGTERM (so\n"
      "                         a peer can read its counters before the link goes down). In\n"
      "                         rxonly the first signal ends receiving, the second the hold\n"
      "  --mbufs N              mbuf pool size (default 8191)\n"
      "  --version, -h/--help\n"
      "\n"
      "EAL: the first lcore of -l is the main lcore (control, statistics); the next one runs\n"
      "TX and RX together, or with a third lcore TX and RX get one each. Use a --file-prefix\n"
      "of its own. memif needs hugepages between processes.\n"
      "\n"
      "Exit codes: 0 done, 1 usage error, 2 startup error (EAL, ports, link), 3 runtime fault\n"
      "(a link went down, or a sending mode sent nothing).\n"
      "\n"
      "Example (sluice-gen -> memif -> sluice -> memif -> sluice-gen):\n"
      "  {0} -l 0,1 --socket-mem 128 --file-prefix gen \\\n"
      "    --vdev net_memif0,role=client,socket=/tmp/in.sock,socket-abstract=no \\\n"
      "    --vdev net_memif1,role=client,socket=/tmp/out.sock,socket-abstract=no -- \\\n"
      "    --mode flowgen --flows 1000 --rate 1e6 --duration 5 --stats-period 1\n",
      argv0);
}

Result<Options> parse_options(int argc, char** argv) {
  Options o;
  o.eal_args.emplace_back(argc > 0 ? argv[0] : "sluice-gen");
  int first_app = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      for (int j = 1; j < i; ++j) o.eal_args.emplace_back(argv[j]);
      first_app = i + 1;
      break;
    }
  }
  bool v6 = false;
  parse_ip("10.0.0.1", o.flow.src, v6);
  parse_ip("192.168.0.1", o.flow.dst, v6);
  bool src_set = false, dst_set = false, want_v6 = false;
  std::array<uint8_t, 16> src{}, dst{};
  bool src_v6 = false, dst_v6 = false;

  using Handler = std::function<Result<void>(const std::string&)>;
  auto real = [](const char* name, double& out, double lo, double hi) -> Handler {
    return [name, &out, lo, hi](const std::string& v) -> Result<void> {
      auto r = number(name, v, lo, hi);
      if (!r) return Error{r.error()};
      out = *r;
      return {};
    };
  };
  auto whole = [](const char* name, auto& out, uint64_t lo, uint64_t hi) -> Handler {
    return [name, &out, lo, hi](const std::string& v) -> Result<void> {
      auto r = integer(name, v, lo, hi);
      if (!r) return Error{r.error()};
      out = static_cast<std::remove_reference_t<decltype(out)>>(*r);
      return {};
    };
  };
  auto port_of = [](const char* name, int& out) -> Handler {
    return [name, &out](const std::string& v) -> Result<void> {
      auto p = port(name, v);
      if (!p) return Error{p.error()};
      out = *p;
      return {};
    };
  };
  auto text = [](std::string& out) -> Handler {
    return [&out](const std::string& v) -> Result<void> {
      out = v;
      return {};
    };
  };
  auto address = [](const char* name, std::array<uint8_t, 16>& out, bool& v6,
                    bool& set) -> Handler {
    return [name, &out, &v6, &set](const std::string& v) -> Result<void> {
      if (!parse_ip(v, out, v6)) {
        return Error{fmt::format("{}: expected an IPv4 or IPv6 address, got \"{}\"", name, v)};
      }
      set = true;
      return {};
    };
  };
  auto mac = [](const char* name, std::array<uint8_t, 6>& out) -> Handler {
    return [name, &out](const std::string& v) -> Result<void> {
      if (!parse_mac(v, out)) {
        return Error{fmt::format("{}: expected aa:bb:cc:dd:ee:ff, got \"{}\"", name, v)};
      }
      return {};
    };
  };
  const std::map<std::string, Handler> with_value = {
      {"--mode",
       [&](const std::string& v) -> Result<void> {
         static const std::map<std::string, Mode> kModes = {{"txonly", Mode::kTxOnly},
                                                            {"flowgen", Mode::kFlowGen},
                                                            {"pcap", Mode::kPcap},
                                                            {"malformed", Mode::kMalformed},
                                                            {"rxonly", Mode::kRxOnly}};
         auto it = kModes.find(v);
         if (it == kModes.end()) {
           return Error{
               fmt::format("--mode: expected txonly|flowgen|pcap|malformed|rxonly, got \"{}\"", v)};
         }
         o.mode = it->second;
         return {};
       }},
      {"--proto",
       [&](const std::string& v) -> Result<void> {
         if (v != "udp" && v != "tcp") {
           return Error{fmt::format("--proto: expected udp or tcp, got \"{}\"", v)};
         }
         o.flow.proto = v == "udp" ? Proto::kUdp : Proto::kTcp;
         return {};
       }},
      {"--size",
       [&](const std::string& v) -> Result<void> {
         auto r = sizes(v);
         if (!r) return Error{r.error()};
         o.flow.sizes = *r;
         return {};
       }},
      {"--rate", real("--rate", o.rate_pps, 0, 1e9)},
      {"--max-lag-us", real("--max-lag-us", o.max_lag_us, 0, 1e9)},
      {"--malformed-share", real("--malformed-share", o.malformed_share, 0, 1)},
      {"--tx-port", port_of("--tx-port", o.tx_port)},
      {"--rx-port", port_of("--rx-port", o.rx_port)},
      {"--duration", real("--duration", o.duration_s, 0, 1e7)},
      {"--stats-period", real("--stats-period", o.stats_period_s, 0, 1e7)},
      {"--drain", real("--drain", o.drain_s, 0, 1e7)},
      {"--start-delay", real("--start-delay", o.start_delay_s, 0, 1e7)},
      {"--link-timeout", real("--link-timeout", o.link_timeout_s, 0, 1e7)},
      {"--count", whole("--count", o.count, 1, UINT64_MAX)},
      {"--burst", whole("--burst", o.burst, 1, 64)},
      {"--rx-queues", whole("--rx-queues", o.rx_queues, 1, 16)},
      {"--flows", whole("--flows", o.flow.flows, 1, kMaxStreams)},
      {"--dport-count", whole("--dport-count", o.flow.dport_count, 1, 65535)},
      {"--sport", whole("--sport", o.flow.sport, 0, 65535)},
      {"--dport", whole("--dport", o.flow.dport, 0, 65535)},
      {"--mbufs", whole("--mbufs", o.mbufs, 1023, 1u << 22)},
      {"--src", address("--src", src, src_v6, src_set)},
      {"--dst", address("--dst", dst, dst_v6, dst_set)},
      {"--mac-src", mac("--mac-src", o.flow.mac_src)},
      {"--mac-dst", mac("--mac-dst", o.flow.mac_dst)},
      {"--pcap", text(o.pcap)},
      {"--json-out", text(o.json_out)},
      {"--start-file", text(o.start_file)},
  };

  for (int i = first_app; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    bool inline_value = false;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      inline_value = true;
    }
    if (a == "-h" || a == "--help") {
      o.help = true;
    } else if (a == "--version") {
      o.version = true;
    } else if (a == "--ipv6") {
      want_v6 = true;
    } else if (a == "--hold") {
      o.hold = true;
    } else if (a == "--tx-retry") {
      o.tx_retry = true;
    } else if (auto it = with_value.find(a); it != with_value.end()) {
      if (!inline_value) {
        if (i + 1 >= argc) return Error{fmt::format("{} needs a value (see --help)", a)};
        value = argv[++i];
      }
      if (auto r = it->second(value); !r) return Error{r.error()};
    } else if (first_app == 1 && !a.empty() && a[0] == '-') {
      return Error{
          fmt::format("unknown option \"{}\"; EAL options go before \"--\" "
                      "(sluice-gen [EAL options] -- [options]), see --help",
                      a)};
    } else {
      return Error{fmt::format("unknown option \"{}\" (see --help)", a)};
    }
  }

  // Address family: --ipv6, or IPv6 addresses; both addresses must agree.
  if (src_set && dst_set && src_v6 != dst_v6) {
    return Error{"--src and --dst must be the same family (both IPv4 or both IPv6)"};
  }
  const bool v6_addr = (src_set && src_v6) || (dst_set && dst_v6);
  if (want_v6 && ((src_set && !src_v6) || (dst_set && !dst_v6))) {
    return Error{"--ipv6 with an IPv4 --src or --dst"};
  }
  o.flow.ipv6 = want_v6 || v6_addr;
  if (o.flow.ipv6) {
    parse_ip("2001:db8::1", o.flow.src, v6);
    parse_ip("2001:db8:1::1", o.flow.dst, v6);
  }
  if (src_set) o.flow.src = src;
  if (dst_set) o.flow.dst = dst;

  if (o.mode == Mode::kPcap && o.pcap.empty()) return Error{"--mode pcap needs --pcap FILE"};
  if (o.mode != Mode::kPcap && !o.pcap.empty()) return Error{"--pcap needs --mode pcap"};
  if (o.mode == Mode::kTxOnly) {
    o.flow.flows = 1;
    o.flow.sizes.resize(1);
  }
  return o;
}

}  // namespace sluice::gen
