#include "lib/pipeline/worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <fmt/format.h>

#include <smmintrin.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <type_traits>

#include "lib/capture/handoff.h"
#include "lib/pipeline/distributor.h"
#include "lib/sys/tsan.h"

namespace sluice::pipeline {

namespace {

// A full TX queue: count the packets under tx_full and free them. Never retry, never block.
void tx_unsent(rte_mbuf** pkts, uint16_t unsent, void* userdata) {
  static_cast<stats::Counter*>(userdata)->add(unsent);
  rte_pktmbuf_free_bulk(pkts, unsent);
}

// The validator reads the mbufs' first cache line itself, at the offsets simd/validate.h
// names: they must be DPDK's.
static_assert(offsetof(rte_mbuf, buf_addr) == simd::mbuf::kBufAddr);
static_assert(offsetof(rte_mbuf, data_off) == simd::mbuf::kDataOff &&
              sizeof(rte_mbuf::data_off) == 2);
static_assert(offsetof(rte_mbuf, ol_flags) == simd::mbuf::kOlFlags &&
              sizeof(rte_mbuf::ol_flags) == 8);
static_assert(offsetof(rte_mbuf, pkt_len) == simd::mbuf::kPktLen && sizeof(rte_mbuf::pkt_len) == 4);
static_assert(offsetof(rte_mbuf, data_len) == simd::mbuf::kDataLen &&
              sizeof(rte_mbuf::data_len) == 2);
static_assert(RTE_MBUF_F_RX_IP_CKSUM_MASK == simd::mbuf::kIpCksumMask &&
              RTE_MBUF_F_RX_IP_CKSUM_BAD == simd::mbuf::kIpCksumBad &&
              RTE_MBUF_F_RX_IP_CKSUM_GOOD == simd::mbuf::kIpCksumGood &&
              RTE_MBUF_F_RX_IP_CKSUM_NONE == simd::mbuf::kIpCksumMask);

// The view of a frame whose first segment ends inside its headers: they are linearised into
// the slot's scratch buffer.
simd::PacketView linearised(Worker& w, unsigned slot, rte_mbuf* m) noexcept {
  const uint32_t len = std::min<uint32_t>(m->pkt_len, simd::kMaxHeaderBytes);
  return {static_cast<const uint8_t*>(rte_pktmbuf_read(m, 0, len, w.scratch[slot].data())), len,
          m->pkt_len, simd::cksum_hint_of(m->ol_flags)};
}

// Hands copies to the capture lcore: one more reference each (every segment), the burst's RX
// TSC, one burst enqueue. What the ring cannot take is counted under capture_full and the
// extra reference dropped; the packets themselves go on as their rules say.
void hand_to_capture(Worker& w, rte_mbuf** cap, unsigned n, uint64_t rx_tsc) noexcept {
  for (unsigned i = 0; i < n; ++i) {
    // The mbuf may last have been read by the capture lcore before it went back to the pool.
    sys::tsan_acquire(cap[i]->pool);
    rte_pktmbuf_refcnt_update(cap[i], 1);
    *capture::rx_tsc_of(cap[i], w.rx_tsc_field) = rx_tsc;
  }
  sys::tsan_release(w.capture_ring);
  const unsigned sent =
      rte_ring_sp_enqueue_burst(w.capture_ring, reinterpret_cast<void**>(cap), n, nullptr);
  w.counters.capture_enqueued.add(sent);
  if (sent != n) [[unlikely]] {
    w.counters.drops[static_cast<size_t>(stats::Drop::kCaptureFull)].add(n - sent);
    rte_pktmbuf_free_bulk(cap + sent, n - sent);
  }
}

// Packets to one port's TX buffer, in order; a full buffer is sent at once, as
// rte_eth_tx_buffer does. When the buffer is empty and the packets fill it (a loaded worker's
// every burst), they go straight to rte_eth_tx_burst, as testpmd io sends, what it refuses
// counted tx_full.
void tx_to_port(Worker& w, unsigned p, rte_mbuf* const* pkts, unsigned n) noexcept {
  rte_eth_dev_tx_buffer* b = w.tx[p];
  if (b->length == 0 && n == b->size) [[likely]] {
    const uint16_t sent =
        rte_eth_tx_burst(w.port_ids[p], w.tx_queue, const_cast<rte_mbuf**>(pkts), b->size);
    if (sent != b->size) [[unlikely]] {
      tx_unsent(const_cast<rte_mbuf**>(&pkts[sent]), static_cast<uint16_t>(b->size - sent),
                &w.counters.drops[static_cast<size_t>(stats::Drop::kTxFull)]);
    }
    return;
  }
  for (unsigned k = 0; k < n;) {
    const unsigned take = std::min<unsigned>(b->size - b->length, n - k);
    std::memcpy(&b->pkts[b->length], &pkts[k], take * sizeof(pkts[0]));
    b->length = static_cast<uint16_t>(b->length + take);
    k += take;
    if (b->length == b->size) rte_eth_tx_buffer_flush(w.port_ids[p], w.tx_queue, b);
  }
}

// The end of a burst: its latency from the RX TSC, for n packets; the TSC it read.
uint64_t burst_done(Worker& w, uint64_t rx_tsc, uint16_t n) noexcept {
  const uint64_t end = rte_rdtsc();
  w.counters.latency.record(
      static_cast<uint64_t>(static_cast<double>(end - rx_tsc) * w.ns_per_cycle), n);
  return end;
}

}  // namespace

void use_kernel(Worker& w, simd::Kernel k) noexcept {
  w.validate_mbufs = simd::mbuf_kernel_fn(k);
  w.validate = simd::kernel_fn(k);
  w.flow_hash_burst = simd::flow_hash_fn(k);
}

Result<void> worker_prepare(Worker& w, const std::vector<uint16_t>& port_ids, int socket) {
  if (port_ids.size() > kMaxPorts) {
    return Error{fmt::format("at most {} ports are supported", kMaxPorts)};
  }
  w.nb_ports = static_cast<uint16_t>(port_ids.size());
  for (size_t p = 0; p < port_ids.size(); ++p) {
    w.port_ids[p] = port_ids[p];
    auto* buf = static_cast<rte_eth_dev_tx_buffer*>(rte_zmalloc_socket(
        "sluice_txbuf", RTE_ETH_TX_BUFFER_SIZE(w.burst), RTE_CACHE_LINE_SIZE, socket));
    if (buf == nullptr) {
      return Error{fmt::format("worker on lcore {}: cannot allocate TX buffers on socket {}",
                               w.lcore, socket)};
    }
    rte_eth_tx_buffer_init(buf, w.burst);
    rte_eth_tx_buffer_set_err_callback(
        buf, tx_unsent, &w.counters.drops[static_cast<size_t>(stats::Drop::kTxFull)]);
    w.tx[p] = buf;
  }
  if (w.flow_cache_entries != 0) {
    auto c = flow::FlowCache::create(w.flow_cache_entries, socket);
    if (!c) return Error{fmt::format("worker on lcore {}: {}", w.lcore, c.error())};
    w.cache = std::move(*c);
  }
  for (const auto& q : w.rx) {
    if (q.spread == nullptr) continue;
    if (auto r = prepare_hand_off(w, q, socket); !r) return r;
  }
  w.drain_cycles = (rte_get_tsc_hz() + 1'000'000 - 1) / 1'000'000 * kDrainUs;
  w.hand_off_wait_cycles = rte_get_tsc_hz() / 1'000'000 * kHandOffWaitUs;
  w.ns_per_cycle = 1e9 / static_cast<double>(rte_get_tsc_hz());
  return {};
}

void worker_release(Worker& w) {
  for (auto*& buf : w.tx) {
    rte_free(buf);
    buf = nullptr;
  }
  w.cache.reset();
  // A worker that stopped has sent its stages; what one that did not left is freed here.
  for (auto& h : w.hand_off) {
    for (unsigned k = 0; k < w.nb_workers; ++k) {
      if (h.to[k].n != 0) rte_pktmbuf_free_bulk(h.to[k].pkts.data(), h.to[k].n);
    }
  }
  w.hand_off.clear();
  w.hand_off_of = {};
}

void HandOff::Free::operator()(HandOffStage* p) const noexcept {
  rte_free(p);  // HandOffStage is trivially destructible
}

Result<void> prepare_hand_off(Worker& w, const RxQueue& q, int socket) {
  static_assert(std::is_trivially_destructible_v<HandOffStage>);
  if (w.hand_off_of[q.port_index] != 0) return {};
  auto* mem = static_cast<HandOffStage*>(rte_zmalloc_socket(
      "sluice_handoff", sizeof(HandOffStage) * w.nb_workers, RTE_CACHE_LINE_SIZE, socket));
  if (mem == nullptr) {
    return Error{fmt::format("worker on lcore {}: cannot allocate its hand-off stages on socket {}",
                             w.lcore, socket)};
  }
  for (unsigned k = 0; k < w.nb_workers; ++k) new (&mem[k]) HandOffStage{};
  w.hand_off.push_back(
      {q.port_index, q.spread, std::unique_ptr<HandOffStage[], HandOff::Free>(mem)});
  w.hand_off_of[q.port_index] = static_cast<uint8_t>(w.hand_off.size());
  return {};
}

namespace {

// Puts a stage in its worker's ring; what the ring refuses is freed and counted ring_full.
void send_stage(Worker& w, rte_ring* ring, HandOffStage& s) noexcept {
  // The receiving worker reads these mbufs after the ring hands them over.
  sys::tsan_release(ring);
  const unsigned sent =
      rte_ring_sp_enqueue_burst(ring, reinterpret_cast<void**>(s.pkts.data()), s.n, nullptr);
  if (sent != 0) w.counters.handed_off.add(sent);
  if (sent != s.n) [[unlikely]] {
    rte_pktmbuf_free_bulk(s.pkts.data() + sent, s.n - sent);
    w.counters.drops[static_cast<size_t>(stats::Drop::kRingFull)].add(s.n - sent);
  }
  s.n = 0;
}

void age_stages(Worker& w, HandOff& h, uint64_t now) noexcept {
  for (unsigned k = 0; k < w.nb_workers; ++k) {
    HandOffStage& s = h.to[k];
    if (s.n != 0 && now - s.since > w.hand_off_wait_cycles) [[unlikely]]
      send_stage(w, h.rings[k], s);
  }
}

}  // namespace

void age_hand_off(Worker& w, const RxQueue& q, uint64_t now) noexcept {
  age_stages(w, w.hand_off[w.hand_off_of[q.port_index] - 1u], now);
}

void flush_hand_off(Worker& w) noexcept {
  for (auto& h : w.hand_off) {
    for (unsigned k = 0; k < w.nb_workers; ++k) {
      if (h.to[k].n != 0) send_stage(w, h.rings[k], h.to[k]);
    }
  }
}

void worker_flush(Worker& w) noexcept {
  flush_hand_off(w);
  for (uint16_t p = 0; p < w.nb_ports; ++p) {
    rte_eth_tx_buffer_flush(w.port_ids[p], w.tx_queue, w.tx[p]);
  }
}

// Cost (sluice-bench-stages BM_Worker: the whole function on 64 B IPv4/UDP frames of 256 flows
// hitting one of 1,000 rules, TSC cycles/packet, Xeon VM, 2026-12-04): about 21 with the flow
// cache (AVX2 validation from the mbufs ~8.5 of it), 49 without; 58 with 65,536 flows, the
// cache standing aside, against 55 without it. tools/bench/run forward adds the PMDs' ~29
// (what testpmd io costs).
uint64_t process_burst(Worker& w, uint8_t port_index, rte_mbuf** pkts, uint16_t n, uint64_t rx_tsc,
                       stats::RxQueueCounters* counted) noexcept {
  // Only the first n entries of these burst arrays are written and read. (GCC 12 cannot see
  // that through the kernel's function pointer and warns about them; zeroing 3.5 KiB per
  // burst to quiet it would cost more than the warning.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
  std::array<simd::FlowKey, kMaxBurst> keys;
  std::array<uint32_t, kMaxBurst> hashes;  // the flow cache's, from the validator
  std::array<simd::Verdict, kMaxBurst> verdicts;
  std::array<const simd::FlowKey*, kMaxBurst> key_of;
  std::array<rte_mbuf*, kMaxBurst> valid;
  std::array<uint32_t, kMaxBurst> results;
  std::array<rte_mbuf*, kMaxBurst> to_free;
  std::array<uint8_t, kMaxBurst> valid_at;  // burst slot of each valid packet (when some are not)
  uint16_t nb_free = 0;
  // Bit i: packet i of the burst goes to capture too. A mask keeps the copies in arrival order,
  // malformed and rule-marked ones alike (kMaxBurst is 64).
  uint64_t cap_mask = 0;
  static_assert(kMaxBurst <= 64 && kMaxBurst <= simd::kMaxMbufBurst);
  if (n == 0) [[unlikely]]
    return rx_tsc;  // nothing to do (and results[0] below would be unset)
  const bool capturing = w.capture_ring != nullptr;
  auto& c = w.counters;

  // 1. Validate, straight from the mbufs: the validator writes the keys, in_port included, and
  // their flow hashes, and sums the burst's bytes (what the one-rule path below counts). A frame
  // whose first segment ends inside its headers is linearised and validated on its own.
  // Flow hashes only for a cache that will look them up (not when off or standing aside).
  const bool hashing = w.cache && !w.cache->bypassing();
  const simd::MbufBurst got =
      w.validate_mbufs(reinterpret_cast<const void* const*>(pkts), n, port_index, keys.data(),
                       hashing ? hashes.data() : nullptr, verdicts.data());
  uint16_t nb_ok = got.nb_ok;
  const uint64_t burst_bytes = got.bytes;
  for (uint64_t split = got.split; split != 0; split &= split - 1) {
    const auto i = static_cast<unsigned>(__builtin_ctzll(split));
    const simd::PacketView v = linearised(w, i, pkts[i]);
    nb_ok = static_cast<uint16_t>(nb_ok + w.validate(&v, 1, port_index, &keys[i],
                                                     hashing ? &hashes[i] : nullptr, &verdicts[i]));
  }
  if (counted != nullptr) {
    counted->packets.add(n);
    counted->bytes.add(burst_bytes);
  }
#pragma GCC diagnostic pop

  // Usually the whole burst is valid; otherwise the valid packets and their keys move up.
  rte_mbuf** const ok = nb_ok == n ? pkts : valid.data();
  if (nb_ok != n) [[unlikely]] {
    uint16_t k = 0;
    for (unsigned i = 0; i < n; ++i) {
      if (verdicts[i] != simd::Verdict::kOk) {
        c.drops[static_cast<size_t>(stats::drop_of(verdicts[i]))].add(1);
        to_free[nb_free++] = pkts[i];
        if (w.capture_malformed) cap_mask |= uint64_t{1} << i;
        continue;
      }
      key_of[k] = &keys[i];
      if (hashing) hashes[k] = hashes[i];  // k <= i: moved up in place
      valid_at[k] = static_cast<uint8_t>(i);
      valid[k++] = pkts[i];
    }
  }

  // 2. Classify the valid packets on one generation for the burst: the flow cache answers the
  // keys it holds for this generation, rte_acl the rest (one call per family).
  const flow::Generation* gen = w.rules->load(std::memory_order_acquire);
  const flow::FlowTable* table = gen->table.get();
  stats::PacketBytes* const hits = gen->hits[w.index];
  // A whole valid burst's keys are classified where the validator wrote them; otherwise
  // through key_of, the valid ones' pointers.
  if (w.cache) [[likely]] {
    const auto got = nb_ok == n ? w.cache->classify(*table, gen->number, keys.data(), hashes.data(),
                                                    n, results.data())
                                : w.cache->classify(*table, gen->number, key_of.data(),
                                                    hashes.data(), nb_ok, results.data());
    c.cache_misses.add(got.misses);
    c.cache_bypassed.add(got.bypassed);
    c.cache_hits.add(nb_ok - got.misses - got.bypassed);
  } else {
    if (nb_ok == n) {
      for (unsigned i = 0; i < n; ++i) key_of[i] = &keys[i];
    }
    table->classify(key_of.data(), nb_ok, results.data());
  }

  // 3a. The whole burst valid and on one rule that only forwards (a loaded appliance's common
  // burst: most traffic takes one rule; VPP speculates the same way on its next node), the
  // default and non_ip actions included: one count, one bytes sum, the burst as it came to the
  // action's port.
  if (nb_ok == n) [[likely]] {  // then nothing is malformed: cap_mask is still 0
    const uint32_t r0 = results[0];
    uint32_t differ = 0;
    for (unsigned j = 1; j < n; ++j) differ |= results[j] ^ r0;
    if (differ == 0) [[likely]] {
      const flow::RuleAction* a;
      stats::PacketBytes* count;
      if (r0 < flow::kNonIp) [[likely]] {
        a = &table->action(r0);
        count = &hits[r0];
      } else if (r0 == flow::kNoRule) {
        a = &table->fallback();
        count = &c.fallback;
      } else {
        a = &table->non_ip();
        count = &c.non_ip;
      }
      if (a->action == config::Action::kForward && a->mirror == flow::kNoPort &&
          !(capturing && a->capture)) [[likely]] {
        count->add_n(n, burst_bytes);
        tx_to_port(w, a->to, pkts, n);
        return burst_done(w, rx_tsc, n);
      }
    }
  }

  // 3. Act. What goes out is listed per packet (a mirror copy first), then handed to each
  // port's TX buffer in packet order. Counts are summed here and added once per burst: a run
  // of packets on one rule is one add, not a load-add-store chain through memory per packet.
  std::array<rte_mbuf*, 2 * kMaxBurst> out;
  std::array<uint8_t, 2 * kMaxBurst> out_port;
  unsigned nb_out = 0;
  uint32_t ports_used = 0;  // bit p: something goes out of port p (kMaxPorts <= 32)
  uint32_t run_rule = flow::kNoRule;
  uint64_t run_packets = 0, run_bytes = 0;
  uint64_t fallback_packets = 0, fallback_bytes = 0, non_ip_packets = 0, non_ip_bytes = 0;
  std::array<uint16_t, 3> policy_drops{};  // rule, default, non_ip
  for (unsigned j = 0; j < nb_ok; ++j) {
    rte_mbuf* m = ok[j];
    const uint32_t len = m->pkt_len;
    const uint32_t r = results[j];
    const flow::RuleAction* a;
    unsigned reason;
    if (r < flow::kNonIp) [[likely]] {
      a = &table->action(r);
      if (r != run_rule) [[unlikely]] {
        if (run_packets != 0) hits[run_rule].add_n(run_packets, run_bytes);
        run_rule = r;
        run_packets = run_bytes = 0;
      }
      ++run_packets;
      run_bytes += len;
      reason = 0;
    } else if (r == flow::kNoRule) {
      a = &table->fallback();
      ++fallback_packets;
      fallback_bytes += len;
      reason = 1;
    } else {
      a = &table->non_ip();
      ++non_ip_packets;
      non_ip_bytes += len;
      reason = 2;
    }
    const bool fwd = a->action == config::Action::kForward;
    if (capturing && a->capture) [[unlikely]]
      cap_mask |= uint64_t{1} << (nb_ok == n ? j : valid_at[j]);
    if (a->mirror != flow::kNoPort) [[unlikely]] {
      if (fwd) rte_pktmbuf_refcnt_update(m, 1);  // every segment: one reference per port
      out[nb_out] = m;
      out_port[nb_out++] = static_cast<uint8_t>(a->mirror);
      ports_used |= 1u << a->mirror;
    }
    if (fwd) [[likely]] {
      out[nb_out] = m;
      out_port[nb_out++] = static_cast<uint8_t>(a->to);
      ports_used |= 1u << a->to;
    } else {
      ++policy_drops[reason];
      if (a->mirror == flow::kNoPort) to_free[nb_free++] = m;
    }
  }
  if (run_packets != 0) hits[run_rule].add_n(run_packets, run_bytes);
  if (fallback_packets != 0) c.fallback.add_n(fallback_packets, fallback_bytes);
  if (non_ip_packets != 0) c.non_ip.add_n(non_ip_packets, non_ip_bytes);
  constexpr std::array<stats::Drop, 3> kPolicy = {stats::Drop::kRule, stats::Drop::kDefault,
                                                  stats::Drop::kNonIp};
  for (unsigned k = 0; k < kPolicy.size(); ++k) {
    if (policy_drops[k] != 0) c.drops[static_cast<size_t>(kPolicy[k])].add(policy_drops[k]);
  }

  // Copies to capture take their reference before anything below sends or frees the packet.
  if (cap_mask != 0) [[unlikely]] {
    std::array<rte_mbuf*, kMaxBurst> cap;
    unsigned nb_cap = 0;
    for (uint64_t m = cap_mask; m != 0; m &= m - 1) cap[nb_cap++] = pkts[__builtin_ctzll(m)];
    hand_to_capture(w, cap.data(), nb_cap, rx_tsc);
  }

  // 4. Into the TX buffers, port by port (tx_to_port when one port takes everything, the
  // common case).
  if (ports_used != 0 && (ports_used & (ports_used - 1)) == 0) [[likely]] {
    tx_to_port(w, static_cast<unsigned>(__builtin_ctz(ports_used)), out.data(), nb_out);
  } else {
    for (uint32_t used = ports_used; used != 0; used &= used - 1) {
      const auto p = static_cast<unsigned>(__builtin_ctz(used));
      rte_eth_dev_tx_buffer* b = w.tx[p];
      uint16_t fill = b->length;
      for (unsigned k = 0; k < nb_out; ++k) {
        if (out_port[k] != p) continue;
        b->pkts[fill++] = out[k];
        if (fill == b->size) [[unlikely]] {
          b->length = fill;
          rte_eth_tx_buffer_flush(w.port_ids[p], w.tx_queue, b);
          fill = 0;
        }
      }
      b->length = fill;
    }
  }
  if (nb_free) rte_pktmbuf_free_bulk(to_free.data(), nb_free);
  return burst_done(w, rx_tsc, n);
}

namespace {

// Bit i set where to[i] == k, for i < 64 (to[] is padded with 0xff, which no worker is).
inline uint64_t members(const uint8_t* to, unsigned n, uint8_t k) noexcept {
  const __m128i want = _mm_set1_epi8(static_cast<char>(k));
  uint64_t bits = 0;
  for (unsigned off = 0; off < n; off += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(to + off));
    bits |= uint64_t{static_cast<uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, want)))} << off;
  }
  return bits;
}

}  // namespace

