// lib/flow/flow_table: rules compiled into rte_acl, checked against the CONTRACT's match and
// priority semantics and against a brute-force matcher on random rule sets.

#include "lib/flow/flow_table.h"

#include <arpa/inet.h>
#include <rte_cycles.h>
#include <rte_memory.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

namespace cfg = sluice::config;
namespace simd = sluice::simd;
using sluice::flow::FlowTable;
using sluice::flow::kNonIp;
using sluice::flow::kNoPort;
using sluice::flow::kNoRule;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kIcmp = 1;
constexpr uint8_t kGre = 47;

// "10.0.0.0/8", "2001:db8::/32" or a plain address (/32, /128). Host bits are cleared, as the
// config loader guarantees.
cfg::Cidr cidr(const std::string& text) {
  cfg::Cidr c;
  const auto slash = text.find('/');
  const std::string addr = text.substr(0, slash);
  if (inet_pton(AF_INET, addr.c_str(), c.addr.data()) == 1) {
    c.family = 4;
    c.prefix = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.addr.data()) == 1) {
    c.family = 6;
    c.prefix = 128;
  } else {
    throw std::invalid_argument("bad address " + text);
  }
  if (slash != std::string::npos)
    c.prefix = static_cast<uint8_t>(std::stoi(text.substr(slash + 1)));
  for (unsigned bit = c.prefix; bit < 128; ++bit)
    c.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return c;
}

cfg::Rule rule(const std::string& name, uint16_t priority, cfg::Match match) {
  cfg::Rule r;
  r.name = name;
  r.priority = priority;
  r.match = std::move(match);
  return r;
}

cfg::Flows flows_of(std::vector<cfg::Rule> rules) {
  cfg::Flows f;
  f.rules = std::move(rules);
  return f;
}

// Keys as the validator fills them: network byte order, ports only with l4_valid.
simd::FlowKey key(uint8_t proto, const std::string& src, const std::string& dst, uint16_t sport = 0,
                  uint16_t dport = 0, uint8_t in_port = 0, bool l4_valid = true) {
  simd::FlowKey k{};
  k.proto = proto;
  k.in_port = in_port;
  const bool v6 = src.find(':') != std::string::npos;
  k.family = v6 ? simd::Family::kIpv6 : simd::Family::kIpv4;
  const int af = v6 ? AF_INET6 : AF_INET;
  if (inet_pton(af, src.c_str(), k.src.data()) != 1 ||
      inet_pton(af, dst.c_str(), k.dst.data()) != 1)
    throw std::invalid_argument("bad key address");
  k.l4_valid = l4_valid ? 1 : 0;
  if (l4_valid) {
    k.src_port = htons(sport);
    k.dst_port = htons(dport);
  }
  return k;
}

simd::FlowKey fragment(uint8_t proto, const std::string& src, const std::string& dst) {
  simd::FlowKey k = key(proto, src, dst, 0, 0, 0, false);
  k.fragment = 1;
  return k;
}

simd::FlowKey non_ip() {
  simd::FlowKey k{};
  k.family = simd::Family::kNone;
  return k;
}

// prefix + number (operator+ on a literal trips GCC 12's -Wrestrict false positive).
std::string numbered(const char* prefix, long n) {
  std::string s = prefix;
  s += std::to_string(n);
  return s;
}

std::string next_name() {
  static int n = 0;
  return numbered("ft", n++);
}

std::unique_ptr<FlowTable> build(const cfg::Flows& f) {
  auto r = FlowTable::build(f, next_name(), SOCKET_ID_ANY);
  if (!r) {
    ADD_FAILURE() << r.error();
    return nullptr;
  }
  return std::move(*r);
}

std::vector<uint32_t> classify(const FlowTable& t, const std::vector<simd::FlowKey>& keys) {
  std::vector<uint32_t> out(keys.size(), 0xdeadbeef);
  std::vector<const simd::FlowKey*> ptrs;
  for (const auto& k : keys) ptrs.push_back(&k);
  for (size_t i = 0; i < keys.size(); i += 64) {
    const auto n = static_cast<uint16_t>(std::min<size_t>(64, keys.size() - i));
    t.classify(ptrs.data() + i, n, out.data() + i);
  }
  return out;
}

uint32_t classify1(const FlowTable& t, const simd::FlowKey& k) {
  return classify(t, {k})[0];
}

// --- the brute-force reference ------------------------------------------------------------

uint8_t family_of(const cfg::Match& m) {
  return m.src ? m.src->family : m.dst ? m.dst->family : 0;
}

bool in_prefix(const cfg::Cidr& c, const std::array<uint8_t, 16>& a) {
  for (unsigned bit = 0; bit < c.prefix; ++bit) {
    const uint8_t m = static_cast<uint8_t>(0x80u >> (bit % 8));
    if ((c.addr[bit / 8] & m) != (a[bit / 8] & m)) return false;
  }
  return true;
}

bool in_range(const cfg::PortRange& r, uint16_t net_port) {
  const uint16_t p = ntohs(net_port);
  return p >= r.lo && p <= r.hi;
}

