// Tests for lib/config: good files decode to the expected structs; every bad file is refused
// with the exact file:line:col and a message that says what is wrong.

#include "lib/config/config.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sluice::config {
namespace {

namespace fs = std::filesystem;

// Lines:     1       2                3                        4                5
const char* const kApp =
    "ports:\n  - name: wan\n    device: \"0000:3b:00.0\"\n  - name: lan\n    device: net_null0\n"
    // 6                7                     8           9                 10
    "  - name: tap\n    device: net_null1\nworkers:\n  lcores: [1, 2]\nflows: flows.yaml\n";

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("sluice-config-" + std::to_string(getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  // Loads an appliance file and expects an error at "FILE:where: " containing `what`.
  void app_error(const std::string& text, const std::string& where, const std::string& what) {
    const std::string path = write("sluice.yaml", text);
    auto r = load_appliance(path);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().rfind(path + ":" + where + ": ", 0), 0u) << r.error();
    EXPECT_NE(r.error().find(what), std::string::npos) << r.error();
  }

  // Loads kApp with a flows file and expects an error in the flows file.
  void flows_error(const std::string& text, const std::string& where, const std::string& what) {
    write("sluice.yaml", kApp);
    const std::string path = write("flows.yaml", text);
    auto r = load((dir_ / "sluice.yaml").string());
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().rfind(path + ":" + where + ": ", 0), 0u) << r.error();
    EXPECT_NE(r.error().find(what), std::string::npos) << r.error();
  }

  std::shared_ptr<const Config> load_ok(const std::string& app, const std::string& flows) {
    write("sluice.yaml", app);
    write("flows.yaml", flows);
    auto r = load((dir_ / "sluice.yaml").string());
    EXPECT_TRUE(r.ok()) << r.error();
    return r.ok() ? *r : nullptr;
  }

  // Loads kApp with one rule whose match is `match`; returns the decoded match.
  Match match_of(const std::string& match) {
    auto cfg = load_ok(
        kApp, "version: 1\nrules:\n  - name: r\n    match: " + match + "\n    action: drop\n");
    if (!cfg || cfg->flows.rules.size() != 1) {
      ADD_FAILURE() << match;
      return {};
    }
    return cfg->flows.rules[0].match;
  }

  fs::path dir_;
};

std::string ports(int n) {
  std::string s = "ports:\n";
  for (int i = 0; i < n; ++i) {
    s += "  - name: p" + std::to_string(i) + "\n    device: net_null" + std::to_string(i) + "\n";
  }
  return s;
}

const char* const kTail = "workers:\n  lcores: [1]\nflows: flows.yaml\n";
const char* const kOnePort = "ports:\n  - name: wan\n    device: net_null0\n";

std::string v4(const Cidr& c) {
  return std::to_string(c.addr[0]) + "." + std::to_string(c.addr[1]) + "." +
         std::to_string(c.addr[2]) + "." + std::to_string(c.addr[3]) + "/" +
         std::to_string(c.prefix);
}

// ---- good appliance files ----

TEST_F(ConfigTest, AppliesDefaults) {
  auto cfg = load_ok(kApp, "version: 1\n");
  ASSERT_TRUE(cfg);
  const Appliance& a = cfg->appliance;
  ASSERT_EQ(a.ports.size(), 3u);
  EXPECT_EQ(a.ports[0].name, "wan");
  EXPECT_EQ(a.ports[0].device, "0000:3b:00.0");
  EXPECT_FALSE(a.ports[0].rx_queues);
  EXPECT_EQ(a.ports[0].rx_descriptors, 1024);
  EXPECT_EQ(a.ports[0].tx_descriptors, 1024);
  EXPECT_FALSE(a.ports[0].mtu);
  EXPECT_EQ(a.workers.lcores, (std::vector<unsigned>{1, 2}));
  EXPECT_EQ(a.workers.burst, 32u);
  EXPECT_EQ(a.rings.size, 4096u);
  EXPECT_FALSE(a.mempool.mbufs);
  EXPECT_EQ(a.mempool.cache, 256u);
  EXPECT_FALSE(a.telemetry.prometheus);
  EXPECT_EQ(a.logging.level, LogLevel::kInfo);
  EXPECT_EQ(cfg->flows.version, 1);
  EXPECT_EQ(cfg->flows.non_ip.action, Action::kDrop);
  EXPECT_FALSE(cfg->flows.non_ip.to);
  EXPECT_EQ(cfg->flows.fallback.action, Action::kDrop);
  EXPECT_TRUE(cfg->flows.rules.empty());
  EXPECT_EQ(a.port_index("wan"), 0);
  EXPECT_EQ(a.port_index("tap"), 2);
  EXPECT_EQ(a.port_index("nope"), -1);
}

