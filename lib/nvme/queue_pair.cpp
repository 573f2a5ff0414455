// The queue pair: a request pool, the overflow queue (FIFO) and the io_uring that does the I/O.

#include "lib/nvme/queue_pair.h"

#include <errno.h>
#include <liburing.h>
#include <linux/nvme_ioctl.h>
#include <sched.h>
#include <sys/uio.h>
#include <sys/utsname.h>

#include "lib/nvme/passthru.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace sluice::nvme {

namespace {

constexpr unsigned kMaxDepth = 4096;
// Completions taken from the ring at once: a stack array, so reaping never allocates.
constexpr unsigned kReapBatch = 64;
// Polled passthrough completions (IORING_SETUP_IOPOLL on /dev/ng*) crash kernels before this
// one: Debian 12's 6.1 oopses in bio_poll (a general protection fault polling a bio that has
// completed) within seconds of polled writes, with or without registered buffers. Linux 6.5
// moved uring passthrough polling to the request ("nvme: improved uring polling").
constexpr int kPassthruPollKernel[2] = {6, 5};

// Empty when this kernel polls passthrough completions safely, else why not.
std::string passthru_poll_refused() {
  utsname u{};
  if (::uname(&u) != 0) return "uname failed";
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return "unknown kernel version";
  if (major > kPassthruPollKernel[0] ||
      (major == kPassthruPollKernel[0] && minor >= kPassthruPollKernel[1]))
    return {};
  return fmt::format(
      "IORING_SETUP_IOPOLL not used: polled NVMe passthrough crashes kernels before {}.{} "
      "(bio_poll), this is {}",
      kPassthruPollKernel[0], kPassthruPollKernel[1], u.release);
}

// Registered buffer piece for passthrough until a namespace says less (register_buffers):
// 127 pages of 4 KiB, the nvme driver's max_segments.
constexpr size_t kPassthruFixedPiece = 127 * 4096;

enum class Op : uint8_t { kWrite, kFsync };

// Per fixed-file slot: what is registered there.
struct Slot {
  int fd = -1;  // -1: free
  bool ns = false;
  uint32_t nsid = 0;
  uint32_t lba_shift = 0;
  uint32_t max_transfer = 0;
  uint64_t size = 0;  // bytes
};

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

// A request lives in the pool for the queue pair's lifetime; `next` links it into either the
// free list or the overflow queue, so moving it between them never allocates.
struct Request {
  Request* next = nullptr;
  Callback cb = nullptr;
  void* arg = nullptr;
  const void* buf = nullptr;
  uint64_t offset = 0;
  uint32_t len = 0;
  int file = -1;
  int buf_index = -1;  // registered buffer holding [buf, buf + len), or -1
  Op op = Op::kWrite;
  bool fua = false;
  // Namespace writes go in as several commands: bytes given a submission entry so far, and
  // commands in the kernel. The request completes when all of it is issued and none is out.
  uint32_t issued = 0;
  uint32_t outstanding = 0;
  int status = 0;
  uint16_t nvme_status = 0;
};

struct QueuePair::Impl {
  io_uring ring{};
  bool ring_ready = false;
  unsigned depth = 0;
  std::vector<Request> pool;
  Request* free_head = nullptr;
  unsigned free_count = 0;
  Request* overflow_head = nullptr;
  Request* overflow_tail = nullptr;
  unsigned queued = 0;
  // Requests given a submission entry: prepared in the SQ or already in the kernel. Kept at
  // or below depth, which also keeps the CQ (twice the SQ) from ever overflowing.
  unsigned in_flight = 0;
  std::vector<Slot> slots;      // per fixed-file slot
  std::vector<Region> regions;  // as given; registered as `buffers`
  std::vector<iovec> buffers;
  size_t piece = 0;  // passthrough: regions are registered in pieces this large
  bool buffers_registered = false;
  uint8_t sqe_flags = IOSQE_FIXED_FILE;
  bool passthru = false;
  bool iopoll = false;
  std::string completions = "interrupts";
  Stats stats;