bool matches(const cfg::Rule& r, const simd::FlowKey& k) {
  const cfg::Match& m = r.match;
  const uint8_t fam = family_of(m);
  if (fam != 0 && fam != static_cast<uint8_t>(k.family)) return false;
  if (m.proto && *m.proto != k.proto) return false;
  if (m.in_port && *m.in_port != k.in_port) return false;
  if (m.src_port || m.dst_port) {
    if (!k.l4_valid) return false;
    if (m.src_port && !in_range(*m.src_port, k.src_port)) return false;
    if (m.dst_port && !in_range(*m.dst_port, k.dst_port)) return false;
  }
  if (m.src && !in_prefix(*m.src, k.src)) return false;
  if (m.dst && !in_prefix(*m.dst, k.dst)) return false;
  return true;
}

uint32_t brute_force(const cfg::Flows& f, const simd::FlowKey& k) {
  if (k.family == simd::Family::kNone) return kNonIp;
  uint32_t best = kNoRule;
  for (uint32_t i = 0; i < f.rules.size(); ++i) {
    if (!matches(f.rules[i], k)) continue;
    if (best == kNoRule || f.rules[i].priority > f.rules[best].priority) best = i;
  }
  return best;
}

// --- semantics ----------------------------------------------------------------------------

TEST(FlowTable, HigherPriorityWinsRegardlessOfOrder) {
  const auto broad = rule("broad", 10, {.dst = cidr("10.0.0.0/8")});
  const auto narrow = rule("narrow", 20, {.dst = cidr("10.1.0.0/16")});
  auto t1 = build(flows_of({broad, narrow}));
  auto t2 = build(flows_of({narrow, broad}));
  ASSERT_TRUE(t1 && t2);
  const auto in_narrow = key(kTcp, "1.2.3.4", "10.1.2.3", 1, 2);
  const auto in_broad = key(kTcp, "1.2.3.4", "10.2.2.3", 1, 2);
  EXPECT_EQ(classify1(*t1, in_narrow), 1u);
  EXPECT_EQ(classify1(*t2, in_narrow), 0u);
  EXPECT_EQ(classify1(*t1, in_broad), 0u);
  EXPECT_EQ(classify1(*t2, in_broad), 1u);
  EXPECT_EQ(classify1(*t1, key(kTcp, "1.2.3.4", "11.0.0.1", 1, 2)), kNoRule);
}

TEST(FlowTable, EqualPriorityEarlierInFileWins) {
  auto t = build(flows_of({
      rule("a", 7, {.proto = kUdp}),
      rule("b", 7, {.proto = kUdp}),
      rule("c", 7, {.proto = kUdp, .dst = cidr("10.0.0.1")}),  // narrower but later
      rule("d", 3, {}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "10.0.0.1", 5, 6)), 0u);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "10.0.0.1", 5, 6)), 3u);

  // Many ties: with all priorities equal, the first matching rule in file order wins.
  std::vector<cfg::Rule> rules;
  for (int i = 0; i < 50; ++i)
    rules.push_back(rule(numbered("r", i), 1, {.dst = cidr(numbered("10.0.0.0/", 32 - i % 25))}));
  const auto f = flows_of(rules);
  auto t2 = build(f);
  ASSERT_TRUE(t2);
  for (const char* d : {"10.0.0.0", "10.0.0.1", "10.0.0.200", "10.0.3.1", "10.0.255.255"}) {
    const auto k = key(kTcp, "1.1.1.1", d, 1, 1);
    EXPECT_EQ(classify1(*t2, k), brute_force(f, k)) << d;
  }
}

// Rules go into rte_acl sorted by their field values, not in file order: among equal
// priorities a later rule that sorts first still loses to the earlier one.
TEST(FlowTable, RulesAddedInValueOrderKeepFileOrderForTies) {
  auto t = build(flows_of({
      rule("earlier-16", 5, {.dst = cidr("10.1.0.0/16")}),
      rule("later-8-sorts-first", 5, {.dst = cidr("10.0.0.0/8")}),
      rule("earlier-ports-1-9", 5, {.proto = kUdp, .dst_port = cfg::PortRange{1, 9}}),
      rule("later-ports-0-100-sorts-first", 5, {.proto = kUdp, .dst_port = cfg::PortRange{0, 100}}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "10.1.2.3", 5, 6)), 0u);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "10.2.2.3", 5, 6)), 1u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "11.2.2.3", 5, 6)), 2u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "11.2.2.3", 5, 60)), 3u);
}

