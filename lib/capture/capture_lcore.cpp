#include "lib/capture/capture_lcore.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "lib/capture/handoff.h"
#include "lib/capture/raw_device.h"
#include "lib/capture/store.h"
#include "lib/capture/store_thread.h"
#include "lib/sys/tsan.h"

namespace sluice::capture {

namespace {

// After a failed write, a new segment is tried at most this often (each try is an open, a
// write and a close; a full disk would otherwise see one per chunk).
constexpr uint64_t kRetryUs = 100'000;
// Packets ahead whose mbuf and first data line are prefetched.
constexpr unsigned kPrefetch = 4;
// Longest wait in the kernel for a write to complete when every chunk buffer is in flight.
constexpr unsigned kWaitUs = 1000;
// Extra queue-pair requests beyond the chunk buffers (none are needed: the store thread syncs).
constexpr unsigned kSpareRequests = 8;

uint64_t round_up(uint64_t n, uint64_t a) {
  return (n + a - 1) / a * a;
}

}  // namespace

struct CaptureLcore::Chunk {
  uint8_t* buf = nullptr;
  CaptureLcore* owner = nullptr;
  Segment* segment = nullptr;
  uint64_t offset = 0;
  uint64_t len = 0;
  uint32_t packets = 0;
  uint64_t bytes = 0;  // frame bytes of its packets
};

Layout layout_of(const config::CaptureConfig& cfg) {
  Layout l;
  l.buffers = cfg.queue_depth + 2;
  l.buffer_bytes = uint64_t{l.buffers} * cfg.chunk_bytes;
  l.chunks_per_segment = cfg.segment_bytes / cfg.chunk_bytes;
  l.segments_retained = (cfg.retain_bytes - cfg.segment_bytes) / cfg.segment_bytes;
  return l;
}

Result<std::unique_ptr<CaptureLcore>> CaptureLcore::create(const Options& opt) {
  const config::CaptureConfig& cfg = *opt.cfg;
  const std::string where = cfg.path_mark.str() + ": capture.path: ";
  auto kind = raw_kind(cfg);
  if (!kind) return Error{kind.error()};
  const bool raw = *kind != RawKind::kDirectory;
  const bool passthru = *kind == RawKind::kPassthru;
  if (!raw && access(cfg.path.c_str(), W_OK | X_OK) != 0) {
    return Error{where + fmt::format("{} is not writable ({}); make it writable by the user "
                                     "sluice runs as (chown or chmod), or choose another path",
                                     cfg.path, std::strerror(errno))};
  }
  if (auto u = nvme::uring_available(); !u) return Error{"capture: " + u.error()};

  auto self = std::unique_ptr<CaptureLcore>(new CaptureLcore());
  self->opt_ = opt;
  self->cfg_ = cfg;
  self->opt_.cfg = &self->cfg_;
  self->layout_ = layout_of(cfg);

  self->writer_ = std::make_unique<ChunkWriter>(opt.port_names, cfg.snaplen, opt.userappl);
  if (self->writer_->min_chunk_bytes() > cfg.chunk_bytes) {
    return Error{
        fmt::format("{}: capture.chunk_bytes: {} cannot hold one {}-byte packet with "
                    "the section header of {} ports ({} bytes needed)",
                    cfg.mark.str(), cfg.chunk_bytes, cfg.snaplen, opt.port_names.size(),
                    self->writer_->min_chunk_bytes())};
  }
  if (raw) {
    auto dev = open_raw_device(cfg, *kind);
    if (!dev) return Error{dev.error()};
    self->raw_dev_ = std::make_unique<RawDevice>(std::move(*dev));
    self->raw_fd_ = self->raw_dev_->fd;
    self->raw_ = self->raw_dev_->header;
    const auto& lines = self->raw_dev_->lines;
    self->next_seq_ = dev->position.next_seq;
    for (const auto& line : lines) spdlog::info("capture: {}", line);
  } else {
    auto report = repair(cfg.path);
    if (!report) return Error{where + report.error()};
    for (const auto& line : report->lines) spdlog::warn("capture: repair: {}", line);
    self->next_seq_ = report->next_seq;
    self->next_segment_ = report->next_segment;
  }

  auto direct = raw ? Result<bool>(true) : nvme::probe_direct(cfg.path);
  if (!direct) return Error{where + direct.error()};
  self->direct_ = *direct;
  if (!self->direct_) {
    spdlog::warn(
        "capture: {} does not take O_DIRECT (tmpfs?): writing through the page cache "
        "(buffered fallback); a filesystem on a real disk is faster and steadier",
        cfg.path);
  }

  const unsigned nbuf = self->layout_.buffers;
  self->chunks_.resize(nbuf);
  std::vector<nvme::Region> regions;
  for (auto& c : self->chunks_) {
    c.buf = static_cast<uint8_t*>(
        rte_malloc_socket("sluice_chunk", cfg.chunk_bytes, kChunkAlign, opt.socket));
    if (c.buf == nullptr) {
      return Error{fmt::format(
          "capture: cannot allocate {} chunk buffers of {} bytes ({} MiB) on socket {}; give "
          "EAL more memory (-m, or hugepages) or lower capture.queue_depth or chunk_bytes",
          nbuf, cfg.chunk_bytes, self->layout_.buffer_bytes >> 20, opt.socket)};
    }
    c.owner = self.get();
    regions.push_back({c.buf, cfg.chunk_bytes});
    self->free_.push_back(&c);
  }
  nvme::QueuePairOptions qo;
  qo.depth = cfg.queue_depth;
  qo.requests = nbuf + kSpareRequests;
  // A file slot per segment open or closing: each holds at least two chunks, so the queue
  // depth bounds how many can have writes in flight at once.
  qo.files = cfg.queue_depth + 4;
  qo.buffers = regions;
  // The capture lcore never enters the filesystem: measured on ext4 (2 vCPUs, 64 B frames, every
  // packet captured, 1 MiB chunks into allocated segments), writes issued inline blocked the
  // lcore in ext4_map_blocks and it recorded 3.9-4.8 Mpps while the rings overflowed (27-41 M
  // copies dropped in 5 s); issued by io_uring's workers, 5.6-7.8 Mpps (all the worker
  // forwarded) with none dropped, and 1.36-1.59 GB/s at 1518 B against 1.28-1.40 inline.
  qo.async = true;
  if (passthru) {
    // NVMe commands on the namespace: no filesystem to block in, so issued inline (a full
    // hardware queue is -EAGAIN inside the kernel, which then punts it to its workers); polled
    // completions where the nvme driver has poll queues.
    qo.async = false;
    qo.passthru = true;
    qo.iopoll = self->raw_dev_->ns.poll_queues;
  }
  auto qp = nvme::QueuePair::create(qo);
  if (!qp) return Error{"capture: " + qp.error()};
  self->qp_ = std::move(*qp);
  if (!self->qp_->registered_buffers()) {
    spdlog::warn(
        "capture: chunk buffers could not be registered with io_uring (RLIMIT_MEMLOCK?); "
        "writes copy page references per request");
  }

  if (raw) {
    auto slot = passthru ? self->qp_->add_namespace(self->raw_dev_->ns)
                         : self->qp_->add_file(self->raw_fd_);
    if (!slot) return Error{"capture: " + slot.error()};
    self->raw_seg_ = std::make_unique<Segment>();
    self->raw_seg_->part_path = self->raw_seg_->final_path = cfg.path;
    self->raw_seg_->slot = *slot;
    self->raw_seg_->open = true;
  } else {
    self->store_ =
        std::make_unique<StoreThread>(cfg, &self->counters_.segments, &self->counters_.cut);
    if (auto r = self->store_->start(); !r) return Error{r.error()};
  }
  self->pending_.reserve(nbuf);

  self->hz_ = rte_get_tsc_hz();
  self->ns_per_tsc_ = 1e9 / static_cast<double>(self->hz_);
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  self->base_tsc_ = rte_rdtsc();
  self->base_ns_ = uint64_t(ts.tv_sec) * 1'000'000'000 + uint64_t(ts.tv_nsec);
  self->flush_tsc_ = self->hz_ / 1000 * cfg.flush_ms;
  if (raw) {
    spdlog::info(
        "capture: raw store {} ({}), chunks of {} bytes in a ring of {} slots; {} chunk "
        "buffers ({} MiB), queue depth {}; continuing at chunk {} (slot {})",
        cfg.path,
        passthru ? "NVMe passthrough, completions " + self->qp_->completions() : "O_DIRECT",
        cfg.chunk_bytes, self->raw_.slots, nbuf, self->layout_.buffer_bytes >> 20, cfg.queue_depth,
        self->next_seq_, self->next_seq_ % self->raw_.slots);
    return self;
  }
  spdlog::info(
      "capture: store {} ({}), chunks of {} bytes, segments of {} ({} chunks), {} closed "
      "segments retained; {} chunk buffers ({} MiB), queue depth {}; continuing at segment "
      "{}, chunk {}",
      cfg.path, self->direct_ ? "O_DIRECT" : "buffered", cfg.chunk_bytes, cfg.segment_bytes,
      self->layout_.chunks_per_segment, self->layout_.segments_retained, nbuf,
      self->layout_.buffer_bytes >> 20, cfg.queue_depth, self->next_segment_, self->next_seq_);
  return self;
}

CaptureLcore::~CaptureLcore() {
  qp_.reset();  // drains whatever is still in flight
  store_.reset();
  for (auto& s : segments_) {
    if (s->fd >= 0) close(s->fd);
  }
  for (auto& c : chunks_) rte_free(c.buf);
  if (raw_dev_) close_raw_device(*raw_dev_);
}

int CaptureLcore::main(void* arg) {
  return static_cast<CaptureLcore*>(arg)->run();
}

uint64_t CaptureLcore::ns_of(uint64_t tsc) const noexcept {
  const auto d = static_cast<int64_t>(tsc - base_tsc_);
  return base_ns_ + static_cast<uint64_t>(static_cast<double>(d) * ns_per_tsc_);
}

bool CaptureLcore::take_chunk() noexcept {
  if (current_ != nullptr) return true;
  if (free_.empty()) return false;
  current_ = free_.back();
  free_.pop_back();
  writer_->begin(current_->buf, cfg_.chunk_bytes);
  current_->packets = 0;
  current_->bytes = 0;
  return true;
}

void CaptureLcore::poll_rings() noexcept {
  std::array<rte_mbuf*, kBurst> pkts;
  const auto nr = static_cast<unsigned>(opt_.rings.size());
  for (unsigned k = 0; k < nr; ++k) {
    if (!take_chunk()) return;  // every buffer is in flight: leave the packets in the rings
    // With no buffer behind the current one, take only what surely fits in it, so that a
    // slow store backs up into the rings (where the workers count capture_full) rather than
    // making this lcore drop copies it has taken.
    unsigned want = kBurst;
    if (free_.empty()) {
      want = static_cast<unsigned>(std::min<size_t>(kBurst, writer_->room_for(cfg_.snaplen)));
      if (want == 0) {
        seal();
        return;
      }
    }
    rte_ring* r = opt_.rings[(next_ring_ + k) % nr];
    const unsigned n =
        rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(pkts.data()), want, nullptr);
    if (n == 0) continue;
    sys::tsan_acquire(r);
    const uint64_t start = rte_rdtsc();
    // The mbufs (both lines: pkt_len and port, the RX TSC and next) and their bytes were last
    // written by a worker on another core: pull them over ahead of the copy. A packet's data
    // is prefetched once its mbuf, which holds the data address, has arrived.
    for (unsigned i = 0; i < n && i < 2 * kPrefetch; ++i) {
      rte_prefetch0(pkts[i]);
      rte_prefetch0(reinterpret_cast<const uint8_t*>(pkts[i]) + RTE_CACHE_LINE_SIZE);
    }
    for (unsigned i = 0; i < n && i < kPrefetch; ++i) {
      rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
    }
    for (unsigned i = 0; i < n; ++i) {
      if (i + 2 * kPrefetch < n) {
        rte_prefetch0(pkts[i + 2 * kPrefetch]);
        rte_prefetch0(reinterpret_cast<const uint8_t*>(pkts[i + 2 * kPrefetch]) +
                      RTE_CACHE_LINE_SIZE);
      }
      if (i + kPrefetch < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kPrefetch], void*));
      rte_mbuf* m = pkts[i];
      const uint32_t len = m->pkt_len;
      const uint32_t caplen = std::min(len, cfg_.snaplen);
      const uint64_t ts = ns_of(*rx_tsc_of(m, opt_.rx_tsc_field));
      const uint32_t port = opt_.port_index[m->port % kMaxEthPorts];
      uint8_t* dst = current_ ? writer_->append(port, ts, caplen, len) : nullptr;
      if (dst == nullptr) {
        seal();
        if (take_chunk()) dst = writer_->append(port, ts, caplen, len);
        if (dst == nullptr) {
          counters_.dropped.add(1);
          continue;
        }
      }
      if (current_->packets == 0) current_since_ = rte_rdtsc();
      ++current_->packets;
      current_->bytes += len;
      if (m->data_len >= caplen) [[likely]] {
        rte_memcpy(dst, rte_pktmbuf_mtod(m, const uint8_t*), caplen);
      } else {
        uint32_t done = 0;
        for (const rte_mbuf* s = m; s != nullptr && done < caplen; s = s->next) {
          const uint32_t take = std::min<uint32_t>(s->data_len, caplen - done);
          rte_memcpy(dst + done, rte_pktmbuf_mtod(s, const uint8_t*), take);
          done += take;
        }
      }
    }
    for (unsigned i = 0; i < n; ++i) sys::tsan_release(pkts[i]->pool);
    rte_pktmbuf_free_bulk(pkts.data(), n);
    counters_.busy_cycles.add(rte_rdtsc() - start);
  }
  next_ring_ = nr ? (next_ring_ + 1) % nr : 0;
}