TEST_F(ConfigTest, ReadsEveryKey) {
  const std::string app =
      "ports:\n"
      "  - name: w-1_a\n"
      "    device: \"net_memif0,role=server,socket=/run/sluice/wan.sock\"\n"
      "    rx_queues: 4\n    rx_descriptors: 64\n    tx_descriptors: 32768\n    mtu: 9000\n"
      "workers: { lcores: [3, 0, 1023], burst: 64 }\n"
      "rings: { size: 1048576 }\n"
      "mempool: { mbufs: 1024, cache: 0 }\n"
      "flows: flows.yaml\n"
      "telemetry: { prometheus: \"[::1]:9464\" }\n"
      "logging: { level: trace }\n";
  auto cfg = load_ok(app, "version: 1\n");
  ASSERT_TRUE(cfg);
  const Appliance& a = cfg->appliance;
  EXPECT_EQ(a.ports[0].name, "w-1_a");
  EXPECT_EQ(a.ports[0].device, "net_memif0,role=server,socket=/run/sluice/wan.sock");
  EXPECT_EQ(a.ports[0].rx_queues, 4);
  EXPECT_EQ(a.ports[0].rx_descriptors, 64);
  EXPECT_EQ(a.ports[0].tx_descriptors, 32768);
  EXPECT_EQ(a.ports[0].mtu, 9000);
  EXPECT_EQ(a.workers.lcores, (std::vector<unsigned>{3, 0, 1023}));
  EXPECT_EQ(a.workers.burst, 64u);
  EXPECT_EQ(a.rings.size, 1048576u);
  EXPECT_EQ(a.mempool.mbufs, 1024u);
  EXPECT_EQ(a.mempool.cache, 0u);
  EXPECT_EQ(a.telemetry.prometheus, "[::1]:9464");
  EXPECT_EQ(a.logging.level, LogLevel::kTrace);
}

TEST_F(ConfigTest, MbufsAutoAndLevels) {
  const std::string base = std::string(kOnePort) + kTail;
  const std::pair<const char*, LogLevel> levels[] = {{"trace", LogLevel::kTrace},
                                                     {"debug", LogLevel::kDebug},
                                                     {"info", LogLevel::kInfo},
                                                     {"warn", LogLevel::kWarn},
                                                     {"error", LogLevel::kError}};
  for (const auto& [name, level] : levels) {
    auto r = load_appliance(write(
        "sluice.yaml", base + "mempool: { mbufs: auto }\nlogging: { level: " + name + " }\n"));
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_FALSE(r->mempool.mbufs);
    EXPECT_EQ(r->logging.level, level);
  }
}

TEST_F(ConfigTest, MarksAreOneBased) {
  auto cfg = load_ok(kApp, "version: 1\nrules:\n  - name: a\n    action: drop\n");
  ASSERT_TRUE(cfg);
  const Appliance& a = cfg->appliance;
  const std::string file = (dir_ / "sluice.yaml").string();
  EXPECT_EQ(a.ports[1].mark.str(), file + ":4:5");
  EXPECT_EQ(a.ports[1].device_mark.str(), file + ":5:13");
  ASSERT_EQ(a.workers.lcore_marks.size(), 2u);
  EXPECT_EQ(a.workers.lcore_marks[0].str(), file + ":9:12");
  EXPECT_EQ(a.workers.lcore_marks[1].str(), file + ":9:15");
  EXPECT_EQ(a.flows_mark.str(), file + ":10:8");
  EXPECT_EQ(cfg->flows.rules[0].mark.str(), (dir_ / "flows.yaml").string() + ":3:5");
}

TEST_F(ConfigTest, FlowsPathResolvesAgainstTheApplianceFolder) {
  write("etc/flows/f.yaml", "version: 1\n");
  const std::string app = write("etc/sluice.yaml", std::string(kOnePort) +
                                                       "workers: { lcores: [1] }\n"
                                                       "flows: flows/f.yaml\n");
  auto r = load(app);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(fs::path((*r)->appliance.flows_path), dir_ / "etc/flows/f.yaml");
  EXPECT_EQ((*r)->flows.path, (*r)->appliance.flows_path);

  // An absolute path is kept as written.
  const std::string abs = (dir_ / "etc/flows/f.yaml").string();
  auto a = load_appliance(write(
      "sluice.yaml", std::string(kOnePort) + "workers: { lcores: [1] }\nflows: " + abs + "\n"));
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->flows_path, abs);
}

TEST_F(ConfigTest, RelativeAppliancePath) {
  write("sluice.yaml", kApp);
  write("flows.yaml", "version: 1\n");
  const fs::path old = fs::current_path();
  fs::current_path(dir_);
  auto r = load("sluice.yaml");
  fs::current_path(old);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ((*r)->appliance.flows_path, "flows.yaml");
}

TEST(ParseSize, PlainAndSuffixed) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("65535"), 65535u);
  EXPECT_EQ(parse_size("1KiB"), 1024u);
  EXPECT_EQ(parse_size("1MiB"), 1u << 20);
  EXPECT_EQ(parse_size("64GiB"), 64ull << 30);
  EXPECT_EQ(parse_size("3 MiB"), 3u << 20);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("MiB"));
  EXPECT_FALSE(parse_size("1MB"));
  EXPECT_FALSE(parse_size("1.5GiB"));
  EXPECT_FALSE(parse_size("-1"));
  EXPECT_FALSE(parse_size("1 GiB extra"));
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("17179869184GiB"));  // 2^34 GiB overflows 64 bits
}

// ---- good flows files ----

