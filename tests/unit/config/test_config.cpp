// Tests for lib/config: good files decode to the expected structs; every bad file is refused
// with the exact file:line:col and a message that says what is wrong.

#include "lib/config/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

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

TEST_F(ConfigTest, BadUnknownTopLevelKey) {
  app_error(std::string(kApp) + "bogus: 1\n", "11:1", "unknown key 'bogus'");
  app_error(std::string(kApp) + "bogus: 1\n", "11:1",
            "expected one of ports, workers, rings, mempool, flows, telemetry, logging");
}

TEST_F(ConfigTest, BadCaptureSection) {
  app_error(std::string(kApp) + "capture:\n  lcore: 2\n  path: /var/lib/sluice\n", "11:1",
            "capture is not available in this build");
  app_error(std::string(kApp) + "capture: {}\n", "11:1", "later release");
  app_error(std::string(kApp) + "capture: {}\n", "11:1", "remove it");
}

TEST_F(ConfigTest, BadPortsType) {
  app_error(std::string("ports:\n  wan: x\n") + kTail, "2:3", "ports: got a map; expected a list");
  app_error(std::string("ports: []\n") + kTail, "1:8", "expected at least one port");
  app_error(kTail, "1:1", "missing required key 'ports'");
}

TEST_F(ConfigTest, BadTooManyPorts) {
  // Port 33 starts on line 1 + 32 * 2 + 1.
  app_error(ports(33) + kTail, "66:5", "33 ports; expected at most 32");
  EXPECT_TRUE(load_appliance(write("sluice.yaml", ports(32) + kTail)).ok());
}

TEST_F(ConfigTest, BadPortKey) {
  app_error(std::string(kOnePort) + "    speed: 10G\n" + kTail, "4:5",
            "ports[0]: unknown key 'speed'; expected one of name, device, rx_queues");
}

TEST_F(ConfigTest, BadPortName) {
  app_error(std::string("ports:\n  - name: WAN\n    device: x\n") + kTail, "2:11",
            "ports[0].name: 'WAN' is not a valid port name");
  app_error(std::string("ports:\n  - name: ") + std::string(32, 'a') + "\n    device: x\n" + kTail,
            "2:11", "1 to 31 characters");
}

TEST_F(ConfigTest, BadDuplicatePortName) {
  app_error(std::string(kOnePort) + "  - name: wan\n    device: y\n" + kTail, "4:11",
            "duplicate port name 'wan' (first at line 2)");
}

TEST_F(ConfigTest, BadDevice) {
  app_error(std::string("ports:\n  - name: wan\n    device: \"\"\n") + kTail, "3:13",
            "ports[0].device: empty device");
  app_error(std::string("ports:\n  - name: wan\n") + kTail, "2:5",
            "ports[0]: missing required key 'device'");
  app_error(std::string("ports:\n  - name: wan\n    device: [a]\n") + kTail, "3:13",
            "got a list; expected a PCI address");
}

TEST_F(ConfigTest, BadPortNumbers) {
  app_error(std::string(kOnePort) + "    rx_queues: 0\n" + kTail, "4:16",
            "ports[0].rx_queues: 0 is out of range; expected an integer 1..64");
  app_error(std::string(kOnePort) + "    rx_descriptors: 32\n" + kTail, "4:21",
            "expected an integer 64..32768");
  app_error(std::string(kOnePort) + "    tx_descriptors: 65536\n" + kTail, "4:21",
            "expected an integer 64..32768");
  app_error(std::string(kOnePort) + "    mtu: 9601\n" + kTail, "4:10",
            "ports[0].mtu: 9601 is out of range; expected an integer 68..9600");
  app_error(std::string(kOnePort) + "    mtu: \"1500\"\n" + kTail, "4:10",
            "got the string \"1500\"; expected an integer 68..9600");
  app_error(std::string(kOnePort) + "    mtu: big\n" + kTail, "4:10", "got 'big'; expected");
  app_error(std::string(kOnePort) + "    mtu: 99999999999999999999\n" + kTail, "4:10",
            "is out of range");
}