// Seals the chunk being filled and queues its write (or keeps it until its segment is open);
// an empty one stays current.
void CaptureLcore::seal() noexcept {
  Chunk* c = current_;
  if (c == nullptr || writer_->empty()) return;
  current_ = nullptr;
  if (raw_fd_ >= 0) {  // a full slot: the trailer's zero padding fills what packets left
    const uint64_t seq = next_seq_++;
    c->len = writer_->finish(seq, cfg_.chunk_bytes);
    c->segment = raw_seg_.get();
    c->offset = raw_.slot_offset(seq % raw_.slots);
    submit(c);
    return;
  }
  const uint64_t len = round_up(writer_->used() + kTrailerMinBytes, kChunkAlign);
  Segment* s = segment_for(writer_->first_ns(), len);
  if (s == nullptr) {  // no segment to write to (counted and logged)
    counters_.dropped.add(c->packets);
    free_.push_back(c);
    return;
  }
  c->len = writer_->finish(next_seq_++);
  c->segment = s;
  c->offset = s->written;
  s->written += c->len;
  if (s->open) {
    submit(c);
  } else {
    ++s->pending;
    pending_.push_back(c);
  }
}

void CaptureLcore::submit(Chunk* c) noexcept {
  Segment* s = c->segment;
  ++s->in_flight;
  if (qp_->write(s->slot, c->buf, static_cast<uint32_t>(c->len), c->offset, write_done, c) != 0) {
    // Cannot happen: the pool holds a request for every buffer; count it rather than lose it.
    --s->in_flight;
    on_write(c, nvme::Completion{-EAGAIN, 0});
  }
}