TEST_F(ConfigTest, RulesDecode) {
  auto cfg = load_ok(kApp,
                     "version: 1\n"
                     "non_ip: { action: forward, to: lan }\n"
                     "default: { action: forward, to: wan }\n"
                     "rules:\n"
                     "  - name: Drop.telnet_1\n    priority: 65535\n"
                     "    match: { in_port: lan, proto: tcp, dst_port: 23 }\n"
                     "    action: drop\n    mirror: tap\n"
                     "  - name: dns\n    match: { proto: udp, dst_port: 53 }\n"
                     "    action: forward\n    to: lan\n    mirror: tap\n    capture: false\n"
                     "  - name: all\n    action: forward\n    to: tap\n");
  ASSERT_TRUE(cfg);
  const Flows& f = cfg->flows;
  EXPECT_EQ(f.non_ip.action, Action::kForward);
  EXPECT_EQ(f.non_ip.to, 1);
  EXPECT_EQ(f.fallback.action, Action::kForward);
  EXPECT_EQ(f.fallback.to, 0);
  ASSERT_EQ(f.rules.size(), 3u);
  EXPECT_EQ(f.rules[0].name, "Drop.telnet_1");
  EXPECT_EQ(f.rules[0].priority, 65535);
  EXPECT_EQ(f.rules[0].match.in_port, 1);
  EXPECT_EQ(f.rules[0].match.proto, 6);
  EXPECT_EQ(f.rules[0].action, Action::kDrop);
  EXPECT_FALSE(f.rules[0].to);
  EXPECT_EQ(f.rules[0].mirror, 2);
  EXPECT_EQ(f.rules[1].priority, 0);
  EXPECT_EQ(f.rules[1].action, Action::kForward);
  EXPECT_EQ(f.rules[1].to, 1);
  EXPECT_EQ(f.rules[1].mirror, 2);
  EXPECT_FALSE(f.rules[2].match.proto);
  EXPECT_FALSE(f.rules[2].match.in_port);
  EXPECT_EQ(f.rules[2].match.family(), 0);
  EXPECT_EQ(f.rules[2].to, 2);
}

TEST_F(ConfigTest, EmptyOrNullRules) {
  auto a = load_ok(kApp, "version: 1\nrules: []\n");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->flows.rules.empty());
  auto b = load_ok(kApp, "version: 1\nrules:\n");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->flows.rules.empty());
}

TEST_F(ConfigTest, Ipv4Cidrs) {
  Match m = match_of("{ src: 10.0.0.0/8, dst: 192.168.1.0/24 }");
  ASSERT_TRUE(m.src && m.dst);
  EXPECT_EQ(m.src->family, 4);
  EXPECT_EQ(v4(*m.src), "10.0.0.0/8");
  EXPECT_EQ(v4(*m.dst), "192.168.1.0/24");
  EXPECT_EQ(m.family(), 4);

  m = match_of("{ dst: 192.0.2.1 }");  // a plain address is a /32
  ASSERT_TRUE(m.dst);
  EXPECT_EQ(v4(*m.dst), "192.0.2.1/32");
  EXPECT_FALSE(m.src);
  EXPECT_EQ(m.family(), 4);

  m = match_of("{ src: 0.0.0.0/0 }");
  EXPECT_EQ(v4(*m.src), "0.0.0.0/0");
}

TEST_F(ConfigTest, Ipv6Cidrs) {
  Match m = match_of("{ src: \"2001:db8::/32\", dst: \"fe80::1\" }");
  ASSERT_TRUE(m.src && m.dst);
  EXPECT_EQ(m.src->family, 6);
  EXPECT_EQ(m.src->prefix, 32);
  const std::array<uint8_t, 16> db8{0x20, 0x01, 0x0d, 0xb8};
  EXPECT_EQ(m.src->addr, db8);
  EXPECT_EQ(m.dst->prefix, 128);  // a plain address is a /128
  const std::array<uint8_t, 16> fe80{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(m.dst->addr, fe80);
  EXPECT_EQ(m.family(), 6);

  m = match_of("{ dst: \"::/0\" }");
  EXPECT_EQ(m.dst->prefix, 0);
  EXPECT_EQ(m.family(), 6);
}

TEST_F(ConfigTest, PortRanges) {
  Match m = match_of("{ proto: tcp, src_port: 1024-65535, dst_port: 23 }");
  ASSERT_TRUE(m.src_port && m.dst_port);
  EXPECT_EQ(m.src_port->lo, 1024);
  EXPECT_EQ(m.src_port->hi, 65535);
  EXPECT_EQ(m.dst_port->lo, 23);
  EXPECT_EQ(m.dst_port->hi, 23);

  m = match_of("{ proto: udp, src_port: \"53\", dst_port: 0-0 }");
  EXPECT_EQ(m.src_port->lo, 53);
  EXPECT_EQ(m.src_port->hi, 53);
  EXPECT_EQ(m.dst_port->lo, 0);
  EXPECT_EQ(m.dst_port->hi, 0);

  m = match_of("{ proto: 132, dst_port: 7-7 }");  // sctp by number
  EXPECT_EQ(m.dst_port->lo, 7);
}

TEST_F(ConfigTest, ProtoNamesAndNumbers) {
  const std::pair<const char*, int> protos[] = {
      {"tcp", 6},  {"udp", 17}, {"icmp", 1}, {"icmpv6", 58}, {"sctp", 132},
      {"gre", 47}, {"esp", 50}, {"0", 0},    {"255", 255},   {"\"89\"", 89}};
  for (const auto& [text, number] : protos) {
    Match m = match_of(std::string("{ proto: ") + text + " }");
    ASSERT_TRUE(m.proto) << text;
    EXPECT_EQ(*m.proto, number) << text;
  }
}

TEST_F(ConfigTest, RepoExamplesLoad) {
  auto r = load(std::string(SLUICE_CONFIG_DIR) + "/sluice.yaml");
  ASSERT_TRUE(r.ok()) << r.error();
  const Config& c = **r;
  EXPECT_GE(c.appliance.ports.size(), 2u);
  EXPECT_FALSE(c.flows.rules.empty());
  EXPECT_EQ(fs::path(c.flows.path).filename(), "flows.yaml");
}

// ---- bad appliance files ----

TEST_F(ConfigTest, PortDistribute) {
  auto cfg = load_ok(
      "ports:\n  - name: a\n    device: net_null0\n    distribute: ring\n"
      "  - name: b\n    device: net_null1\n    distribute: rss\n    rx_queues: 2\n"
      "  - name: c\n    device: net_null2\n" +
          std::string(kTail),
      "version: 1\n");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->appliance.ports[0].distribute, Distribute::kRing);
  EXPECT_EQ(cfg->appliance.ports[0].distribute_mark.line, 4);
  EXPECT_EQ(cfg->appliance.ports[1].distribute, Distribute::kRss);
  EXPECT_EQ(cfg->appliance.ports[2].distribute, Distribute::kAuto);
  app_error(
      "ports:\n  - name: a\n    device: net_null0\n    distribute: spray\n" + std::string(kTail),
      "4:17", "auto|rss|ring");
  app_error("ports:\n  - name: a\n    device: net_null0\n    rx_queues: 2\n    distribute: ring\n" +
                std::string(kTail),
            "5:17", "remove rx_queues (2) or say distribute: rss");
}