  ~Impl() {
    if (ring_ready) io_uring_queue_exit(&ring);
  }

  // Registers the regions, in pieces of at most piece bytes (0: whole). Linux 6.1 fails
  // (EINVAL) a passthrough command on a registered buffer of more pages than the queue's
  // max_segments, whatever the command's length: passthrough regions go in pieces no larger
  // than the namespace's maximum transfer (which open_passthru keeps within max_segments
  // pages). A write starting at a region's base then splits exactly on piece bounds; a part
  // across two pieces finds none (find_buffer) and goes by address. Not fatal when it fails
  // (usually RLIMIT_MEMLOCK): plain writes from the same memory still work.
  void register_buffers(size_t new_piece) noexcept {
    if (regions.empty()) return;
    if (buffers_registered) (void)io_uring_unregister_buffers(&ring);
    piece = new_piece;
    buffers.clear();
    for (const Region& r : regions) {
      const size_t step = piece == 0 ? r.len : piece;
      for (size_t off = 0; off < r.len; off += step)
        buffers.push_back(iovec{static_cast<uint8_t*>(r.base) + off, std::min(step, r.len - off)});
    }
    buffers_registered = io_uring_register_buffers(&ring, buffers.data(),
                                                   static_cast<unsigned>(buffers.size())) == 0;
  }

  Request* take() noexcept {
    Request* r = free_head;
    if (r == nullptr) return nullptr;
    free_head = r->next;
    r->next = nullptr;
    --free_count;
    return r;
  }

  void give_back(Request* r) noexcept {
    r->next = free_head;
    free_head = r;
    ++free_count;
  }

  int find_buffer(const void* buf, uint32_t len) const noexcept {
    if (!buffers_registered) return -1;
    const auto p = reinterpret_cast<uintptr_t>(buf);
    for (size_t i = 0; i < buffers.size(); ++i) {
      const auto base = reinterpret_cast<uintptr_t>(buffers[i].iov_base);
      if (p >= base && p - base <= buffers[i].iov_len && len <= buffers[i].iov_len - (p - base))
        return static_cast<int>(i);
    }
    return -1;
  }

  // Gives r its submission entries as far as the depth allows; false while some of it must
  // wait (r keeps what it was given).
  bool try_prepare(Request* r) noexcept {
    const Slot& slot = slots[static_cast<size_t>(r->file)];
    if (slot.ns) return prepare_nvme(r, slot);
    if (in_flight >= depth) return false;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == nullptr) return false;
    if (r->op == Op::kFsync) {
      io_uring_prep_fsync(sqe, r->file, IORING_FSYNC_DATASYNC);
    } else if (r->buf_index >= 0) {
      io_uring_prep_write_fixed(sqe, r->file, r->buf, r->len, r->offset, r->buf_index);
      ++stats.fixed_writes;
    } else {
      io_uring_prep_write(sqe, r->file, r->buf, r->len, r->offset);
    }
    if (r->fua) sqe->rw_flags = RWF_DSYNC;
    sqe->flags |= sqe_flags;
    io_uring_sqe_set_data(sqe, r);
    r->issued = r->len;
    ++r->outstanding;
    ++in_flight;
    return true;
  }

