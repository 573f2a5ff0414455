// The worker's burst processing on ring-backed ethdevs (rte_eth_from_rings): what each port
// transmits is read back from its TX ring. Every test checks the pool is full afterwards.

#include <rte_cycles.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "lib/capture/handoff.h"
#include "lib/flow/rule_store.h"
#include "lib/packet/frame_builder.h"
#include "lib/pipeline/distributor.h"
#include "lib/pipeline/worker.h"
#include "lib/sys/tsan.h"

namespace sluice::pipeline {
namespace {

constexpr unsigned kPoolSize = 1023;

// Ethernet + IPv4 + UDP, 64 bytes, valid checksum; dst port given.
std::vector<uint8_t> udp_frame(uint16_t dport, size_t len = 64, uint16_t sport = 12345) {
  std::vector<uint8_t> f(len, 0);
  packet::Frame spec;
  spec.dst = {2, 0, 0, 0, 0, 2};
  spec.src = {2, 0, 0, 0, 0, 1};
  spec.src_ip = {10, 0, 0, 1};
  spec.dst_ip = {192, 168, 1, 1};
  spec.sport = sport;
  spec.dport = dport;
  packet::write_frame(f.data(), spec, static_cast<uint32_t>(len - packet::frame_header_len(spec)));
  return f;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int instance = 0;
    ++instance;
    pool_ = rte_pktmbuf_pool_create(("wt_pool" + std::to_string(instance)).c_str(), kPoolSize, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr);
    for (int p = 0; p < 2; ++p) {
      std::string name = "wt" + std::to_string(instance) + "_" + std::to_string(p);
      rx_[p] = rte_ring_create((name + "rx").c_str(), 1024, SOCKET_ID_ANY,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
      tx_[p] = rte_ring_create((name + "tx").c_str(), tx_ring_size_, SOCKET_ID_ANY,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
      ASSERT_NE(rx_[p], nullptr);
      ASSERT_NE(tx_[p], nullptr);
      // A second TX queue (tx2_) for a second worker, when a test asks for one.
      if (tx_queues_ == 2) {
        tx2_[p] = rte_ring_create((name + "tx2").c_str(), tx_ring_size_, SOCKET_ID_ANY,
                                  RING_F_SP_ENQ | RING_F_SC_DEQ);
        ASSERT_NE(tx2_[p], nullptr);
      }
      rte_ring* txs[2] = {tx_[p], tx2_[p]};
      int id = rte_eth_from_rings(name.c_str(), &rx_[p], 1, txs, tx_queues_, SOCKET_ID_ANY);
      ASSERT_GE(id, 0);
      port_ids_.push_back(static_cast<uint16_t>(id));
      rte_eth_conf conf{};
      ASSERT_EQ(rte_eth_dev_configure(id, 1, static_cast<uint16_t>(tx_queues_), &conf), 0);
      ASSERT_EQ(rte_eth_rx_queue_setup(id, 0, 64, SOCKET_ID_ANY, nullptr, pool_), 0);
      for (uint16_t t = 0; t < tx_queues_; ++t) {
        ASSERT_EQ(rte_eth_tx_queue_setup(id, t, 64, SOCKET_ID_ANY, nullptr), 0);
      }
      ASSERT_EQ(rte_eth_dev_start(id), 0);
    }
  }

  void TearDown() override {
    if (store_) worker_release(w_);
    for (auto* r : tx_) drain(r);
    for (auto* r : tx2_) {
      if (r != nullptr) drain(r);
    }
    EXPECT_EQ(rte_mempool_avail_count(pool_), kPoolSize) << "an mbuf leaked";
    for (uint16_t id : port_ids_) {
      rte_eth_dev_stop(id);
      rte_eth_dev_close(id);
    }
    for (int p = 0; p < 2; ++p) {
      rte_ring_free(rx_[p]);
      rte_ring_free(tx_[p]);
      rte_ring_free(tx2_[p]);
    }
    rte_mempool_free(pool_);
  }

  // Rules: udp dst 53 -> forward to port 1, mirror to port 0; udp dst 23 -> drop; udp dst 123
  // -> forward to port 1 (no mirror); default forward to port 1.
  // Sets up w (the fixture's worker unless given) with a new rule store.
  void make_worker(uint16_t burst = 32, uint32_t flow_cache = flow::FlowCache::kDefaultEntries,
                   Worker* w = nullptr, bool capture = false) {
    ASSERT_NO_FATAL_FAILURE(make_rules(1, capture));
    prepare(w != nullptr ? *w : w_, burst, flow_cache);
  }
  // The rules above in a new store_ with counters for this many workers.
  void make_rules(size_t workers = 1, bool capture = false) {
    config::Flows flows;
    flows.fallback = {config::Action::kForward, 1};
    flows.non_ip = {config::Action::kForward, 0};
    auto udp_rule = [capture](const char* name, uint16_t dport, config::Action action) {
      config::Rule r;
      r.name = name;
      r.match.proto = 17;
      r.match.dst_port = config::PortRange{dport, dport};
      r.action = action;
      r.capture = capture;
      if (action == config::Action::kForward) r.to = 1;
      return r;
    };
    config::Rule dns = udp_rule("dns", 53, config::Action::kForward);
    dns.mirror = 0;
    const config::Rule telnet = udp_rule("telnet", 23, config::Action::kDrop);
    const config::Rule ntp = udp_rule("ntp", 123, config::Action::kForward);
    flows.rules = {dns, telnet, ntp};
    auto s = flow::RuleStore::create(std::make_shared<const config::Flows>(std::move(flows)),
                                     std::vector<int>(workers, SOCKET_ID_ANY), SOCKET_ID_ANY, "wt");
    ASSERT_TRUE(s.ok()) << s.error();
    store_ = std::move(*s);
  }
  // A worker on store_'s rules, prepared (its RX queues, inbox and index set before, if any).
  void prepare(Worker& wk, uint16_t burst = 32,
               uint32_t flow_cache = flow::FlowCache::kDefaultEntries) {
    ASSERT_TRUE(store_) << "make_rules first";
    wk.burst = burst;
    wk.rules = store_->published();
    wk.stop = &stop_;
    use_kernel(wk, simd::Kernel::kScalar);
    wk.flow_cache_entries = flow_cache;
    auto r = worker_prepare(wk, port_ids_, SOCKET_ID_ANY);
    ASSERT_TRUE(r.ok()) << r.error();
  }

  rte_mbuf* mbuf_of(const std::vector<uint8_t>& bytes) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(m, nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size())), bytes.data(),
                bytes.size());
    return m;
  }