TEST_F(ConfigTest, BadUnknownTopLevelKey) {
  app_error(std::string(kApp) + "bogus: 1\n", "11:1", "unknown key 'bogus'");
  app_error(std::string(kApp) + "bogus: 1\n", "11:1",
            "expected one of ports, workers, rings, mempool, flows, telemetry, logging, capture");
}

TEST_F(ConfigTest, BadTwoPortsOneDevice) {
  // One DPDK device under two port names: a vdev is its text before the first comma, a PCI
  // address the same with or without its domain.
  const std::string ports = "ports:\n  - name: wan\n    device: \"0000:3b:00.0\"\n";
  const std::string rest = "workers:\n  lcores: [1]\nflows: flows.yaml\n";
  app_error(ports + "  - name: lan\n    device: \"net_null0,no-rx=1\"\n" +
                "  - name: dmz\n    device: net_null0\n" + rest,
            "7:13",
            "ports[2].device: \"net_null0\" is device net_null0, which port 'lan' already uses "
            "(line 5)");
  app_error(ports + "  - name: lan\n    device: \"3b:00.0\"\n" + rest, "5:13",
            "is device 0000:3b:00.0, which port 'wan' already uses (line 3)");
  // Numbered instances are different devices.
  write("flows.yaml", "version: 1\nrules: []\n");
  auto ok = load_appliance(write("sluice.yaml", ports +
                                                    "  - name: lan\n    device: net_null0\n"
                                                    "  - name: dmz\n    device: net_null1\n" +
                                                    rest));
  EXPECT_TRUE(ok.ok()) << ok.error();
}

TEST_F(ConfigTest, BadPciAddress) {
  // Text with a ':' before its first comma was meant as a PCI address.
  const std::string rest =
      "  - name: lan\n    device: net_null0\nworkers:\n  lcores: [1]\nflows: f.yaml\n";
  for (const char* bad : {"0000:zz:00.0", "0000:3b:20.0", "3b:00.8", "0000:3b:00", "3b:00.0x"}) {
    app_error(
        std::string("ports:\n  - name: wan\n    device: \"") + bad + "\"\n" + rest, "3:13",
        std::string("ports[0].device: '") + bad + "' is not a PCI address; expected DDDD:BB:DD.F");
  }
  write("f.yaml", "version: 1\nrules: []\n");
  for (const char* ok : {"0000:3B:00.0", "3b:1f.7", "0001:00:00.0,txq_inline=128", "10000:01:00.0",
                         "net_pcap0,rx_pcap=/tmp/a:b.pcap"}) {
    auto r = load_appliance(write(
        "sluice.yaml", std::string("ports:\n  - name: wan\n    device: \"") + ok + "\"\n" + rest));
    EXPECT_TRUE(r.ok()) << ok << ": " << r.error();
  }
  // What attach probes and looks up: DPDK's own spelling.
  EXPECT_EQ(device_name("3B:00.0,txq_inline=128"), "0000:3b:00.0");
  EXPECT_EQ(device_name("10000:01:00.0"), "10000:01:00.0");
  EXPECT_EQ(device_name("net_null0,no-rx=1"), "net_null0");
  EXPECT_FALSE(pci_address("net_null0"));
}

TEST_F(ConfigTest, BadPrometheusAddress) {
  // What --check accepts is what the listener can bind: an address literal and a port.
  const std::string base = std::string(kApp) + "telemetry:\n  prometheus: ";
  const std::string expected = "; expected host:port such as 127.0.0.1:9464";
  app_error(base + "localhost:9464\n", "12:15",
            "telemetry.prometheus: 'localhost:9464' has host 'localhost', not an IPv4 or IPv6 "
            "address (names are not resolved)" +
                expected);
  app_error(base + "\"10.0.0.300:9464\"\n", "12:15", "has host '10.0.0.300', not an IPv4");
  app_error(base + "\"[::1]:0\"\n", "12:15", "has port '0', not 1..65535");
  app_error(base + "\"::1:9464\"\n", "12:15", "has an IPv6 host without brackets");
  app_error(base + "127.0.0.1\n", "12:15", "has no port");
  for (const char* ok : {"127.0.0.1:9464", "0.0.0.0:1", "\"[::]:65535\"", "\"[fe80::1]:9464\""}) {
    write("flows.yaml", "version: 1\nrules: []\n");
    auto r = load_appliance(write("sluice.yaml", base + ok + "\n"));
    EXPECT_TRUE(r.ok()) << ok << ": " << r.error();
  }
}

