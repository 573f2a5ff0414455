// The ring distributor (lib/pipeline/distributor.h): the symmetric flow hash, the split over
// workers, and spread_burst's hand-off (order per worker, ring_full, the RX TSC carried).

#include "lib/pipeline/distributor.h"

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lib/packet/frame_builder.h"
#include "lib/pipeline/worker.h"

namespace sluice::pipeline {
namespace {

struct Tuple {
  bool v6 = false;
  std::array<uint8_t, 16> src{}, dst{};
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 17;
  uint16_t frag = 0;  // IPv4 flags + offset field
  int vlans = 0;
  unsigned option_words = 0;  // IPv4 options (NOPs), 4 bytes each
};

Tuple reversed(Tuple t) {
  std::swap(t.src, t.dst);
  std::swap(t.sport, t.dport);
  return t;
}

std::vector<uint8_t> frame(const Tuple& t) {
  std::vector<uint8_t> f(128, 0);
  uint8_t* p = f.data();
  std::array<packet::VlanTag, 2> tags{};
  if (t.vlans == 2) tags[0].tpid = packet::kEtherQinq;
  uint32_t off = packet::write_eth(p, {}, {}, t.v6 ? packet::kEtherIpv6 : packet::kEtherIpv4,
                                   std::span(tags.data(), static_cast<size_t>(t.vlans)));
  if (t.v6) {
    packet::Ipv6 ip;
    ip.next = t.proto;
    ip.src = t.src;
    ip.dst = t.dst;
    off += packet::write_ipv6(p + off, ip, 8);
  } else {
    packet::Ipv4 ip;
    ip.proto = t.proto;
    std::copy_n(t.src.begin(), 4, ip.src.begin());
    std::copy_n(t.dst.begin(), 4, ip.dst.begin());
    ip.frag = t.frag;
    const std::array<uint8_t, 40> nops = [] {
      std::array<uint8_t, 40> a{};
      a.fill(1);  // IPv4 option NOP
      return a;
    }();
    ip.options = std::span(nops.data(), 4 * t.option_words);
    off += packet::write_ipv4(p + off, ip, 8);
  }
  off += packet::write_udp(p + off, t.sport, t.dport, 8);  // TCP's ports sit where UDP's do
  f.resize(off);
  return f;
}

uint32_t hash_of(const Tuple& t) {
  const auto f = frame(t);
  return flow_hash(f.data(), static_cast<uint32_t>(f.size()));
}

Tuple random_tuple(std::mt19937& rng, bool v6) {
  Tuple t;
  t.v6 = v6;
  for (auto& b : t.src) b = static_cast<uint8_t>(rng());
  for (auto& b : t.dst) b = static_cast<uint8_t>(rng());
  t.sport = static_cast<uint16_t>(rng());
  t.dport = static_cast<uint16_t>(rng());
  t.proto = (rng() & 1) ? 17 : 6;
  t.vlans = static_cast<int>(rng() % 3);
  return t;
}

TEST(FlowHash, BothDirectionsHashAlike) {
  std::mt19937 rng(7);
  std::set<uint32_t> seen;
  for (int i = 0; i < 20000; ++i) {
    const Tuple t = random_tuple(rng, i % 2 == 1);
    const uint32_t h = hash_of(t);
    ASSERT_EQ(h, hash_of(reversed(t))) << "flow " << i << (t.v6 ? " (IPv6)" : " (IPv4)");
    seen.insert(h);
  }
  EXPECT_GT(seen.size(), 19900u) << "the hash collides far more than a 32-bit hash should";
}

TEST(FlowHash, InlineFastPathAgreesWithTheFullParse) {
  std::mt19937 rng(13);
  unsigned fast = 0;
  for (int i = 0; i < 5000; ++i) {
    Tuple t = random_tuple(rng, i % 5 == 0);
    if (i % 7 == 0) t.frag = static_cast<uint16_t>(rng() & 0x3fff);
    if (i % 11 == 0) t.frag = 0x4000;  // DF only: still the fast path
    if (i % 13 == 0) t.option_words = 1 + static_cast<unsigned>(rng() % 10);  // IHL 6..15
    const auto f = frame(t);
    const auto n = static_cast<uint32_t>(f.size());
    ASSERT_EQ(flow_hash(f.data(), n), flow_hash_slow(f.data(), n)) << "tuple " << i;
    fast += !t.v6 && t.vlans == 0;
  }
  EXPECT_GT(fast, 1000u);
}

// IPv4 options move the ports: the inline test of IHL 5 must send such frames the long way.
TEST(FlowHash, IpOptionsMoveThePorts) {
  std::mt19937 rng(17);
  for (unsigned words = 1; words <= 10; ++words) {
    Tuple t = random_tuple(rng, false);
    t.vlans = 0;
    t.option_words = words;
    Tuple other = t;
    other.sport ^= 1;
    EXPECT_NE(hash_of(t), hash_of(other)) << words << " option words: ports not hashed";
    EXPECT_EQ(hash_of(t), hash_of(reversed(t))) << words << " option words";
  }
}

TEST(FlowHash, EveryFieldOfTheFlowCounts) {
  std::mt19937 rng(11);
  const Tuple t = random_tuple(rng, false);
  Tuple other = t;
  other.sport ^= 1;
  EXPECT_NE(hash_of(t), hash_of(other));
  other = t;
  other.dst[3] ^= 1;
  EXPECT_NE(hash_of(t), hash_of(other));
  other = t;
  other.proto = t.proto == 17 ? 6 : 17;
  EXPECT_NE(hash_of(t), hash_of(other));
  // A VLAN tag does not change the flow.
  other = t;
  other.vlans = t.vlans == 0 ? 1 : 0;
  EXPECT_EQ(hash_of(t), hash_of(other));
}

TEST(FlowHash, FragmentsOfOneDatagramStayTogether) {
  std::mt19937 rng(3);
  Tuple first = random_tuple(rng, false);
  first.vlans = 0;
  first.frag = 0x2000;  // MF, offset 0: the ports are there, but later fragments lack them
  Tuple later = first;
  later.frag = 0x0010;  // offset 128 bytes, no ports
  later.sport = later.dport = 0;
  EXPECT_EQ(hash_of(first), hash_of(later));
  EXPECT_EQ(hash_of(first), hash_of(reversed(later)));
}

TEST(FlowHash, ShortAndNonIpFramesGoToOneWorker) {
  const uint8_t arp[60] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0x08, 0x06};
  EXPECT_EQ(flow_hash(arp, sizeof arp), flow_hash(arp, 14));
  EXPECT_EQ(worker_of(flow_hash(arp, sizeof arp), 8), 0u);
  std::mt19937 rng(5);
  const auto f = frame(random_tuple(rng, false));
  for (uint32_t len = 0; len < f.size(); ++len) (void)flow_hash(f.data(), len);  // no overread
}

TEST(WorkerOf, SplitsFlowsEvenly) {
  std::mt19937 rng(9);
  std::vector<uint32_t> hashes;
  for (int i = 0; i < 40000; ++i) hashes.push_back(hash_of(random_tuple(rng, i % 4 == 0)));
  for (unsigned workers : {1u, 2u, 3u, 7u, 14u}) {
    std::vector<unsigned> count(workers, 0);
    for (uint32_t h : hashes) {
      const unsigned w = worker_of(h, workers);
      ASSERT_LT(w, workers);
      ++count[w];
    }
    const double even = static_cast<double>(hashes.size()) / workers;
    for (unsigned w = 0; w < workers; ++w) {
      EXPECT_NEAR(count[w], even, even * 0.1) << workers << " workers, worker " << w;
    }
  }
}

// spread_burst with three workers, as worker 2, on flows that none hash to worker 2, so the
// whole burst is handed off (no rules needed): each packet in its worker's ring, in arrival
// order, stamped with the burst's RX TSC; a full ring counts ring_full and frees the rest.
class SpreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int instance = 0;
    ++instance;
    const std::string tag = "sp" + std::to_string(instance);
    pool_ = rte_pktmbuf_pool_create((tag + "pool").c_str(), 511, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                    SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr);
    for (int k = 0; k < 2; ++k) {
      rings_[k] = rte_ring_create((tag + "r" + std::to_string(k)).c_str(), kRing, SOCKET_ID_ANY,
                                  RING_F_SP_ENQ | RING_F_SC_DEQ);
      ASSERT_NE(rings_[k], nullptr);
    }
    w_.index = 2;
    w_.nb_workers = 3;
    // The burst hash the appliance would pick on this CPU (test_flow_hash checks each kernel).
    w_.flow_hash_burst = simd::flow_hash_fn(simd::best_kernel(256));
    q_.port_index = 0;
    q_.spread = rings_.data();
    ASSERT_TRUE(prepare_hand_off(w_, q_, SOCKET_ID_ANY).ok());
    std::mt19937 rng(1);
    while (flows_.size() < 16) {
      Tuple t = random_tuple(rng, flows_.size() % 3 == 0);
      if (worker_of(hash_of(t), 3) != 2) flows_.push_back(t);
    }
  }
  void TearDown() override {
    for (rte_ring* r : rings_) {
      if (r == nullptr) continue;
      rte_mbuf* m;
      while (rte_ring_sc_dequeue(r, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
      rte_ring_free(r);
    }
    EXPECT_EQ(rte_mempool_avail_count(pool_), 511u) << "an mbuf was lost";
    rte_mempool_free(pool_);
  }

  // A packet of flow (mod the flows), its sequence number in the mbuf's last dynfield word.
  rte_mbuf* packet(unsigned flow, uint64_t seq) {
    const auto f = frame(flows_[flow % flows_.size()]);
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(m, nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
    m->dynfield1[8] = static_cast<uint32_t>(seq);  // the last, unregistered: no one uses it
    return m;
  }

  static constexpr unsigned kRing = 128;
  rte_mempool* pool_ = nullptr;
  std::array<rte_ring*, 3> rings_{};  // rings_[2] (this worker's own) stays null
  Worker w_;
  RxQueue q_;
  std::vector<Tuple> flows_;
};

TEST_F(SpreadTest, HandsEachFlowToItsWorkerInOrder) {
  uint64_t seq = 0;
  for (int burst = 0; burst < 3; ++burst) {
    std::array<rte_mbuf*, 32> pkts;
    for (unsigned i = 0; i < pkts.size(); ++i) pkts[i] = packet(i * 7 + burst, seq++);
    spread_burst(w_, q_, pkts.data(), pkts.size(), 1000 + burst);
  }
  flush_hand_off(w_);
  EXPECT_EQ(w_.counters.handed_off.get(), 96u);
  EXPECT_EQ(w_.counters.drops[static_cast<size_t>(stats::Drop::kRingFull)].get(), 0u);
  EXPECT_EQ(w_.counters.rx_packets.get(), 0u);  // none was this worker's own
  unsigned total = 0;
  for (unsigned k = 0; k < 2; ++k) {
    rte_mbuf* m;
    int64_t last = -1;
    while (rte_ring_sc_dequeue(rings_[k], reinterpret_cast<void**>(&m)) == 0) {
      ++total;
      EXPECT_EQ(worker_of(flow_hash(m), 3), k) << "a packet in the wrong worker's ring";
      EXPECT_GT(static_cast<int64_t>(m->dynfield1[8]), last) << "out of arrival order";
      last = m->dynfield1[8];
      EXPECT_TRUE(m->hash.rss >= 1000 && m->hash.rss <= 1002) << "RX TSC not carried";
      rte_pktmbuf_free(m);
    }
  }
  EXPECT_EQ(total, 96u);
}

// A chain whose first segment ends inside the IP header hashes as the whole frame does, so it
// joins the rest of its flow; and its RX queue counts it with its whole length.
TEST_F(SpreadTest, ChainsCutShortHashAsTheWholeFrame) {
  stats::RxQueueCounters counted;
  q_.counted = &counted;
  std::array<rte_mbuf*, 4> pkts;
  std::array<unsigned, 4> want;
  uint64_t bytes = 0;
  for (unsigned i = 0; i < pkts.size(); ++i) {
    const auto f = frame(flows_[i]);
    const uint32_t h = flow_hash(f.data(), static_cast<uint32_t>(f.size()));
    want[i] = worker_of(h, 3);
    const uint16_t cut = static_cast<uint16_t>(20 + 4 * i);  // in L2, in the IPv4/IPv6 header
    rte_mbuf* head = rte_pktmbuf_alloc(pool_);
    rte_mbuf* tail = rte_pktmbuf_alloc(pool_);
    ASSERT_NE(head, nullptr);
    ASSERT_NE(tail, nullptr);
    std::memcpy(rte_pktmbuf_append(head, cut), f.data(), cut);
    std::memcpy(rte_pktmbuf_append(tail, static_cast<uint16_t>(f.size() - cut)), f.data() + cut,
                f.size() - cut);
    ASSERT_EQ(rte_pktmbuf_chain(head, tail), 0);
    EXPECT_EQ(flow_hash(head), h) << "chain " << i;
    head->dynfield1[8] = i;
    pkts[i] = head;
    bytes += f.size();
  }
  spread_burst(w_, q_, pkts.data(), pkts.size(), 7);
  flush_hand_off(w_);
  EXPECT_EQ(counted.packets.get(), pkts.size());
  EXPECT_EQ(counted.bytes.get(), bytes);
  unsigned found = 0;
  for (unsigned k = 0; k < 2; ++k) {
    rte_mbuf* m;
    while (rte_ring_sc_dequeue(rings_[k], reinterpret_cast<void**>(&m)) == 0) {
      EXPECT_EQ(want[m->dynfield1[8]], k) << "chain " << m->dynfield1[8] << " in the wrong ring";
      ++found;
      rte_pktmbuf_free(m);
    }
  }
  EXPECT_EQ(found, pkts.size());
}

// A worker's share waits in its stage until a burst's worth is there, then goes to its ring as
// one enqueue; flush_hand_off sends the rest. Nothing is reordered across the two.
TEST_F(SpreadTest, StagesABurstPerRingThenFlushes) {
  w_.burst = 32;
  uint64_t seq = 0;
  std::array<rte_mbuf*, 8> few;
  for (auto& m : few) m = packet(0, seq++);  // flow 0: one worker's
  const unsigned k = worker_of(hash_of(flows_[0]), 3);
  spread_burst(w_, q_, few.data(), few.size(), 1);
  EXPECT_EQ(rte_ring_count(rings_[k]), 0u) << "8 packets enqueued before a burst's worth";
  EXPECT_EQ(w_.counters.handed_off.get(), 0u);
  std::array<rte_mbuf*, 32> more;
  for (auto& m : more) m = packet(0, seq++);
  spread_burst(w_, q_, more.data(), more.size(), 2);
  EXPECT_EQ(rte_ring_count(rings_[k]), 40u) << "a full stage is sent whole";
  EXPECT_EQ(w_.counters.handed_off.get(), 40u);
  for (auto& m : few) m = packet(0, seq++);
  spread_burst(w_, q_, few.data(), few.size(), 3);
  EXPECT_EQ(rte_ring_count(rings_[k]), 40u);
  flush_hand_off(w_);
  EXPECT_EQ(rte_ring_count(rings_[k]), 48u);
  EXPECT_EQ(w_.counters.handed_off.get(), 48u);
  flush_hand_off(w_);  // nothing left to send
  EXPECT_EQ(w_.counters.handed_off.get(), 48u);
  rte_mbuf* m;
  uint32_t want = 0;
  while (rte_ring_sc_dequeue(rings_[k], reinterpret_cast<void**>(&m)) == 0) {
    EXPECT_EQ(m->dynfield1[8], want++) << "out of arrival order";
    rte_pktmbuf_free(m);
  }
  EXPECT_EQ(want, 48u);
}

// A stage also goes once its oldest packet has waited hand_off_wait_cycles, at the next burst
// spread (whichever worker that burst is for); a stage younger than that stays.
TEST_F(SpreadTest, AStageGoesOnceItsOldestPacketWaitedLongEnough) {
  w_.burst = 32;
  w_.hand_off_wait_cycles = 100;
  const unsigned k0 = worker_of(hash_of(flows_[0]), 3);
  unsigned other = 1;
  while (worker_of(hash_of(flows_[other]), 3) == k0) ++other;
  const unsigned k1 = worker_of(hash_of(flows_[other]), 3);
  uint64_t seq = 0;
  std::array<rte_mbuf*, 4> few;
  for (auto& m : few) m = packet(0, seq++);
  spread_burst(w_, q_, few.data(), few.size(), 1000);
  for (auto& m : few) m = packet(other, seq++);
  spread_burst(w_, q_, few.data(), few.size(), 1100);  // k0's waited 100: not more
  EXPECT_EQ(rte_ring_count(rings_[k0]), 0u);
  for (auto& m : few) m = packet(other, seq++);
  spread_burst(w_, q_, few.data(), few.size(), 1101);
  EXPECT_EQ(rte_ring_count(rings_[k0]), 4u) << "k0's stage waited 101 cycles";
  EXPECT_EQ(rte_ring_count(rings_[k1]), 0u) << "k1's oldest waited 1";
  EXPECT_EQ(w_.counters.handed_off.get(), 4u);
  flush_hand_off(w_);
  EXPECT_EQ(rte_ring_count(rings_[k1]), 8u);
}

// One worker spreading two ports keeps a set of stages per port: each port's packets reach
// that port's rings only, and flush_hand_off sends both sets.
TEST_F(SpreadTest, TwoSpreadingPortsKeepTheirOwnStages) {
  w_.burst = 32;
  std::array<rte_ring*, 3> other{};
  for (int k = 0; k < 2; ++k) {
    static int made = 0;
    other[k] = rte_ring_create(("sp2r" + std::to_string(made++)).c_str(), kRing, SOCKET_ID_ANY,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(other[k], nullptr);
  }
  RxQueue q2;
  q2.port_index = 5;
  q2.spread = other.data();
  ASSERT_TRUE(prepare_hand_off(w_, q2, SOCKET_ID_ANY).ok());
  ASSERT_TRUE(prepare_hand_off(w_, q2, SOCKET_ID_ANY).ok());  // idempotent
  EXPECT_EQ(w_.hand_off.size(), 2u);
  uint64_t seq = 0;
  std::array<rte_mbuf*, 6> a, b;
  for (unsigned i = 0; i < a.size(); ++i) a[i] = packet(i, seq++);
  for (unsigned i = 0; i < b.size(); ++i) b[i] = packet(i, 100 + seq++);  // seq >= 100: port 5
  spread_burst(w_, q_, a.data(), a.size(), 1);
  spread_burst(w_, q2, b.data(), b.size(), 2);
  flush_hand_off(w_);
  unsigned on0 = 0, on5 = 0;
  for (unsigned k = 0; k < 2; ++k) {
    rte_mbuf* m;
    while (rte_ring_sc_dequeue(rings_[k], reinterpret_cast<void**>(&m)) == 0) {
      EXPECT_LT(m->dynfield1[8], 100u) << "port 5's packet in port 0's ring";
      ++on0;
      rte_pktmbuf_free(m);
    }
    while (rte_ring_sc_dequeue(other[k], reinterpret_cast<void**>(&m)) == 0) {
      EXPECT_GE(m->dynfield1[8], 100u) << "port 0's packet in port 5's ring";
      ++on5;
      rte_pktmbuf_free(m);
    }
    rte_ring_free(other[k]);
  }
  EXPECT_EQ(on0, a.size());
  EXPECT_EQ(on5, b.size());
}

// The receiver rebuilds the RX TSC from its 32 low bits: across a wrap of the low word, and a
// stamp ahead of the receiver's TSC (skewed cores) waits nothing rather than 2^32 cycles.
TEST(HandedStamp, RebuildsTheRxTsc) {
  const uint64_t now = (uint64_t{7} << 32) + 1000;
  EXPECT_EQ(rx_tsc_of_stamp(now, 400), now - 600);
  EXPECT_EQ(rx_tsc_of_stamp(now, 1000), now);
  EXPECT_EQ(rx_tsc_of_stamp(now, 0xFFFFFF00u), now - 1000 - 0x100);  // stamped before the wrap
  EXPECT_EQ(rx_tsc_of_stamp(now, 1500), now) << "a stamp 500 cycles ahead";
  EXPECT_EQ(rx_tsc_of_stamp(now, 1000 + (1u << 30)), now);
}

TEST_F(SpreadTest, AFullRingCountsRingFullAndFreesTheRest) {
  unsigned sent = 0;
  for (int burst = 0; burst < 10; ++burst) {  // 320 packets for 2 x 127 places
    std::array<rte_mbuf*, 32> pkts;
    for (unsigned i = 0; i < pkts.size(); ++i) pkts[i] = packet(i, sent++);
    spread_burst(w_, q_, pkts.data(), pkts.size(), 5);
  }
  flush_hand_off(w_);
  const uint64_t full = w_.counters.drops[static_cast<size_t>(stats::Drop::kRingFull)].get();
  const uint64_t handed = w_.counters.handed_off.get();
  EXPECT_GT(full, 0u);
  EXPECT_EQ(handed + full, sent);
  EXPECT_TRUE(rte_ring_full(rings_[0]) || rte_ring_full(rings_[1]));
  EXPECT_EQ(rte_ring_count(rings_[0]) + rte_ring_count(rings_[1]), handed);
  EXPECT_EQ(rte_mempool_avail_count(pool_), 511u - handed) << "refused mbufs were not freed";
}

}  // namespace
}  // namespace sluice::pipeline
