#include "lib/capture/raw_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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

// The device under the store, for the control path: a block device (pread, pwrite, BLKZEROOUT,
// fdatasync) or an NVMe namespace (synchronous passthrough commands).
struct DeviceIo {
  int fd = -1;
  const nvme::Namespace* ns = nullptr;  // set: the namespace
  std::string path;

  Result<void> read(uint8_t* buf, size_t len, uint64_t off) const {
    if (ns != nullptr) return nvme::read_sync(*ns, buf, len, off);
    if (!read_full(fd, buf, len, off))
      return Error{fmt::format("cannot read {}: {}", path, std::strerror(errno))};
    return {};
  }
  // Durable when it returns too: the header written after it must not outlive the zeroes.
  Result<void> zero(uint64_t off, uint64_t len) const {
    if (ns != nullptr) {
      if (auto z = nvme::zero_sync(*ns, off, len); !z) return z;
      return nvme::flush_sync(*ns);
    }
    uint64_t range[2] = {off, len};
    if (ioctl(fd, BLKZEROOUT, range) != 0)
      return Error{fmt::format("cannot zero {} (BLKZEROOUT): {}", path, std::strerror(errno))};
    return {};
  }
  // Durable when it returns: NVMe FUA, or pwrite and fdatasync.
  Result<void> write_durable(const uint8_t* buf, size_t len, uint64_t off) const {
    if (ns != nullptr) return nvme::write_sync(*ns, buf, len, off, true);
    if (pwrite(fd, buf, len, static_cast<off_t>(off)) != static_cast<ssize_t>(len) ||
        fdatasync(fd) != 0)
      return Error{fmt::format("cannot write {}: {}", path, std::strerror(errno))};
    return {};
  }
};

// A new store: the data region zeroed first (chunks of an earlier store with the same chunk
// size would otherwise look like this one's to the binary search), then the header, durable.
Result<RawHeader> format(const DeviceIo& io, uint64_t chunk, uint64_t slots) {
  RawHeader h;
  h.chunk_bytes = chunk;
  h.slots = slots;
  std::random_device rd;
  h.store_id = (uint64_t{rd()} << 32) ^ rd();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  h.created_ns = uint64_t(ts.tv_sec) * 1'000'000'000 + uint64_t(ts.tv_nsec);
  if (auto z = io.zero(h.data_offset, slots * chunk); !z)
    return Error{"capture.format: " + z.error()};
  Buffer b = aligned(kRawHeaderBytes);
  if (!b) return Error{"capture: out of memory"};
  encode_raw_header(h, b.get());
  if (auto w = io.write_durable(b.get(), kRawHeaderBytes, 0); !w)
    return Error{"capture.format: the store header: " + w.error()};
  return h;
}

const char* file_kind(mode_t mode) {
  return S_ISREG(mode)   ? "a regular file"
         : S_ISDIR(mode) ? "a directory"
         : S_ISBLK(mode) ? "a block device"
         : S_ISCHR(mode) ? "a character device"
                         : "neither a file nor a device";
}

// kPassthru: the namespace's block device held with O_EXCL while sluice writes under it, so a
// mount or another program cannot use it meanwhile; and an flock on the char device against a
// second sluice. A namespace with no block device (a format the block layer does not take)
// has only the flock.
Result<int> claim_namespace(const nvme::Namespace& ns) {
  if (flock(ns.fd, LOCK_EX | LOCK_NB) != 0) {
    return Error{
        fmt::format("{} is in use by another program (flock: {}): one sluice per "
                    "namespace",
                    ns.path, std::strerror(errno))};
  }
  const std::string blk = nvme::block_device_of(ns.path);
  if (blk.empty()) return -1;
  const int fd = ::open(blk.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
  if (fd >= 0) return fd;
  if (errno == ENOENT || errno == ENXIO) return -1;
  if (errno == EBUSY) {
    return Error{
        fmt::format("{} is busy: its block device {} is mounted or held by another "
                    "program (findmnt {}; lsblk); sluice will not write under it",
                    ns.path, blk, blk)};
  }
  return Error{fmt::format("cannot claim {} (the block device of {}): {}", blk, ns.path,
                           std::strerror(errno))};
}

}  // namespace