uint64_t spread_burst(Worker& w, const RxQueue& q, rte_mbuf** pkts, uint16_t n,
                      uint64_t rx_tsc) noexcept {
  // Each packet's worker, then each worker's packets gathered in arrival order from a bit mask
  // of its positions. (A counting sort did the same with two chains of byte increments in
  // memory, each waiting on the last one's store: about 5 cycles a packet on its own.)
  alignas(16) std::array<uint8_t, kMaxBurst> to;
  static_assert(kMaxBurst <= 64 && kMaxBurst % 16 == 0 && kMaxWorkers < 0xff);
  // The frames for the burst hash (the kernel's, eight at a time with AVX2); what it leaves
  // (not the common frame, or too short to load) is hashed here, a chain cut inside its headers
  // across its segments.
  std::array<const uint8_t*, kMaxBurst> frames;
  std::array<uint32_t, kMaxBurst> lens;
  std::array<uint32_t, kMaxBurst> hashes;
  uint64_t bytes = 0;
  for (unsigned i = 0; i < n; ++i) {
    const rte_mbuf* m = pkts[i];
    frames[i] = rte_pktmbuf_mtod(m, const uint8_t*);
    rte_prefetch0(frames[i]);  // the kernel reads it after this pass
    lens[i] = m->data_len;
    bytes += m->pkt_len;
  }
  const uint64_t all = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
  const uint64_t done = w.flow_hash_burst(frames.data(), lens.data(), n, hashes.data());
  for (uint64_t rest = all & ~done; rest != 0; rest &= rest - 1) {
    const auto i = static_cast<unsigned>(__builtin_ctzll(rest));
    hashes[i] = flow_hash(pkts[i]);
  }
  for (unsigned i = 0; i < n; ++i) to[i] = static_cast<uint8_t>(worker_of(hashes[i], w.nb_workers));
  std::memset(to.data() + n, 0xff, kMaxBurst - n);
  if (q.counted != nullptr) {
    q.counted->packets.add(n);
    q.counted->bytes.add(bytes);
  }

  auto& c = w.counters;
  HandOff& h = w.hand_off[w.hand_off_of[q.port_index] - 1u];
  uint64_t left = all;  // not yet placed
  for (unsigned k = 0; k < w.nb_workers && left != 0; ++k) {
    if (k == w.index) continue;
    uint64_t bits = members(to.data(), n, static_cast<uint8_t>(k));
    if (bits == 0) continue;
    left &= ~bits;
    // The receiver's latency starts at this RX, not at its dequeue: the TSC's low 32 bits ride
    // in the RSS hash field (first cache line, already read; ring ports have no RSS). Only the
    // handed-off packets: stamping every packet in the pass above was 5-9% slower with two
    // workers on net_pcap, though faster on sluice-bench-ring.
    HandOffStage& s = h.to[k];
    unsigned fill = s.n;
    if (fill == 0) s.since = rx_tsc;
    for (; bits != 0; bits &= bits - 1) {
      rte_mbuf* m = pkts[__builtin_ctzll(bits)];
      m->hash.rss = static_cast<uint32_t>(rx_tsc);
      s.pkts[fill++] = m;
    }
    s.n = static_cast<uint16_t>(fill);
    if (fill >= w.burst) send_stage(w, q.spread[k], s);
  }
  // Stages whose oldest packet has waited long enough go now, however full.
  age_stages(w, h, rx_tsc);
  // What is left is this worker's own share.
  std::array<rte_mbuf*, kMaxBurst> batch;
  unsigned own = 0;
  for (; left != 0; left &= left - 1) batch[own++] = pkts[__builtin_ctzll(left)];
  if (own == 0) return rx_tsc;
  c.rx_packets.add(own);
  return process_burst(w, q.port_index, batch.data(), static_cast<uint16_t>(own), rx_tsc);
}