TEST_F(ConfigTest, BadLcores) {
  const std::string head = std::string(kOnePort) + "flows: f.yaml\nworkers:\n";
  app_error(head + "  lcores: []\n", "6:11", "workers.lcores: got a list; expected at least one");
  app_error(head + "  lcores: 1\n", "6:11", "got '1'; expected a list of lcore numbers");
  app_error(head + "  lcores: [1, 2, 1]\n", "6:18", "lcore 1 is listed twice (first at line 6)");
  app_error(head + "  lcores: [1024]\n", "6:12",
            "1024 is out of range; expected an integer 0..1023");
  app_error(head + "  lcores: [-1]\n", "6:12", "expected an integer 0..1023");
  app_error(head + "  burst: 8\n", "6:3", "workers: missing required key 'lcores'");
  app_error(std::string(kOnePort) + "flows: f.yaml\n", "1:1", "missing required key 'workers'");
}

TEST_F(ConfigTest, BadBurst) {
  app_error(std::string(kOnePort) + "flows: f.yaml\nworkers:\n  lcores: [1]\n  burst: 65\n", "7:10",
            "workers.burst: 65 is out of range; expected an integer 1..64");
}

TEST_F(ConfigTest, FlowCacheEntries) {
  const std::string head = std::string(kOnePort) + "flows: flows.yaml\nworkers:\n  lcores: [1]\n";
  app_error(head + "  flow_cache: 3000\n", "7:15",
            "workers.flow_cache: 3000 is not a power of two from 2; expected 0 (off) or a power of "
            "two 2..1048576 (entries per worker) (did you mean 4096?)");
  app_error(head + "  flow_cache: 1\n", "7:15", "(did you mean 2?)");
  app_error(head + "  flow_cache: 2097152\n", "7:15", "2097152 is out of range");
  app_error(head + "  flow_cache: lots\n", "7:15", "expected 0 (off) or a power of two");
  for (auto [text, want] :
       {std::pair{"  flow_cache: 0\n", 0u}, {"  flow_cache: 1024\n", 1024u}, {"", 8192u}}) {
    auto cfg = load_ok(head + text, "version: 1\nrules: []\n");
    ASSERT_TRUE(cfg);
    EXPECT_EQ(cfg->appliance.workers.flow_cache, want) << text;
  }
}

TEST_F(ConfigTest, BadRingSize) {
  app_error(std::string(kOnePort) + kTail + "rings:\n  size: 1000\n", "8:9",
            "rings.size: 1000 is not a power of two; expected a power of two 64..1048576 (did you "
            "mean 1024?)");
  app_error(std::string(kOnePort) + kTail + "rings:\n  size: 32\n", "8:9", "out of range");
  app_error(std::string(kOnePort) + kTail + "rings:\n  size: 2097152\n", "8:9", "out of range");
  app_error(std::string(kOnePort) + kTail + "rings: 4096\n", "7:8",
            "expected a map with keys size");
}

TEST_F(ConfigTest, BadMempool) {
  app_error(std::string(kOnePort) + kTail + "mempool:\n  mbufs: 100\n", "8:10",
            "mempool.mbufs: 100 is out of range; expected auto or an integer >= 1024");
  app_error(std::string(kOnePort) + kTail + "mempool:\n  mbufs: lots\n", "8:10",
            "got 'lots'; expected auto or an integer >= 1024");
  app_error(std::string(kOnePort) + kTail + "mempool:\n  cache: 513\n", "8:10",
            "expected an integer 0..512");
}