Result<RawKind> raw_kind(const config::CaptureConfig& cfg) {
  const std::string where = cfg.path_mark.str() + ": capture.path: ";
  struct stat st {};
  if (stat(cfg.path.c_str(), &st) != 0) {
    if (cfg.backend == config::CaptureBackend::kPassthru) {
      return Error{where + fmt::format("{}: {}: capture.backend: passthru needs an NVMe "
                                       "namespace's generic char device /dev/ngXnY (kernel 5.19+ "
                                       "makes one per namespace: ls /dev/ng*)",
                                       cfg.path, std::strerror(errno))};
    }
    return Error{where + fmt::format("{}: {}; create it (mkdir -p {}) or point capture.path at "
                                     "an existing directory",
                                     cfg.path, std::strerror(errno), cfg.path)};
  }
  switch (cfg.backend) {
    case config::CaptureBackend::kPassthru:
      if (!S_ISCHR(st.st_mode)) {
        return Error{cfg.backend_mark.str() +
                     fmt::format(": capture.backend: passthru: capture.path {} is {}, not an "
                                 "NVMe device: passthrough needs a namespace's generic char "
                                 "device /dev/ngXnY (kernel 5.19+); for a directory or a block "
                                 "device use backend: auto",
                                 cfg.path, file_kind(st.st_mode))};
      }
      return RawKind::kPassthru;
    case config::CaptureBackend::kUring:
      if (S_ISCHR(st.st_mode)) {
        return Error{where + fmt::format("{} is a character device: capture.backend: uring "
                                         "writes a directory or a block device; for an NVMe "
                                         "generic device /dev/ngXnY use backend: passthru or auto",
                                         cfg.path)};
      }
      break;
    case config::CaptureBackend::kAuto:
      if (S_ISCHR(st.st_mode)) return RawKind::kPassthru;
      break;
  }
  if (S_ISBLK(st.st_mode)) return RawKind::kBlock;
  if (S_ISDIR(st.st_mode)) return RawKind::kDirectory;
  return Error{where + fmt::format("{} is not a directory or a device ({}); expected the store's "
                                   "directory, a block device for the raw-device store, or an "
                                   "NVMe generic char device /dev/ngXnY (passthrough)",
                                   cfg.path, file_kind(st.st_mode))};
}

void close_raw_device(RawDevice& dev) noexcept {
  if (dev.fd >= 0) ::close(dev.fd);
  dev.fd = -1;
  dev.ns.fd = -1;
  if (dev.claim_fd >= 0) ::close(dev.claim_fd);
  dev.claim_fd = -1;
}

Result<void> sync_raw_device(const RawDevice& dev) {
  if (dev.kind == RawKind::kPassthru) return nvme::flush_sync(dev.ns);
  if (fdatasync(dev.fd) != 0) return Error{fmt::format("fdatasync: {}", std::strerror(errno))};
  return {};
}

Result<RawDevice> open_raw_device(const config::CaptureConfig& cfg, RawKind kind) {
  const std::string where = cfg.path_mark.str() + ": capture.path: ";
  RawDevice dev;
  dev.kind = kind;
  uint64_t size = 0;
  uint32_t block = 0;
  if (kind == RawKind::kPassthru) {
    auto ns = nvme::open_passthru(cfg.path);
    if (!ns) {
      return Error{where +
                   (cfg.backend == config::CaptureBackend::kPassthru
                        ? "capture.backend: passthru: "
                        : "capture.backend: auto chose NVMe passthrough for a char device: ") +
                   ns.error()};
    }
    dev.ns = *ns;
    dev.fd = ns->fd;
    size = ns->size;
    block = ns->lba_size;
    auto claim = claim_namespace(dev.ns);
    if (!claim) {
      close_raw_device(dev);
      return Error{where + claim.error()};
    }
    dev.claim_fd = *claim;
  } else {
    // O_EXCL on a block device: refused while it is mounted or held by another program.
    auto t = nvme::open_target(cfg.path, O_RDWR | O_EXCL, 0, false);
    if (!t) return Error{where + t.error()};
    dev.fd = t->fd;
    size = t->size;
    block = t->block;
  }
  const DeviceIo io{dev.fd, kind == RawKind::kPassthru ? &dev.ns : nullptr, cfg.path};
  auto fail = [&](std::string why) -> Result<RawDevice> {
    close_raw_device(dev);
    return Error{where + std::move(why)};
  };
  if (block > kChunkAlign || kChunkAlign % block != 0) {
    return fail(
        fmt::format("{} has {}-byte logical blocks; the raw store needs blocks of at "
                    "most 4096 bytes",
                    cfg.path, block));
  }
  const uint64_t need = kRawHeaderBytes + 2 * cfg.chunk_bytes;
  if (size < need) {
    return fail(
        fmt::format("{} holds {} bytes, less than the store's header and two chunks "
                    "({} bytes at chunk_bytes {}): use a larger device or smaller "
                    "capture.chunk_bytes",
                    cfg.path, size, need, size_text(cfg.chunk_bytes)));
  }
  Buffer head = aligned(kRawHeaderBytes);
  if (!head) return fail("out of memory");
  if (auto r = io.read(head.get(), kRawHeaderBytes, 0); !r) return fail(r.error());
  const RawHeaderRead r = decode_raw_header(head.get(), kRawHeaderBytes);
  if (r.state != RawHeaderState::kValid) {
    if (!cfg.format) {
      return fail(fmt::format(
          "{} holds no sluice capture store ({}); it is left untouched. To erase the device "
          "and make it a store, add capture.format: true (every byte on it is lost)",
          cfg.path, r.why));
    }
    const uint64_t slots = raw_slots(size, cfg.chunk_bytes);
    auto h = format(io, cfg.chunk_bytes, slots);
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
    if (dev.header.bytes() > size) {
      return fail(
          fmt::format("{} holds {} bytes, less than its store's {} ({} slots): the "
                      "device shrank; restore its size or format it anew",
                      cfg.path, size, dev.header.bytes(), dev.header.slots));
    }
  }

  const RawHeader& h = dev.header;
  Buffer slot = aligned(h.chunk_bytes);
  if (!slot) return fail("out of memory for a chunk buffer");
  std::string read_error;
  const uint64_t window = std::max<uint64_t>(cfg.queue_depth + 2, kMinWindow);
  dev.position = find_ring_position(h.slots, window, [&](uint64_t i) -> std::optional<uint64_t> {
    if (!read_error.empty()) return std::nullopt;
    if (auto r = io.read(slot.get(), h.chunk_bytes, h.slot_offset(i)); !r) {
      read_error = r.error();
      return std::nullopt;
    }
    return slot_seq(slot.get(), h.chunk_bytes, h.slots, i);
  });
  if (!read_error.empty()) return fail("reading the ring: " + read_error);
  const RingPosition& p = dev.position;
  dev.lines.push_back(fmt::format(
      "raw store on {}{}: {} slots of {} ({} MiB), store id {:016x}; {} (read {} slots)", cfg.path,
      kind == RawKind::kPassthru
          ? fmt::format(" (NVMe namespace {}, {}-byte blocks, {} KiB a command)", dev.ns.nsid,
                        dev.ns.lba_size, dev.ns.max_transfer >> 10)
          : std::string(),
      h.slots, size_text(h.chunk_bytes), (h.slots * h.chunk_bytes) >> 20, h.store_id,
      p.empty ? std::string("empty, starting at seq 0")
              : fmt::format("newest chunk seq {} in slot {}, continuing at seq {}", p.newest_seq,
                            p.newest_seq % h.slots, p.next_seq),
      p.probes));
  if (h.bytes() + cfg.chunk_bytes <= size) {
    dev.lines.push_back(
        fmt::format("{} is larger than its store ({} of {} bytes are used); "
                    "the store keeps its size",
                    cfg.path, h.bytes(), size));
  }
  return dev;
}

}  // namespace sluice::capture