  // A chain whose segments end at the given offsets (the headers are split between them).
  rte_mbuf* chain_of(const std::vector<uint8_t>& bytes, const std::vector<size_t>& cuts) {
    rte_mbuf* head = nullptr;
    size_t from = 0;
    std::vector<size_t> ends = cuts;
    ends.push_back(bytes.size());
    for (size_t end : ends) {
      rte_mbuf* seg = rte_pktmbuf_alloc(pool_);
      EXPECT_NE(seg, nullptr);
      std::memcpy(rte_pktmbuf_append(seg, static_cast<uint16_t>(end - from)), bytes.data() + from,
                  end - from);
      if (head == nullptr) {
        head = seg;
      } else {
        EXPECT_EQ(rte_pktmbuf_chain(head, seg), 0);
      }
      from = end;
    }
    return head;
  }

  std::vector<std::vector<uint8_t>> sent(int port) {
    std::vector<std::vector<uint8_t>> out;
    void* obj;
    while (rte_ring_dequeue(tx_[port], &obj) == 0) {
      auto* m = static_cast<rte_mbuf*>(obj);
      std::vector<uint8_t> bytes(m->pkt_len);
      rte_pktmbuf_read(m, 0, m->pkt_len, bytes.data());
      const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, bytes.data());
      if (p != bytes.data()) std::memcpy(bytes.data(), p, m->pkt_len);
      out.push_back(bytes);
      rte_pktmbuf_free(m);
    }
    return out;
  }

  static void drain(rte_ring* r) {
    void* obj;
    while (rte_ring_dequeue(r, &obj) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
  }

  uint64_t drops(stats::Drop d) const { return w_.counters.drops[static_cast<size_t>(d)].get(); }
  const stats::PacketBytes& hits(size_t rule) const { return store_->current().hits[0][rule]; }

  unsigned tx_ring_size_ = 1024;
  uint16_t tx_queues_ = 1;
  rte_mempool* pool_ = nullptr;
  rte_ring* rx_[2]{};
  rte_ring* tx_[2]{};
  rte_ring* tx2_[2]{};  // TX queue 1 of each port (tx_queues_ 2)
  std::vector<uint16_t> port_ids_;
  std::unique_ptr<flow::RuleStore> store_;
  std::atomic<bool> stop_{false};
  Worker w_;
};