TEST_F(ConfigTest, CaptureSection) {
  // Defaults from CONTRACT; a relative path resolves against the file's folder.
  const std::string path =
      write("sluice.yaml", std::string(kApp) + "capture:\n  lcore: 3\n  path: store\n");
  auto r = load_appliance(path);
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_TRUE(r->capture);
  const CaptureConfig& c = *r->capture;
  EXPECT_EQ(c.lcore, 3u);
  EXPECT_EQ(c.path, (dir_ / "store").string());
  EXPECT_EQ(c.chunk_bytes, 1u << 20);
  EXPECT_EQ(c.segment_bytes, 1ull << 30);
  EXPECT_EQ(c.retain_bytes, 64ull << 30);
  EXPECT_EQ(c.queue_depth, 32u);
  EXPECT_EQ(c.snaplen, 65535u);
  EXPECT_EQ(c.flush_ms, 1000u);
  EXPECT_EQ(c.backend, CaptureBackend::kAuto);
  EXPECT_FALSE(c.malformed);
  EXPECT_EQ(c.lcore_mark.str(), path + ":12:10");

  auto all = load_appliance(write(
      "sluice.yaml", std::string(kApp) +
                         "capture:\n  lcore: 3\n  path: /srv/cap\n  chunk_bytes: 64KiB\n"
                         "  segment_bytes: 1MiB\n  retain_bytes: 3MiB\n  queue_depth: 8\n"
                         "  snaplen: 1518\n  backend: uring\n  flush_ms: 50\n  malformed: true\n"));
  ASSERT_TRUE(all.ok()) << all.error();
  EXPECT_EQ(all->capture->chunk_bytes, 64u << 10);
  EXPECT_EQ(all->capture->segment_bytes, 1u << 20);
  EXPECT_EQ(all->capture->retain_bytes, 3u << 20);
  EXPECT_EQ(all->capture->queue_depth, 8u);
  EXPECT_EQ(all->capture->snaplen, 1518u);
  EXPECT_EQ(all->capture->backend, CaptureBackend::kUring);
  EXPECT_EQ(all->capture->flush_ms, 50u);
  EXPECT_TRUE(all->capture->malformed);
  EXPECT_EQ(all->capture->path, "/srv/cap");

  auto none = load_appliance(write("sluice.yaml", kApp));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->capture);
}

TEST_F(ConfigTest, BadCaptureSection) {
  const std::string base = std::string(kApp) + "capture:\n  lcore: 3\n  path: /srv/cap\n";
  // Line 11 is "capture:", 12 lcore, 13 path, 14 onwards what each case adds.
  app_error(std::string(kApp) + "capture:\n  path: /srv/cap\n", "12:3",
            "capture: missing required key 'lcore'");
  app_error(std::string(kApp) + "capture:\n  lcore: 3\n", "12:3",
            "capture: missing required key 'path'");
  app_error(std::string(kApp) + "capture:\n  lcore: 2\n  path: /srv/cap\n", "12:10",
            "capture.lcore: lcore 2 is also a worker lcore (line 9)");
  app_error(base + "  chunk_bytes: 1000000\n", "14:16", "not a multiple of 4096");
  app_error(base + "  chunk_bytes: 4KiB\n", "14:16", "too small; expected at least 8192");
  app_error(base + "  chunk_bytes: 128MiB\n", "14:16", "from 8KiB to 64MiB");
  app_error(base + "  chunk_bytes: lots\n", "14:16", "got 'lots'; expected a multiple of 4096");
  app_error(base + "  chunk_bytes: 64KiB\n", "14:16",
            "snaplen 65535 does not fit in a chunk of 64KiB with its headers; expected snaplen "
            "at most 57344");
  app_error(base + "  chunk_bytes: 64KiB\n  snaplen: 60000\n", "15:12", "snaplen 60000");
  app_error(base + "  snaplen: 10\n", "14:12", "10 is out of range; expected an integer 64..65535");
  app_error(base + "  segment_bytes: 1MiB\n", "14:18",
            "segment_bytes: 1MiB is not larger than chunk_bytes (1MiB)");
  app_error(base + "  segment_bytes: 128GiB\n", "12:3",
            "retain_bytes: 64GiB is not larger than segment_bytes (128GiB)");
  app_error(base + "  retain_bytes: 1GiB\n", "14:17",
            "retain_bytes: 1GiB is not larger than segment_bytes (1GiB)");
  app_error(base + "  queue_depth: 0\n", "14:16", "expected an integer 1..1024");
  app_error(base + "  backend: spdk\n", "14:12", "expected auto|uring|passthru");
  app_error(base + "  flush_ms: 0\n", "14:13", "expected an integer 1..3600000");
  app_error(base + "  malformed: sometimes\n", "14:14", "expected true or false");
  app_error(base + "  bogus: 1\n", "14:3", "capture: unknown key 'bogus'");
  app_error(base + "  path: /x\n", "14:3", "duplicate key 'path'");
  app_error(std::string(kApp) + "capture:\n  lcore: 3\n  path: \"\"\n", "13:9", "empty path");
}

TEST_F(ConfigTest, BadMirrorSameAsTo) {
  flows_error(
      "version: 1\nrules:\n  - name: a\n    action: forward\n    to: lan\n"
      "    mirror: lan\n",
      "6:13", "rules[0].mirror: mirror is the same port as 'to' (lan)");
}

