#pragma once
// The capture lcore (ARCHITECTURE's right half): drains the workers' hand-off rings in bursts,
// packs each packet as a pcapng EPB into the chunk being filled (a copy and a few stores),
// writes full chunks (and, after capture.flush_ms, partly filled ones) through its queue pair
// with several in flight, rotates segments at segment_bytes (.part while written; cut, synced
// and renamed when closed), keeps the store under retain_bytes, and at start repairs what a
// crash left. Opening, closing and deleting segments is the store thread's (store_thread.h). It
// never blocks a worker: when every chunk buffer is in flight it stops dequeuing, the rings fill
// and the workers count capture_full.
//
// Per packet: no allocation, no syscall, no lock. Per chunk: one queued write. Per segment: two
// fixed-file updates; the rest is posted to the store thread.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/capture/chunk.h"
#include "lib/capture/raw_store.h"
#include "lib/capture/store_thread.h"
#include "lib/config/config.h"
#include "lib/nvme/queue_pair.h"
#include "lib/stats/counters.h"
#include "lib/sys/result.h"

struct rte_mbuf;
struct rte_ring;

namespace sluice::capture {
struct RawDevice;  // raw_device.h
}  // namespace sluice::capture

namespace sluice::capture {

inline constexpr unsigned kBurst = 64;  // mbufs dequeued at a time (port::size_pool counts it)
inline constexpr unsigned kMaxEthPorts = 1024;  // >= RTE_MAX_ETHPORTS

// Written by the capture lcore only; the main lcore reads.
struct alignas(64) CaptureCounters {
  stats::Counter packets;   // recorded: in a chunk whose write completed
  stats::Counter bytes;     // their frame bytes (original length)
  stats::Counter chunks;    // chunks written
  stats::Counter segments;  // segments closed
  stats::Counter dropped;   // copies taken off a ring but not recorded (no buffer, write failed)
  stats::Counter write_errors;   // chunk writes that failed
  stats::Counter bytes_written;  // bytes of chunks written
  stats::Counter cut;            // recorded packets cut off again after a failed write
  stats::Counter busy_cycles;    // TSC cycles spent on dequeued bursts (copy, pack, free)
  stats::Counter loops;          // heartbeat
};

// How the store is laid out and what it costs in memory (for --check and the startup log).
struct Layout {
  unsigned buffers = 0;       // chunk buffers: queue_depth in flight + one filling + one spare
  uint64_t buffer_bytes = 0;  // buffers x chunk_bytes (hugepage memory where there is some)
  uint64_t chunks_per_segment = 0;
  uint64_t segments_retained = 0;  // closed segments kept (the one being written is extra)
};
Layout layout_of(const config::CaptureConfig& cfg);

class CaptureLcore {
 public:
  struct Options {
    const config::CaptureConfig* cfg = nullptr;
    std::vector<std::string> port_names;             // interface i = config port i
    std::array<uint8_t, kMaxEthPorts> port_index{};  // ethdev id -> config port index
    std::vector<rte_ring*> rings;                    // one per worker
    int rx_tsc_field = -1;
    int socket = -1;  // where the chunk buffers live
    std::string userappl;
  };

  // Checks the path (exists, a writable directory; names the fix otherwise), repairs what a
  // crash left, allocates the chunk buffers and the queue pair. Control plane, before launch.
  static Result<std::unique_ptr<CaptureLcore>> create(const Options& opt);
  ~CaptureLcore();
  CaptureLcore(const CaptureLcore&) = delete;
  CaptureLcore& operator=(const CaptureLcore&) = delete;

  // rte_eal_remote_launch entry point; arg is a CaptureLcore*.
  static int main(void* arg);
  // The loop; returns when stop was requested and everything in the rings is written.
  int run() noexcept;
  // Call once every producer (worker) has stopped: the loop drains the rings, writes the last
  // chunk, closes the segment and returns.
  void request_stop() noexcept { stop_.store(true, std::memory_order_release); }
  bool exited() const noexcept { return exited_.load(std::memory_order_acquire); }

  const CaptureCounters& counters() const noexcept { return counters_; }
  bool direct() const noexcept { return direct_; }
  bool raw() const noexcept { return raw_fd_ >= 0; }  // a raw-device store (raw_store.h)
  const Layout& layout() const noexcept { return layout_; }

 private:
  struct Chunk;
  CaptureLcore() = default;

  void poll_rings() noexcept;
  bool take_chunk() noexcept;
  void seal() noexcept;
  void submit(Chunk* c) noexcept;
  Segment* segment_for(uint64_t first_ns, uint64_t len) noexcept;
  void close_segment(Segment* s) noexcept;
  void service_segments() noexcept;
  void begin_episode(const std::string& path, const std::string& why) noexcept;
  void on_write(Chunk* c, const nvme::Completion& done) noexcept;
  static void write_done(void* arg, const nvme::Completion& done) noexcept;
  uint64_t ns_of(uint64_t tsc) const noexcept;

  Options opt_;
  config::CaptureConfig cfg_;
  Layout layout_;
  std::unique_ptr<nvme::QueuePair> qp_;
  std::unique_ptr<ChunkWriter> writer_;
  std::vector<Chunk> chunks_;
  std::vector<Chunk*> free_;
  Chunk* current_ = nullptr;
  uint64_t current_since_ = 0;  // TSC when the current chunk got its first packet
  std::unique_ptr<StoreThread> store_;
  std::vector<Chunk*> pending_;  // sealed, waiting for their segment to be opened
  std::vector<std::unique_ptr<Segment>> segments_;  // open or closing, oldest first
  Segment* open_ = nullptr;                         // the one new chunks go to
  uint64_t next_seq_ = 0;
  uint64_t next_segment_ = 0;
  // The raw-device store: the device (no store thread, no segments; raw_seg_ only counts the
  // writes in flight), its header; chunk seq s goes to slot s % slots, a full slot each.
  int raw_fd_ = -1;
  RawHeader raw_;
  std::unique_ptr<RawDevice> raw_dev_;  // its fds and, on a namespace, the geometry
  std::unique_ptr<Segment> raw_seg_;
  bool direct_ = true;
  bool failing_ = false;         // in a write-error episode (logged once)
  uint64_t episode_errors_ = 0;  // failed chunks in this episode
  uint64_t retry_tsc_ = 0;       // while failing: no new segment before this TSC
  uint64_t base_tsc_ = 0, base_ns_ = 0;
  double ns_per_tsc_ = 0;
  uint64_t flush_tsc_ = 0;
  uint64_t hz_ = 0;
  unsigned next_ring_ = 0;
  CaptureCounters counters_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> exited_{false};
};

}  // namespace sluice::capture
