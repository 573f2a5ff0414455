#include "tools/gen/engine.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>

#include <algorithm>
#include <array>

namespace sluice::gen {

namespace {

// Sends mbufs (built from templates tpl) and counts what the port took. With retry, what it
// refused waits in the lane's pending array; without, it is freed (counted as refused).
void send(Engine& e, rte_mbuf** pkts, const uint32_t* tpl, uint16_t n) noexcept {
  TxState& s = e.txs;
  const TrafficPlan& plan = *e.txc.plan;
  const uint16_t sent = rte_eth_tx_burst(e.txc.port, 0, pkts, n);
  uint64_t bytes = 0;
  for (unsigned i = 0; i < sent; ++i) {
    s.sent_per_tpl[tpl[i]]++;
    bytes += plan.templates[tpl[i]].frame.size();
  }
  e.live.tx_sent.add(sent);
  e.live.tx_bytes.add(bytes);
  if (sent == n) [[likely]] {
    return;
  }
  if (e.txc.retry) {
    // Move the refused tail to the front of the pending array (it may be that array).
    for (unsigned i = sent; i < n; ++i) {
      s.pending[i - sent] = pkts[i];
      s.pending_tpl[i - sent] = tpl[i];
    }
    s.nb_pending = static_cast<uint16_t>(n - sent);
  } else {
    rte_pktmbuf_free_bulk(pkts + sent, static_cast<unsigned>(n - sent));
  }
}

// Builds and sends one burst if the pacing allows; returns false once the lane is done.
bool tx_step(Engine& e) noexcept {
  TxState& s = e.txs;
  const TxConfig& c = e.txc;
  const TrafficPlan& plan = *c.plan;
  if (s.nb_pending) {  // retry: the refused packets go first, nothing new until they are out
    const uint16_t n = s.nb_pending;
    s.nb_pending = 0;
    send(e, s.pending.data(), s.pending_tpl.data(), n);
    return true;
  }
  const uint64_t now = rte_rdtsc();
  const uint64_t attempted = e.live.tx_attempted.get();
  if ((c.duration_cycles && now - s.start_tsc >= c.duration_cycles) ||
      (c.count && attempted >= c.count)) {
    return false;
  }
  uint64_t n = c.burst;
  if (c.pps > 0) {
    // Packets due since the start, from the TSC: the average rate is exact whatever the
    // loop's jitter; a late loop catches up in whole bursts, up to max_lag_pkts: a longer
    // stall (the sender's CPU taken away) is skipped and counted, not dumped on the peer at
    // the port's full rate, so what the peer sees stays close to the rate asked.
    uint64_t due =
        static_cast<uint64_t>(static_cast<double>(now - s.start_tsc) * c.pkts_per_cycle) -
        e.live.tx_skipped.get();
    if (due <= attempted) return true;
    if (c.max_lag_pkts != 0 && due - attempted > c.max_lag_pkts) [[unlikely]] {
      const uint64_t skip = due - attempted - c.max_lag_pkts;
      e.live.tx_skipped.add(skip);
      due -= skip;
    }
    n = std::min<uint64_t>(n, due - attempted);
  }
  if (c.count) n = std::min<uint64_t>(n, c.count - attempted);

  std::array<rte_mbuf*, kMaxBurst> pkts;
  std::array<uint32_t, kMaxBurst> tpl;
  if (rte_pktmbuf_alloc_bulk(c.pool, pkts.data(), static_cast<unsigned>(n)) != 0) [[unlikely]] {
    e.live.tx_nombuf.add(1);
    return true;
  }
  const uint64_t tsc = rte_rdtsc();
  for (unsigned i = 0; i < n; ++i) {
    uint32_t t;
    if (c.malformed_ppm && (s.mal_acc += c.malformed_ppm) >= 1'000'000) {
      s.mal_acc -= 1'000'000;
      t = plan.malformed[s.mal_cursor];
      if (++s.mal_cursor == plan.malformed.size()) s.mal_cursor = 0;
    } else {
      t = plan.schedule[s.cursor];
      if (++s.cursor == plan.schedule.size()) s.cursor = 0;
    }
    const Template& tp = plan.templates[t];
    const auto len = static_cast<uint16_t>(tp.frame.size());
    rte_mbuf* m = pkts[i];
    auto* data = rte_pktmbuf_mtod(m, uint8_t*);
    rte_memcpy(data, tp.frame.data(), len);
    m->data_len = len;
    m->pkt_len = len;
    if (tp.stream != kNoStream) stamp(tp, data, s.seq[tp.stream]++, tsc);
    tpl[i] = t;
  }
  e.live.tx_attempted.add(n);
  send(e, pkts.data(), tpl.data(), static_cast<uint16_t>(n));
  return true;
}

void rx_queue_step(Engine& e, uint16_t queue) noexcept {
  const RxConfig& c = e.rxc;
  std::array<rte_mbuf*, kMaxBurst> pkts;
  const uint16_t n = rte_eth_rx_burst(c.port, queue, pkts.data(), static_cast<uint16_t>(c.burst));
  if (n == 0) return;
  const uint64_t now = rte_rdtsc();
  auto& live = e.live;
  StreamTracker& tracker = *e.tracker;
  uint64_t bytes = 0, stamped = 0, unstamped = 0, unknown = 0, dup = 0, reord = 0;
  std::array<uint8_t, kTrailerLen> copy;
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const uint32_t len = m->pkt_len;
    bytes += len;
    if (len < kTrailerLen) [[unlikely]] {
      ++unstamped;
      continue;
    }
    const auto* p = static_cast<const uint8_t*>(
        rte_pktmbuf_read(m, len - kTrailerLen, kTrailerLen, copy.data()));
    Trailer t;
    if (!read_trailer(p, t)) {
      ++unstamped;
      continue;
    }
    if (t.stream >= tracker.streams()) [[unlikely]] {
      ++unknown;
      continue;
    }
    ++stamped;
    switch (tracker.update(t.stream, t.seq)) {
      case StreamTracker::Seen::kNew:
        break;
      case StreamTracker::Seen::kDuplicate:
        ++dup;
        break;
      case StreamTracker::Seen::kReordered:
        ++reord;
        break;
    }
    const uint64_t cycles = (now - t.tsc) & kMask48;
    live.latency.latency.record(static_cast<uint64_t>(static_cast<double>(cycles) * c.ns_per_cycle),
                                1);
  }
  rte_pktmbuf_free_bulk(pkts.data(), n);
  live.rx_packets.add(n);
  live.rx_bytes.add(bytes);
  live.rx_stamped.add(stamped);
  if (unstamped) live.rx_unstamped.add(unstamped);
  if (unknown) live.rx_unknown_stream.add(unknown);
  if (dup) live.rx_duplicated.add(dup);
  if (reord) live.rx_reordered.add(reord);
}

void rx_step(Engine& e) noexcept {
  for (uint16_t q = 0; q < e.rxc.queues; ++q) rx_queue_step(e, q);
}

}  // namespace

