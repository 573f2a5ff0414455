#pragma once
// The filesystem work of the capture store that takes milliseconds: opening and allocating a
// segment, cutting, syncing, closing and renaming it, deleting old ones. It runs on a thread of
// its own (not an lcore), so the capture lcore never stalls on it: measured on ext4, those
// calls on the capture lcore overflowed a 4,096-entry hand-off ring at every rotation (2.4
// million of 17 million copies dropped in 4 s with 64 MiB segments, 4,431 with one segment).
//
// The capture lcore posts a Segment (to open, or to close once nothing of it is in flight) and
// later takes it back done; the two talk over a pair of single-producer/single-consumer queues
// of std::atomic indices (release/acquire), nothing else: rte_ring orders x86 stores with
// compiler barriers ThreadSanitizer cannot see, and the handed-over Segment fields must be
// seen to be ordered.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "lib/config/config.h"
#include "lib/stats/counters.h"
#include "lib/sys/result.h"

namespace sluice::capture {

struct Segment {
  enum class Job : uint8_t { kOpen, kClose };
  // Written by the capture lcore before it posts the segment.
  Job job = Job::kOpen;
  uint64_t number = 0;
  std::string part_path, final_path;
  uint64_t written = 0;      // bytes of chunks placed: the length to cut the file to
  bool failed = false;       // a write failed: cut at fail_offset, count what it cuts off
  uint64_t fail_offset = 0;  // lowest offset of a failed chunk
  // Written by the store thread before it hands the segment back.
  int fd = -1;
  bool ok = false;
  std::string error;
  // The capture lcore's own.
  int slot = -1;
  bool open = false;       // fd registered, writes may go
  bool closing = false;    // no new chunks; post the close once nothing is in flight
  bool posted = false;     // with the store thread now
  unsigned in_flight = 0;  // chunk writes submitted, not completed
  unsigned pending = 0;    // chunks sealed for it while it was being opened
};

// A bounded single-producer/single-consumer queue of pointers; never blocks.
template <class T, unsigned N>
class SpscQueue {
  static_assert((N & (N - 1)) == 0, "a power of two");

 public:
  bool push(T* v) noexcept {
    const uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - head_.load(std::memory_order_acquire) == N) return false;
    slots_[t & (N - 1)] = v;
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }
  T* pop() noexcept {
    const uint32_t h = head_.load(std::memory_order_relaxed);
    if (h == tail_.load(std::memory_order_acquire)) return nullptr;
    T* v = slots_[h & (N - 1)];
    head_.store(h + 1, std::memory_order_release);
    return v;
  }

 private:
  std::array<T*, N> slots_{};
  alignas(64) std::atomic<uint32_t> head_{0};
  alignas(64) std::atomic<uint32_t> tail_{0};
};

class StoreThread {
 public:
  // cut and segments are written by this thread only.
  StoreThread(const config::CaptureConfig& cfg, stats::Counter* segments, stats::Counter* cut);
  ~StoreThread();  // stops and joins
  StoreThread(const StoreThread&) = delete;
  StoreThread& operator=(const StoreThread&) = delete;

  Result<void> start();
  // Capture lcore side, never blocking: false when the request ring is full (cannot happen
  // while fewer segments than its size are alive).
  bool post(Segment* s) noexcept;
  Segment* take() noexcept;  // a segment done with, or null

 private:
  void run();
  void open_segment(Segment& s);
  void close_segment(Segment& s);
  void make_room();

  config::CaptureConfig cfg_;
  stats::Counter* segments_;
  stats::Counter* cut_;
  // Segments in transit either way; far more than are ever alive at once (one open, a few
  // closing).
  SpscQueue<Segment, 256> in_;
  SpscQueue<Segment, 256> out_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace sluice::capture
