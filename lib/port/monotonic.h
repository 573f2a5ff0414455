#pragma once
// Port counters that never go backwards (CONTRACT "Operations") over driver counters that do.
// Pure: readings in, totals out; Ports feeds it rte_eth_stats_get and the link state.
//
// Drivers lower their counters in two ways, and they must be told apart:
//  - a reset: the counters start again from 0 (rte_eth_stats_reset from any process, a 32-bit
//    hardware counter wrapping, a NIC that clears them on restart). What was counted before is
//    banked into an offset, so the totals go on from where they were.
//  - a hide: net_memif shows 0 while its peer is disconnected (DPDK 22.11: memif_disconnect
//    zeroes the connection's ring counts, the number of queues memif_stats_get sums over, but
//    not the queues' own counters) and shows the very same counters again, grown by what came
//    since, once a peer connects. Banking a hide would count everything before it twice after
//    the reconnect, so a lower reading is trusted as a reset only when the link was up both
//    before and after it was taken (memif marks the link down before it hides the counters and
//    up after it shows them); any other lower reading is ignored: the totals stay as they were.
// A reset is device-wide (rte_eth_stats_reset clears every counter), so one counter found lower
// banks them all: a counter that reset and then passed its old value between two readings is
// not lost with it.

#include <array>
#include <cstddef>
#include <cstdint>

namespace sluice::port {

// The rte_eth_stats fields sluice reports (stats::PortSnapshot), in its order.
enum class PortCounter : uint8_t {
  kRxPackets,
  kRxBytes,
  kTxPackets,
  kTxBytes,
  kRxMissed,
  kRxNombuf,
  kTxErrors,
  kRxErrors,
};
inline constexpr size_t kPortCounters = 8;
using PortCounterValues = std::array<uint64_t, kPortCounters>;

class MonotonicCounters {
 public:
  enum class Reading : uint8_t {
    kGrew,     // every counter the same or higher: taken
    kReset,    // lower with the link up throughout: the old values banked, the new ones taken
    kIgnored,  // lower with the link down at either end: a hide (or a reset we cannot tell yet)
  };

  // Whether a reading has a counter lower than the last one taken (a reset or a hide).
  bool lower(const PortCounterValues& raw) const noexcept;
  // One reading of the driver's counters. link_up: the link was up before and after it.
  Reading update(const PortCounterValues& raw, bool link_up) noexcept;

  uint64_t total(PortCounter c) const noexcept {
    const auto i = static_cast<size_t>(c);
    return offset_[i] + last_[i];
  }
  PortCounterValues totals() const noexcept;
  // Resets banked so far (for the log).
  uint64_t resets() const noexcept { return resets_; }

 private:
  PortCounterValues last_{};    // the last reading taken
  PortCounterValues offset_{};  // banked before each reset
  uint64_t resets_ = 0;
};

}  // namespace sluice::port
