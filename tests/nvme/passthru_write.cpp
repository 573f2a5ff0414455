// Runs inside tools/nvme-vm: writes a known pattern onto an NVMe namespace through the
// passthrough queue pair, at queue depths 1, 8 and 32, one region each, then flushes. The
// host (test_nvme_vm.py) reads the image file behind the emulated controller and checks
// every byte.
//
//   passthru_write DEVICE MIB_PER_DEPTH SEED
//
// Region d (d = 0, 1, 2 for depths 1, 8, 32) starts at d * (MIB_PER_DEPTH + 1) MiB: a MiB
// gap after each region stays zero, so a misplaced write shows. Each 4 KiB block at byte
// offset `off` holds off (u64 LE), the seed (u64 LE), then bytes (k + j) & 0xff for
// j = 16..4095 with k = ((off >> 12) * 7 + seed) & 0xff. Depths 1 and 32 ask for polled
// completions (where the driver has poll queues; the queue pair declines on kernels before
// 6.5) and use registered buffers (IORING_URING_CMD_FIXED), depth 8 interrupts and plain
// buffers; the first write of each region goes with FUA.
//
// Exit 0 when everything completed as expected; 1 with a line saying what did not.

#include <errno.h>
#include <sys/uio.h>
#include <sys/utsname.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lib/nvme/passthru.h"
#include "lib/nvme/queue_pair.h"

