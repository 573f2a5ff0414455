// lib/flow/flow_cache: the worker's exact-match cache must give exactly the flow table's
// answers, whatever the keys, their repeats, bucket collisions, generations and bypass.

#include "lib/flow/flow_cache.h"

#include <arpa/inet.h>
#include <rte_memory.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

namespace cfg = sluice::config;
namespace simd = sluice::simd;
using sluice::flow::FlowCache;
using sluice::flow::FlowTable;
using sluice::flow::kNonIp;
using sluice::flow::kNoRule;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

cfg::Cidr v4(uint8_t a, uint8_t b, uint8_t prefix) {
  cfg::Cidr c;
  c.family = 4;
  c.addr[0] = a;
  c.addr[1] = prefix > 8 ? b : 0;
  c.prefix = prefix;
  return c;
}

cfg::Cidr v6(uint8_t b2, uint8_t prefix) {
  cfg::Cidr c;
  c.family = 6;
  c.addr[0] = 0x20;
  c.addr[1] = 0x01;
  c.addr[2] = prefix > 16 ? b2 : 0;
  c.prefix = prefix;
  return c;
}

// Rules over a small address space so that random keys hit most of them: protocols, port
// ranges, in_port, both families, and rules without ports (the lane of non-first fragments).
cfg::Flows rules(unsigned variant) {
  cfg::Flows f;
  for (unsigned i = 0; i < 40; ++i) {
    cfg::Rule r;
    r.name = "r" + std::to_string(i);
    r.priority = static_cast<uint16_t>((i * 37 + variant * 11) % 50);
    if (i % 3 == 0) r.match.src = v4(10, static_cast<uint8_t>(i % 4), i % 2 ? 16 : 8);
    if (i % 3 == 1) r.match.dst = v6(static_cast<uint8_t>(i % 4), i % 2 ? 24 : 16);
    if (i % 4 != 3) r.match.proto = i % 2 ? kTcp : kUdp;
    if (r.match.proto && i % 5 < 3) {
      const auto lo = static_cast<uint16_t>((i * 1000 + variant * 500) % 60000);
      r.match.dst_port = cfg::PortRange{lo, static_cast<uint16_t>(lo + 3000)};
    }
    if (i % 7 == 0) r.match.in_port = static_cast<uint16_t>(i % 3);
    r.action = cfg::Action::kForward;
    r.to = 0;
    f.rules.push_back(r);
  }
  return f;
}

std::unique_ptr<FlowTable> table_of(const cfg::Flows& f) {
  static int n = 0;
  auto t = FlowTable::build(f, "fc" + std::to_string(n++), SOCKET_ID_ANY);
  if (!t) {
    ADD_FAILURE() << t.error();
    return nullptr;
  }
  return std::move(*t);
}

std::unique_ptr<FlowCache> cache_of(uint32_t entries) {
  auto c = FlowCache::create(entries, SOCKET_ID_ANY);
  if (!c) {
    ADD_FAILURE() << c.error();
    return nullptr;
  }
  return std::move(*c);
}

// A key as the validator fills it, in the rules' address space.
simd::FlowKey random_key(std::mt19937& rng) {
  simd::FlowKey k{};
  const unsigned kind = rng() % 10;
  if (kind == 0) {  // non-IP
    k.family = simd::Family::kNone;
    k.in_port = static_cast<uint8_t>(rng() % 3);
    return k;
  }
  const bool six = kind >= 6;
  k.family = six ? simd::Family::kIpv6 : simd::Family::kIpv4;
  k.proto = rng() % 4 == 0 ? 1 : (rng() % 2 ? kTcp : kUdp);
  k.in_port = static_cast<uint8_t>(rng() % 3);
  if (six) {
    k.src = {0x20, 0x01, static_cast<uint8_t>(rng() % 4), static_cast<uint8_t>(rng())};
    k.dst = {0x20, 0x01, static_cast<uint8_t>(rng() % 4), static_cast<uint8_t>(rng())};
    k.dst[15] = static_cast<uint8_t>(rng());
  } else {
    k.src = {10, static_cast<uint8_t>(rng() % 4), static_cast<uint8_t>(rng()), 1};
    k.dst = {192, 168, static_cast<uint8_t>(rng() % 4), static_cast<uint8_t>(rng())};
  }
  const bool ports = k.proto != 1 && rng() % 8 != 0;  // else: a non-first fragment
  k.l4_valid = ports ? 1 : 0;
  if (ports) {
    k.src_port = htons(static_cast<uint16_t>(rng()));
    k.dst_port = htons(static_cast<uint16_t>(rng() % 65536));
  }
  k.l3_offset = 14;
  k.l4_offset = ports ? (six ? 54 : 34) : 0;
  return k;
}