// Capture: the ring gets one more reference to each packet whose rule says capture (forward,
// mirror or drop alike) and, with capture_malformed, to each that fails validation, in burst
// order, stamped with the burst's RX TSC; everything else goes where it went before.
TEST_F(WorkerTest, CaptureHandsReferencesOfMarkedAndMalformedPackets) {
  make_worker(32, flow::FlowCache::kDefaultEntries, nullptr, true);
  rte_ring* ring = rte_ring_create("wt_cap", 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
  ASSERT_NE(ring, nullptr);
  w_.capture_ring = ring;
  w_.capture_malformed = true;
  w_.rx_tsc_field = capture::register_rx_tsc_field();
  ASSERT_GE(w_.rx_tsc_field, 0);
  const auto dns = udp_frame(53), telnet = udp_frame(23), other = udp_frame(80);
  const std::vector<uint8_t> runt(10, 0);
  rte_mbuf* pkts[4] = {mbuf_of(other), mbuf_of(dns), mbuf_of(runt), mbuf_of(telnet)};
  process_burst(w_, 0, pkts, 4, 12345);
  worker_flush(w_);
  EXPECT_EQ(sent(1), (std::vector<std::vector<uint8_t>>{other, dns}));
  EXPECT_EQ(sent(0), (std::vector<std::vector<uint8_t>>{dns}));  // the mirror copy
  // In arrival order, malformed and rule-marked alike.
  const std::vector<std::vector<uint8_t>> want = {dns, runt, telnet};
  ASSERT_EQ(rte_ring_count(ring), want.size());
  for (const auto& w : want) {
    void* obj = nullptr;
    ASSERT_EQ(rte_ring_dequeue(ring, &obj), 0);
    auto* m = static_cast<rte_mbuf*>(obj);
    EXPECT_EQ(*capture::rx_tsc_of(m, w_.rx_tsc_field), 12345u);
    EXPECT_EQ(rte_mbuf_refcnt_read(m), 1u) << "the worker kept no reference of its own";
    EXPECT_EQ(std::vector<uint8_t>(rte_pktmbuf_mtod(m, uint8_t*),
                                   rte_pktmbuf_mtod(m, uint8_t*) + m->pkt_len),
              w);
    rte_pktmbuf_free(m);
  }
  EXPECT_EQ(w_.counters.capture_enqueued.get(), 3u);
  EXPECT_EQ(drops(stats::Drop::kCaptureFull), 0u);
  EXPECT_EQ(drops(stats::Drop::kRule), 1u);
  EXPECT_EQ(drops(stats::Drop::kRunt), 1u);
  rte_ring_free(ring);
}

// A full capture ring drops the copies (capture_full), never the packets.
TEST_F(WorkerTest, FullCaptureRingCountsCaptureFullAndForwardsAnyway) {
  make_worker(32, flow::FlowCache::kDefaultEntries, nullptr, true);
  rte_ring* ring = rte_ring_create("wt_cap_small", 8, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
  ASSERT_NE(ring, nullptr);
  w_.capture_ring = ring;
  w_.rx_tsc_field = capture::register_rx_tsc_field();
  const auto dns = udp_frame(53);
  std::vector<rte_mbuf*> pkts;
  for (int i = 0; i < 32; ++i) pkts.push_back(mbuf_of(dns));
  process_burst(w_, 0, pkts.data(), 32, rte_rdtsc());
  worker_flush(w_);
  EXPECT_EQ(sent(1).size(), 32u);
  EXPECT_EQ(sent(0).size(), 32u);
  EXPECT_EQ(rte_ring_count(ring), 7u);  // a ring of 8 holds 7
  EXPECT_EQ(w_.counters.capture_enqueued.get(), 7u);
  EXPECT_EQ(drops(stats::Drop::kCaptureFull), 25u);
  drain(ring);
  rte_ring_free(ring);
}

TEST_F(WorkerTest, ForwardsByDefaultAndDropsByRule) {
  make_worker();
  auto fwd = udp_frame(80), telnet = udp_frame(23);
  rte_mbuf* pkts[2] = {mbuf_of(fwd), mbuf_of(telnet)};
  process_burst(w_, 0, pkts, 2, rte_rdtsc());
  worker_flush(w_);
  auto out1 = sent(1);
  ASSERT_EQ(out1.size(), 1u);
  EXPECT_EQ(out1[0], fwd);
  EXPECT_TRUE(sent(0).empty());
  EXPECT_EQ(drops(stats::Drop::kRule), 1u);
  EXPECT_EQ(hits(1).packets.get(), 1u);
  EXPECT_EQ(hits(1).bytes.get(), telnet.size());
  EXPECT_EQ(w_.counters.fallback.packets.get(), 1u);
}

// A whole burst on one rule that only forwards takes the short way (one count, the burst as it
// came to the port): the same frames in order, the rule's packets and bytes exact; a burst
// with one packet elsewhere, or a rule that captures, takes the long way with the same result.
TEST_F(WorkerTest, WholeBurstOnOneForwardingRuleGoesOutAsItCame) {
  for (bool capture : {false, true}) {
    SCOPED_TRACE(capture ? "the rule captures" : "plain forward");
    rte_ring* cap = nullptr;
    if (capture) {
      cap = rte_ring_create("wt_cap_burst", 256, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
      ASSERT_NE(cap, nullptr);
      w_.capture_ring = cap;
      w_.rx_tsc_field = capture::register_rx_tsc_field();
    }
    make_worker(32, flow::FlowCache::kDefaultEntries, nullptr, capture);
    std::vector<std::vector<uint8_t>> frames;
    std::vector<rte_mbuf*> pkts;
    uint64_t bytes = 0;
    for (int i = 0; i < 32; ++i) {
      frames.push_back(udp_frame(123, 64 + static_cast<size_t>(i)));  // lengths tell them apart
      bytes += frames.back().size();
      pkts.push_back(mbuf_of(frames.back()));
    }
    process_burst(w_, 0, pkts.data(), 32, rte_rdtsc());
    // Then 31 more on that rule and one DNS packet (mirrored) last.
    std::vector<rte_mbuf*> mixed;
    for (int i = 0; i < 31; ++i) mixed.push_back(mbuf_of(frames[static_cast<size_t>(i)]));
    mixed.push_back(mbuf_of(udp_frame(53)));
    process_burst(w_, 0, mixed.data(), 32, rte_rdtsc());
    worker_flush(w_);
    auto out = sent(1);
    ASSERT_EQ(out.size(), 64u);
    for (size_t i = 0; i < 32; ++i) EXPECT_EQ(out[i], frames[i]) << "packet " << i;
    for (size_t i = 0; i < 31; ++i) EXPECT_EQ(out[32 + i], frames[i]) << "packet " << 32 + i;
    EXPECT_EQ(out[63], udp_frame(53));
    EXPECT_EQ(sent(0).size(), 1u) << "the DNS packet's mirror copy";
    EXPECT_EQ(hits(2).packets.get(), 63u);
    EXPECT_EQ(hits(2).bytes.get(), bytes + bytes - frames[31].size());
    EXPECT_EQ(hits(0).packets.get(), 1u);
    for (size_t d = 0; d < stats::kDropCount; ++d) EXPECT_EQ(w_.counters.drops[d].get(), 0u);
    if (capture) {
      EXPECT_EQ(rte_ring_count(cap), 64u) << "every packet of a capturing rule is copied";
      drain(cap);
      rte_ring_free(cap);
      w_.capture_ring = nullptr;
    }
    worker_release(w_);
    store_.reset();
  }
}

// The same short way for a whole burst on the default action, and on the non_ip action: the
// burst as it came to the action's port, counted once under fallback / non_ip, exactly.
TEST_F(WorkerTest, WholeBurstOnTheDefaultOrNonIpActionGoesOutAsItCame) {
  make_worker();
  for (bool non_ip : {false, true}) {
    SCOPED_TRACE(non_ip ? "non-IP frames" : "frames on no rule");
    std::vector<std::vector<uint8_t>> frames;
    std::vector<rte_mbuf*> pkts;
    uint64_t bytes = 0;
    for (int i = 0; i < 32; ++i) {
      const size_t len = 64 + static_cast<size_t>(i);  // lengths tell them apart
      if (non_ip) {
        std::vector<uint8_t> f(len, 0x5a);
        packet::write_eth(f.data(), {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 1}, 0x0806);  // ARP
        frames.push_back(f);
      } else {
        frames.push_back(udp_frame(80, len));
      }
      bytes += len;
      pkts.push_back(mbuf_of(frames.back()));
    }
    process_burst(w_, 0, pkts.data(), 32, rte_rdtsc());
    worker_flush(w_);
    EXPECT_EQ(sent(non_ip ? 0 : 1), frames);
    EXPECT_TRUE(sent(non_ip ? 1 : 0).empty());
    const auto& count = non_ip ? w_.counters.non_ip : w_.counters.fallback;
    EXPECT_EQ(count.packets.get(), 32u);
    EXPECT_EQ(count.bytes.get(), bytes);
  }
  EXPECT_EQ(w_.counters.fallback.packets.get(), 32u) << "the non-IP burst counted as default";
  for (size_t d = 0; d < stats::kDropCount; ++d) EXPECT_EQ(w_.counters.drops[d].get(), 0u);
}

// An empty burst does nothing and reads nothing: no count, no TSC read, no result looked at.
TEST_F(WorkerTest, EmptyBurstDoesNothing) {
  make_worker();
  stats::RxQueueCounters counted;
  rte_mbuf* none[1] = {nullptr};
  EXPECT_EQ(process_burst(w_, 0, none, 0, 12345, &counted), 12345u);
  worker_flush(w_);
  EXPECT_TRUE(sent(0).empty());
  EXPECT_TRUE(sent(1).empty());
  EXPECT_EQ(counted.packets.get(), 0u);
  EXPECT_EQ(w_.counters.fallback.packets.get(), 0u);
  for (size_t d = 0; d < stats::kDropCount; ++d) EXPECT_EQ(w_.counters.drops[d].get(), 0u);
}

TEST_F(WorkerTest, HeadersSplitAcrossSegmentsAreValidatedAndForwardedIntact) {
  make_worker();
  auto dns = udp_frame(53, 200);
  // Cuts inside the Ethernet header, inside the IPv4 header, inside the UDP header.
  rte_mbuf* pkts[3] = {chain_of(dns, {6}), chain_of(dns, {20, 30}), chain_of(dns, {36, 40})};
  process_burst(w_, 1, pkts, 3, rte_rdtsc());
  worker_flush(w_);
  auto out1 = sent(1);
  auto out0 = sent(0);  // mirror copies
  ASSERT_EQ(out1.size(), 3u);
  ASSERT_EQ(out0.size(), 3u);
  for (const auto& f : out1) EXPECT_EQ(f, dns);
  for (const auto& f : out0) EXPECT_EQ(f, dns);
  EXPECT_EQ(hits(0).packets.get(), 3u);
  for (size_t d = 0; d < stats::kDropCount; ++d) EXPECT_EQ(w_.counters.drops[d].get(), 0u);
}

// Chains cut inside their headers among whole frames, in every lane of the kernels' groups:
// each kernel validates them all (the cut ones linearised), keeps arrival order per port, and
// counts the burst's packets and bytes. A chain whose first segment holds the whole header
// budget is validated where it lies.
TEST_F(WorkerTest, SplitChainsAmongWholeFramesInEveryKernel) {
  for (simd::Kernel kernel : simd::kKernels) {
    if (!simd::kernel_supported(kernel)) continue;
    SCOPED_TRACE(std::string(simd::kernel_name(kernel)));
    Worker w;
    make_worker(64, 0, &w);
    use_kernel(w, kernel);
    const auto ntp = udp_frame(123, 200), telnet = udp_frame(23, 90), big = udp_frame(123, 1000);
    auto bad = udp_frame(123, 120);
    bad[24] ^= 0xff;  // the IPv4 checksum no longer holds
    std::vector<rte_mbuf*> pkts;
    std::vector<std::vector<uint8_t>> want;  // what port 1 sends, in order
    uint64_t bytes = 0;
    for (unsigned i = 0; i < 37; ++i) {
      const bool cut = i % 3 != 1;
      switch (i % 5) {
        case 0:
        case 3:
          pkts.push_back(cut ? chain_of(ntp, {14 + i % 30}) : mbuf_of(ntp));
          want.push_back(ntp);
          break;
        case 1:
          pkts.push_back(cut ? chain_of(telnet, {30}) : mbuf_of(telnet));
          break;
        case 2:
          pkts.push_back(cut ? chain_of(bad, {20, 40}) : mbuf_of(bad));
          break;
        case 4:  // a first segment of exactly the budget, or more: not linearised
          pkts.push_back(chain_of(big, {cut ? simd::kMaxHeaderBytes : 700u}));
          want.push_back(big);
          break;
      }
      bytes += pkts.back()->pkt_len;
    }
    stats::RxQueueCounters rx;
    process_burst(w, 0, pkts.data(), 24, rte_rdtsc(), &rx);
    process_burst(w, 0, pkts.data() + 24, static_cast<uint16_t>(pkts.size() - 24), rte_rdtsc(),
                  &rx);
    worker_flush(w);
    EXPECT_EQ(sent(1), want);
    EXPECT_TRUE(sent(0).empty());
    EXPECT_EQ(rx.packets.get(), pkts.size());
    EXPECT_EQ(rx.bytes.get(), bytes);
    EXPECT_EQ(w.counters.drops[static_cast<size_t>(stats::Drop::kIpv4Checksum)].get(), 7u);
    EXPECT_EQ(hits(1).packets.get(), 8u);
    EXPECT_EQ(w.counters.drops[static_cast<size_t>(stats::Drop::kRule)].get(), 8u);
    worker_release(w);
    store_.reset();
  }
}

TEST_F(WorkerTest, MalformedSegmentedFrameIsCountedAndFreed) {
  make_worker();
  auto bad = udp_frame(53, 100);
  bad[24] ^= 0xff;  // corrupt the IPv4 checksum's neighbour: the checksum no longer holds
  rte_mbuf* pkts[2] = {chain_of(bad, {20, 50}), mbuf_of(std::vector<uint8_t>(10, 0))};
  process_burst(w_, 0, pkts, 2, rte_rdtsc());
  worker_flush(w_);
  EXPECT_TRUE(sent(0).empty());
  EXPECT_TRUE(sent(1).empty());
  EXPECT_EQ(drops(stats::Drop::kIpv4Checksum), 1u);
  EXPECT_EQ(drops(stats::Drop::kRunt), 1u);
}

TEST_F(WorkerTest, MirrorSendsOneReferencePerPortAndNothingLeaks) {
  make_worker();
  auto dns = udp_frame(53);
  std::vector<rte_mbuf*> pkts;
  for (int i = 0; i < 32; ++i) pkts.push_back(mbuf_of(dns));
  process_burst(w_, 0, pkts.data(), 32, rte_rdtsc());
  worker_flush(w_);
  EXPECT_EQ(sent(0).size(), 32u);
  EXPECT_EQ(sent(1).size(), 32u);
}

// Each port sends its packets in the order they arrived, whatever else the burst holds: here
// DNS (to port 1, mirrored to port 0), telnet (dropped) and others (default: port 1) mixed.
TEST_F(WorkerTest, EachPortKeepsArrivalOrderInAMixedBurst) {
  make_worker();
  std::vector<std::vector<uint8_t>> frames;
  std::vector<rte_mbuf*> pkts;
  for (int i = 0; i < 32; ++i) {
    const uint16_t dport = i % 3 == 0 ? 53 : i % 3 == 1 ? 23 : static_cast<uint16_t>(1000 + i);
    frames.push_back(udp_frame(dport, 64 + static_cast<size_t>(i)));  // lengths tell them apart
    pkts.push_back(mbuf_of(frames.back()));
  }
  process_burst(w_, 0, pkts.data(), 32, rte_rdtsc());
  worker_flush(w_);
  std::vector<std::vector<uint8_t>> want0, want1;
  for (int i = 0; i < 32; ++i) {
    if (i % 3 == 0) want0.push_back(frames[i]);
    if (i % 3 != 1) want1.push_back(frames[i]);
  }
  EXPECT_EQ(sent(0), want0);
  EXPECT_EQ(sent(1), want1);
  EXPECT_EQ(drops(stats::Drop::kRule), 11u);
  EXPECT_EQ(hits(0).packets.get(), 11u);
  EXPECT_EQ(hits(1).packets.get(), 11u);
  EXPECT_EQ(w_.counters.fallback.packets.get(), 10u);
}

// The flow cache changes nothing a port sends or a counter says: the same bursts through a
// worker without it and one with it (the second pass over the flows all hits).
TEST_F(WorkerTest, FlowCacheChangesNoOutputAndNoCount) {
  struct Result {
    std::vector<std::vector<uint8_t>> out0, out1;
    uint64_t rule_drops, dns, telnet, fallback, hits, misses;
  };
  auto run = [&](uint32_t cache) {
    Worker w;
    make_worker(32, cache, &w);
    for (int round = 0; round < 3; ++round) {
      std::vector<rte_mbuf*> pkts;
      for (int i = 0; i < 30; ++i) {
        const uint16_t dport = i % 5 == 0   ? 53
                               : i % 5 == 1 ? 23
                                            : static_cast<uint16_t>(2000 + i % 7);
        pkts.push_back(mbuf_of(udp_frame(dport, 64 + static_cast<size_t>(i))));
      }
      process_burst(w, static_cast<uint8_t>(round % 2), pkts.data(), 30, rte_rdtsc());
    }
    worker_flush(w);
    Result r{sent(0),
             sent(1),
             w.counters.drops[static_cast<size_t>(stats::Drop::kRule)].get(),
             hits(0).packets.get(),
             hits(1).packets.get(),
             w.counters.fallback.packets.get(),
             w.counters.cache_hits.get(),
             w.counters.cache_misses.get()};
    worker_release(w);
    store_.reset();
    return r;
  };
  const Result off = run(0), on = run(1024);
  EXPECT_EQ(on.out0, off.out0);
  EXPECT_EQ(on.out1, off.out1);
  EXPECT_EQ(on.rule_drops, off.rule_drops);
  EXPECT_EQ(on.dns, off.dns);
  EXPECT_EQ(on.telnet, off.telnet);
  EXPECT_EQ(on.fallback, off.fallback);
  EXPECT_EQ(off.hits + off.misses, 0u) << "no cache, no lookups";
  EXPECT_EQ(on.hits + on.misses, 90u);
  EXPECT_EQ(on.hits, 30u) << "the third round's flows (in_port 0) were all seen in the first";
  EXPECT_EQ(off.out1.size(), 3u * 24u);
}

// The NIC's IPv4 checksum verdict (mbuf ol_flags) stands in for the software check: GOOD and
// NONE (verified, field not filled in) pass whatever the field holds, BAD drops whatever it
// holds, UNKNOWN (no flag) is checked in software. Every kernel of this CPU.
TEST_F(WorkerTest, NicChecksumFlagsDecideTheIpv4Checksum) {
  for (simd::Kernel kernel : simd::kKernels) {
    if (!simd::kernel_supported(kernel)) continue;
    SCOPED_TRACE(std::string(simd::kernel_name(kernel)));
    Worker w;
    make_worker(32, 0, &w);
    use_kernel(w, kernel);
    auto good = udp_frame(80), bad = udp_frame(80);
    bad[14 + 10] ^= 0x5a;  // the checksum field
    struct Case {
      const std::vector<uint8_t>* frame;
      uint64_t flag;
      bool sent;
    };
    const Case cases[] = {
        {&bad, RTE_MBUF_F_RX_IP_CKSUM_GOOD, true},
        {&bad, RTE_MBUF_F_RX_IP_CKSUM_NONE, true},
        {&good, RTE_MBUF_F_RX_IP_CKSUM_BAD, false},
        {&bad, RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN, false},
        {&good, RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN, true},
        {&good, RTE_MBUF_F_RX_IP_CKSUM_GOOD, true},
    };
    // Eight of each, so that the AVX2 kernel's eight-packet step sees every case.
    std::vector<rte_mbuf*> pkts;
    size_t want_sent = 0, want_dropped = 0;
    for (const Case& c : cases) {
      for (int i = 0; i < 8; ++i) {
        rte_mbuf* m = mbuf_of(*c.frame);
        m->ol_flags = (m->ol_flags & ~RTE_MBUF_F_RX_IP_CKSUM_MASK) | c.flag;
        pkts.push_back(m);
        (c.sent ? want_sent : want_dropped) += 1;
      }
    }
    for (size_t b = 0; b < pkts.size(); b += 24) {
      const auto n = static_cast<uint16_t>(std::min<size_t>(24, pkts.size() - b));
      process_burst(w, 0, pkts.data() + b, n, rte_rdtsc());
    }
    worker_flush(w);
    auto out = sent(1);
    EXPECT_EQ(out.size(), want_sent);
    EXPECT_EQ(w.counters.drops[static_cast<size_t>(stats::Drop::kIpv4Checksum)].get(),
              want_dropped);
    worker_release(w);
    store_.reset();
  }
}

// At stop a worker drains its inbox (what another worker's distributor handed it) until that
// producer has stopped and the ring is empty: every packet goes out (or is counted), none is
// left for teardown to free. A producer that never stops is waited for only so long.
class WorkerStopTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    static int instance = 0;
    inbox_ = rte_ring_create(("wt_inbox" + std::to_string(++instance)).c_str(), 128, SOCKET_ID_ANY,
                             RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(inbox_, nullptr);
  }
  void TearDown() override {
    drain(inbox_);
    rte_ring_free(inbox_);
    WorkerTest::TearDown();
  }
  void hand(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      rte_mbuf* m = mbuf_of(udp_frame(80));
      m->hash.rss = static_cast<uint32_t>(rte_rdtsc());  // the distributor's RX TSC stamp
      sys::tsan_release(inbox_);                         // as spread_burst hands packets over
      ASSERT_EQ(rte_ring_sp_enqueue(inbox_, m), 0);
    }
  }
  rte_ring* inbox_ = nullptr;
  std::atomic<bool> producer_stopped_{false};
};

TEST_F(WorkerStopTest, DrainsItsInboxOnceTheProducerStops) {
  make_worker();
  w_.inbox.push_back({inbox_, 0, &producer_stopped_});
  w_.stop_drain_cycles =
      30 * rte_get_tsc_hz();  // far beyond this test's pause, even on a busy host
  hand(40);                   // more than a burst
  stop_ = true;
  std::thread worker([this] { worker_main(&w_); });
  // The worker has left its RX loop; the producer is still finishing a burst.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(w_.exited.load()) << "the worker left before its producer stopped";
  hand(20);
  producer_stopped_.store(true, std::memory_order_release);
  worker.join();
  EXPECT_TRUE(w_.exited.load());
  EXPECT_TRUE(w_.rx_stopped.load());
  EXPECT_EQ(rte_ring_count(inbox_), 0u) << "packets left in the inbox at stop";
  EXPECT_EQ(w_.counters.rx_packets.get(), 60u);
  EXPECT_EQ(sent(1).size(), 60u) << "the drained packets were not all sent";
}

TEST_F(WorkerStopTest, AProducerThatNeverStopsIsWaitedForOnlySoLong) {
  make_worker();
  w_.inbox.push_back({inbox_, 0, &producer_stopped_});
  w_.stop_drain_cycles = rte_get_tsc_hz() / 20;  // 50 ms
  hand(10);
  stop_ = true;
  const auto t0 = std::chrono::steady_clock::now();
  worker_main(&w_);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(40)) << "it did not wait for the producer";
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_EQ(rte_ring_count(inbox_), 0u) << "what was there was not processed";
  EXPECT_EQ(sent(1).size(), 10u);
}