TEST_F(ConfigTest, BadFlowsKey) {
  app_error(std::string(kOnePort) + "workers: { lcores: [1] }\n", "1:1",
            "missing required key 'flows'");
  app_error(std::string(kOnePort) + "workers: { lcores: [1] }\nflows: \"\"\n", "5:8",
            "flows: empty path");
  app_error(std::string(kOnePort) + "workers: { lcores: [1] }\nflows: [a]\n", "5:8",
            "flows: got a list; expected the path of the flows file");
}

TEST_F(ConfigTest, BadTelemetry) {
  const std::string base = std::string(kOnePort) + kTail + "telemetry:\n";
  app_error(base + "  prometheus: localhost\n", "8:15", "'localhost' has no port");
  app_error(base + "  prometheus: 127.0.0.1:0\n", "8:15", "not 1..65535");
  app_error(base + "  prometheus: 127.0.0.1:65536\n", "8:15", "not 1..65535");
  app_error(base + "  prometheus: :9464\n", "8:15", "has no host");
  app_error(base + "  prometheus: \"::1:9464\"\n", "8:15", "without brackets");
  app_error(base + "  port: 9464\n", "8:3",
            "telemetry: unknown key 'port'; expected one of prometheus");
}

TEST_F(ConfigTest, BadLogLevel) {
  app_error(std::string(kOnePort) + kTail + "logging:\n  level: verbose\n", "8:10",
            "logging.level: got 'verbose'; expected trace|debug|info|warn|error");
}

TEST_F(ConfigTest, BadDuplicateKey) {
  app_error(std::string(kOnePort) + kTail + "workers: { lcores: [2] }\n", "7:1",
            "duplicate key 'workers' (first at line 4)");
}

TEST_F(ConfigTest, BadYamlSyntax) {
  app_error(std::string(kOnePort) + "workers: { lcores: [1]\nflows: f.yaml\n", "5:1",
            "invalid YAML");
  app_error("ports: a: b\n", "1:9", "invalid YAML: illegal map value");
}

TEST_F(ConfigTest, BadTopLevelType) {
  app_error("- a\n- b\n", "1:1", "got a list; expected a map with keys ports, workers");
  app_error("", "1:1", "missing required key 'ports'");
}

TEST_F(ConfigTest, MissingFile) {
  const std::string path = (dir_ / "nope.yaml").string();
  auto r = load_appliance(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "cannot read " + path + ": No such file or directory");

  auto d = load_appliance(dir_.string());  // a directory
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().rfind("cannot read " + dir_.string() + ": ", 0), 0u) << d.error();
}

// ---- bad flows files ----

TEST_F(ConfigTest, BadFlowsFileMissing) {
  const std::string app = write("sluice.yaml", kApp);
  auto r = load(app);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), app + ":10:8: flows: cannot read " + (dir_ / "flows.yaml").string() +
                           ": No such file or directory");
}

TEST_F(ConfigTest, BadVersion) {
  flows_error("version: 2\n", "1:10", "version: '2' is not a flows file version");
  flows_error("version: 2\n", "1:10", "expected version: 1");
  flows_error("rules: []\n", "1:1", "missing required key 'version'");
}

TEST_F(ConfigTest, BadFlowsTopLevelKey) {
  flows_error("version: 1\nrule: []\n", "2:1",
              "unknown key 'rule' at the top level; expected one of version, non_ip, default, "
              "rules");
}

TEST_F(ConfigTest, BadPolicies) {
  flows_error("version: 1\nnon_ip: { action: forward }\n", "2:19",
              "non_ip.action: forward without a port; expected 'to: PORT'");
  flows_error("version: 1\ndefault: { action: drop, to: lan }\n", "2:26",
              "default.to: 'to' with action drop");
  flows_error("version: 1\ndefault: { action: pass }\n", "2:20",
              "default.action: got 'pass'; expected forward|drop");
  flows_error("version: 1\nnon_ip: { action: drop, mirror: tap }\n", "2:25",
              "non_ip: unknown key 'mirror'; expected one of action, to");
  flows_error("version: 1\nnon_ip: drop\n", "2:9", "non_ip: got 'drop'; expected a map");
}

