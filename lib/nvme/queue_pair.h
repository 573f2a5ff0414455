#pragma once
// An SPDK-style I/O queue pair (the shape of spdk_nvme_ns_cmd_write and
// spdk_nvme_qpair_process_completions) over io_uring. DPDK-free, like simd/: plain buffers,
// file descriptors and offsets, so it is tested alone.
//
// One queue pair per lcore, no locks: every call comes from the thread that owns it.
// submit (write, flush) only takes a request from the pool and queues it; nothing reaches the
// kernel until poll(), which moves queued requests into the submission ring up to the hardware
// depth, calls io_uring_submit once, reaps completions and runs their callbacks. Requests
// beyond the depth wait in the overflow queue (FIFO) and go in as earlier ones complete.
//
// A write whose completion is not its full length is an error (-EIO, bytes = what the kernel
// wrote); a negative result is -errno. Callbacks run inside poll() or drain(), never inside
// write() or flush().
//
// Two backends behind the same calls: a registered file (add_file: an O_DIRECT file or block
// device, io_uring reads and writes) or an NVMe namespace (add_namespace: the generic char
// device /dev/ngXnY, real NVMe Write and Flush commands through IORING_OP_URING_CMD, needing
// a queue pair created with passthru). A namespace write longer than the namespace's maximum
// transfer is split into several commands; its callback runs once, when every part has
// completed, and any part failing fails it. depth counts commands, not requests.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/sys/result.h"

namespace sluice::nvme {

struct Completion {
  int status = 0;            // 0: done in full; -errno on failure (-EIO for a short write)
  uint32_t bytes = 0;        // bytes the kernel reported written (0 for a flush; a namespace
                             // write: its length when it succeeded, else 0)
  uint16_t nvme_status = 0;  // a namespace command the device failed: its status field
                             // (status is then -EIO)
};

// write() flags.
// Force unit access: the data is durable when the write completes (NVMe FUA on a namespace,
// RWF_DSYNC on a file).
constexpr unsigned kWriteFua = 1u << 0;

struct Namespace;  // passthru.h

using Callback = void (*)(void* arg, const Completion& c) noexcept;

struct Region {
  void* base = nullptr;
  size_t len = 0;
};

struct QueuePairOptions {
  unsigned depth = 32;    // hardware depth: requests in the kernel at once (1..4096)
  unsigned requests = 0;  // request pool: in flight + overflow; 0 means 4 * depth
  unsigned files = 16;    // registered file slots (io_uring fixed files)
  // Registered (fixed) buffers: a write wholly inside one of them uses IORING_OP_WRITE_FIXED.
  // Registration failing (RLIMIT_MEMLOCK) is not fatal: writes fall back to plain writes and
  // registered_buffers() says so.
  std::vector<Region> buffers;
  // Every request is issued by io_uring's own workers (IOSQE_ASYNC), never inline in the
  // submit: for an owner that must not block, since a filesystem may sleep while it issues a
  // write (ext4 waits on its block map lock for writes into allocated, unwritten space).
  bool async = false;
  // NVMe passthrough (add_namespace): a ring of 128-byte submission and 32-byte completion
  // entries (kernel 5.19+).
  bool passthru = false;
  // With passthru: polled completions (IORING_SETUP_IOPOLL), falling back to interrupts when
  // the kernel refuses or is older than 6.5 (6.1 oopses polling passthrough commands);
  // completions() says which. Worth it only where the nvme driver has poll queues
  // (Namespace::poll_queues): without them a polled ring spins until the interrupt. A polled
  // ring takes namespaces only (no file writes or fsyncs).
  bool iopoll = false;
};

class QueuePair {
 public:
  struct Stats {
    uint64_t submitted = 0;     // requests handed to the kernel
    uint64_t completed = 0;     // completions reaped (success or not)
    uint64_t errors = 0;        // completions with status != 0
    uint64_t overflowed = 0;    // requests that waited in the overflow queue
    uint64_t fixed_writes = 0;  // writes that used a registered buffer (IORING_OP_WRITE_FIXED)
    uint64_t split_writes = 0;  // namespace writes that took more than one command
  };

