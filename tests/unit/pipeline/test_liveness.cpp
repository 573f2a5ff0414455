// Liveness bookkeeping and the queue-to-worker map: pure functions, no EAL.

#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "lib/pipeline/liveness.h"
#include "lib/pipeline/queue_map.h"
#include "lib/stats/snapshot.h"

namespace sluice::pipeline {
namespace {

using std::chrono::milliseconds;

TEST(Liveness, MovingHeartbeatsNeverStall) {
  const auto t0 = Liveness::Clock::now();
  Liveness l(2, t0);
  for (uint64_t i = 1; i <= 50; ++i) {
    auto changes = l.update({i, i * 3}, t0 + milliseconds(100 * i));
    EXPECT_TRUE(changes.empty());
  }
  EXPECT_FALSE(l.any_stalled());
  EXPECT_EQ(l.idle_ms(0), 0u);
}

TEST(Liveness, StillHeartbeatStallsOnceAfterTheLimitAndRecovers) {
  const auto t0 = Liveness::Clock::now();
  Liveness l(2, t0);
  EXPECT_TRUE(l.update({1, 1}, t0 + milliseconds(10)).empty());
  // Worker 1 stops; worker 0 keeps going.
  EXPECT_TRUE(l.update({2, 1}, t0 + milliseconds(10 + stats::kStallMs)).empty());
  EXPECT_EQ(l.idle_ms(1), stats::kStallMs);
  auto c = l.update({3, 1}, t0 + milliseconds(11 + stats::kStallMs));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].worker, 1u);
  EXPECT_TRUE(c[0].stalled);
  EXPECT_EQ(c[0].idle_ms, stats::kStallMs + 1);
  EXPECT_TRUE(l.stalled(1));
  EXPECT_FALSE(l.stalled(0));
  EXPECT_TRUE(l.any_stalled());
  // Reported once per episode.
  EXPECT_TRUE(l.update({4, 1}, t0 + milliseconds(5000)).empty());
  EXPECT_EQ(l.idle_ms(1), 4990u);
  // Progress again: one change back.
  c = l.update({5, 2}, t0 + milliseconds(5100));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(c[0].stalled);
  EXPECT_EQ(c[0].idle_ms, 5090u);
  EXPECT_FALSE(l.any_stalled());
  EXPECT_EQ(l.idle_ms(1), 0u);
}

TEST(QueueMap, EveryQueuePolledByExactlyOneWorker) {
  const std::vector<PortQueues> ports = {{3, 0, 4}, {7, 1, 4}, {9, 2, 1}};
  std::set<std::pair<uint16_t, uint16_t>> seen;
  size_t total = 0;
  for (unsigned w = 0; w < 3; ++w) {
    for (const RxQueue& q : rx_queues_of(w, 3, ports)) {
      EXPECT_EQ(q.queue % 3, w);
      seen.insert({q.port_id, q.queue});
      ++total;
    }
  }
  EXPECT_EQ(total, 9u);
  EXPECT_EQ(seen.size(), 9u);
  const auto w0 = rx_queues_of(0, 3, ports);
  ASSERT_EQ(w0.size(), 5u);  // queues 0 and 3 of ports 3 and 7, queue 0 of port 9
  EXPECT_EQ(w0[0].port_id, 3);
  EXPECT_EQ(w0[0].port_index, 0);
  EXPECT_EQ(w0[1].queue, 3);
  EXPECT_EQ(w0[4].port_id, 9);
  EXPECT_EQ(w0[4].port_index, 2);
  EXPECT_TRUE(rx_queues_of(0, 0, ports).empty());
}

}  // namespace
}  // namespace sluice::pipeline