TEST(FlowTable, PrefixLengthDoesNotOverridePriority) {
  // A shorter prefix with higher priority beats a longer one; a longer one with higher
  // priority beats a shorter one.
  auto t = build(flows_of({
      rule("short-high", 100, {.src = cidr("192.168.0.0/16")}),
      rule("long-low", 50, {.src = cidr("192.168.1.0/24")}),
      rule("longer-higher", 200, {.src = cidr("192.168.1.128/25")}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(classify1(*t, key(kTcp, "192.168.1.5", "1.1.1.1", 1, 1)), 0u);
  EXPECT_EQ(classify1(*t, key(kTcp, "192.168.1.200", "1.1.1.1", 1, 1)), 2u);
  EXPECT_EQ(classify1(*t, key(kTcp, "192.168.2.1", "1.1.1.1", 1, 1)), 0u);
  EXPECT_EQ(classify1(*t, key(kTcp, "192.169.1.1", "1.1.1.1", 1, 1)), kNoRule);
}

TEST(FlowTable, Ipv4ZeroAndFullPrefixes) {
  auto t = build(flows_of({
      rule("host", 10, {.dst = cidr("10.9.8.7/32")}),
      rule("all-v4", 1, {.dst = cidr("0.0.0.0/0")}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "10.9.8.7", 1, 1)), 0u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "10.9.8.6", 1, 1)), 1u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "10.9.8.8", 1, 1)), 1u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "138.9.8.7", 1, 1)), 1u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "255.255.255.255", 1, 1)), 1u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "0.0.0.0", 1, 1)), 1u);
  // 0.0.0.0/0 is still IPv4 only.
  EXPECT_EQ(classify1(*t, key(kUdp, "::1", "::2", 1, 1)), kNoRule);
  EXPECT_EQ(t->rules_v4(), 2u);
  EXPECT_EQ(t->rules_v6(), 0u);
}

TEST(FlowTable, Ipv6Prefixes) {
  auto t = build(flows_of({
      rule("host", 50, {.src = cidr("2001:db8::1/128")}),
      rule("p97", 40, {.src = cidr("2001:db8::8000:0/97")}),  // crosses the 4th word
      rule("p33", 30, {.src = cidr("2001:db8:8000::/33")}),   // crosses the 2nd word
      rule("p64", 20, {.src = cidr("2001:db8::/64")}),
      rule("all-v6", 1, {.src = cidr("::/0")}),
  }));
  ASSERT_TRUE(t);
  auto src = [&](const char* a) { return classify1(*t, key(kTcp, a, "2001:db8::ffff", 1, 1)); };
  EXPECT_EQ(src("2001:db8::1"), 0u);
  EXPECT_EQ(src("2001:db8::2"), 3u);
  EXPECT_EQ(src("2001:db8::8000:1"), 1u);
  EXPECT_EQ(src("2001:db8::ffff:ffff"), 1u);
  EXPECT_EQ(src("2001:db8::7fff:ffff"), 3u);
  EXPECT_EQ(src("2001:db8:8000::1"), 2u);
  EXPECT_EQ(src("2001:db8:ffff:ffff::"), 2u);
  EXPECT_EQ(src("2001:db8:7fff::1"), 4u);  // /33 says bit 32 is 1
  EXPECT_EQ(src("2001:db8:0:1::1"), 4u);   // outside the /64
  EXPECT_EQ(src("fe80::1"), 4u);
  EXPECT_EQ(src("::"), 4u);
  EXPECT_EQ(classify1(*t, key(kTcp, "10.0.0.1", "10.0.0.2", 1, 1)), kNoRule);
  EXPECT_EQ(t->rules_v4(), 0u);
  EXPECT_EQ(t->rules_v6(), 5u);
}

TEST(FlowTable, PortRangesAndBoundaries) {
  auto t = build(flows_of({
      rule("range", 10, {.proto = kTcp, .dst_port = cfg::PortRange{1000, 2000}}),
      rule("exact", 10, {.proto = kUdp, .dst_port = cfg::PortRange{53, 53}}),
      rule("src", 10, {.proto = kTcp, .src_port = cfg::PortRange{0, 0}}),
      rule("top", 10, {.proto = kUdp, .src_port = cfg::PortRange{65535, 65535}}),
      rule("both", 20,
           {.proto = kTcp,
            .src_port = cfg::PortRange{1024, 65535},
            .dst_port = cfg::PortRange{443, 443}}),
  }));
  ASSERT_TRUE(t);
  auto tcp = [&](uint16_t s, uint16_t d) {
    return classify1(*t, key(kTcp, "1.1.1.1", "2.2.2.2", s, d));
  };
  auto udp = [&](uint16_t s, uint16_t d) {
    return classify1(*t, key(kUdp, "1.1.1.1", "2.2.2.2", s, d));
  };
  EXPECT_EQ(tcp(5, 999), kNoRule);
  EXPECT_EQ(tcp(5, 1000), 0u);
  EXPECT_EQ(tcp(5, 1500), 0u);
  EXPECT_EQ(tcp(5, 2000), 0u);
  EXPECT_EQ(tcp(5, 2001), kNoRule);
  EXPECT_EQ(tcp(5, 0x03e8 + 0x100), 0u);  // high byte differs from 1000's
  EXPECT_EQ(udp(5, 53), 1u);
  EXPECT_EQ(udp(5, 52), kNoRule);
  EXPECT_EQ(udp(5, 54), kNoRule);
  EXPECT_EQ(udp(5, 53 << 8), kNoRule);  // byte-swapped 53
  EXPECT_EQ(tcp(0, 80), 2u);
  EXPECT_EQ(tcp(1, 80), kNoRule);
  EXPECT_EQ(udp(65535, 80), 3u);
  EXPECT_EQ(udp(65534, 80), kNoRule);
  EXPECT_EQ(tcp(1024, 443), 4u);
  EXPECT_EQ(tcp(65535, 443), 4u);
  EXPECT_EQ(tcp(1023, 443), kNoRule);
  EXPECT_EQ(tcp(40000, 444), kNoRule);
  EXPECT_EQ(classify1(*t, key(kUdp, "::1", "::2", 7, 53)), 1u);  // family-less
}