  // NVMe Write (split at the maximum transfer) or Flush as IORING_OP_URING_CMD. The SQE is
  // 128 bytes: the command lives in its second half (sqe->cmd), which liburing 2.3 has no
  // helper for.
  bool prepare_nvme(Request* r, const Slot& slot) noexcept {
    const bool flush = r->op == Op::kFsync;
    while (flush ? r->outstanding == 0 && r->issued == 0 : r->issued < r->len) {
      if (in_flight >= depth) return false;
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      if (sqe == nullptr) return false;
      std::memset(sqe, 0, 2 * sizeof(io_uring_sqe));
      sqe->opcode = IORING_OP_URING_CMD;
      sqe->fd = r->file;
      sqe->flags = sqe_flags;
      sqe->cmd_op = NVME_URING_CMD_IO;
      auto* cmd = reinterpret_cast<nvme_uring_cmd*>(sqe->cmd);
      cmd->nsid = slot.nsid;
      if (flush) {
        cmd->opcode = kNvmeCmdFlush;
        r->issued = 1;  // marks the one command as given
      } else {
        const uint32_t part = std::min(r->len - r->issued, slot.max_transfer);
        const uint64_t slba = (r->offset + r->issued) >> slot.lba_shift;
        cmd->opcode = kNvmeCmdWrite;
        cmd->addr = reinterpret_cast<uintptr_t>(static_cast<const uint8_t*>(r->buf) + r->issued);
        cmd->data_len = part;
        cmd->cdw10 = static_cast<uint32_t>(slba);
        cmd->cdw11 = static_cast<uint32_t>(slba >> 32);
        cmd->cdw12 = ((part >> slot.lba_shift) - 1) | (r->fua ? kNvmeFua : 0u);
        // Each part uses the registered piece it lies in (regions are registered in pieces
        // for passthrough, see create()); a part across two pieces goes by address.
        const int index =
            r->buf_index < 0 ? -1 : find_buffer(reinterpret_cast<const void*>(cmd->addr), part);
        if (index >= 0) {
          sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
          sqe->buf_index = static_cast<uint16_t>(index);
        }
        if (r->issued == 0) {
          if (index >= 0) ++stats.fixed_writes;
          if (part < r->len) ++stats.split_writes;
        }
        r->issued += part;
      }
      io_uring_sqe_set_data(sqe, r);
      ++r->outstanding;
      ++in_flight;
    }
    return true;
  }

  // New requests go straight into the SQ only while nobody waits ahead of them, so the
  // overflow queue stays FIFO. Also safe from a callback: reaping has already let go of the
  // ring, and the entry is submitted by the next poll().
  void enqueue(Request* r) noexcept {
    if (overflow_head == nullptr && try_prepare(r)) return;
    if (overflow_tail == nullptr) {
      overflow_head = r;
    } else {
      overflow_tail->next = r;
    }
    overflow_tail = r;
    ++queued;
    ++stats.overflowed;
  }

  void refill() noexcept {
    while (overflow_head != nullptr && try_prepare(overflow_head)) {
      Request* r = overflow_head;
      overflow_head = r->next;
      if (overflow_head == nullptr) overflow_tail = nullptr;
      r->next = nullptr;
      --queued;
    }
  }

  void submit() noexcept {
    if (io_uring_sq_ready(&ring) == 0) return;
    // A failed submit (EAGAIN, EINTR) leaves the entries in the SQ; the next poll retries.
    // On a polled ring the submit also polls for completions.
    const int n = io_uring_submit(&ring);
    if (n > 0) stats.submitted += static_cast<unsigned>(n);
  }

  // A polled ring has no interrupts to post completions: poll the device once (does not
  // wait) when nothing was submitted to do it.
  void poll_device() noexcept {
    if (iopoll && in_flight > 0 && io_uring_cq_ready(&ring) == 0) (void)io_uring_get_events(&ring);
  }