// distribute: ring end to end inside worker_main: worker 0 polls the port and spreads each burst
// by the symmetric flow hash, worker 1 takes its share from its inbox; each sends on its own TX
// queue. Every packet of a flow goes out of the worker its hash names, in arrival order; the
// counts add up exactly; with the receiver slowed, what its full ring refused is counted as
// ring_full, and nothing else is lost.
class RingDistributeTest : public WorkerTest {
 protected:
  RingDistributeTest() { tx_queues_ = 2; }
  void TearDown() override {
    if (store_) worker_release(r_);
    if (ring_ != nullptr) {
      drain(ring_);
      rte_ring_free(ring_);
    }
    WorkerTest::TearDown();
  }

  // Worker 0 (w_) spreads port 0 over itself and r_ through a ring of ring_size slots.
  void start(unsigned ring_size, uint64_t receiver_slow_cycles = 0) {
    static int instance = 0;
    ring_ = rte_ring_create(("wt_spread" + std::to_string(++instance)).c_str(), ring_size,
                            SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(ring_, nullptr);
    spread_ = {nullptr, ring_};
    ASSERT_NO_FATAL_FAILURE(make_rules(2));
    for (unsigned k = 0; k < 2; ++k) {
      Worker& w = k == 0 ? w_ : r_;
      w.index = k;
      w.nb_workers = 2;
      w.tx_queue = static_cast<uint16_t>(k);
    }
    w_.rx = {RxQueue{port_ids_[0], 0, 0, spread_.data(), nullptr}};
    r_.inbox = {Inbox{ring_, 0, &w_.rx_stopped}};
    ASSERT_NO_FATAL_FAILURE(prepare(w_));
    ASSERT_NO_FATAL_FAILURE(prepare(r_));
    // The kernels the appliance would pick on this CPU (the scalar ones are tested elsewhere).
    use_kernel(w_, simd::best_kernel(256));
    use_kernel(r_, simd::best_kernel(256));
    r_.test_slow_cycles = receiver_slow_cycles;
  }

  // kPackets packets of kFlows UDP flows taken in turn (flow = seq % kFlows, told apart by the
  // source port), each with its sequence number in the mbuf's last dynfield word; both workers
  // run until every packet is accounted for (sent, or refused by a full ring), then stop.
  void run() {
    for (unsigned i = 0; i < kPackets; ++i) {
      rte_mbuf* m = mbuf_of(udp_frame(80, 64, static_cast<uint16_t>(1000 + i % kFlows)));
      m->dynfield1[8] = i;  // the last, unregistered: no one uses it
      ASSERT_EQ(rte_ring_sp_enqueue(rx_[0], m), 0);
    }
    std::thread t0([this] { worker_main(&w_); });
    std::thread t1([this] { worker_main(&r_); });
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (accounted() < kPackets && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    stop_ = true;
    t0.join();
    t1.join();
  }
  uint64_t ring_full() const {
    return w_.counters.drops[static_cast<size_t>(stats::Drop::kRingFull)].get();
  }
  uint64_t accounted() const {
    return w_.counters.rx_packets.get() + r_.counters.rx_packets.get() + ring_full();
  }

  // What worker k sent out of port 1 (default action: forward to port 1): per flow (source
  // port), the sequence numbers in the order they went out. Asserts each packet's worker is
  // the one its flow hash names.
  std::map<uint16_t, std::vector<uint32_t>> sent_by(unsigned k) {
    std::map<uint16_t, std::vector<uint32_t>> out;
    rte_ring* tx = k == 0 ? tx_[1] : tx2_[1];
    void* obj;
    while (rte_ring_dequeue(tx, &obj) == 0) {
      auto* m = static_cast<rte_mbuf*>(obj);
      const auto* f = rte_pktmbuf_mtod(m, const uint8_t*);
      const auto sport = static_cast<uint16_t>(f[34] << 8 | f[35]);
      EXPECT_EQ(worker_of(flow_hash(m), 2), k) << "flow " << sport << " on the wrong worker";
      out[sport].push_back(m->dynfield1[8]);
      rte_pktmbuf_free(m);
    }
    return out;
  }

  static constexpr unsigned kPackets = 640, kFlows = 16;
  Worker r_;  // the receiver
  rte_ring* ring_ = nullptr;
  std::array<rte_ring*, 2> spread_{};
};

TEST_F(RingDistributeTest, EachFlowGoesOutOfItsWorkerInOrder) {
  ASSERT_NO_FATAL_FAILURE(start(1024));
  ASSERT_NO_FATAL_FAILURE(run());
  EXPECT_TRUE(w_.exited.load() && r_.exited.load());
  EXPECT_EQ(ring_full(), 0u);
  const auto own = sent_by(0), handed = sent_by(1);
  ASSERT_FALSE(own.empty()) << "worker 0 kept no flow: the test shows nothing";
  ASSERT_FALSE(handed.empty()) << "worker 0 handed no flow on";
  size_t n_own = 0, n_handed = 0;
  for (const auto* side : {&own, &handed}) {
    for (const auto& [sport, seqs] : *side) {
      EXPECT_EQ(seqs.size(), kPackets / kFlows) << "flow " << sport << " lost or split packets";
      EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end())) << "flow " << sport << " reordered";
      (side == &own ? n_own : n_handed) += seqs.size();
    }
  }
  EXPECT_EQ(n_own + n_handed, kPackets);
  EXPECT_EQ(w_.counters.rx_packets.get(), n_own);
  EXPECT_EQ(r_.counters.rx_packets.get(), n_handed);
  EXPECT_EQ(w_.counters.handed_off.get(), n_handed);
  EXPECT_EQ(rte_ring_count(ring_), 0u) << "packets left in the hand-off ring";
}