TEST(FlowTable, ProtoByNumber) {
  auto t = build(flows_of({
      rule("tcp", 1, {.proto = kTcp}),
      rule("gre", 1, {.proto = kGre}),
      rule("p255", 1, {.proto = 255}),
      rule("p0", 1, {.proto = 0}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "2.2.2.2", 1, 2)), 0u);
  EXPECT_EQ(classify1(*t, key(kGre, "1.1.1.1", "2.2.2.2", 0, 0, 0, false)), 1u);
  EXPECT_EQ(classify1(*t, key(255, "1.1.1.1", "2.2.2.2", 0, 0, 0, false)), 2u);
  EXPECT_EQ(classify1(*t, key(0, "::1", "::2", 0, 0, 0, false)), 3u);  // hop-by-hop number
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "2.2.2.2", 1, 2)), kNoRule);
  EXPECT_EQ(classify1(*t, key(kIcmp, "1.1.1.1", "2.2.2.2", 0, 0, 0, false)), kNoRule);
}

TEST(FlowTable, FamiliesAreSeparate) {
  // 10.0.0.1 and ::a00:1 have the same leading bytes in different families.
  auto t = build(flows_of({
      rule("v4", 5, {.src = cidr("10.0.0.0/8")}),
      rule("v6", 5, {.dst = cidr("a00::/8")}),
      rule("v6-src", 5, {.src = cidr("::a00:1")}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->rules_v4(), 1u);
  EXPECT_EQ(t->rules_v6(), 2u);
  EXPECT_EQ(classify1(*t, key(kTcp, "10.0.0.1", "10.0.0.1", 1, 1)), 0u);
  EXPECT_EQ(classify1(*t, key(kTcp, "::a00:1", "::", 1, 1)), 2u);
  EXPECT_EQ(classify1(*t, key(kTcp, "a00::1", "a00::1", 1, 1)), 1u);
  // An IPv4 key whose dst shares the v6 rule's first byte.
  EXPECT_EQ(classify1(*t, key(kTcp, "11.0.0.1", "10.0.0.1", 1, 1)), kNoRule);
}

TEST(FlowTable, FamilyLessRulesMatchBoth) {
  auto t = build(flows_of({
      rule("dns", 10, {.proto = kUdp, .dst_port = cfg::PortRange{53, 53}}),
      rule("v6-only", 20, {.dst = cidr("2001:db8::/32")}),
      rule("any", 0, {}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->rules_v4(), 2u);
  EXPECT_EQ(t->rules_v6(), 3u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "8.8.8.8", 999, 53)), 0u);
  EXPECT_EQ(classify1(*t, key(kUdp, "2001:db9::1", "2001:4860::8888", 999, 53)), 0u);
  EXPECT_EQ(classify1(*t, key(kUdp, "2001:db9::1", "2001:db8::1", 999, 53)), 1u);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "8.8.8.8", 999, 53)), 2u);
  EXPECT_EQ(classify1(*t, key(kTcp, "fe80::1", "ff02::1", 999, 53)), 2u);
  EXPECT_EQ(classify1(*t, non_ip()), kNonIp);
}

TEST(FlowTable, InPort) {
  auto t = build(flows_of({
      rule("wan", 10, {.in_port = 1, .proto = kTcp}),
      rule("lan", 10, {.in_port = 0}),
      rule("p255", 10, {.in_port = 255}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "2.2.2.2", 1, 2, 1)), 0u);
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "2.2.2.2", 1, 2, 1)), kNoRule);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "2.2.2.2", 1, 2, 0)), 1u);
  EXPECT_EQ(classify1(*t, key(kTcp, "::1", "::2", 1, 2, 0)), 1u);
  EXPECT_EQ(classify1(*t, key(kTcp, "::1", "::2", 1, 2, 2)), kNoRule);
  EXPECT_EQ(classify1(*t, key(kTcp, "::1", "::2", 1, 2, 255)), 2u);
}