TEST_F(ConfigTest, BadRulesType) {
  flows_error("version: 1\nrules:\n  name: a\n", "3:3",
              "rules: got a map; expected a list of rules");
  flows_error("version: 1\nrules:\n  - drop\n", "3:5", "rules[0]: got 'drop'; expected a map");
}

TEST_F(ConfigTest, BadRuleKey) {
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    prio: 3\n", "5:5",
              "rules[0]: unknown key 'prio'; expected one of name, priority, match, action, to, "
              "mirror, capture");
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    match: { port: 3 }\n", "5:14",
              "rules[0].match: unknown key 'port'");
}

TEST_F(ConfigTest, BadRuleName) {
  flows_error("version: 1\nrules:\n  - name: has space\n    action: drop\n", "3:11",
              "rules[0].name: 'has space' is not a valid rule name");
  flows_error("version: 1\nrules:\n  - action: drop\n", "3:5",
              "rules[0]: missing required key 'name'");
}

TEST_F(ConfigTest, BadDuplicateRuleName) {
  flows_error(
      "version: 1\nrules:\n  - name: dns\n    action: drop\n  - name: x\n    action: drop\n"
      "  - name: dns\n    action: drop\n",
      "7:11", "rules[2].name: duplicate rule name 'dns' (first at line 3)");
}

TEST_F(ConfigTest, BadPriority) {
  flows_error("version: 1\nrules:\n  - name: a\n    priority: 65536\n    action: drop\n", "4:15",
              "rules[0].priority: 65536 is out of range; expected an integer 0..65535");
  flows_error("version: 1\nrules:\n  - name: a\n    priority: high\n    action: drop\n", "4:15",
              "got 'high'; expected an integer 0..65535");
}

TEST_F(ConfigTest, BadUnknownPorts) {
  const std::string kPorts = "expected one of the configured ports: wan, lan, tap";
  flows_error("version: 1\nrules:\n  - name: a\n    match: { in_port: dmz }\n    action: drop\n",
              "4:23", "rules[0].match.in_port: unknown port 'dmz'; " + kPorts);
  flows_error("version: 1\nrules:\n  - name: a\n    action: forward\n    to: dmz\n", "5:9",
              "rules[0].to: unknown port 'dmz'; " + kPorts);
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    mirror: dmz\n", "5:13",
              "rules[0].mirror: unknown port 'dmz'; " + kPorts);
  flows_error("version: 1\nnon_ip: { action: forward, to: dmz }\n", "2:32",
              "non_ip.to: unknown port 'dmz'; " + kPorts);
}

TEST_F(ConfigTest, BadProto) {
  flows_error("version: 1\nrules:\n  - name: a\n    match: { proto: tpc }\n    action: drop\n",
              "4:21", "got 'tpc'; expected tcp|udp|icmp|icmpv6|sctp|gre|esp or a number 0..255");
  flows_error("version: 1\nrules:\n  - name: a\n    match: { proto: 256 }\n    action: drop\n",
              "4:21", "got '256'; expected tcp|udp");
}

TEST_F(ConfigTest, BadCidrHostBits) {
  flows_error("version: 1\nrules:\n  - name: a\n    match: { src: 10.0.0.1/8 }\n    action: drop\n",
              "4:19", "rules[0].match.src: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?");
  flows_error(
      "version: 1\nrules:\n  - name: a\n    match:\n      dst: \"2001:db8::1/32\"\n"
      "    action: drop\n",
      "5:12", "2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?");
  flows_error(
      "version: 1\nrules:\n  - name: a\n    match: { dst: 192.168.1.129/25 }\n"
      "    action: drop\n",
      "4:19", "did you mean 192.168.1.128/25?");
}