// The segment new chunks go to: the open one while it has room, else a new one, which the
// store thread opens meanwhile (its chunks wait in pending_).
Segment* CaptureLcore::segment_for(uint64_t first_ns, uint64_t len) noexcept {
  if (open_ != nullptr && open_->written + len > cfg_.segment_bytes) close_segment(open_);
  if (open_ != nullptr) return open_;
  if (failing_ && rte_rdtsc() < retry_tsc_) return nullptr;
  auto s = std::make_unique<Segment>();
  s->job = Segment::Job::kOpen;
  s->number = next_segment_;
  s->part_path = cfg_.path + "/" + segment_name(first_ns, s->number, true);
  s->final_path = cfg_.path + "/" + segment_name(first_ns, s->number, false);
  if (!store_->post(s.get())) return nullptr;
  s->posted = true;
  ++next_segment_;
  open_ = s.get();
  segments_.push_back(std::move(s));
  return open_;
}

// A chunk could not be written (no room for a segment, a failed write): counted, logged once
// per episode (until a write succeeds again), and no new segment for kRetryUs.
void CaptureLcore::begin_episode(const std::string& path, const std::string& why) noexcept {
  counters_.write_errors.add(1);
  if (!failing_) {
    spdlog::warn(
        "capture: writing {} failed ({}): captured packets are dropped and counted "
        "(capture.dropped, capture.write_errors) until writes succeed; forwarding goes on",
        path, why);
  }
  failing_ = true;
  ++episode_errors_;
  retry_tsc_ = rte_rdtsc() + hz_ / 1'000'000 * kRetryUs;
}