TEST(FlowTable, NonFirstFragmentsMatchOnlyPortlessRules) {
  auto t = build(flows_of({
      rule("any-port", 30, {.proto = kUdp, .dst_port = cfg::PortRange{0, 65535}}),
      rule("port-zero", 30, {.proto = kUdp, .src_port = cfg::PortRange{0, 0}}),
      rule("udp-net", 10, {.proto = kUdp, .dst = cidr("10.0.0.0/8")}),
      rule("v6-net", 10, {.dst = cidr("2001:db8::/32")}),
  }));
  ASSERT_TRUE(t);
  EXPECT_EQ(classify1(*t, fragment(kUdp, "1.1.1.1", "10.1.1.1")), 2u);
  EXPECT_EQ(classify1(*t, fragment(kUdp, "1.1.1.1", "11.1.1.1")), kNoRule);
  EXPECT_EQ(classify1(*t, fragment(kUdp, "2001:db8::1", "2001:db8::2")), 3u);
  EXPECT_EQ(classify1(*t, fragment(kUdp, "2001:db9::1", "2001:db9::2")), kNoRule);
  // The first fragment carries ports.
  EXPECT_EQ(classify1(*t, key(kUdp, "1.1.1.1", "10.1.1.1", 0, 9)), 0u);
}

TEST(FlowTable, NonIpKeys) {
  auto empty = build(flows_of({}));
  auto t = build(flows_of({rule("any", 0, {})}));
  ASSERT_TRUE(empty && t);
  EXPECT_EQ(classify1(*empty, non_ip()), kNonIp);
  EXPECT_EQ(classify1(*t, non_ip()), kNonIp);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "2.2.2.2", 1, 2)), 0u);
}

TEST(FlowTable, EmptyRuleSet) {
  auto t = build(flows_of({}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->rule_count(), 0u);
  EXPECT_EQ(t->rules_v4(), 0u);
  EXPECT_EQ(t->rules_v6(), 0u);
  EXPECT_EQ(classify1(*t, key(kTcp, "1.1.1.1", "2.2.2.2", 1, 2)), kNoRule);
  EXPECT_EQ(classify1(*t, key(kTcp, "::1", "::2", 1, 2)), kNoRule);
  std::vector<uint32_t> none = classify(*t, {});
  EXPECT_TRUE(none.empty());
}

TEST(FlowTable, AccessorsAndActions) {
  cfg::Flows f = flows_of({
      rule("fwd", 1, {.proto = kTcp}),
      rule("drop", 2, {.proto = kUdp}),
      rule("fwd-mirror", 3, {.proto = kGre}),
      rule("drop-mirror", 4, {.proto = kIcmp}),
  });
  f.rules[0].action = cfg::Action::kForward;
  f.rules[0].to = 1;
  f.rules[2].action = cfg::Action::kForward;
  f.rules[2].to = 0;
  f.rules[2].mirror = 2;
  f.rules[3].mirror = 3;
  f.fallback = {cfg::Action::kForward, 2};
  f.non_ip = {cfg::Action::kDrop, std::nullopt};
  auto t = build(f);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->rule_count(), 4u);
  EXPECT_EQ(t->rule_names(),
            (std::vector<std::string>{"fwd", "drop", "fwd-mirror", "drop-mirror"}));
  EXPECT_EQ(t->action(0).action, cfg::Action::kForward);
  EXPECT_EQ(t->action(0).to, 1);
  EXPECT_EQ(t->action(0).mirror, kNoPort);
  EXPECT_EQ(t->action(1).action, cfg::Action::kDrop);
  EXPECT_EQ(t->action(1).to, kNoPort);
  EXPECT_EQ(t->action(1).mirror, kNoPort);
  EXPECT_EQ(t->action(2).to, 0);
  EXPECT_EQ(t->action(2).mirror, 2);
  EXPECT_EQ(t->action(3).action, cfg::Action::kDrop);
  EXPECT_EQ(t->action(3).to, kNoPort);
  EXPECT_EQ(t->action(3).mirror, 3);
  EXPECT_EQ(t->fallback().action, cfg::Action::kForward);
  EXPECT_EQ(t->fallback().to, 2);
  EXPECT_EQ(t->fallback().mirror, kNoPort);
  EXPECT_EQ(t->non_ip().action, cfg::Action::kDrop);
  EXPECT_EQ(t->non_ip().to, kNoPort);
  EXPECT_EQ(t->non_ip().mirror, kNoPort);

  cfg::Flows g;
  g.non_ip = {cfg::Action::kForward, 0};
  auto u = build(g);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->non_ip().action, cfg::Action::kForward);
  EXPECT_EQ(u->non_ip().to, 0);
  EXPECT_EQ(u->fallback().action, cfg::Action::kDrop);
  EXPECT_EQ(u->fallback().to, kNoPort);
}

TEST(FlowTable, BuildErrors) {
  const auto f = flows_of({rule("a", 1, {.src = cidr("10.0.0.0/8")})});
  auto live = FlowTable::build(f, "dup-name", SOCKET_ID_ANY);
  ASSERT_TRUE(live) << live.error();
  auto dup = FlowTable::build(f, "dup-name", SOCKET_ID_ANY);
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().find("already exists"), std::string::npos) << dup.error();
  live = sluice::Error{"released"};  // frees the first table: its name is free again
  auto again = FlowTable::build(f, "dup-name", SOCKET_ID_ANY);
  EXPECT_TRUE(again) << again.error();

  auto too_long = FlowTable::build(f, std::string(40, 'x'), SOCKET_ID_ANY);
  EXPECT_FALSE(too_long);

  auto mixed =
      FlowTable::build(flows_of({rule("m", 1, {.src = cidr("10.0.0.0/8"), .dst = cidr("::/0")})}),
                       next_name(), SOCKET_ID_ANY);
  ASSERT_FALSE(mixed);
  EXPECT_NE(mixed.error().find("'m'"), std::string::npos) << mixed.error();

  auto big_port =
      FlowTable::build(flows_of({rule("p", 1, {.in_port = 300})}), next_name(), SOCKET_ID_ANY);
  EXPECT_FALSE(big_port);
}