// The cache's answer for keys: through the pointers (hashing them itself), or with odd set, on
// a copy of the keys side by side and their key_hash (the data path's whole valid burst).
FlowCache::Counts classify(FlowCache& c, const FlowTable& t, uint64_t gen,
                           const std::vector<const simd::FlowKey*>& keys, uint32_t* out, bool odd) {
  const auto n = static_cast<uint16_t>(keys.size());
  if (!odd) return c.classify(t, gen, keys.data(), n, out);
  std::vector<simd::FlowKey> side(n);
  std::vector<uint32_t> hashes(n);
  for (uint16_t i = 0; i < n; ++i) {
    side[i] = *keys[i];
    hashes[i] = simd::key_hash(side[i]);
  }
  return c.classify(t, gen, side.data(), hashes.data(), n, out);
}

std::vector<uint32_t> direct(const FlowTable& t, const std::vector<const simd::FlowKey*>& keys) {
  std::vector<uint32_t> out(keys.size());
  t.classify(keys.data(), static_cast<uint16_t>(keys.size()), out.data());
  return out;
}

TEST(FlowCache, CreateTakesPowersOfTwoFromTwo) {
  for (uint32_t bad : {0u, 1u, 3u, 6000u, FlowCache::kMaxEntries * 2}) {
    auto c = FlowCache::create(bad, SOCKET_ID_ANY);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.error().find("power of two"), std::string::npos) << c.error();
  }
  for (uint32_t good : {2u, 64u, 8192u}) {
    auto c = FlowCache::create(good, SOCKET_ID_ANY);
    ASSERT_TRUE(c.ok()) << c.error();
    EXPECT_EQ((*c)->entries(), good);
  }
}

// Bursts drawn from a pool of flows (so most keys repeat, within and across bursts) give the
// table's answer for every key, and the counts add up: hits + misses = keys.
TEST(FlowCache, AnswersAreTheTablesOnRepeatsAndCollisions) {
  const cfg::Flows f = rules(0);
  auto t = table_of(f);
  ASSERT_TRUE(t);
  std::mt19937 rng(3);
  std::vector<simd::FlowKey> pool(3000);
  for (auto& k : pool) k = random_key(rng);
  // A small cache, so that buckets collide and entries are replaced all the time.
  for (uint32_t entries : {2u, 64u, 4096u}) {
    auto c = cache_of(entries);
    ASSERT_TRUE(c);
    size_t hits = 0, rule_hits = 0, looked = 0;
    for (int burst = 0; burst < 400; ++burst) {
      const auto n = static_cast<uint16_t>(1 + rng() % 64);
      std::vector<const simd::FlowKey*> keys;
      // Mostly a hot set of 40 flows, sometimes any of the pool; a key may repeat in a burst.
      for (uint16_t i = 0; i < n; ++i) keys.push_back(&pool[rng() % 4 ? rng() % 40 : rng() % 3000]);
      std::vector<uint32_t> got(n, 0xdeadbeef);
      const auto counts = classify(*c, *t, 1, keys, got.data(), burst % 2 != 0);
      const auto want = direct(*t, keys);
      for (uint16_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i], want[i]) << "entries " << entries << " burst " << burst << " key " << i;
        rule_hits += want[i] < kNonIp;
      }
      ASSERT_LE(counts.misses + counts.bypassed, n);
      hits += n - counts.misses - counts.bypassed;
      looked += n;
    }
    EXPECT_GT(rule_hits, looked / 3);  // the keys exercise rules, not only the default
    if (entries == 4096) {
      EXPECT_GT(hits, looked / 2);  // the hot set is cached
    }
  }
}

// More keys than a burst in one call are taken a burst at a time, none left unanswered.
TEST(FlowCache, MoreThanABurstInOneCall) {
  auto t = table_of(rules(0));
  auto c = cache_of(1024);
  ASSERT_TRUE(t && c);
  std::mt19937 rng(17);
  std::vector<simd::FlowKey> pool(150);
  for (auto& k : pool) k = random_key(rng);
  std::vector<const simd::FlowKey*> keys;
  for (auto& k : pool) keys.push_back(&k);
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<uint32_t> got(keys.size(), 0xdeadbeef);
    const auto counts = classify(*c, *t, 1, keys, got.data(), pass == 1);
    EXPECT_EQ(got, direct(*t, keys)) << "pass " << pass;
    if (pass == 1) {
      EXPECT_LT(counts.misses, 10) << "the second pass hits";
    }
  }
}