TEST_F(RingDistributeTest, ASlowReceiversFullRingIsCountedAndNothingElseIsLost) {
  // The receiver: 0.5 ms a packet; its ring holds 63.
  ASSERT_NO_FATAL_FAILURE(start(64, rte_get_tsc_hz() / 2000));
  ASSERT_NO_FATAL_FAILURE(run());
  EXPECT_GT(ring_full(), 0u) << "the slowed receiver's ring never filled";
  const auto own = sent_by(0), handed = sent_by(1);
  size_t n_own = 0, n_handed = 0;
  for (const auto& [sport, seqs] : own) {
    EXPECT_EQ(seqs.size(), kPackets / kFlows)
        << "the spreader's own flow " << sport << " lost some";
    n_own += seqs.size();
  }
  for (const auto& [sport, seqs] : handed) {
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end())) << "flow " << sport << " reordered";
    n_handed += seqs.size();
  }
  EXPECT_EQ(r_.counters.rx_packets.get(), n_handed);
  EXPECT_EQ(w_.counters.handed_off.get(), n_handed) << "handed_off counts what the ring took";
  EXPECT_EQ(n_own + n_handed + ring_full(), kPackets);
}

class WorkerTxFullTest : public WorkerTest {
 protected:
  WorkerTxFullTest() { tx_ring_size_ = 32; }  // holds 31 packets
};

TEST_F(WorkerTxFullTest, FullTxQueueDropsAndCountsWithoutBlocking) {
  // The default action (the per-packet path) and a forwarding rule (the whole-burst path).
  for (uint16_t dport : {80, 123}) {
    SCOPED_TRACE(dport);
    make_worker(32);
    const uint64_t before = drops(stats::Drop::kTxFull);
    auto f = udp_frame(dport);
    for (int round = 0; round < 2; ++round) {
      std::vector<rte_mbuf*> pkts;
      for (int i = 0; i < 32; ++i) pkts.push_back(mbuf_of(f));
      process_burst(w_, 0, pkts.data(), 32, rte_rdtsc());
    }
    worker_flush(w_);
    auto out = sent(1);
    EXPECT_EQ(out.size(), 31u);
    EXPECT_EQ(drops(stats::Drop::kTxFull) - before, 64u - 31u);
    worker_release(w_);
    store_.reset();
  }
}

}  // namespace
}  // namespace sluice::pipeline