  unsigned reap(unsigned max) noexcept {
    struct Done {
      Callback cb;
      void* arg;
      Completion c;
    };
    io_uring_cqe* cqes[kReapBatch];
    Done done[kReapBatch];
    unsigned total = 0;
    while (max == 0 || total < max) {
      const unsigned want = max == 0 ? kReapBatch : std::min(kReapBatch, max - total);
      const unsigned n = io_uring_peek_batch_cqe(&ring, cqes, want);
      if (n == 0) break;
      unsigned finished = 0;
      for (unsigned i = 0; i < n; ++i) {
        auto* r = static_cast<Request*>(io_uring_cqe_get_data(cqes[i]));
        const int res = cqes[i]->res;
        --in_flight;
        --r->outstanding;
        if (slots[static_cast<size_t>(r->file)].ns) {
          // Passthrough: 0 is success, > 0 the NVMe status, < 0 -errno.
          if (res != 0 && r->status == 0) {
            r->status = res < 0 ? res : -EIO;
            if (res > 0) r->nvme_status = static_cast<uint16_t>(res);
          }
          if (r->outstanding > 0 || r->issued < (r->op == Op::kFsync ? 1u : r->len)) continue;
        }
        Completion c;
        if (slots[static_cast<size_t>(r->file)].ns) {
          c.status = r->status;
          c.nvme_status = r->nvme_status;
          if (c.status == 0 && r->op == Op::kWrite) c.bytes = r->len;
        } else if (res < 0) {
          c.status = res;
        } else if (r->op == Op::kWrite) {
          c.bytes = static_cast<uint32_t>(res);
          if (c.bytes != r->len) c.status = -EIO;
        }
        if (c.status != 0) ++stats.errors;
        done[finished++] = Done{r->cb, r->arg, c};
        // Back in the pool before the callback runs, so the callback can reuse it.
        give_back(r);
      }
      io_uring_cq_advance(&ring, n);
      stats.completed += finished;
      total += finished;
      // The ring is released before any callback runs: a callback may write() or flush().
      for (unsigned i = 0; i < finished; ++i) done[i].cb(done[i].arg, done[i].c);
    }
    return total;
  }
};

Result<std::unique_ptr<QueuePair>> QueuePair::create(const QueuePairOptions& opt) {
  if (opt.depth < 1 || opt.depth > kMaxDepth)
    return Error{
        fmt::format("queue pair depth {} is out of range: use 1..{}", opt.depth, kMaxDepth)};
  if (opt.files < 1) return Error{"queue pair needs at least 1 file slot (files: 0)"};
  const unsigned requests = opt.requests == 0 ? 4 * opt.depth : opt.requests;

  std::unique_ptr<QueuePair> qp(new QueuePair());
  qp->impl_ = std::make_unique<Impl>();
  Impl& m = *qp->impl_;
  m.depth = opt.depth;
  if (opt.async) m.sqe_flags |= IOSQE_ASYNC;

  m.passthru = opt.passthru;
  // NVMe commands are 64 bytes and their completions carry 16 more: passthrough needs the
  // big entries (kernel 5.19+).
  const unsigned big = opt.passthru ? IORING_SETUP_SQE128 | IORING_SETUP_CQE32 : 0;
  bool want_poll = opt.passthru && opt.iopoll;
  if (want_poll) {
    if (auto why = passthru_poll_refused(); !why.empty()) {
      want_poll = false;
      m.completions = "interrupts (" + why + ")";
    }
  }
  io_uring_params params{};
  // SUBMIT_ALL: one bad entry does not hold back the rest of the batch (kernel 5.18+).
  params.flags = IORING_SETUP_SUBMIT_ALL | big | (want_poll ? IORING_SETUP_IOPOLL : 0);
  int rc = io_uring_queue_init_params(opt.depth, &m.ring, &params);
  if (rc < 0 && want_poll) {
    m.completions =
        fmt::format("interrupts (the kernel refused IORING_SETUP_IOPOLL: {})", errno_text(-rc));
    params = io_uring_params{};
    params.flags = IORING_SETUP_SUBMIT_ALL | big;
    rc = io_uring_queue_init_params(opt.depth, &m.ring, &params);
  } else if (rc == 0 && want_poll) {
    m.iopoll = true;
    m.completions = "polled (IORING_SETUP_IOPOLL)";
  }
  if (rc == -EINVAL) {
    params = io_uring_params{};
    params.flags = big;
    rc = io_uring_queue_init_params(opt.depth, &m.ring, &params);
  }
  if (rc == -EINVAL && opt.passthru)
    return Error{
        "io_uring refused 128-byte submission entries (IORING_SETUP_SQE128): NVMe "
        "passthrough needs kernel 5.19 or later"};
  if (rc < 0) {
    auto why = uring_available();
    return Error{fmt::format("io_uring_queue_init(depth {}) failed: {}{}", opt.depth,
                             errno_text(-rc), why ? "" : "; " + why.error())};
  }
  m.ring_ready = true;

  m.slots.assign(opt.files, Slot{});
  rc = io_uring_register_files_sparse(&m.ring, opt.files);
  if (rc < 0) {
    std::vector<int> none(opt.files, -1);
    rc = io_uring_register_files(&m.ring, none.data(), opt.files);
  }
  if (rc < 0)
    return Error{fmt::format(
        "io_uring cannot register {} file slots: {} (raise the open-files limit, ulimit -n, "
        "or lower the slot count)",
        opt.files, errno_text(-rc))};

  m.regions = opt.buffers;
  m.register_buffers(opt.passthru ? kPassthruFixedPiece : 0);

  m.pool.resize(requests);
  for (Request& r : m.pool) m.give_back(&r);
  return qp;
}

