// lib/stats/on_demand: a request wakes the control loop once and waits for the next publish; a
// recent copy serves at once; no loop, or a loop that never answers, never hangs a request.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "lib/stats/on_demand.h"

namespace sluice::stats {
namespace {

using namespace std::chrono_literals;
using Clock = OnDemand::Clock;

std::atomic<int> g_wakes{0};
void count_wake() noexcept {
  g_wakes.fetch_add(1);
}

TEST(OnDemand, WithoutALoopARequestIsServedAtOnce) {
  OnDemand d;
  const auto t0 = Clock::now();
  d.await_fresh(100ms, 2s);
  EXPECT_LT(Clock::now() - t0, 100ms);
  EXPECT_FALSE(d.wanted());
}

TEST(OnDemand, ARequestWakesTheLoopOnceAndWaitsForThePublish) {
  OnDemand d;
  g_wakes = 0;
  d.attach(&count_wake);
  std::vector<std::thread> clients;
  std::atomic<int> served{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      d.await_fresh(100ms, 5s);
      served.fetch_add(1);
    });
  }
  while (!d.wanted()) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);  // every client is waiting now
  EXPECT_EQ(served.load(), 0);
  EXPECT_EQ(g_wakes.load(), 1) << "one wake-up for the requests that wait together";
  d.published(Clock::now());
  for (auto& t : clients) t.join();
  EXPECT_EQ(served.load(), 4);
  EXPECT_FALSE(d.wanted());
}

TEST(OnDemand, ARecentCopyServesWithoutWakingTheLoop) {
  OnDemand d;
  g_wakes = 0;
  d.attach(&count_wake);
  d.published(Clock::now());
  const auto t0 = Clock::now();
  d.await_fresh(1s, 5s);
  EXPECT_LT(Clock::now() - t0, 500ms);
  EXPECT_EQ(g_wakes.load(), 0);
  EXPECT_FALSE(d.wanted());
}

TEST(OnDemand, ALoopThatDoesNotAnswerCostsAtMostTheWait) {
  OnDemand d;
  d.attach(&count_wake);
  const auto t0 = Clock::now();
  d.await_fresh(100ms, 200ms);
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 2s);
}

TEST(OnDemand, DetachingReleasesTheWaiting) {
  OnDemand d;
  d.attach(&count_wake);
  std::thread client([&] { d.await_fresh(100ms, 30s); });
  while (!d.wanted()) std::this_thread::yield();
  const auto t0 = Clock::now();
  d.attach(nullptr);  // the control loop is gone
  client.join();
  EXPECT_LT(Clock::now() - t0, 5s);
}

}  // namespace
}  // namespace sluice::stats