TEST_F(ConfigTest, BadRuleCapture) {
  // kApp has no capture section: a rule cannot ask for one.
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    capture: true\n", "5:14",
              "rules[0].capture: capture: true but ");
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    capture: true\n", "5:14",
              "has no capture section");
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    capture: maybe\n", "5:14",
              "got 'maybe'; expected true or false");
}

TEST_F(ConfigTest, RuleCapture) {
  write("sluice.yaml", std::string(kApp) + "capture:\n  lcore: 3\n  path: /srv/cap\n");
  write("flows.yaml",
        "version: 1\nrules:\n  - name: a\n    action: drop\n    capture: true\n"
        "  - name: b\n    action: drop\n    capture: false\n  - name: c\n    action: drop\n");
  auto r = load((dir_ / "sluice.yaml").string());
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->get()->flows.rules.size(), 3u);
  EXPECT_TRUE(r->get()->flows.rules[0].capture);
  EXPECT_FALSE(r->get()->flows.rules[1].capture);
  EXPECT_FALSE(r->get()->flows.rules[2].capture);
}

TEST_F(ConfigTest, BadMatchType) {
  flows_error("version: 1\nrules:\n  - name: a\n    match: [tcp]\n    action: drop\n", "4:12",
              "rules[0].match: got a list; expected a map with keys in_port, proto");
}

TEST_F(ConfigTest, BadFlowsYamlSyntax) {
  flows_error("version: 1\nrules:\n  - name: a\n   action: drop\n", "4:4", "invalid YAML");
}

TEST_F(ConfigTest, TooManyPorts) {
  app_error(ports(33) + kTail, "66:5", "ports: 33 ports; expected at most 32");
}

// ---- files that are not config files (issue 10): refused at once, never read whole ----

// A FIFO, /dev/zero, a directory: each is refused before the first read (a read would block
// on the FIFO and never end on /dev/zero); the error names the file and what it is.
TEST_F(ConfigTest, RefusesWhatIsNotARegularFile) {
  const std::string fifo = (dir_ / "sluice.fifo").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string subdir = (dir_ / "a-dir").string();
  fs::create_directories(subdir);
  const std::pair<std::string, std::string> cases[] = {
      {fifo, "it is a FIFO (named pipe)"},
      {"/dev/zero", "it is a character device"},
      {subdir, "it is a directory"},
  };
  for (const auto& [path, what] : cases) {
    auto r = load_appliance(path);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.error(), "cannot read " + path + ": " + what +
                             "; expected an appliance config as a regular file");
    auto f = load_flows(path, Appliance{});
    ASSERT_FALSE(f.ok()) << path;
    EXPECT_NE(f.error().find(path + ": " + what + "; expected a flows file"), std::string::npos)
        << f.error();
    auto t = read_text(path);  // what a reload reads
    ASSERT_FALSE(t.ok()) << path;
    EXPECT_NE(t.error().find(what), std::string::npos) << t.error();
  }
}

// The flows file named by the appliance config: the error points at its flows: line.
TEST_F(ConfigTest, RefusesAFifoAsTheFlowsFile) {
  const std::string app = write("sluice.yaml", kApp);
  ASSERT_EQ(mkfifo((dir_ / "flows.yaml").c_str(), 0600), 0);
  auto r = load(app);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rfind(app + ":10:8: flows: cannot read ", 0), 0u) << r.error();
  EXPECT_NE(r.error().find("it is a FIFO (named pipe)"), std::string::npos) << r.error();
}

// A file larger than its limit is refused by its size (a 2 GiB sparse file reads as zeros and
// would take seconds and gigabytes), before anything is read.
TEST_F(ConfigTest, RefusesFilesOverTheSizeLimit) {
  const std::string big = write("big.yaml", "");
  ASSERT_EQ(truncate(big.c_str(), 2ll << 30), 0);
  auto r = load_appliance(big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "cannot read " + big +
                           ": it is 2.0 GiB, more than the 1.0 MiB an appliance config may be; "
                           "expected a smaller file (is this the right file?)");
  auto f = read_text(big);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().find("2.0 GiB, more than the 64.0 MiB a flows file may be"),
            std::string::npos)
      << f.error();

  // Just at the limits: read (and then refused for what is in them, not for their size).
  const std::string app = write("limit.yaml", "");
  ASSERT_EQ(truncate(app.c_str(), static_cast<off_t>(kMaxApplianceBytes)), 0);
  r = load_appliance(app);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().find("more than"), std::string::npos) << r.error();
  ASSERT_EQ(truncate(app.c_str(), static_cast<off_t>(kMaxApplianceBytes) + 1), 0);
  r = load_appliance(app);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("more than the 1.0 MiB"), std::string::npos) << r.error();
  ASSERT_EQ(truncate(app.c_str(), static_cast<off_t>(kMaxFlowsBytes)), 0);
  EXPECT_TRUE(read_text(app).ok());
}

// A message quotes at most one line of the file, cut at 120 bytes, and prints no raw bytes.
void expect_one_short_line(const std::string& error) {
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_LT(error.size(), 400u) << error;
  EXPECT_TRUE(std::all_of(error.begin(), error.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20;
  })) << error;
}