QueuePair::~QueuePair() {
  if (impl_ && impl_->ring_ready) drain();
}

namespace {

Result<int> register_slot(io_uring& ring, std::vector<Slot>& slots, const Slot& s) {
  auto it = std::find_if(slots.begin(), slots.end(), [](const Slot& x) { return x.fd < 0; });
  if (it == slots.end())
    return Error{fmt::format("all {} queue pair file slots are in use: raise files", slots.size())};
  const int slot = static_cast<int>(it - slots.begin());
  int fd = s.fd;
  const int rc = io_uring_register_files_update(&ring, static_cast<unsigned>(slot), &fd, 1);
  if (rc < 0)
    return Error{
        fmt::format("io_uring cannot register fd {} (slot {}): {}", fd, slot, errno_text(-rc))};
  *it = s;
  return slot;
}

}  // namespace

Result<int> QueuePair::add_file(int fd) {
  Slot s;
  s.fd = fd;
  return register_slot(impl_->ring, impl_->slots, s);
}

Result<int> QueuePair::add_namespace(const Namespace& ns) {
  Impl& m = *impl_;
  if (!m.passthru)
    return Error{fmt::format(
        "{}: an NVMe namespace needs a passthrough queue pair (QueuePairOptions::passthru)",
        ns.path)};
  if (ns.fd < 0 || ns.lba_size == 0 || ns.max_transfer < ns.lba_size)
    return Error{fmt::format("{}: not an opened namespace (use open_passthru)", ns.path)};
  // Registered pieces no larger than this namespace's transfer (see register_buffers).
  if (!m.regions.empty() && m.piece > ns.max_transfer) {
    if (m.in_flight != 0 || m.queued != 0)
      return Error{fmt::format(
          "{}: add namespaces before writing (registered buffers are re-registered)", ns.path)};
    m.register_buffers(ns.max_transfer);
  }
  Slot s;
  s.fd = ns.fd;
  s.ns = true;
  s.nsid = ns.nsid;
  s.lba_shift = ns.lba_shift;
  s.max_transfer = ns.max_transfer;
  s.size = ns.size;
  return register_slot(m.ring, m.slots, s);
}

void QueuePair::remove_file(int file) {
  Impl& m = *impl_;
  if (file < 0 || static_cast<size_t>(file) >= m.slots.size() || m.slots[file].fd < 0) return;
  int none = -1;
  (void)io_uring_register_files_update(&m.ring, static_cast<unsigned>(file), &none, 1);
  m.slots[file] = Slot{};
}