namespace sluice::capture {

RawDeviceState describe_raw_device(const config::CaptureConfig& cfg) {
  uint64_t bytes = 0;
  std::vector<uint8_t> block(kRawHeaderBytes);
  const char* what = "a block device";
  struct stat st {};
  if (stat(cfg.path.c_str(), &st) == 0 && S_ISCHR(st.st_mode)) {
    what = "an NVMe namespace";
    auto size = nvme::read_prefix(cfg.path, block.data(), kRawHeaderBytes);
    if (!size) return {false, size.error() + ": sluice will not start"};
    bytes = *size;
  } else {
    const int fd = ::open(cfg.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return {false, fmt::format("a block device sluice cannot open ({}): sluice will not start",
                                 std::strerror(errno))};
    }
    const bool sized = ioctl(fd, BLKGETSIZE64, &bytes) == 0;
    const ssize_t got = sized ? ::pread(fd, block.data(), block.size(), 0) : -1;
    ::close(fd);
    if (!sized || got != static_cast<ssize_t>(block.size())) {
      return {false,
              "a block device whose size or first block cannot be read: sluice will not "
              "start"};
    }
  }
  const uint64_t slots = raw_slots(bytes, cfg.chunk_bytes);
  const std::string size = fmt::format("{} MiB, {} chunk slots", bytes >> 20, slots);
  if (slots < 2) {
    return {false, fmt::format("{} of {}: too small for the header and two chunks; "
                               "sluice will not start",
                               what, size)};
  }
  const RawHeaderRead h = decode_raw_header(block.data(), block.size());
  switch (h.state) {
    case RawHeaderState::kValid:
      if (h.header.chunk_bytes != cfg.chunk_bytes) {
        return {false, fmt::format("{} holding a store of {} B chunks, not {}: sluice "
                                   "will not start",
                                   what, h.header.chunk_bytes, cfg.chunk_bytes)};
      }
      return {true, fmt::format("{} ({}) holding this store: the ring goes on", what, size)};
    case RawHeaderState::kForeign:
      if (cfg.format) {
        return {true, fmt::format("{} ({}) without a store: formatted at start "
                                  "(capture.format: true)",
                                  what, size)};
      }
      return {false, fmt::format("{} ({}) holding no store (foreign data?): sluice "
                                 "will not overwrite it unless capture.format: true",
                                 what, size)};
    case RawHeaderState::kDamaged:
    case RawHeaderState::kVersion:
      break;
  }
  return {false, fmt::format("{} ({}) whose store header is unusable ({}): sluice "
                             "will not start",
                             what, size, h.why)};
}

}  // namespace sluice::capture