TEST_F(ConfigTest, QuotesOneLineOfALongOrBinaryFile) {
  // One 5000-byte line: a scalar where a map belongs.
  app_error(std::string(5000, 'x') + "\n", "1:1",
            "got '" + std::string(120, 'x') + "...'; expected a map with keys ports");
  expect_one_short_line(load_appliance((dir_ / "sluice.yaml").string()).error());
  // Many lines that fold into one scalar.
  std::string lines;
  for (int i = 0; i < 200; ++i) lines += "word word word word\n";
  app_error(lines, "1:1", "got 'word word");
  expect_one_short_line(load_appliance((dir_ / "sluice.yaml").string()).error());
  // A block scalar keeps its line breaks: only the first line is quoted.
  app_error("ports: |\n  first line\n  second line\n" + std::string(kTail), "1:8",
            "ports: got the string \"first line...\"; expected a list of ports");
  // A long unknown key, and a long value where a number belongs.
  app_error(std::string(300, 'k') + ": 1\n", "1:1",
            "unknown key '" + std::string(120, 'k') + "...'");
  app_error(std::string(kOnePort) + "workers:\n  lcores: [1]\n  burst: " + std::string(300, '9') +
                "\nflows: f\n",
            "6:10", "workers.burst: " + std::string(120, '9') + "... is out of range");
}

TEST_F(ConfigTest, RefusesABinaryFileAtItsFirstNulByte) {
  std::string bin =
      "\x7f"
      "ELF\x02\x01\x01";
  bin += std::string(1, '\0') + std::string(3000, '\xff') + "\n\x01\x02";
  const std::string path = write("sluice.yaml", bin);
  auto r = load_appliance(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), path +
                           ":1:8: a NUL byte: this is not a text file (a binary?); expected "
                           "YAML text");
  // Binary without NUL bytes: yaml-cpp's own message, its bytes escaped.
  std::string noisy = "a: \"\\\xf3\"\n" + std::string(2000, '\xfe');
  write("sluice.yaml", noisy);
  r = load_appliance(path);
  ASSERT_FALSE(r.ok());
  expect_one_short_line(r.error());
  EXPECT_NE(r.error().find("\\xf3"), std::string::npos) << r.error();
}

// Paths with line breaks would print as two lines wherever they are named.
TEST_F(ConfigTest, RefusesControlCharactersInPaths) {
  app_error(std::string(kOnePort) + "workers:\n  lcores: [1]\nflows: \"a\\nb.yaml\"\n", "6:8",
            "flows: the path has a control character (a line break?)");
  app_error(std::string(kOnePort) + kTail + "capture:\n  lcore: 2\n  path: \"/x\\ty\"\n", "9:9",
            "capture.path: the path has a control character");
}

// Everything a flows file decodes to, marks included, as text: two decoders agree when these do.
std::string dump(const Flows& f) {
  auto port = [](const std::optional<uint16_t>& p) { return p ? std::to_string(*p) : "-"; };
  auto cidr = [](const std::optional<Cidr>& c) { return c ? cidr_text(*c) : "-"; };
  auto range = [](const std::optional<PortRange>& r) {
    return r ? std::to_string(r->lo) + "-" + std::to_string(r->hi) : "-";
  };
  std::string out = f.path + " v" + std::to_string(f.version) + " non_ip " +
                    std::to_string(static_cast<int>(f.non_ip.action)) + port(f.non_ip.to) +
                    " default " + std::to_string(static_cast<int>(f.fallback.action)) +
                    port(f.fallback.to) + "\n";
  for (const Rule& r : f.rules) {
    const Match& m = r.match;
    out += r.mark.str() + " " + r.name + " p" + std::to_string(r.priority) + " in " +
           port(m.in_port) + " proto " + (m.proto ? std::to_string(*m.proto) : "-") + " " +
           cidr(m.src) + " > " + cidr(m.dst) + " " + range(m.src_port) + " > " + range(m.dst_port) +
           " a" + std::to_string(static_cast<int>(r.action)) + " to " + port(r.to) + " mirror " +
           port(r.mirror) + (r.capture ? " capture" : "") + "\n";
  }
  return out;
}