// --- random rule sets against the brute-force matcher ------------------------------------

class RandomRules {
 public:
  explicit RandomRules(uint32_t seed) : rng_(seed) {
    // A pool of networks, so rules and keys overlap the way real policies do.
    for (int i = 0; i < 64; ++i) {
      std::array<uint8_t, 16> a{};
      for (auto& b : a) b = static_cast<uint8_t>(rng_());
      nets4_.push_back(a);
      for (auto& b : a) b = static_cast<uint8_t>(rng_());
      a[0] = 0x20;
      a[1] = 0x01;
      nets6_.push_back(a);
    }
  }

  cfg::Rule make_rule(size_t i) {
    cfg::Match m;
    const unsigned fam_pick = pick(100);
    const uint8_t fam = fam_pick < 45 ? 4 : fam_pick < 80 ? 6 : 0;
    if (fam != 0) {
      const unsigned which = pick(3);  // src, dst or both
      if (which != 1) m.src = make_cidr(fam);
      if (which != 0) m.dst = make_cidr(fam);
    }
    const unsigned p = pick(10);
    if (p < 4)
      m.proto = kTcp;
    else if (p < 7)
      m.proto = kUdp;
    else if (p == 7)
      m.proto = kGre;
    if (m.proto && (*m.proto == kTcp || *m.proto == kUdp) && pick(2) == 0) {
      static const cfg::PortRange kRanges[] = {
          {53, 53},     {80, 80}, {443, 443},     {0, 1023},    {1024, 65535},
          {8000, 8099}, {0, 0},   {65535, 65535}, {5000, 5999}, {22, 23}};
      if (pick(4) == 0) m.src_port = kRanges[pick(std::size(kRanges))];
      if (pick(4) != 0 || !m.src_port) {
        if (pick(3) == 0) {
          const uint16_t lo = static_cast<uint16_t>(pick(65536));
          m.dst_port = cfg::PortRange{lo, static_cast<uint16_t>(lo + pick(65536 - lo))};
        } else {
          m.dst_port = kRanges[pick(std::size(kRanges))];
        }
      }
    }
    if (pick(5) == 0) m.in_port = static_cast<uint16_t>(pick(4));
    return rule(numbered("r", static_cast<long>(i)), static_cast<uint16_t>(pick(200)), m);
  }

  // A key inside a random rule (most of the time) or anywhere.
  simd::FlowKey make_key(const cfg::Flows& f) {
    simd::FlowKey k{};
    const cfg::Rule* r = f.rules.empty() || pick(10) < 2 ? nullptr : &f.rules[pick(f.rules.size())];
    uint8_t fam = r ? family_of(r->match) : 0;
    if (fam == 0) fam = pick(2) ? 4 : 6;
    k.family = static_cast<simd::Family>(fam);
    const size_t len = fam == 4 ? 4 : 16;
    auto fill = [&](std::array<uint8_t, 16>& a, const std::optional<cfg::Cidr>& c) {
      const auto& pool = fam == 4 ? nets4_ : nets6_;
      a = pool[pick(pool.size())];
      for (size_t b = 0; b < len; ++b)
        if (pick(4) == 0) a[b] = static_cast<uint8_t>(rng_());
      if (c) {
        for (unsigned bit = 0; bit < c->prefix; ++bit) {
          const uint8_t m = static_cast<uint8_t>(0x80u >> (bit % 8));
          a[bit / 8] = static_cast<uint8_t>((a[bit / 8] & ~m) | (c->addr[bit / 8] & m));
        }
      }
      for (size_t b = len; b < 16; ++b) a[b] = 0;
    };
    fill(k.src, r ? r->match.src : std::nullopt);
    fill(k.dst, r ? r->match.dst : std::nullopt);
    static const uint8_t kProtos[] = {kTcp, kUdp, kIcmp, kGre, 132};
    k.proto = r && r->match.proto && pick(8) ? *r->match.proto : kProtos[pick(std::size(kProtos))];
    k.in_port = r && r->match.in_port && pick(8) ? static_cast<uint8_t>(*r->match.in_port)
                                                 : static_cast<uint8_t>(pick(4));
    const bool has_l4 = k.proto == kTcp || k.proto == kUdp || k.proto == 132;
    k.l4_valid = has_l4 && pick(10) != 0 ? 1 : 0;  // 10%: non-first fragment
    if (k.l4_valid) {
      auto port = [&](const std::optional<cfg::PortRange>& pr) {
        if (pr && pick(8)) return static_cast<uint16_t>(pr->lo + pick(pr->hi - pr->lo + 1u));
        return static_cast<uint16_t>(pick(65536));
      };
      k.src_port = htons(port(r ? r->match.src_port : std::nullopt));
      k.dst_port = htons(port(r ? r->match.dst_port : std::nullopt));
    }
    return k;
  }