// A reload publishes a generation with other answers for the same keys: nothing the cache
// holds from the old one may answer for the new one, and the old one's answers come back if
// a burst still classifies on it (a worker finishing its burst on the old rules).
TEST(FlowCache, AGenerationNeverSeesAnotherGenerationsAnswers) {
  auto t1 = table_of(rules(0));
  auto t2 = table_of(rules(1));
  ASSERT_TRUE(t1 && t2);
  auto c = cache_of(8192);
  ASSERT_TRUE(c);
  std::mt19937 rng(9);
  std::vector<simd::FlowKey> pool(64);
  for (auto& k : pool) k = random_key(rng);
  std::vector<const simd::FlowKey*> keys;
  for (auto& k : pool) keys.push_back(&k);
  const auto want1 = direct(*t1, keys), want2 = direct(*t2, keys);
  size_t differ = 0;
  for (size_t i = 0; i < keys.size(); ++i) differ += want1[i] != want2[i];
  ASSERT_GT(differ, 10u) << "the two rule sets must answer differently for the test to mean much";

  std::vector<uint32_t> got(keys.size());
  for (int round = 0; round < 3; ++round) {
    for (auto [gen, table, want] :
         {std::tuple{uint64_t{1}, t1.get(), &want1}, std::tuple{uint64_t{2}, t2.get(), &want2}}) {
      const auto counts = c->classify(*table, gen, keys.data(), 64, got.data());
      EXPECT_EQ(got, *want) << "generation " << gen << " round " << round;
      EXPECT_EQ(counts.bypassed, 0);
    }
  }
  // The same generation twice in a row: the second pass is all hits.
  c->classify(*t2, 3, keys.data(), 64, got.data());
  EXPECT_EQ(c->classify(*t2, 3, keys.data(), 64, got.data()).misses, 0);
  EXPECT_EQ(got, want2);
}

// The buckets come from the high bits of key_hash: keys that differ only in a few low or high
// bits of one field (a /24 of hosts, a range of ports, one address byte, the ingress port)
// must spread over the buckets at least as well as random keys would (1 - 1/e of them used,
// 63%, for as many keys as buckets; multiplicative hashing spreads a run of values more evenly
// than that), not pile up in a few because a field's bits never reach the index.
TEST(FlowCache, BucketsSpreadStructuredKeys) {
  auto c = cache_of(8192);  // 4096 buckets
  ASSERT_TRUE(c);
  constexpr unsigned kKeys = 4096;
  auto used_share = [&](auto vary) {
    std::vector<bool> used(4096);
    for (unsigned i = 0; i < kKeys; ++i) {
      simd::FlowKey k{};
      k.proto = kUdp;
      k.l4_valid = 1;
      k.family = simd::Family::kIpv4;
      k.src = {10, 0, 0, 1};
      k.dst = {192, 168, 1, 1};
      k.src_port = htons(1024);
      k.dst_port = htons(53);
      vary(k, i);
      used[c->bucket_of(k)] = true;
    }
    return static_cast<double>(std::count(used.begin(), used.end(), true)) / 4096.0;
  };
  const double host = used_share([](simd::FlowKey& k, unsigned i) {
    k.src[2] = static_cast<uint8_t>(i >> 8), k.src[3] = static_cast<uint8_t>(i);
  });
  const double sport = used_share([](simd::FlowKey& k, unsigned i) { k.src_port = htons(i); });
  const double dport = used_share([](simd::FlowKey& k, unsigned i) {
    k.dst_port = htons(static_cast<uint16_t>(i << 4));  // the port's low bits all zero
  });
  const double both = used_share([](simd::FlowKey& k, unsigned i) {
    k.dst[0] = static_cast<uint8_t>(i >> 6), k.in_port = static_cast<uint8_t>(i & 63);
  });
  for (double share : {host, sport, dport, both}) EXPECT_GT(share, 0.58);
}