// parse_flows reads most files with its fast reader: on those it must give what yaml-cpp and
// the decoders give, and on files it does not take (or that are wrong) the same result too.
TEST_F(ConfigTest, FastFlowsReaderAgreesWithTheFullDecoder) {
  const std::string app_path =
      write("sluice.yaml", std::string(kApp) + "capture:\n  lcore: 3\n  path: store\n");
  auto app = load_appliance(app_path);
  ASSERT_TRUE(app.ok()) << app.error();
  auto same = [](const std::string& text, const Appliance& a) {
    auto fast = parse_flows("f.yaml", text, a);
    auto full = parse_flows_full("f.yaml", text, a);
    ASSERT_EQ(fast.ok(), full.ok()) << text << (fast.ok() ? full.error() : fast.error());
    if (fast.ok()) {
      EXPECT_EQ(dump(*fast), dump(*full)) << text;
    } else {
      EXPECT_EQ(fast.error(), full.error()) << text;
    }
  };
  // The shipped examples, each with its own appliance config.
  for (const char* name : {"/sluice.yaml", "/demo/sluice.yaml"}) {
    auto a = load_appliance(std::string(SLUICE_CONFIG_DIR) + name);
    ASSERT_TRUE(a.ok()) << a.error();
    auto text = read_text(a->flows_path);
    ASSERT_TRUE(text.ok()) << text.error();
    ASSERT_TRUE(parse_flows(a->flows_path, *text, *a).ok()) << name;
    same(*text, *a);
  }
  std::vector<std::string> texts;
  const std::string head = "version: 1\nnon_ip: { action: forward, to: lan }\nrules:\n";
  const char* const rules[] = {
      // what tools/bench/rules.py writes
      "  - name: r0\n    priority: 1816\n"
      "    match: { proto: tcp, src: 164.33.0.0/16, dst: 88.0.0.0/8, dst_port: 1024-2024 }\n"
      "    action: drop\n  - name: r1\n    priority: 7\n"
      "    match: { proto: udp, src: 10.0.0.0/8, dst: 192.168.0.0/16, dst_port: 53 }\n"
      "    action: forward\n    to: wan\n",
      // block maps, a list at its key's indentation, comments, quotes, IPv6
      "- name: a   # a comment\n  match:\n    proto: 6\n    src_port: 1-2\n"
      "# between\n    dst: \"2001:db8::/32\"\n  action: forward\n  to: 'tap'\n  mirror: lan\n"
      "  capture: true\n- name: b\n  match: {}\n  action: drop\n- name: c\n  action: drop\n"
      "  match: { src: 2001:db8::1, dst: ::1, proto: icmpv6 }\n",
      "  -   name: spaced\n      priority: 0\n      action: drop\n"
      "      match: {proto: sctp,dst_port: 0-65535 ,  in_port: wan}\n",
      // what the fast reader leaves to yaml-cpp: each must decode (or fail) the same
      "  - name: q\n    priority: \"5\"\n    action: drop\n",
      "  - name: y\n    capture: yes\n    action: drop\n",
      "  - name: n\n    match:\n    action: drop\n",
      "  - name: flowlist\n    match: { proto: [6] }\n    action: drop\n",
      "  - name: multi\n    match: { proto: tcp,\n      dst_port: 22 }\n    action: drop\n",
      "  - name: tab\n\tpriority: 1\n    action: drop\n",
      "  - name: dup\n    action: drop\n  - name: dup\n    action: drop\n",
      "  - name: dupkey\n    action: drop\n    action: drop\n",
      "  - name: bad-host\n    match: { src: 10.0.0.1/8 }\n    action: drop\n",
      "  - name: mixed\n    match: { src: 10.0.0.0/8, dst: \"::1\" }\n    action: drop\n",
      "  - name: noport\n    match: { proto: icmp, dst_port: 1 }\n    action: drop\n",
      "  - name: range\n    match: { proto: tcp, dst_port: 9-3 }\n    action: drop\n",
      "  - name: fwd\n    action: forward\n",
      "  - name: nowhere\n    action: forward\n    to: nowhere\n",
      "  - name: same\n    action: forward\n    to: lan\n    mirror: lan\n",
      "  - name: anchor\n    match: &m { proto: tcp }\n    action: drop\n",
      "  - name: cont\n    priority: 1\n      2\n    action: drop\n",
      "  - name: nul\n    to: null\n    action: drop\n",
      "  - name: \"caf\xc3\xa9\"\n    action: drop\n",
      "  - name: crlf\r\n    action: drop\r\n",
  };
  for (const char* r : rules) texts.push_back(head + r);
  texts.push_back("version: 1\nrules:\n");
  texts.push_back("version: \"1\"\n");
  texts.push_back("version: 1\n---\nversion: 1\n");
  texts.push_back("");
  for (const std::string& text : texts) same(text, *app);
}

// The same on many small edits of the shipped examples: whatever an edit makes of a file,
// parse_flows must answer as yaml-cpp and the decoders do.
TEST_F(ConfigTest, FastFlowsReaderAgreesOnEditedFiles) {
  const std::string app_path =
      write("sluice.yaml", std::string(kApp) + "capture:\n  lcore: 3\n  path: store\n");
  auto app = load_appliance(app_path);
  ASSERT_TRUE(app.ok()) << app.error();
  std::ifstream in(std::string(SLUICE_CONFIG_DIR) + "/flows.yaml");
  const std::string base{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ASSERT_FALSE(base.empty());
  static constexpr std::string_view kBytes = " :-{},#\"'\n\t0a/.";
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto next = [&](size_t bound) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return static_cast<size_t>(seed % bound);
  };
  size_t agreed_ok = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = base;
    for (int edits = 1 + static_cast<int>(next(3)); edits > 0; --edits) {
      const size_t at = next(text.size());
      switch (next(4)) {
        case 0:
          text.erase(at, 1);
          break;
        case 1:
          text.insert(at, 1, kBytes[next(kBytes.size())]);
          break;
        case 2:
          text[at] = kBytes[next(kBytes.size())];
          break;
        default: {  // a line repeated, or indented by one more blank
          const size_t bol =
              text.rfind('\n', at) == std::string::npos ? 0 : text.rfind('\n', at) + 1;
          const size_t eol = text.find('\n', at);
          if (next(2) == 0) {
            text.insert(bol, text.substr(bol, eol == std::string::npos ? eol : eol - bol + 1));
          } else {
            text.insert(bol, " ");
          }
        }
      }
    }
    auto fast = parse_flows("f.yaml", text, *app);
    auto full = parse_flows_full("f.yaml", text, *app);
    ASSERT_EQ(fast.ok(), full.ok()) << text << (fast.ok() ? full.error() : fast.error());
    if (fast.ok()) {
      ASSERT_EQ(dump(*fast), dump(*full)) << text;
      ++agreed_ok;
    } else {
      ASSERT_EQ(fast.error(), full.error()) << text;
    }
  }
  EXPECT_GT(agreed_ok, 100u);  // the edits leave many files valid: those are compared too
}

}  // namespace
}  // namespace sluice::config