 private:
  unsigned pick(size_t n) { return static_cast<unsigned>(rng_() % n); }

  cfg::Cidr make_cidr(uint8_t fam) {
    cfg::Cidr c;
    c.family = fam;
    c.addr = (fam == 4 ? nets4_ : nets6_)[pick(64)];
    static const uint8_t kLen4[] = {0, 8, 12, 16, 20, 24, 24, 28, 32, 32};
    static const uint8_t kLen6[] = {0, 16, 32, 33, 48, 56, 64, 64, 96, 127, 128};
    c.prefix = fam == 4 ? kLen4[pick(std::size(kLen4))] : kLen6[pick(std::size(kLen6))];
    const unsigned bits = fam == 4 ? 32 : 128;
    for (unsigned bit = c.prefix; bit < bits; ++bit)
      if (pick(2)) c.addr[bit / 8] ^= static_cast<uint8_t>(0x80u >> (bit % 8));  // vary
    for (unsigned bit = c.prefix; bit < 128; ++bit)
      c.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    return c;
  }

  std::mt19937 rng_;
  std::vector<std::array<uint8_t, 16>> nets4_, nets6_;
};

void expect_same_as_brute_force(const FlowTable& t, const cfg::Flows& f,
                                const std::vector<simd::FlowKey>& keys) {
  const auto got = classify(t, keys);
  size_t bad = 0, hits = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint32_t want = brute_force(f, keys[i]);
    hits += want < kNonIp;
    if (got[i] != want && ++bad <= 10)
      ADD_FAILURE() << "key " << i << ": got " << got[i] << ", want " << want;
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(hits, keys.size() / 2);  // the keys exercise rules, not just the default
}

// Many overlapping rules with few priorities (ties everywhere), added in value order: the
// answers are the rules' (brute force).
TEST(FlowTable, ValueOrderedTiesMatchBruteForce) {
  std::mt19937 rng(11);
  std::vector<cfg::Rule> rules;
  for (int i = 0; i < 300; ++i) {
    const int len = 8 + static_cast<int>(rng() % 25);
    const std::string dst = "10." + std::to_string(rng() % 4) + "." + std::to_string(rng() % 4) +
                            ".0/" + std::to_string(len);
    const auto lo = static_cast<uint16_t>(rng() % 50);
    rules.push_back(rule(numbered("r", i), static_cast<uint16_t>(rng() % 3),
                         {.proto = kUdp,
                          .dst = cidr(dst),
                          .dst_port = cfg::PortRange{lo, static_cast<uint16_t>(lo + rng() % 50)}}));
  }
  const auto f = flows_of(rules);
  auto t = build(f);
  ASSERT_TRUE(t);
  std::vector<simd::FlowKey> keys;
  for (int i = 0; i < 2000; ++i) {
    const std::string d = "10." + std::to_string(rng() % 4) + "." + std::to_string(rng() % 4) +
                          "." + std::to_string(rng() % 256);
    keys.push_back(key(kUdp, "1.1.1.1", d, 7, static_cast<uint16_t>(rng() % 100)));
  }
  expect_same_as_brute_force(*t, f, keys);
}

TEST(FlowTable, BurstsOfMixedKeys) {
  RandomRules gen(7);
  cfg::Flows f;
  for (size_t i = 0; i < 300; ++i) f.rules.push_back(gen.make_rule(i));
  auto t = build(f);
  ASSERT_TRUE(t);
  std::vector<simd::FlowKey> keys;
  for (int i = 0; i < 64; ++i) keys.push_back(i % 9 == 4 ? non_ip() : gen.make_key(f));

  // Every burst length 1..64 over the same keys gives the per-key answer.
  std::vector<const simd::FlowKey*> ptrs;
  for (const auto& k : keys) ptrs.push_back(&k);
  for (uint16_t n = 1; n <= 64; ++n) {
    std::array<uint32_t, 64> out;
    out.fill(0xdeadbeef);
    t->classify(ptrs.data(), n, out.data());
    for (uint16_t i = 0; i < n; ++i) ASSERT_EQ(out[i], brute_force(f, keys[i])) << n << "/" << i;
    for (uint16_t i = n; i < 64; ++i) ASSERT_EQ(out[i], 0xdeadbeef);  // nothing past n
  }
  // Keys need not be contiguous: the pipeline passes pointers into its burst.
  std::reverse(ptrs.begin(), ptrs.end());
  std::array<uint32_t, 64> out;
  t->classify(ptrs.data(), 64, out.data());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], brute_force(f, keys[63 - i]));
}

