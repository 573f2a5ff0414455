#include "lib/capture/raw_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>

#include "lib/capture/chunk.h"
#include "lib/nvme/queue_pair.h"

namespace sluice::capture {

namespace {

// Slots read after the binary search's answer: the most chunk writes a crashed run can have had
// in flight (queue_depth + 2 chunk buffers), at least that of the default depth.
constexpr uint64_t kMinWindow = 34;

struct Freer {
  void operator()(uint8_t* p) const noexcept { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, Freer>;

Buffer aligned(size_t n) {
  return Buffer(static_cast<uint8_t*>(std::aligned_alloc(kChunkAlign, n)));
}

std::string size_text(uint64_t n) {
  if (n % (1ull << 20) == 0) return fmt::format("{}MiB", n >> 20);
  if (n % (1ull << 10) == 0) return fmt::format("{}KiB", n >> 10);
  return std::to_string(n);
}

bool read_full(int fd, uint8_t* buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// A new store: the data region zeroed first (chunks of an earlier store with the same chunk
// size would otherwise look like this one's to the binary search), then the header, synced.
Result<RawHeader> format(int fd, const std::string& path, uint64_t chunk, uint64_t slots) {
  RawHeader h;
  h.chunk_bytes = chunk;
  h.slots = slots;
  std::random_device rd;
  h.store_id = (uint64_t{rd()} << 32) ^ rd();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  h.created_ns = uint64_t(ts.tv_sec) * 1'000'000'000 + uint64_t(ts.tv_nsec);
  uint64_t range[2] = {h.data_offset, slots * chunk};
  if (ioctl(fd, BLKZEROOUT, range) != 0) {
    return Error{
        fmt::format("capture.format: cannot zero {} (BLKZEROOUT): {}", path, std::strerror(errno))};
  }
  Buffer b = aligned(kRawHeaderBytes);
  if (!b) return Error{"capture: out of memory"};
  encode_raw_header(h, b.get());
  if (pwrite(fd, b.get(), kRawHeaderBytes, 0) != static_cast<ssize_t>(kRawHeaderBytes) ||
      fdatasync(fd) != 0) {
    return Error{fmt::format("capture.format: cannot write the store header to {}: {}", path,
                             std::strerror(errno))};
  }
  return h;
}

}  // namespace

Result<RawDevice> open_raw_device(const config::CaptureConfig& cfg) {
  const std::string where = cfg.path_mark.str() + ": capture.path: ";
  // O_EXCL on a block device: refused while it is mounted or held by another program.
  auto t = nvme::open_target(cfg.path, O_RDWR | O_EXCL, 0, false);
  if (!t) return Error{where + t.error()};
  RawDevice dev;
  dev.fd = t->fd;
  auto fail = [&](std::string why) -> Result<RawDevice> {
    close(dev.fd);
    return Error{where + std::move(why)};
  };
  if (t->block > kChunkAlign || kChunkAlign % t->block != 0) {
    return fail(
        fmt::format("{} has {}-byte logical blocks; the raw store needs blocks of at "
                    "most 4096 bytes",
                    cfg.path, t->block));
  }
  const uint64_t need = kRawHeaderBytes + 2 * cfg.chunk_bytes;
  if (t->size < need) {
    return fail(
        fmt::format("{} holds {} bytes, less than the store's header and two chunks "
                    "({} bytes at chunk_bytes {}): use a larger device or smaller "
                    "capture.chunk_bytes",
                    cfg.path, t->size, need, size_text(cfg.chunk_bytes)));
  }
  Buffer head = aligned(kRawHeaderBytes);
  if (!head) return fail("out of memory");
  if (!read_full(dev.fd, head.get(), kRawHeaderBytes, 0)) {
    return fail(fmt::format("cannot read {}: {}", cfg.path, std::strerror(errno)));
  }
  const RawHeaderRead r = decode_raw_header(head.get(), kRawHeaderBytes);
  if (r.state != RawHeaderState::kValid) {
    if (!cfg.format) {
      return fail(fmt::format(
          "{} holds no sluice capture store ({}); it is left untouched. To erase the device "
          "and make it a store, add capture.format: true (every byte on it is lost)",
          cfg.path, r.why));
    }
    const uint64_t slots = raw_slots(t->size, cfg.chunk_bytes);
    auto h = format(dev.fd, cfg.path, cfg.chunk_bytes, slots);
    if (!h) return fail(h.error());
    dev.header = *h;
    dev.formatted = true;
    dev.lines.push_back(fmt::format(
        "formatted {} as a new store (capture.format: true; it held {}): {} slots of {}, "
        "store id {:016x}",
        cfg.path, r.why, slots, size_text(cfg.chunk_bytes), h->store_id));
  } else {
    dev.header = r.header;
    if (dev.header.chunk_bytes != cfg.chunk_bytes) {
      return fail(fmt::format(
          "{} holds a sluice store with chunks of {}, not capture.chunk_bytes {}: set "
          "capture.chunk_bytes: {} to keep recording into it (or use another device; to erase "
          "it, zero its first 4096 bytes and set capture.format: true)",
          cfg.path, size_text(dev.header.chunk_bytes), size_text(cfg.chunk_bytes),
          size_text(dev.header.chunk_bytes)));
    }
    if (dev.header.bytes() > t->size) {
      return fail(
          fmt::format("{} holds {} bytes, less than its store's {} ({} slots): the "
                      "device shrank; restore its size or format it anew",
                      cfg.path, t->size, dev.header.bytes(), dev.header.slots));
    }
  }

  const RawHeader& h = dev.header;
  Buffer slot = aligned(h.chunk_bytes);
  if (!slot) return fail("out of memory for a chunk buffer");
  bool read_error = false;
  const uint64_t window = std::max<uint64_t>(cfg.queue_depth + 2, kMinWindow);
  dev.position = find_ring_position(h.slots, window, [&](uint64_t i) -> std::optional<uint64_t> {
    if (!read_full(dev.fd, slot.get(), h.chunk_bytes, h.slot_offset(i))) {
      read_error = true;
      return std::nullopt;
    }
    return slot_seq(slot.get(), h.chunk_bytes, h.slots, i);
  });
  if (read_error) {
    return fail(fmt::format("cannot read the ring of {}: {}", cfg.path, std::strerror(errno)));
  }
  const RingPosition& p = dev.position;
  dev.lines.push_back(fmt::format(
      "raw store on {}: {} slots of {} ({} MiB), store id {:016x}; {} (read {} slots)", cfg.path,
      h.slots, size_text(h.chunk_bytes), (h.slots * h.chunk_bytes) >> 20, h.store_id,
      p.empty ? std::string("empty, starting at seq 0")
              : fmt::format("newest chunk seq {} in slot {}, continuing at seq {}", p.newest_seq,
                            p.newest_seq % h.slots, p.next_seq),
      p.probes));
  if (h.bytes() + cfg.chunk_bytes <= t->size) {
    dev.lines.push_back(
        fmt::format("{} is larger than its store ({} of {} bytes are used); "
                    "the store keeps its size",
                    cfg.path, h.bytes(), t->size));
  }
  return dev;
}

}  // namespace sluice::capture

namespace sluice::capture {

RawDeviceState describe_raw_device(const config::CaptureConfig& cfg) {
  const int fd = ::open(cfg.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return {false, fmt::format("a block device sluice cannot open ({}): sluice will not start",
                               std::strerror(errno))};
  }
  uint64_t bytes = 0;
  std::vector<uint8_t> block(kRawHeaderBytes);
  const bool sized = ioctl(fd, BLKGETSIZE64, &bytes) == 0;
  const ssize_t got = sized ? ::pread(fd, block.data(), block.size(), 0) : -1;
  ::close(fd);
  if (!sized || got != static_cast<ssize_t>(block.size())) {
    return {false,
            "a block device whose size or first block cannot be read: sluice will not "
            "start"};
  }
  const uint64_t slots = raw_slots(bytes, cfg.chunk_bytes);
  const std::string size = fmt::format("{} MiB, {} chunk slots", bytes >> 20, slots);
  if (slots < 2) {
    return {false, fmt::format("a block device of {}: too small for the header and two chunks; "
                               "sluice will not start",
                               size)};
  }
  const RawHeaderRead h = decode_raw_header(block.data(), block.size());
  switch (h.state) {
    case RawHeaderState::kValid:
      if (h.header.chunk_bytes != cfg.chunk_bytes) {
        return {false, fmt::format("a block device holding a store of {} B chunks, not {}: sluice "
                                   "will not start",
                                   h.header.chunk_bytes, cfg.chunk_bytes)};
      }
      return {true, fmt::format("a block device ({}) holding this store: the ring goes on", size)};
    case RawHeaderState::kForeign:
      if (cfg.format) {
        return {true, fmt::format("a block device ({}) without a store: formatted at start "
                                  "(capture.format: true)",
                                  size)};
      }
      return {false, fmt::format("a block device ({}) holding no store (foreign data?): sluice "
                                 "will not overwrite it unless capture.format: true",
                                 size)};
    case RawHeaderState::kDamaged:
    case RawHeaderState::kVersion:
      break;
  }
  return {false, fmt::format("a block device ({}) whose store header is unusable ({}): sluice "
                             "will not start",
                             size, h.why)};
}

}  // namespace sluice::capture
