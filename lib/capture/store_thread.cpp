#include "lib/capture/store_thread.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <vector>

#include "lib/capture/chunk.h"
#include "lib/capture/store.h"
#include "lib/nvme/queue_pair.h"

namespace sluice::capture {

namespace {

// The thread looks for work this often (it is not an lcore: it sleeps).
constexpr auto kIdle = std::chrono::microseconds(200);

}  // namespace

StoreThread::StoreThread(const config::CaptureConfig& cfg, stats::Counter* segments,
                         stats::Counter* cut)
    : cfg_(cfg), segments_(segments), cut_(cut) {}

StoreThread::~StoreThread() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

Result<void> StoreThread::start() {
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) {
    return Error{fmt::format("capture: cannot start the store thread: {}", e.what())};
  }
  pthread_setname_np(thread_.native_handle(), "sluice-store");
  return {};
}

bool StoreThread::post(Segment* s) noexcept {
  return in_.push(s);
}

Segment* StoreThread::take() noexcept {
  return out_.pop();
}

void StoreThread::run() {
  for (;;) {
    Segment* s = in_.pop();
    if (s == nullptr) {
      // Stop only once nothing is left: the capture lcore posts its last closes before it
      // returns, and the destructor runs after that.
      if (stop_.load(std::memory_order_acquire)) return;
      std::this_thread::sleep_for(kIdle);
      continue;
    }
    if (s->job == Segment::Job::kOpen) {
      open_segment(*s);
    } else {
      close_segment(*s);
    }
    // The out ring has room for every segment alive; wait rather than lose one.
    while (!out_.push(s)) std::this_thread::sleep_for(kIdle);
  }
}

// Where the filesystem has less room left than a segment (it is smaller than retain_bytes, or
// shared), the oldest closed segments make room for the new one.
void StoreThread::make_room() {
  struct statvfs vfs {};
  if (statvfs(cfg_.path.c_str(), &vfs) != 0) return;
  const uint64_t avail = uint64_t{vfs.f_bavail} * vfs.f_frsize;
  if (avail >= cfg_.segment_bytes) return;
  auto list = list_segments(cfg_.path);
  if (!list) return;
  uint64_t closed = 0;
  for (const auto& f : *list) closed += f.part ? 0 : f.size;
  const uint64_t short_by = cfg_.segment_bytes - avail;
  if (closed == 0) return;
  if (auto freed =
          enforce_retention(cfg_.path, closed > short_by ? closed - short_by : 0, UINT64_MAX);
      !freed) {
    spdlog::warn("capture: retention: {}", freed.error());
  }
}

void StoreThread::open_segment(Segment& s) {
  make_room();
  auto t = nvme::open_target(s.part_path, O_WRONLY | O_CREAT | O_TRUNC, 0640, true);
  if (!t) {
    s.ok = false;
    s.error = t.error();
    return;
  }
  // The whole segment is allocated up front and written inside its length: a full filesystem
  // shows at the open (retention made room just before), not as a write failing halfway
  // through a segment. The length is cut to what was written when the segment closes; a crash
  // leaves zeros (unwritten chunks) that repair cuts. (Measured against extending writes, with
  // writes issued by io_uring's workers: 1.36-1.59 against 1.39-1.51 GB/s at 1518 B, 5.6-7.8
  // against 6.3-6.9 Mpps at 64 B: no difference in speed on ext4.)
  if (fallocate(t->fd, 0, 0, static_cast<off_t>(cfg_.segment_bytes)) != 0) {
    const int err = errno;
    if (err == ENOSPC || err == EDQUOT) {
      close(t->fd);
      unlink(s.part_path.c_str());
      s.ok = false;
      s.error = fmt::format("cannot allocate {} bytes: {}", cfg_.segment_bytes, std::strerror(err));
      return;
    }
    // No fallocate here (EOPNOTSUPP): the length alone still keeps writes from extending.
    if (ftruncate(t->fd, static_cast<off_t>(cfg_.segment_bytes)) != 0) {
      spdlog::warn("capture: cannot size {}: {}", s.part_path, std::strerror(errno));
    }
  }
  s.fd = t->fd;
  s.ok = true;
}

// Cut (at a failed write, counting the good chunks that completed after it), sync, close,
// rename (or delete when nothing is left), then retention.
void StoreThread::close_segment(Segment& s) {
  if (s.failed && s.written > s.fail_offset) {
    std::vector<uint8_t> tail(s.written - s.fail_offset);
    const ssize_t got = pread(s.fd, tail.data(), tail.size(), static_cast<off_t>(s.fail_offset));
    if (got > 0) {
      for (const auto& info : scan_chunks(tail.data(), static_cast<size_t>(got))) {
        if (info.state == ChunkState::kGood) cut_->add(info.packets);
      }
    }
    s.written = s.fail_offset;
  }
  if (ftruncate(s.fd, static_cast<off_t>(s.written)) != 0) {
    spdlog::warn("capture: cannot cut {} to its {} bytes: {}", s.part_path, s.written,
                 std::strerror(errno));
  }
  if (fdatasync(s.fd) != 0) {
    spdlog::warn("capture: fdatasync of {}: {}", s.part_path, std::strerror(errno));
  }
  close(s.fd);
  s.fd = -1;
  if (s.written == 0) {
    unlink(s.part_path.c_str());
    return;
  }
  if (rename(s.part_path.c_str(), s.final_path.c_str()) != 0) {
    spdlog::warn("capture: cannot rename {}: {}", s.part_path, std::strerror(errno));
    return;
  }
  segments_->add(1);
  // Closed segments stay under retain_bytes less the one being written.
  if (auto freed =
          enforce_retention(cfg_.path, cfg_.retain_bytes - cfg_.segment_bytes, s.number + 1);
      !freed) {
    spdlog::warn("capture: retention: {}", freed.error());
  }
}

}  // namespace sluice::capture