namespace {

// The RX TSC spread_burst left in a handed-off packet.
uint64_t rx_tsc_of_handed(const rte_mbuf* m) noexcept {
  return rx_tsc_of_stamp(rte_rdtsc(), m->hash.rss);
}

// Returns the TSC it ended on.
uint64_t test_slow(const Worker& w, unsigned n) noexcept {
  const uint64_t until = rte_rdtsc() + w.test_slow_cycles * n;
  uint64_t now;
  while ((now = rte_rdtsc()) < until) rte_pause();
  return now;
}

// One burst from an inbox, processed: the TSC it ended on, or 0 when the ring was empty.
[[gnu::always_inline]] inline uint64_t poll_inbox(Worker& w, const Inbox& in,
                                                  rte_mbuf** pkts) noexcept {
  const unsigned n =
      rte_ring_sc_dequeue_burst(in.ring, reinterpret_cast<void**>(pkts), w.burst, nullptr);
  if (n == 0) return 0;
  sys::tsan_acquire(in.ring);
  w.counters.rx_packets.add(n);
  const uint64_t end =
      process_burst(w, in.port_index, pkts, static_cast<uint16_t>(n), rx_tsc_of_handed(pkts[0]));
  if (w.test_slow_cycles != 0) [[unlikely]]
    return test_slow(w, n);
  return end;
}

// At stop: what other workers handed to this one is processed like any burst (sent, or
// dropped and counted), not left in the rings. An inbox is done once its producer has left its
// RX loop (it hands nothing more) and the ring is then empty. A producer that never stops (stuck
// in a driver) is waited for at most `limit` TSC cycles; teardown frees what its ring still holds.
void drain_inboxes(Worker& w, rte_mbuf** pkts, uint64_t limit) noexcept {
  const uint64_t until = rte_rdtsc() + limit;
  for (;;) {
    bool done = true;
    for (const auto& in : w.inbox) {
      // Read before the dequeue: a producer seen stopped has enqueued all it ever will.
      const bool stopped =
          in.producer_stopped == nullptr || in.producer_stopped->load(std::memory_order_acquire);
      if (poll_inbox(w, in, pkts) != 0 || !stopped) done = false;
    }
    // Between bursts, as in the loop: a munmap waiting out the workers (lib/port) need not
    // wait for the whole drain.
    if (w.qsbr) rte_rcu_qsbr_quiescent(w.qsbr, w.index);
    if (done || rte_rdtsc() >= until) return;
  }
}

}  // namespace