  static Result<std::unique_ptr<QueuePair>> create(const QueuePairOptions& opt);
  // Drains (waits for everything in flight, running callbacks), then tears the ring down.
  ~QueuePair();
  QueuePair(const QueuePair&) = delete;
  QueuePair& operator=(const QueuePair&) = delete;

  // Registers fd in a free fixed-file slot; returns the slot, used as `file` below.
  Result<int> add_file(int fd);
  // Registers a namespace opened by open_passthru (the queue pair must be passthru); writes
  // and flushes on the returned slot are NVMe commands. ns must outlive the slot's use only
  // for its fd; its geometry is copied.
  Result<int> add_namespace(const Namespace& ns);
  // Frees the slot. Nothing of that file may be queued or in flight (the caller knows).
  void remove_file(int file);

  // Queues a write of len bytes from buf at offset of a registered file. 0, or -EAGAIN when
  // the request pool is empty (nothing was queued: retry after a poll). Never blocks, never
  // enters the kernel. flags: kWriteFua. On a namespace, -EINVAL (nothing queued) when offset
  // or len is not a multiple of the LBA size, len is 0, or the write ends past the namespace
  // (check_range in passthru.h says which, in words).
  int write(int file, const void* buf, uint32_t len, uint64_t offset, Callback cb, void* arg,
            unsigned flags = 0) noexcept;
  // Queues an fdatasync of a registered file (an NVMe Flush on a namespace). It covers the
  // writes of that file that completed before this call; it does not wait for writes still
  // in flight.
  int flush(int file, Callback cb, void* arg) noexcept;

  // Submits what is queued (one io_uring_submit), reaps up to max completions (0: all that
  // are ready), runs their callbacks; returns how many it reaped. Never blocks.
  unsigned poll(unsigned max = 0) noexcept;
  // poll(), and when that reaped nothing while requests are in flight, waits in the kernel up
  // to timeout_us for one to complete (then reaps). For an owner that has nothing else to do
  // until a request completes: the CPU goes to whoever shares it (io_uring's own workers).
  unsigned wait(unsigned timeout_us) noexcept;
  // Polls, waiting in the kernel, until nothing is queued or in flight.
  void drain() noexcept;

  unsigned depth() const noexcept;
  unsigned in_flight() const noexcept;  // in the kernel
  unsigned queued() const noexcept;     // waiting in the overflow queue
  unsigned free_requests() const noexcept;
  bool registered_buffers() const noexcept;
  // How completions arrive, for the owner to log once: "polled (IORING_SETUP_IOPOLL)",
  // "interrupts", or "interrupts (...why polling was refused)".
  const std::string& completions() const noexcept;
  bool polled() const noexcept;
  const Stats& stats() const noexcept;

 private:
  QueuePair() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A write target opened for the queue pair.
struct Target {
  int fd = -1;
  bool direct = false;        // opened with O_DIRECT
  bool block_device = false;  // a block device (else a regular file)
  uint64_t size = 0;          // bytes (a block device's capacity, a file's length)
  uint32_t block = 4096;      // logical block size writes must be aligned to
};

// Opens path with flags | O_DIRECT (flags: O_WRONLY or O_RDWR, O_CREAT, ...). Where the
// filesystem refuses O_DIRECT (EINVAL) and allow_buffered is set, opens it without O_DIRECT
// (direct = false: the caller says so in its log); otherwise an error naming the fix.
Result<Target> open_target(const std::string& path, int flags, mode_t mode, bool allow_buffered);

// Whether files in dir can be opened with O_DIRECT (creates and removes a probe file).
Result<bool> probe_direct(const std::string& dir);

// Whether this kernel lets the process use io_uring (io_uring_disabled, seccomp), with why
// not in the error.
Result<void> uring_available();

}  // namespace sluice::nvme
