// munmap on EAL's interrupt thread waits for the workers' quiescent state (lib/port/ports.cpp):
// net_memif unmaps a departed peer's memory there while a worker may still be in its burst.
// A "worker" thread here reads a page, online in the readers' RCU, and reports its quiescent
// state only after a while; an EAL alarm (which runs on the interrupt thread) unmaps the page
// meanwhile. Without the wait the worker's next read faults and the test dies of SIGSEGV.

#include <dlfcn.h>
#include <rte_alarm.h>
#include <rte_interrupts.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include <gtest/gtest.h>

#include "lib/port/ports.h"

namespace sluice::port {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Readers {
  rte_rcu_qsbr* q = nullptr;
  Readers() {
    const size_t bytes = rte_rcu_qsbr_get_memsize(1);
    q = static_cast<rte_rcu_qsbr*>(rte_zmalloc("test_readers", bytes, RTE_CACHE_LINE_SIZE));
    EXPECT_NE(q, nullptr);
    EXPECT_EQ(rte_rcu_qsbr_init(q, 1), 0);
    set_callback_readers(q);
  }
  ~Readers() {
    set_callback_readers(nullptr);
    rte_free(q);
  }
};

void* map_page() {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  static_cast<volatile uint8_t*>(p)[0] = 1;
  return p;
}

struct Unmap {
  void* page = nullptr;
  std::atomic<bool> entered{false};  // the alarm is about to unmap
  std::atomic<bool> done{false};
  Clock::time_point began, ended;
  bool on_interrupt_thread = false;
};

// munmap as a driver's shared library calls it: through the dynamic symbol, which must be
// sluice's (lib/port exports it from the executable), not straight to the definition linked in.
using MunmapFn = int (*)(void*, size_t);
MunmapFn dynamic_munmap() {
  return reinterpret_cast<MunmapFn>(dlsym(RTLD_DEFAULT, "munmap"));
}

void unmap_from_alarm(void* arg) {
  auto* u = static_cast<Unmap*>(arg);
  u->on_interrupt_thread = rte_thread_is_intr() != 0;
  u->began = Clock::now();
  u->entered.store(true);
  dynamic_munmap()(u->page, 4096);
  u->ended = Clock::now();
  u->done.store(true, std::memory_order_release);
}

// Waits for flag, at most 5 s; whether it came.
bool await(const std::atomic<bool>& flag) {
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!flag.load(std::memory_order_acquire)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

// A worker in the middle of a burst: online, reading the page until the unmap has begun (or,
// with until_entered false, for `busy`) and `busy` longer, then quiescent (it leaves the burst),
// and it touches the page no more.
struct Worker {
  std::atomic<bool> reading{false};
  std::atomic<bool> saw_entered{false};
  std::atomic<uint64_t> reads{0};
  Clock::time_point quiescent_at;
  std::thread t;
  Worker(rte_rcu_qsbr* q, const void* page, milliseconds busy, const Unmap& u, bool until_entered) {
    t = std::thread([this, q, page, busy, &u, until_entered] {
      rte_rcu_qsbr_thread_register(q, 0);
      rte_rcu_qsbr_thread_online(q, 0);
      reading.store(true);
      uint64_t n = 0;
      const auto give_up = Clock::now() + std::chrono::seconds(5);
      auto until = Clock::now() + busy;
      for (bool waiting = until_entered; waiting || Clock::now() < until;) {
        n += static_cast<const volatile uint8_t*>(page)[0];
        if (waiting && (u.entered.load() || Clock::now() >= give_up)) {
          waiting = false;
          saw_entered.store(u.entered.load());
          until = Clock::now() + busy;  // still reading while munmap is called
        }
      }
      reads.store(n);
      quiescent_at = Clock::now();
      rte_rcu_qsbr_quiescent(q, 0);
      await(u.done);
      rte_rcu_qsbr_thread_offline(q, 0);
      rte_rcu_qsbr_thread_unregister(q, 0);
    });
  }
  void wait_reading() const {
    while (!reading.load()) std::this_thread::yield();
  }
  ~Worker() { t.join(); }
};

TEST(UnmapWait, TheDriversCallsReachSluicesMunmap) {
  EXPECT_EQ(reinterpret_cast<void*>(dynamic_munmap()), reinterpret_cast<void*>(&munmap))
      << "munmap is not exported from the executable: a driver's call would bypass the wait";
}

TEST(UnmapWait, TheInterruptThreadWaitsForAWorkerInItsBurst) {
  Readers r;
  Unmap u;
  u.page = map_page();
  {
    Worker w(r.q, u.page, milliseconds(50), u, true);
    w.wait_reading();
    ASSERT_EQ(rte_eal_alarm_set(1'000, unmap_from_alarm, &u), 0);
    const bool done = await(u.done);
    if (!done) rte_eal_alarm_cancel(unmap_from_alarm, &u);
    ASSERT_TRUE(done) << "the alarm's munmap did not return within 5 s";
    EXPECT_TRUE(u.on_interrupt_thread);
    // The worker read the page while munmap was called and until its quiescent state (it did
    // not fault), and munmap returned only after that state.
    EXPECT_TRUE(w.saw_entered.load());
    EXPECT_GT(w.reads.load(), 0u);
    EXPECT_GE(u.ended, w.quiescent_at);
  }
}

TEST(UnmapWait, OtherThreadsDoNotWait) {
  Readers r;
  Unmap u;
  u.page = map_page();
  void* mine = map_page();
  {
    Worker w(r.q, u.page, milliseconds(300), u, false);
    w.wait_reading();
    const auto t0 = Clock::now();
    EXPECT_EQ(munmap(mine, 4096), 0);
    EXPECT_LT(Clock::now() - t0, milliseconds(100)) << "a munmap off the interrupt thread waited";
    u.done.store(true, std::memory_order_release);  // the worker need not wait for an alarm
  }
  EXPECT_EQ(munmap(u.page, 4096), 0);
}

TEST(UnmapWait, NoReadersNoWait) {
  Unmap u;
  u.page = map_page();
  ASSERT_EQ(rte_eal_alarm_set(1'000, unmap_from_alarm, &u), 0);
  const bool done = await(u.done);
  if (!done) rte_eal_alarm_cancel(unmap_from_alarm, &u);
  ASSERT_TRUE(done) << "the alarm's munmap did not return within 5 s";
  EXPECT_TRUE(u.on_interrupt_thread);
  EXPECT_LT(u.ended - u.began, milliseconds(100));
  // The page is gone: munmap still unmaps.
  EXPECT_EQ(msync(u.page, 4096, MS_ASYNC), -1);
}

}  // namespace
}  // namespace sluice::port