TEST(FlowTable, Random10kRulesMatchBruteForce) {
  RandomRules gen(2024);
  cfg::Flows f;
  for (size_t i = 0; i < 10000; ++i) f.rules.push_back(gen.make_rule(i));
  const uint64_t t0 = rte_rdtsc();
  auto t = build(f);
  const uint64_t build_cycles = rte_rdtsc() - t0;
  ASSERT_TRUE(t);
  EXPECT_EQ(t->rule_count(), 10000u);
  EXPECT_EQ(t->rules_v4() + t->rules_v6(),
            10000u + std::count_if(f.rules.begin(), f.rules.end(),
                                   [](const cfg::Rule& r) { return family_of(r.match) == 0; }));
  std::vector<simd::FlowKey> keys;
  for (int i = 0; i < 20000; ++i) keys.push_back(i % 97 == 0 ? non_ip() : gen.make_key(f));
  expect_same_as_brute_force(*t, f, keys);

  // Cost, for the comment in flow_table.cpp; printed, not asserted.
  std::vector<const simd::FlowKey*> ptrs;
  for (const auto& k : keys) ptrs.push_back(&k);
  std::array<uint32_t, 64> out;
  const size_t bursts = keys.size() / 64;
  const int rounds = 20;
  const uint64_t c0 = rte_rdtsc();
  for (int r = 0; r < rounds; ++r)
    for (size_t b = 0; b < bursts; ++b) t->classify(ptrs.data() + b * 64, 64, out.data());
  const uint64_t cycles = rte_rdtsc() - c0;
  std::printf("[ cost     ] 10k rules: build %.1f Mcycles, classify %.1f cycles/packet\n",
              static_cast<double>(build_cycles) / 1e6,
              static_cast<double>(cycles) / static_cast<double>(rounds * bursts * 64));
}

// The trie walks the address with the longer prefixes first (flow_table.cpp, AddressOrder):
// rule sets skewed each way, so both orders are built, for IPv4 and IPv6 rules alike, and
// both must give the brute-force answers.
TEST(FlowTable, EitherAddressOrderMatchesBruteForce) {
  // A prefix cut to at most `len` bits, host bits cleared.
  auto widen = [](std::optional<cfg::Cidr>& c, unsigned len) {
    if (!c || c->prefix <= len) return;
    c->prefix = static_cast<uint8_t>(len);
    for (unsigned bit = len; bit < 128; ++bit)
      c->addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  };
  for (const bool wide_src : {true, false}) {
    RandomRules gen(wide_src ? 31 : 32);
    cfg::Flows f;
    for (size_t i = 0; i < 3000; ++i) {
      cfg::Rule r = gen.make_rule(i);
      const unsigned len = family_of(r.match) == 6 ? 16 : 8;
      widen(wide_src ? r.match.src : r.match.dst, len);
      f.rules.push_back(std::move(r));
    }
    auto t = build(f);
    ASSERT_TRUE(t) << (wide_src ? "wide src" : "wide dst");
    std::vector<simd::FlowKey> keys;
    for (int i = 0; i < 8000; ++i) keys.push_back(gen.make_key(f));
    SCOPED_TRACE(wide_src ? "wide src: dst walked first" : "wide dst: src walked first");
    expect_same_as_brute_force(*t, f, keys);
  }
}

TEST(FlowTable, RebuildOfSameRulesGivesSameAnswers) {
  RandomRules gen(99);
  cfg::Flows f;
  for (size_t i = 0; i < 2000; ++i) f.rules.push_back(gen.make_rule(i));
  auto a = build(f);
  auto b = build(f);
  ASSERT_TRUE(a && b);
  std::vector<simd::FlowKey> keys;
  for (int i = 0; i < 4096; ++i) keys.push_back(gen.make_key(f));
  EXPECT_EQ(classify(*a, keys), classify(*b, keys));
  expect_same_as_brute_force(*a, f, keys);
}

// Scale check, run by hand: --gtest_also_run_disabled_tests --gtest_filter='*100k*'.
TEST(FlowTable, DISABLED_Random100kRules) {
  RandomRules gen(100000);
  cfg::Flows f;
  for (size_t i = 0; i < 100000; ++i) f.rules.push_back(gen.make_rule(i));
  const uint64_t t0 = rte_rdtsc();
  auto t = build(f);
  const uint64_t build_cycles = rte_rdtsc() - t0;
  ASSERT_TRUE(t);
  std::vector<simd::FlowKey> keys;
  for (int i = 0; i < 2000; ++i) keys.push_back(gen.make_key(f));
  expect_same_as_brute_force(*t, f, keys);
  std::vector<const simd::FlowKey*> ptrs;
  for (const auto& k : keys) ptrs.push_back(&k);
  std::array<uint32_t, 64> out;
  const size_t bursts = keys.size() / 64;
  const uint64_t c0 = rte_rdtsc();
  for (int r = 0; r < 100; ++r)
    for (size_t b = 0; b < bursts; ++b) t->classify(ptrs.data() + b * 64, 64, out.data());
  const uint64_t cycles = rte_rdtsc() - c0;
  std::printf("[ cost     ] 100k rules: build %.1f Mcycles, classify %.1f cycles/packet\n",
              static_cast<double>(build_cycles) / 1e6,
              static_cast<double>(cycles) / static_cast<double>(100 * bursts * 64));
}

}  // namespace