// Two flows whose keys share a bucket both stay cached (two ways); a third one evicts the
// older of the two, and every answer stays right.
TEST(FlowCache, TwoFlowsShareABucket) {
  auto t = table_of(rules(0));
  ASSERT_TRUE(t);
  auto c = cache_of(64);  // 32 buckets
  ASSERT_TRUE(c);
  std::mt19937 rng(5);
  std::vector<simd::FlowKey> same;
  simd::FlowKey first = random_key(rng);
  first.family = simd::Family::kIpv4;
  same.push_back(first);
  while (same.size() < 3) {
    simd::FlowKey k = first;
    k.src_port = htons(static_cast<uint16_t>(rng()));
    if (c->bucket_of(k) == c->bucket_of(first) && std::memcmp(&k, &first, sizeof k) != 0)
      same.push_back(k);
  }
  std::array<const simd::FlowKey*, 1> a{&same[0]}, b{&same[1]}, d{&same[2]};
  std::array<uint32_t, 1> out{};
  EXPECT_EQ(c->classify(*t, 1, a.data(), 1, out.data()).misses, 1);
  EXPECT_EQ(c->classify(*t, 1, b.data(), 1, out.data()).misses, 1);
  EXPECT_EQ(c->classify(*t, 1, a.data(), 1, out.data()).misses, 0) << "the first is in way 1";
  EXPECT_EQ(c->classify(*t, 1, b.data(), 1, out.data()).misses, 0);
  EXPECT_EQ(out[0], direct(*t, {&same[1]})[0]);
  EXPECT_EQ(c->classify(*t, 1, d.data(), 1, out.data()).misses, 1);
  EXPECT_EQ(out[0], direct(*t, {&same[2]})[0]);
  EXPECT_EQ(c->classify(*t, 1, b.data(), 1, out.data()).misses, 0) << "the newer one stays";
  EXPECT_EQ(c->classify(*t, 1, d.data(), 1, out.data()).misses, 0);
}

// A hit needs every one of the key's 40 bytes and the generation: in a bucket holding a key,
// a key one byte away from it is not found, whichever byte it is.
TEST(FlowCache, EveryKeyByteCounts) {
  std::mt19937 rng(9);
  simd::FlowKey base = random_key(rng);
  base.family = simd::Family::kIpv6;
  auto c = cache_of(64);
  ASSERT_TRUE(c);
  c->insert(0, base, 7, 42);
  uint32_t r = 0;
  ASSERT_TRUE(c->lookup(0, base, 7, &r));
  EXPECT_EQ(r, 42u);
  EXPECT_FALSE(c->lookup(0, base, 8, &r)) << "another generation";
  for (size_t byte = 0; byte < FlowCache::kKeyBytes; ++byte) {
    simd::FlowKey other = base;
    reinterpret_cast<uint8_t*>(&other)[byte] ^= 0x01;
    EXPECT_FALSE(c->lookup(0, other, 7, &r)) << "byte " << byte;
  }
}

// Traffic without locality: after a window of misses the cache stands aside for
// kBypassWindows windows (answers still right, nothing looked up), then looks again, and
// a hot set that comes back is cached again.
TEST(FlowCache, StandsAsideWhenEveryKeyIsNewAndComesBack) {
  auto t = table_of(rules(0));
  ASSERT_TRUE(t);
  constexpr uint32_t kEntries = 256;
  auto c = cache_of(kEntries);
  ASSERT_TRUE(c);
  std::mt19937 rng(13);
  auto run = [&](bool fresh, size_t packets, size_t* misses, size_t* bypassed) {
    static std::vector<simd::FlowKey> hot = [] {
      std::mt19937 r(21);
      std::vector<simd::FlowKey> v(16);
      for (auto& k : v) k = random_key(r);
      return v;
    }();
    std::vector<simd::FlowKey> burst(32);
    for (size_t done = 0; done < packets; done += 32) {
      std::vector<const simd::FlowKey*> keys;
      for (auto& k : burst) {
        k = fresh ? random_key(rng) : hot[rng() % hot.size()];
        keys.push_back(&k);
      }
      std::vector<uint32_t> got(32);
      const auto counts = classify(*c, *t, 1, keys, got.data(), done / 32 % 2 != 0);
      ASSERT_EQ(got, direct(*t, keys));
      *misses += counts.misses;
      *bypassed += counts.bypassed;
    }
  };
  size_t misses = 0, bypassed = 0;
  run(true, kEntries, &misses, &bypassed);  // one window of new flows
  EXPECT_EQ(bypassed, 0u);
  EXPECT_GT(misses, kEntries * 3 / 4);
  misses = 0;
  run(true, FlowCache::kBypassWindows * kEntries, &misses, &bypassed);
  EXPECT_EQ(bypassed, FlowCache::kBypassWindows * kEntries) << "stood aside for the whole time";
  EXPECT_EQ(misses, 0u);
  bypassed = 0;
  run(false, 4 * kEntries, &misses, &bypassed);  // the hot set again: looked up, then cached
  EXPECT_EQ(bypassed, 0u);
  // The first burst misses (a hot flow may be in it more than once: every copy is looked up
  // before any is cached); after that, hits but for the odd bucket shared by three.
  EXPECT_LE(misses, 32u + 16u);
  EXPECT_GE(misses, 8u);
}

}  // namespace