TEST_F(ConfigTest, BadCidrPrefix) {
  flows_error(
      "version: 1\nrules:\n  - name: a\n    match: { src: 10.0.0.0/33 }\n    action: drop\n",
      "4:19", "prefix '/33' is out of range for IPv4 (0..32)");
  flows_error("version: 1\nrules:\n  - name: a\n    match: { src: \"::/129\" }\n    action: drop\n",
              "4:19", "prefix '/129' is out of range for IPv6 (0..128)");
  flows_error("version: 1\nrules:\n  - name: a\n    match: { src: 10.0.0.0/ }\n    action: drop\n",
              "4:19", "prefix '/' is out of range");
  flows_error("version: 1\nrules:\n  - name: a\n    match: { src: 10.0.0.256 }\n    action: drop\n",
              "4:19", "'10.0.0.256' is not an IPv4 or IPv6 address");
}

TEST_F(ConfigTest, BadFamilyMix) {
  flows_error(
      "version: 1\nrules:\n  - name: a\n    match: { src: 10.0.0.0/8, dst: \"::1\" }\n"
      "    action: drop\n",
      "4:36", "rules[0].match.dst: dst is IPv6 but src is IPv4");
}

TEST_F(ConfigTest, BadPortsWithoutPortedProto) {
  flows_error(
      "version: 1\nrules:\n  - name: a\n    match: { proto: icmp, dst_port: 1 }\n"
      "    action: drop\n",
      "4:27",
      "rules[0].match.dst_port: port match with proto icmp; expected proto tcp, udp or "
      "sctp");
  flows_error("version: 1\nrules:\n  - name: a\n    match: { src_port: 1 }\n    action: drop\n",
              "4:14", "port match with no proto");
}

TEST_F(ConfigTest, BadPortRange) {
  const std::string head = "version: 1\nrules:\n  - name: a\n    match: { proto: tcp, dst_port: ";
  flows_error(head + "2000-1000 }\n    action: drop\n", "4:36",
              "2000-1000 has LO above HI; expected LO <= HI (did you mean 1000-2000?)");
  flows_error(head + "70000 }\n    action: drop\n", "4:36",
              "70000 is out of range; expected a port 0..65535");
  flows_error(head + "http }\n    action: drop\n", "4:36",
              "got 'http'; expected a port 0..65535 or a range LO-HI");
  flows_error(head + "-5 }\n    action: drop\n", "4:36", "expected a port 0..65535");
}

TEST_F(ConfigTest, BadForwardAndDrop) {
  flows_error("version: 1\nrules:\n  - name: a\n    action: forward\n", "4:13",
              "rules[0].action: forward without a port; expected 'to: PORT'");
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    to: lan\n", "5:5",
              "rules[0].to: 'to' with action drop");
  flows_error("version: 1\nrules:\n  - name: a\n    to: lan\n", "3:5",
              "rules[0]: missing required key 'action'");
}

TEST_F(ConfigTest, BadMirrorSameAsTo) {
  flows_error(
      "version: 1\nrules:\n  - name: a\n    action: forward\n    to: lan\n"
      "    mirror: lan\n",
      "6:13", "rules[0].mirror: mirror is the same port as 'to' (lan)");
}

TEST_F(ConfigTest, BadRuleCapture) {
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    capture: true\n", "5:14",
              "rules[0].capture: capture is not available in this build (the capture store "
              "comes in a later release)");
  flows_error("version: 1\nrules:\n  - name: a\n    action: drop\n    capture: maybe\n", "5:14",
              "got 'maybe'; expected true or false");
}

TEST_F(ConfigTest, BadMatchType) {
  flows_error("version: 1\nrules:\n  - name: a\n    match: [tcp]\n    action: drop\n", "4:12",
              "rules[0].match: got a list; expected a map with keys in_port, proto");
}

TEST_F(ConfigTest, BadFlowsYamlSyntax) {
  flows_error("version: 1\nrules:\n  - name: a\n   action: drop\n", "4:4", "invalid YAML");
}

}  // namespace
}  // namespace sluice::config