int QueuePair::write(int file, const void* buf, uint32_t len, uint64_t offset, Callback cb,
                     void* arg, unsigned flags) noexcept {
  Impl& m = *impl_;
  if (file < 0 || static_cast<size_t>(file) >= m.slots.size()) return -EBADF;
  if (const Slot& s = m.slots[static_cast<size_t>(file)]; s.ns) {
    const uint64_t mask = (uint64_t{1} << s.lba_shift) - 1;
    if (len == 0 || ((offset | len) & mask) != 0 || offset > s.size || len > s.size - offset)
      return -EINVAL;
  }
  Request* r = m.take();
  if (r == nullptr) return -EAGAIN;
  r->op = Op::kWrite;
  r->fua = (flags & kWriteFua) != 0;
  r->issued = 0;
  r->outstanding = 0;
  r->status = 0;
  r->nvme_status = 0;
  r->file = file;
  r->buf = buf;
  r->len = len;
  r->offset = offset;
  r->cb = cb;
  r->arg = arg;
  // A namespace write looks up its registered piece per command (prepare_nvme).
  r->buf_index = m.slots[static_cast<size_t>(file)].ns ? (m.buffers_registered ? 0 : -1)
                                                       : m.find_buffer(buf, len);
  m.enqueue(r);
  return 0;
}

int QueuePair::flush(int file, Callback cb, void* arg) noexcept {
  Impl& m = *impl_;
  if (file < 0 || static_cast<size_t>(file) >= m.slots.size()) return -EBADF;
  Request* r = m.take();
  if (r == nullptr) return -EAGAIN;
  r->op = Op::kFsync;
  r->fua = false;
  r->issued = 0;
  r->outstanding = 0;
  r->status = 0;
  r->nvme_status = 0;
  r->file = file;
  r->buf = nullptr;
  r->len = 0;
  r->offset = 0;
  r->cb = cb;
  r->arg = arg;
  r->buf_index = -1;
  m.enqueue(r);
  return 0;
}

unsigned QueuePair::poll(unsigned max) noexcept {
  Impl& m = *impl_;
  m.refill();
  m.submit();
  m.poll_device();
  return m.reap(max);
}

unsigned QueuePair::wait(unsigned timeout_us) noexcept {
  Impl& m = *impl_;
  unsigned got = poll();
  if (got != 0 || m.in_flight == 0 || io_uring_sq_ready(&m.ring) > 0) return got;
  __kernel_timespec ts{};
  ts.tv_sec = timeout_us / 1'000'000;
  ts.tv_nsec = static_cast<long long>(timeout_us % 1'000'000) * 1000;
  io_uring_cqe* cqe = nullptr;
  (void)io_uring_wait_cqe_timeout(&m.ring, &cqe, &ts);  // -ETIME or EINTR: reap what there is
  return m.reap(0);
}

void QueuePair::drain() noexcept {
  Impl& m = *impl_;
  while (m.in_flight > 0 || m.queued > 0) {
    poll();
    if (m.in_flight == 0 && m.queued == 0) break;
    // Entries still in the SQ (a callback queued them, or submit failed) are submitted by
    // the next poll; waiting now could wait for a completion that nobody asked for.
    if (io_uring_sq_ready(&m.ring) > 0) {
      sched_yield();
      continue;
    }
    if (m.in_flight == 0) continue;
    io_uring_cqe* cqe = nullptr;
    (void)io_uring_wait_cqe(&m.ring, &cqe);  // EINTR: just loop
  }
}

unsigned QueuePair::depth() const noexcept {
  return impl_->depth;
}
unsigned QueuePair::in_flight() const noexcept {
  return impl_->in_flight;
}
unsigned QueuePair::queued() const noexcept {
  return impl_->queued;
}
unsigned QueuePair::free_requests() const noexcept {
  return impl_->free_count;
}
bool QueuePair::registered_buffers() const noexcept {
  return impl_->buffers_registered;
}
const std::string& QueuePair::completions() const noexcept {
  return impl_->completions;
}
bool QueuePair::polled() const noexcept {
  return impl_->iopoll;
}
const QueuePair::Stats& QueuePair::stats() const noexcept {
  return impl_->stats;
}

}  // namespace sluice::nvme