namespace {

using sluice::nvme::Completion;
using sluice::nvme::Namespace;
using sluice::nvme::QueuePair;
using sluice::nvme::QueuePairOptions;

constexpr uint32_t kChunk = 1u << 20;  // one write: like a capture chunk
constexpr uint32_t kBlock = 4096;      // the pattern's unit
constexpr unsigned kDepths[] = {1, 8, 32};

int failures = 0;

void fail(const std::string& what) {
  std::printf("FAIL: %s\n", what.c_str());
  ++failures;
}

uint8_t ramp[256 + kBlock];

void stamp(uint8_t* chunk, uint64_t offset, uint64_t seed) {
  for (uint32_t b = 0; b < kChunk; b += kBlock) {
    const uint64_t off = offset + b;
    std::memcpy(chunk + b, &off, 8);
    std::memcpy(chunk + b + 8, &seed, 8);
    const unsigned k = static_cast<unsigned>(((off >> 12) * 7 + seed) & 0xff);
    std::memcpy(chunk + b + 16, ramp + k + 16, kBlock - 16);
  }
}

struct Slot {
  uint8_t* buf = nullptr;
  bool busy = false;
  int status = 0;
  uint16_t nvme_status = 0;
  uint32_t bytes = 0;
  uint64_t offset = 0;
  unsigned done = 0;
};

unsigned completed = 0;

void on_done(void* arg, const Completion& c) noexcept {
  auto* s = static_cast<Slot*>(arg);
  s->busy = false;
  s->status = c.status;
  s->nvme_status = c.nvme_status;
  s->bytes = c.bytes;
  ++s->done;
  ++completed;
}

// Writes region d at depth, flushes, checks the queue pair's counters, then bad input.
void run_depth(Namespace& ns, unsigned index, unsigned depth, uint64_t region, uint64_t seed) {
  const bool fixed = depth != 8;
  QueuePairOptions qo;
  qo.depth = depth;
  qo.passthru = true;
  qo.iopoll = fixed && ns.poll_queues;
  std::vector<Slot> slots(depth);
  for (Slot& s : slots) {
    s.buf = static_cast<uint8_t*>(std::aligned_alloc(kBlock, kChunk));
    if (s.buf == nullptr) return fail("out of memory");
    if (fixed) qo.buffers.push_back({s.buf, kChunk});
  }
  auto qp = QueuePair::create(qo);
  if (!qp) return fail("QueuePair::create: " + qp.error());
  auto file = (*qp)->add_namespace(ns);
  if (!file) return fail("add_namespace: " + file.error());
  std::printf("depth %u: completions %s, registered buffers %s\n", depth,
              (*qp)->completions().c_str(), (*qp)->registered_buffers() ? "yes" : "no");
  if ((*qp)->polled() && !qo.iopoll) fail("polled without being asked");

  const uint64_t base = index * (region + kChunk);
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t next = 0;
  unsigned writes = 0;
  completed = 0;
  while (next < region || completed < writes) {
    for (Slot& s : slots) {
      if (s.done != 0 && s.status != 0)
        fail("write at " + std::to_string(s.offset) + ": status " + std::to_string(s.status) +
             " nvme status " + std::to_string(s.nvme_status));
      if (s.done != 0 && s.status == 0 && s.bytes != kChunk)
        fail("write at " + std::to_string(s.offset) + ": " + std::to_string(s.bytes) + " bytes");
      s.done = 0;
      if (s.busy || next >= region) continue;
      s.offset = base + next;
      stamp(s.buf, s.offset, seed);
      const unsigned flags = next == 0 ? sluice::nvme::kWriteFua : 0;
      const int rc = (*qp)->write(*file, s.buf, kChunk, s.offset, on_done, &s, flags);
      if (rc == -EAGAIN) break;
      if (rc != 0) return fail("write returned " + std::to_string(rc));
      s.busy = true;
      next += kChunk;
      ++writes;
    }
    (*qp)->wait(1000);
    if (failures > 10) return;
  }
  for (Slot& s : slots)
    if (s.done != 0 && s.status != 0) fail("write at " + std::to_string(s.offset) + " failed");

  Slot flush;
  if ((*qp)->flush(*file, on_done, &flush) != 0) return fail("flush refused");
  (*qp)->drain();
  if (flush.done != 1 || flush.status != 0)
    fail("flush: done " + std::to_string(flush.done) + " status " + std::to_string(flush.status));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const auto& st = (*qp)->stats();
  const uint64_t parts = (kChunk + ns.max_transfer - 1) / ns.max_transfer;
  std::printf(
      "depth %u: %u writes of 1 MiB at %llu in %.2f s (%.0f MiB/s): %llu commands, %llu split, "
      "%llu fixed\n",
      depth, writes, static_cast<unsigned long long>(base), s, writes / s,
      static_cast<unsigned long long>(st.submitted),
      static_cast<unsigned long long>(st.split_writes),
      static_cast<unsigned long long>(st.fixed_writes));
  if (st.submitted != writes * parts + 1)
    fail("expected " + std::to_string(writes * parts + 1) + " commands (" + std::to_string(parts) +
         " a write, and a flush), saw " + std::to_string(st.submitted));
  if (st.split_writes != (parts > 1 ? writes : 0)) fail("split_writes is wrong");
  if (st.fixed_writes != (fixed && (*qp)->registered_buffers() ? writes : 0))
    fail("fixed_writes is wrong");
  if (st.errors != 0 || st.completed != writes + 1) fail("errors or completions are wrong");

  // Bad input is refused at write(), nothing queued.
  if ((*qp)->write(*file, slots[0].buf, kChunk, base + 100, on_done, &slots[0]) != -EINVAL)
    fail("an unaligned offset was accepted");
  if ((*qp)->write(*file, slots[0].buf, kChunk, ns.size, on_done, &slots[0]) != -EINVAL)
    fail("a write past the namespace was accepted");
  if ((*qp)->in_flight() != 0 || (*qp)->queued() != 0) fail("bad writes were queued");
  for (Slot& sl : slots) std::free(sl.buf);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DEVICE MIB_PER_DEPTH SEED\n", argv[0]);
    return 2;
  }
  for (unsigned i = 0; i < sizeof ramp; ++i) ramp[i] = static_cast<uint8_t>(i);
  const uint64_t region = std::strtoull(argv[2], nullptr, 10) << 20;
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);

  utsname u{};
  if (::uname(&u) == 0) std::printf("kernel %s\n", u.release);
  auto ns = sluice::nvme::open_passthru(argv[1]);
  if (!ns) {
    std::printf("FAIL: open_passthru: %s\n", ns.error().c_str());
    return 1;
  }
  std::printf(
      "namespace %s: nsid %u, %u-byte blocks, %llu blocks (%llu MiB), MDTS %llu bytes, max "
      "transfer %u bytes, poll queues %s\n",
      ns->path.c_str(), ns->nsid, ns->lba_size, static_cast<unsigned long long>(ns->lbas),
      static_cast<unsigned long long>(ns->size >> 20), static_cast<unsigned long long>(ns->mdts),
      ns->max_transfer, ns->poll_queues ? "yes" : "no");
  if (auto bad = sluice::nvme::check_range(*ns, 100, kChunk); bad)
    fail("check_range accepted an unaligned offset");
  else
    std::printf("check_range: %s\n", bad.error().c_str());
  if (3 * (region + kChunk) > ns->size) {
    std::printf("FAIL: the namespace (%llu bytes) is too small for 3 regions of %llu\n",
                static_cast<unsigned long long>(ns->size), static_cast<unsigned long long>(region));
    return 1;
  }
  for (unsigned i = 0; i < 3 && failures == 0; ++i) run_depth(*ns, i, kDepths[i], region, seed);
  sluice::nvme::close_passthru(*ns);
  std::printf("%s\n", failures == 0 ? "passthru_write: ok" : "passthru_write: FAILED");
  return failures == 0 ? 0 : 1;
}