void CaptureLcore::close_segment(Segment* s) noexcept {
  s->closing = true;
  if (open_ == s) open_ = nullptr;
}

void CaptureLcore::write_done(void* arg, const nvme::Completion& done) noexcept {
  auto* c = static_cast<Chunk*>(arg);
  --c->segment->in_flight;
  c->owner->on_write(c, done);
}

void CaptureLcore::on_write(Chunk* c, const nvme::Completion& done) noexcept {
  Segment* s = c->segment;
  if (done.status == 0) {
    counters_.packets.add(c->packets);
    counters_.bytes.add(c->bytes);
    counters_.chunks.add(1);
    counters_.bytes_written.add(c->len);
    if (failing_) {
      spdlog::info("capture: writes succeed again after {} failed chunks", episode_errors_);
      failing_ = false;
      episode_errors_ = 0;
    }
  } else {
    counters_.dropped.add(c->packets);
    begin_episode(s->part_path, done.nvme_status != 0
                                    ? fmt::format("{}, NVMe status {:#x}",
                                                  std::strerror(-done.status), done.nvme_status)
                                    : std::string(std::strerror(-done.status)));
    if (!s->failed || c->offset < s->fail_offset) s->fail_offset = c->offset;
    if (raw_fd_ < 0) {
      s->failed = true;
      close_segment(s);  // what follows goes to a new segment, after the retry delay
    }
  }
  free_.push_back(c);
}

