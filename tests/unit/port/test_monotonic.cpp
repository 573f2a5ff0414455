#include <gtest/gtest.h>

#include "lib/port/monotonic.h"

namespace sluice::port {
namespace {

using Reading = MonotonicCounters::Reading;

PortCounterValues packets(uint64_t rx, uint64_t tx) {
  PortCounterValues v{};
  v[static_cast<size_t>(PortCounter::kRxPackets)] = rx;
  v[static_cast<size_t>(PortCounter::kRxBytes)] = rx * 64;
  v[static_cast<size_t>(PortCounter::kTxPackets)] = tx;
  v[static_cast<size_t>(PortCounter::kTxBytes)] = tx * 64;
  return v;
}

TEST(MonotonicCounters, FollowsAGrowingDriver) {
  MonotonicCounters m;
  EXPECT_EQ(m.update(packets(10, 5), true), Reading::kGrew);
  EXPECT_EQ(m.update(packets(10, 5), false), Reading::kGrew);
  EXPECT_EQ(m.update(packets(25, 9), true), Reading::kGrew);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 25u);
  EXPECT_EQ(m.total(PortCounter::kTxBytes), 9u * 64);
  EXPECT_EQ(m.resets(), 0u);
}

TEST(MonotonicCounters, BanksAResetSeenWithTheLinkUp) {
  MonotonicCounters m;
  m.update(packets(1000, 800), true);
  EXPECT_TRUE(m.lower(packets(3, 900)));
  EXPECT_EQ(m.update(packets(3, 2), true), Reading::kReset);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 1003u);
  EXPECT_EQ(m.total(PortCounter::kTxPackets), 802u);
  m.update(packets(50, 40), true);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 1050u);
  EXPECT_EQ(m.total(PortCounter::kRxBytes), 1050u * 64);
  // A second reset banks again.
  EXPECT_EQ(m.update(packets(0, 0), true), Reading::kReset);
  m.update(packets(7, 1), true);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 1057u);
  EXPECT_EQ(m.total(PortCounter::kTxPackets), 841u);
  EXPECT_EQ(m.resets(), 2u);
}

// rte_eth_stats_reset clears every counter: one found lower banks them all, so a counter that
// passed its old value again between two readings is not lost.
TEST(MonotonicCounters, AResetIsDeviceWide) {
  MonotonicCounters m;
  m.update(packets(100, 1000), true);
  EXPECT_EQ(m.update(packets(150, 10), true), Reading::kReset);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 250u);
  EXPECT_EQ(m.total(PortCounter::kTxPackets), 1010u);
}

// net_memif while its peer is away: 0 with the link down, then the same counters, grown, once a
// peer connects. Nothing is banked, nothing counted twice.
TEST(MonotonicCounters, IgnoresAHideWithTheLinkDown) {
  MonotonicCounters m;
  m.update(packets(683008, 683000), true);
  EXPECT_EQ(m.update(packets(0, 0), false), Reading::kIgnored);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 683008u);
  EXPECT_EQ(m.total(PortCounter::kTxPackets), 683000u);
  EXPECT_EQ(m.update(packets(0, 0), false), Reading::kIgnored);
  EXPECT_EQ(m.update(packets(700000, 690000), true), Reading::kGrew);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 700000u);
  EXPECT_EQ(m.total(PortCounter::kTxPackets), 690000u);
  EXPECT_EQ(m.resets(), 0u);
}

// A driver that cleared its counters while the link was down: seen as a reset once it is up.
TEST(MonotonicCounters, AResetDuringAHideIsBankedWhenTheLinkComesBack) {
  MonotonicCounters m;
  m.update(packets(500, 400), true);
  EXPECT_EQ(m.update(packets(0, 0), false), Reading::kIgnored);
  EXPECT_EQ(m.update(packets(20, 10), true), Reading::kReset);
  EXPECT_EQ(m.total(PortCounter::kRxPackets), 520u);
  EXPECT_EQ(m.total(PortCounter::kTxPackets), 410u);
}

TEST(MonotonicCounters, TotalsNeverGoBackwards) {
  MonotonicCounters m;
  uint64_t rx = 0, prev = 0;
  for (int i = 0; i < 1000; ++i) {
    const bool up = (i / 7) % 3 != 0;
    rx = i % 13 == 0 ? 0 : rx + static_cast<uint64_t>(i % 5);
    m.update(packets(up ? rx : 0, 0), up);
    EXPECT_GE(m.total(PortCounter::kRxPackets), prev) << i;
    prev = m.total(PortCounter::kRxPackets);
    EXPECT_EQ(m.totals()[static_cast<size_t>(PortCounter::kRxPackets)], prev);
  }
}

}  // namespace
}  // namespace sluice::port