int worker_main(void* arg) {
  auto& w = *static_cast<Worker*>(arg);
  std::array<rte_mbuf*, kMaxBurst> pkts;
  uint64_t last_drain = rte_rdtsc();
  // Packets sit in the TX buffers until a burst fills or the drain period ends; when a poll
  // round brings nothing new they go out at once, so light traffic does not wait up to kDrainUs
  // (full load never takes this branch).
  bool pending = false;
  if (w.qsbr) rte_rcu_qsbr_thread_online(w.qsbr, w.index);

  // One TSC read per burst under load: a round whose last burst read the TSC at its end starts
  // the next from it (a few instructions earlier; after an empty poll of a later queue, a
  // poll's time early, so a latency is never understated); any other round reads it.
  uint64_t now = rte_rdtsc();
  while (!w.stop->load(std::memory_order_relaxed)) {
    if (now - last_drain > w.drain_cycles) [[unlikely]] {
      // Housekeeping: drain TX buffers, report the quiescent state (no generation is held
      // between bursts), heartbeat.
      worker_flush(w);
      pending = false;
      if (w.qsbr) rte_rcu_qsbr_quiescent(w.qsbr, w.index);
      w.counters.loops.add(1);
      last_drain = now;
      if (w.test_stall_tsc != 0 && now >= w.test_stall_tsc) [[unlikely]] {
        for (;;) rte_pause();
      }
    }
    bool received = false;
    // One TSC read per burst: a burst's latency runs from before its rx_burst call (the loop's
    // read, or the end of the burst before) to the end of its processing.
    uint64_t tsc = now;
    for (const auto& q : w.rx) {
      const uint16_t n = rte_eth_rx_burst(q.port_id, q.queue, pkts.data(), w.burst);
      if (n == 0) {
        // A busy worker (inbox, other queues) has no idle round to send what this queue's
        // last bursts staged: the age limit still holds.
        if (q.spread != nullptr) age_hand_off(w, q, tsc);
        continue;
      }
      received = true;
      if (q.spread != nullptr) {
        tsc = spread_burst(w, q, pkts.data(), n, tsc);
      } else {
        w.counters.rx_packets.add(n);
        tsc = process_burst(w, q.port_index, pkts.data(), n, tsc, q.counted);
      }
      if (w.test_slow_cycles != 0) [[unlikely]]
        tsc = test_slow(w, n);
    }
    for (const auto& in : w.inbox) {
      if (const uint64_t end = poll_inbox(w, in, pkts.data()); end != 0) {
        received = true;
        tsc = end;
      }
    }
    w.counters.polls.add(1);
    if (received) {
      w.counters.busy_polls.add(1);
      pending = true;
      // tsc is still now when every burst of the round was handed off whole (spread_burst).
      now = tsc != now ? tsc : rte_rdtsc();
    } else {
      if (pending) {
        worker_flush(w);
        pending = false;
      }
      now = rte_rdtsc();
    }
  }
  flush_hand_off(w);  // before rx_stopped: the receivers drain their rings until they see it
  w.rx_stopped.store(true, std::memory_order_release);
  if (!w.inbox.empty()) {
    drain_inboxes(
        w, pkts.data(),
        w.stop_drain_cycles != 0 ? w.stop_drain_cycles : rte_get_tsc_hz() / 1000 * kStopDrainMs);
  }
  worker_flush(w);
  // A stopped worker never delays a grace period.
  if (w.qsbr) rte_rcu_qsbr_thread_offline(w.qsbr, w.index);
  w.exited.store(true, std::memory_order_release);
  return 0;
}

}  // namespace sluice::pipeline