// Segments the store thread is done with, and closing ones whose writes are all done.
void CaptureLcore::service_segments() noexcept {
  if (store_ == nullptr) return;  // the raw store has no segments
  while (Segment* s = store_->take()) {
    s->posted = false;
    if (s->job == Segment::Job::kClose) {
      std::erase_if(segments_, [s](const auto& p) { return p.get() == s; });
      continue;
    }
    if (s->ok) {
      if (auto slot = qp_->add_file(s->fd)) {
        s->slot = *slot;
        s->open = true;
      } else {
        s->error = slot.error();
        s->ok = false;
      }
    }
    if (!s->ok) {
      // Its chunks are dropped; the segment goes (the store thread closes what it opened).
      begin_episode(s->part_path, s->error);
      if (open_ == s) open_ = nullptr;
      s->closing = true;
    }
    // The chunks that waited for it, in the order they were sealed.
    std::erase_if(pending_, [&](Chunk* c) {
      if (c->segment != s) return false;
      --s->pending;
      if (s->open) {
        submit(c);
      } else {
        counters_.dropped.add(c->packets);
        free_.push_back(c);
      }
      return true;
    });
    if (!s->open) s->written = 0;
  }
  for (auto& p : segments_) {
    Segment* s = p.get();
    if (!s->closing || s->posted || s->in_flight != 0 || s->pending != 0) continue;
    if (s->open) qp_->remove_file(s->slot);
    s->open = false;
    s->job = Segment::Job::kClose;
    if (s->fd < 0) {  // never opened: nothing for the store thread to do
      s->posted = true;
      std::erase_if(segments_, [s](const auto& q) { return q.get() == s; });
      break;  // the loop's vector changed; the rest wait for the next call
    }
    if (store_->post(s)) s->posted = true;
  }
}

int CaptureLcore::run() noexcept {
  for (;;) {
    // Read before the rings: once it is set no producer enqueues, so empty rings after it mean
    // everything is in.
    const bool stopping = stop_.load(std::memory_order_acquire);
    counters_.loops.add(1);
    poll_rings();
    // With every chunk buffer in flight there is nothing to do until a write completes: wait
    // for it in the kernel rather than spin, so that a CPU shared with io_uring's workers (who
    // issue the writes) or the main lcore goes to them. The rings keep filling meanwhile.
    if (current_ == nullptr && free_.empty()) {
      qp_->wait(kWaitUs);
    } else {
      qp_->poll();
    }
    if (current_ != nullptr && !writer_->empty() && rte_rdtsc() - current_since_ >= flush_tsc_) {
      seal();
    }
    service_segments();
    if (stopping) {
      bool empty = true;
      for (rte_ring* r : opt_.rings) empty = empty && rte_ring_count(r) == 0;
      if (empty) break;
    }
  }
  seal();
  if (open_ != nullptr) close_segment(open_);
  // The last writes, then the store thread closes what is left.
  while (!segments_.empty()) {
    if (qp_->in_flight() != 0 || qp_->queued() != 0) {
      qp_->wait(kWaitUs);
    } else {
      rte_delay_us_sleep(100);
    }
    service_segments();
  }
  if (raw_fd_ >= 0) {
    qp_->drain();
    // The device's write cache: what completed is on the medium once this returns.
    if (auto r = sync_raw_device(*raw_dev_); !r) {
      spdlog::warn("capture: {}: {}", cfg_.path, r.error());
    }
  }
  exited_.store(true, std::memory_order_release);
  return 0;
}

}  // namespace sluice::capture
