// The queue pair: a request pool, the overflow queue (FIFO) and the io_uring that does the I/O.

#include "lib/nvme/queue_pair.h"

#include <errno.h>
#include <liburing.h>
#include <sched.h>
#include <sys/uio.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace sluice::nvme {

namespace {

constexpr unsigned kMaxDepth = 4096;
// Completions taken from the ring at once: a stack array, so reaping never allocates.
constexpr unsigned kReapBatch = 64;

enum class Op : uint8_t { kWrite, kFsync };

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
  std::vector<int> file_fds;  // per fixed-file slot: the registered fd, or -1 when free
  std::vector<iovec> buffers;
  bool buffers_registered = false;
  uint8_t sqe_flags = IOSQE_FIXED_FILE;
  Stats stats;

  ~Impl() {
    if (ring_ready) io_uring_queue_exit(&ring);
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

  // Gives r a submission entry if the depth allows; false when it must wait.
  bool try_prepare(Request* r) noexcept {
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
    sqe->flags |= sqe_flags;
    io_uring_sqe_set_data(sqe, r);
    ++in_flight;
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
    const int n = io_uring_submit(&ring);
    if (n > 0) stats.submitted += static_cast<unsigned>(n);
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
      for (unsigned i = 0; i < n; ++i) {
        auto* r = static_cast<Request*>(io_uring_cqe_get_data(cqes[i]));
        const int res = cqes[i]->res;
        Completion c;
        if (res < 0) {
          c.status = res;
        } else if (r->op == Op::kWrite) {
          c.bytes = static_cast<uint32_t>(res);
          if (c.bytes != r->len) c.status = -EIO;
        }
        if (c.status != 0) ++stats.errors;
        done[i] = Done{r->cb, r->arg, c};
        // Back in the pool before the callback runs, so the callback can reuse it.
        give_back(r);
        --in_flight;
      }
      io_uring_cq_advance(&ring, n);
      stats.completed += n;
      total += n;
      // The ring is released before any callback runs: a callback may write() or flush().
      for (unsigned i = 0; i < n; ++i) done[i].cb(done[i].arg, done[i].c);
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

  io_uring_params params{};
  // SUBMIT_ALL: one bad entry does not hold back the rest of the batch (kernel 5.18+).
  params.flags = IORING_SETUP_SUBMIT_ALL;
  int rc = io_uring_queue_init_params(opt.depth, &m.ring, &params);
  if (rc == -EINVAL) {
    params = io_uring_params{};
    rc = io_uring_queue_init_params(opt.depth, &m.ring, &params);
  }
  if (rc < 0) {
    auto why = uring_available();
    return Error{fmt::format("io_uring_queue_init(depth {}) failed: {}{}", opt.depth,
                             errno_text(-rc), why ? "" : "; " + why.error())};
  }
  m.ring_ready = true;

  m.file_fds.assign(opt.files, -1);
  rc = io_uring_register_files_sparse(&m.ring, opt.files);
  if (rc < 0) rc = io_uring_register_files(&m.ring, m.file_fds.data(), opt.files);
  if (rc < 0)
    return Error{fmt::format(
        "io_uring cannot register {} file slots: {} (raise the open-files limit, ulimit -n, "
        "or lower the slot count)",
        opt.files, errno_text(-rc))};

  if (!opt.buffers.empty()) {
    m.buffers.reserve(opt.buffers.size());
    for (const Region& r : opt.buffers) m.buffers.push_back(iovec{r.base, r.len});
    // Not fatal (usually RLIMIT_MEMLOCK): plain writes from the same memory still work.
    m.buffers_registered = io_uring_register_buffers(&m.ring, m.buffers.data(),
                                                     static_cast<unsigned>(m.buffers.size())) == 0;
  }

  m.pool.resize(requests);
  for (Request& r : m.pool) m.give_back(&r);
  return qp;
}

QueuePair::~QueuePair() {
  if (impl_ && impl_->ring_ready) drain();
}

Result<int> QueuePair::add_file(int fd) {
  Impl& m = *impl_;
  auto it = std::find(m.file_fds.begin(), m.file_fds.end(), -1);
  if (it == m.file_fds.end())
    return Error{
        fmt::format("all {} queue pair file slots are in use: raise files", m.file_fds.size())};
  const int slot = static_cast<int>(it - m.file_fds.begin());
  const int rc = io_uring_register_files_update(&m.ring, static_cast<unsigned>(slot), &fd, 1);
  if (rc < 0)
    return Error{
        fmt::format("io_uring cannot register fd {} (slot {}): {}", fd, slot, errno_text(-rc))};
  *it = fd;
  return slot;
}

void QueuePair::remove_file(int file) {
  Impl& m = *impl_;
  if (file < 0 || static_cast<size_t>(file) >= m.file_fds.size() || m.file_fds[file] < 0) return;
  int none = -1;
  (void)io_uring_register_files_update(&m.ring, static_cast<unsigned>(file), &none, 1);
  m.file_fds[file] = -1;
}

int QueuePair::write(int file, const void* buf, uint32_t len, uint64_t offset, Callback cb,
                     void* arg) noexcept {
  Impl& m = *impl_;
  Request* r = m.take();
  if (r == nullptr) return -EAGAIN;
  r->op = Op::kWrite;
  r->file = file;
  r->buf = buf;
  r->len = len;
  r->offset = offset;
  r->cb = cb;
  r->arg = arg;
  r->buf_index = m.find_buffer(buf, len);
  m.enqueue(r);
  return 0;
}

int QueuePair::flush(int file, Callback cb, void* arg) noexcept {
  Impl& m = *impl_;
  Request* r = m.take();
  if (r == nullptr) return -EAGAIN;
  r->op = Op::kFsync;
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
const QueuePair::Stats& QueuePair::stats() const noexcept {
  return impl_->stats;
}

}  // namespace sluice::nvme