int lane_main(void* arg) {
  auto* a = static_cast<LaneArg*>(arg);
  Engine& e = *a->engine;
  bool tx = a->lane->tx;
  const bool rx = a->lane->rx;
  // Poll RX once first: a memif client hands its receive buffers to the peer in rx_burst,
  // and a peer with none counts every packet it sends as refused.
  if (rx) {
    rx_step(e);
    e.live.rx_polls.add(1);
  }
  if (tx) e.txs.start_tsc = rte_rdtsc();
  while (true) {
    if (tx) {
      if (e.tx_stop.load(std::memory_order_relaxed) || !tx_step(e)) [[unlikely]] {
        if (e.txs.nb_pending) {  // stopped with refused packets still waiting
          rte_pktmbuf_free_bulk(e.txs.pending.data(), e.txs.nb_pending);
          e.txs.nb_pending = 0;
        }
        e.txs.end_tsc = rte_rdtsc();
        e.tx_done.store(true, std::memory_order_release);
        tx = false;
        if (!rx) break;
      }
    }
    if (rx) {
      if (e.rx_stop.load(std::memory_order_relaxed)) [[unlikely]] {
        if (!tx) break;
      } else {
        rx_step(e);
      }
    }
  }
  return 0;
}

}  // namespace sluice::gen
