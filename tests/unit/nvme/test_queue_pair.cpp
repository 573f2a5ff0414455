// lib/nvme: the io_uring queue pair against real O_DIRECT files in the build directory (or
// $SLUICE_NVME_TEST_DIR): submit/poll ordering, the overflow queue, errors reaching the
// callback, and nothing left in flight after the queue pair is gone.

#include "lib/nvme/queue_pair.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace sluice::nvme {
namespace {

constexpr uint32_t kBlock = 4096;

// Skips the calling test when io_uring is unusable here (disabled, seccomp).
#define SKIP_WITHOUT_URING()                                                  \
  do {                                                                        \
    if (auto ok = uring_available(); !ok) {                                   \
      std::printf("SKIPPED: io_uring unavailable: %s\n", ok.error().c_str()); \
      GTEST_SKIP() << ok.error();                                             \
    }                                                                         \
  } while (0)

struct AlignedFree {
  void operator()(void* p) const noexcept { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, AlignedFree>;

Buffer aligned_buffer(size_t bytes) {
  return Buffer(static_cast<uint8_t*>(std::aligned_alloc(kBlock, bytes)));
}

// A byte pattern that differs per chunk and per position, so a misplaced chunk shows.
void fill(uint8_t* p, size_t len, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; ++i) {
    x = x * 1103515245u + 12345u;
    p[i] = static_cast<uint8_t>(x >> 16);
  }
}

// Records every callback: how often each request completed, with what, and in which order.
struct Recorder {
  struct Slot {
    Recorder* rec;
    unsigned index;
  };
  explicit Recorder(unsigned n) : calls(n, 0), results(n), slots(n) {
    for (unsigned i = 0; i < n; ++i) slots[i] = Slot{this, i};
  }
  static void on_done(void* arg, const Completion& c) noexcept {
    auto* s = static_cast<Slot*>(arg);
    s->rec->calls[s->index]++;
    s->rec->results[s->index] = c;
    s->rec->order.push_back(s->index);
  }
  void* arg(unsigned i) { return &slots[i]; }
  unsigned done() const { return static_cast<unsigned>(order.size()); }

  std::vector<int> calls;
  std::vector<Completion> results;
  std::vector<Slot> slots;
  std::vector<unsigned> order;
};

class QueuePairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_URING();
    const char* env = std::getenv("SLUICE_NVME_TEST_DIR");
    std::string base = env != nullptr ? env : SLUICE_NVME_TEST_DIR;
    std::string templ = base + "/nvme-test-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr) << base << ": " << std::strerror(errno);
    dir_ = templ;
    auto direct = probe_direct(dir_);
    ASSERT_TRUE(direct.ok()) << direct.error();
    if (!*direct) {
      std::printf("SKIPPED: %s does not support O_DIRECT (set SLUICE_NVME_TEST_DIR)\n",
                  dir_.c_str());
      GTEST_SKIP() << dir_ << " does not support O_DIRECT";
    }
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // An O_DIRECT file in the test directory, sized to bytes.
  Target direct_file(const std::string& name, uint64_t bytes = 0) {
    auto t = open_target(dir_ + "/" + name, O_RDWR | O_CREAT, 0600, false);
    EXPECT_TRUE(t.ok()) << t.error();
    if (!t.ok()) return {};
    EXPECT_TRUE(t->direct);
    if (bytes > 0) {
      EXPECT_EQ(::ftruncate(t->fd, static_cast<off_t>(bytes)), 0);
    }
    fds_.push_back(t->fd);
    return *t;
  }

  std::vector<uint8_t> read_back(int fd, uint64_t offset, size_t len) {
    // The file is O_DIRECT: read through a second, buffered descriptor.
    std::vector<uint8_t> out(len);
    int rfd = ::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY);
    EXPECT_GE(rfd, 0);
    if (rfd < 0) return out;
    EXPECT_EQ(::pread(rfd, out.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
    ::close(rfd);
    return out;
  }

  // Polls until the recorder has n completions, or fails after a few seconds.
  static void poll_until(QueuePair& qp, const Recorder& rec, unsigned n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (rec.done() < n) {
      qp.poll();
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "stuck: " << rec.done() << "/" << n << " done, in flight " << qp.in_flight()
          << ", queued " << qp.queued();
    }
  }

  std::string dir_;
  std::vector<int> fds_;
};

std::unique_ptr<QueuePair> make_qp(const QueuePairOptions& opt) {
  auto qp = QueuePair::create(opt);
  EXPECT_TRUE(qp.ok()) << qp.error();
  return qp.ok() ? std::move(qp.value()) : nullptr;
}

// Writes chunks of 1..4 blocks at shuffled, distinct offsets, from a registered region and
// (every fifth chunk) from plain memory, then reads every byte back.
// The parameter: the depth, and whether io_uring's workers issue every request (async).
class DepthTest : public QueuePairTest,
                  public ::testing::WithParamInterface<std::tuple<unsigned, bool>> {};

TEST_P(DepthTest, WritesLandWhereTheySaid) {
  const unsigned depth = std::get<0>(GetParam());
  const bool async = std::get<1>(GetParam());
  constexpr unsigned kChunks = 200;
  std::vector<uint32_t> lens(kChunks);
  std::vector<uint64_t> offsets(kChunks);
  uint64_t total = 0;
  for (unsigned i = 0; i < kChunks; ++i) {
    lens[i] = kBlock * (1 + i % 4);
    offsets[i] = total;
    total += lens[i];
  }
  // Shuffle where each chunk goes so the file is not written front to back.
  std::vector<unsigned> where(kChunks);
  std::iota(where.begin(), where.end(), 0);
  std::shuffle(where.begin(), where.end(), std::mt19937(depth));

  Buffer region = aligned_buffer(total);
  Buffer plain = aligned_buffer(total);
  ASSERT_TRUE(region && plain);
  QueuePairOptions opt;
  opt.depth = depth;
  opt.requests = kChunks;
  opt.buffers = {Region{region.get(), total}};
  opt.async = async;
  auto qp = make_qp(opt);
  ASSERT_TRUE(qp);
  EXPECT_TRUE(qp->registered_buffers());
  Target t = direct_file("depth.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();

  Recorder rec(kChunks);
  unsigned fixed = 0;
  for (unsigned k = 0; k < kChunks; ++k) {
    const unsigned i = where[k];
    uint8_t* src = (k % 5 == 4 ? plain.get() : region.get()) + offsets[i];
    fixed += k % 5 == 4 ? 0 : 1;
    fill(src, lens[i], i);
    ASSERT_EQ(qp->write(*slot, src, lens[i], offsets[i], Recorder::on_done, rec.arg(i)), 0);
  }
  EXPECT_LE(qp->in_flight(), depth);
  EXPECT_EQ(qp->in_flight() + qp->queued(), kChunks);
  EXPECT_EQ(rec.done(), 0u) << "callbacks must not run inside write()";
  poll_until(*qp, rec, kChunks);

  for (unsigned i = 0; i < kChunks; ++i) {
    EXPECT_EQ(rec.calls[i], 1) << "chunk " << i;
    EXPECT_EQ(rec.results[i].status, 0) << "chunk " << i;
    EXPECT_EQ(rec.results[i].bytes, lens[i]) << "chunk " << i;
  }
  const auto& s = qp->stats();
  EXPECT_EQ(s.submitted, kChunks);
  EXPECT_EQ(s.completed, kChunks);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.fixed_writes, fixed);
  EXPECT_EQ(qp->in_flight(), 0u);
  EXPECT_EQ(qp->queued(), 0u);
  EXPECT_EQ(qp->free_requests(), kChunks);

  auto disk = read_back(t.fd, 0, total);
  for (unsigned k = 0; k < kChunks; ++k) {
    const unsigned i = where[k];
    const uint8_t* src = (k % 5 == 4 ? plain.get() : region.get()) + offsets[i];
    ASSERT_EQ(std::memcmp(disk.data() + offsets[i], src, lens[i]), 0) << "chunk " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Depths, DepthTest,
                         ::testing::Combine(::testing::Values(1u, 8u, 32u), ::testing::Bool()));

TEST_F(QueuePairTest, OverflowQueueHoldsWhatTheDepthCannot) {
  constexpr unsigned kDepth = 4;
  constexpr unsigned kWrites = 64;
  Buffer buf = aligned_buffer(kWrites * kBlock);
  ASSERT_TRUE(buf);
  QueuePairOptions opt;
  opt.depth = kDepth;
  opt.requests = kWrites;
  auto qp = make_qp(opt);
  ASSERT_TRUE(qp);
  Target t = direct_file("overflow.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();

  Recorder rec(kWrites);
  for (unsigned i = 0; i < kWrites; ++i) {
    fill(buf.get() + i * kBlock, kBlock, i);
    ASSERT_EQ(qp->write(*slot, buf.get() + i * kBlock, kBlock, uint64_t{i} * kBlock,
                        Recorder::on_done, rec.arg(i)),
              0);
  }
  EXPECT_EQ(qp->in_flight(), kDepth);
  EXPECT_EQ(qp->queued(), kWrites - kDepth);
  EXPECT_EQ(qp->free_requests(), 0u);
  EXPECT_EQ(qp->stats().overflowed, kWrites - kDepth);
  EXPECT_EQ(qp->stats().submitted, 0u) << "write() must not enter the kernel";

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (rec.done() < kWrites) {
    qp->poll();
    ASSERT_LE(qp->in_flight(), kDepth);
    ASSERT_EQ(qp->in_flight() + qp->queued() + rec.done(), kWrites);
    ASSERT_LE(qp->stats().submitted - qp->stats().completed, kDepth);
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
  }
  // FIFO: request i enters the kernel only once all but depth - 1 of those before it are done,
  // so at least i - depth + 1 completions precede it. A LIFO queue breaks this at once.
  for (unsigned pos = 0; pos < kWrites; ++pos) {
    const unsigned i = rec.order[pos];
    EXPECT_GE(pos + kDepth, i + 1) << "request " << i << " completed " << pos << "th";
    EXPECT_EQ(rec.calls[i], 1);
    EXPECT_EQ(rec.results[i].status, 0);
  }
  EXPECT_EQ(qp->stats().submitted, kWrites);
  EXPECT_EQ(qp->stats().completed, kWrites);
  auto disk = read_back(t.fd, 0, kWrites * kBlock);
  EXPECT_EQ(std::memcmp(disk.data(), buf.get(), kWrites * kBlock), 0);
}

TEST_F(QueuePairTest, DepthOneCompletesInSubmitOrder) {
  constexpr unsigned kWrites = 24;
  Buffer buf = aligned_buffer(kWrites * kBlock);
  ASSERT_TRUE(buf);
  QueuePairOptions opt;
  opt.depth = 1;
  opt.requests = kWrites + 1;
  auto qp = make_qp(opt);
  ASSERT_TRUE(qp);
  Target t = direct_file("order.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();

  Recorder rec(kWrites + 1);
  // Later requests at lower offsets: order by anything but submission would show.
  for (unsigned i = 0; i < kWrites; ++i)
    ASSERT_EQ(qp->write(*slot, buf.get() + i * kBlock, kBlock, uint64_t{kWrites - 1 - i} * kBlock,
                        Recorder::on_done, rec.arg(i)),
              0);
  ASSERT_EQ(qp->flush(*slot, Recorder::on_done, rec.arg(kWrites)), 0);
  poll_until(*qp, rec, kWrites + 1);
  std::vector<unsigned> expect(kWrites + 1);
  std::iota(expect.begin(), expect.end(), 0);
  EXPECT_EQ(rec.order, expect);
  EXPECT_EQ(rec.results[kWrites].status, 0);
  EXPECT_EQ(rec.results[kWrites].bytes, 0u);
}

TEST_F(QueuePairTest, PoolExhaustionIsEagainAndQueuesNothing) {
  Buffer buf = aligned_buffer(8 * kBlock);
  ASSERT_TRUE(buf);
  QueuePairOptions opt;
  opt.depth = 2;
  opt.requests = 4;
  auto qp = make_qp(opt);
  ASSERT_TRUE(qp);
  Target t = direct_file("pool.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();

  Recorder rec(8);
  for (unsigned i = 0; i < 4; ++i)
    ASSERT_EQ(qp->write(*slot, buf.get() + i * kBlock, kBlock, uint64_t{i} * kBlock,
                        Recorder::on_done, rec.arg(i)),
              0);
  EXPECT_EQ(qp->free_requests(), 0u);
  EXPECT_EQ(
      qp->write(*slot, buf.get() + 4 * kBlock, kBlock, 4 * kBlock, Recorder::on_done, rec.arg(4)),
      -EAGAIN);
  EXPECT_EQ(qp->flush(*slot, Recorder::on_done, rec.arg(5)), -EAGAIN);
  EXPECT_EQ(qp->in_flight() + qp->queued(), 4u);
  EXPECT_EQ(qp->stats().overflowed, 2u);

  qp->drain();
  EXPECT_EQ(rec.done(), 4u);
  EXPECT_EQ(rec.calls[4], 0) << "a refused write must never complete";
  EXPECT_EQ(rec.calls[5], 0) << "a refused flush must never complete";
  EXPECT_EQ(qp->free_requests(), 4u);
  EXPECT_EQ(
      qp->write(*slot, buf.get() + 4 * kBlock, kBlock, 4 * kBlock, Recorder::on_done, rec.arg(4)),
      0);
  qp->drain();
  EXPECT_EQ(rec.calls[4], 1);
  EXPECT_EQ(qp->stats().completed, 5u);
}

TEST_F(QueuePairTest, ReadOnlyFileIsEbadf) {
  Buffer buf = aligned_buffer(kBlock);
  ASSERT_TRUE(buf);
  (void)direct_file("readonly.bin", kBlock);
  const int ro = ::open((dir_ + "/readonly.bin").c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(ro, 0);
  fds_.push_back(ro);
  auto qp = make_qp(QueuePairOptions{});
  ASSERT_TRUE(qp);
  auto slot = qp->add_file(ro);
  ASSERT_TRUE(slot.ok()) << slot.error();

  Recorder rec(1);
  ASSERT_EQ(qp->write(*slot, buf.get(), kBlock, 0, Recorder::on_done, rec.arg(0)), 0);
  poll_until(*qp, rec, 1);
  EXPECT_EQ(rec.results[0].status, -EBADF);
  EXPECT_EQ(rec.results[0].bytes, 0u);
  EXPECT_EQ(qp->stats().errors, 1u);
  EXPECT_EQ(qp->stats().completed, 1u);
}

TEST_F(QueuePairTest, UnalignedDirectWriteIsEinval) {
  Buffer buf = aligned_buffer(2 * kBlock);
  ASSERT_TRUE(buf);
  auto qp = make_qp(QueuePairOptions{});
  ASSERT_TRUE(qp);
  Target t = direct_file("unaligned.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();

  Recorder rec(3);
  ASSERT_EQ(qp->write(*slot, buf.get(), kBlock, 100, Recorder::on_done, rec.arg(0)), 0);
  ASSERT_EQ(qp->write(*slot, buf.get(), 100, 0, Recorder::on_done, rec.arg(1)), 0);
  ASSERT_EQ(qp->write(*slot, buf.get(), kBlock, kBlock, Recorder::on_done, rec.arg(2)), 0);
  poll_until(*qp, rec, 3);
  EXPECT_EQ(rec.results[0].status, -EINVAL) << "unaligned offset";
  EXPECT_EQ(rec.results[1].status, -EINVAL) << "unaligned length";
  EXPECT_EQ(rec.results[2].status, 0) << "an aligned write beside them still works";
  EXPECT_EQ(rec.results[2].bytes, kBlock);
  EXPECT_EQ(qp->stats().errors, 2u);
}

// RLIMIT_FSIZE cuts a write that straddles it; the kernel returns the part below the limit.
TEST_F(QueuePairTest, ShortWriteIsEioWithTheBytesWritten) {
  constexpr uint64_t kLimit = 2 * kBlock;
  Buffer buf = aligned_buffer(4 * kBlock);
  ASSERT_TRUE(buf);
  fill(buf.get(), 4 * kBlock, 7);
  auto qp = make_qp(QueuePairOptions{});
  ASSERT_TRUE(qp);
  Target t = direct_file("short.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();

  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = kLimit;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);

  Recorder rec(2);
  const int a = qp->write(*slot, buf.get(), 4 * kBlock, 0, Recorder::on_done, rec.arg(0));
  const int b = qp->write(*slot, buf.get(), kBlock, 3 * kBlock, Recorder::on_done, rec.arg(1));
  qp->drain();
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_EQ(a, 0);
  ASSERT_EQ(b, 0);
  EXPECT_EQ(rec.results[0].status, -EIO) << "a short write is an error";
  EXPECT_EQ(rec.results[0].bytes, kLimit) << "bytes says what the kernel wrote";
  EXPECT_EQ(rec.results[1].status, -EFBIG) << "wholly past the limit: the kernel's errno";
  EXPECT_EQ(qp->stats().errors, 2u);
  struct stat st {};
  ASSERT_EQ(::fstat(t.fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kLimit);
  auto disk = read_back(t.fd, 0, kLimit);
  EXPECT_EQ(std::memcmp(disk.data(), buf.get(), kLimit), 0);
}

TEST_F(QueuePairTest, DestroyingDrainsEverything) {
  constexpr unsigned kWrites = 128;
  Buffer buf = aligned_buffer(kWrites * kBlock);
  ASSERT_TRUE(buf);
  Target t = direct_file("drain.bin");
  Recorder rec(kWrites);
  {
    QueuePairOptions opt;
    opt.depth = 8;
    opt.requests = kWrites;
    opt.buffers = {Region{buf.get(), kWrites * kBlock}};
    auto qp = make_qp(opt);
    ASSERT_TRUE(qp);
    auto slot = qp->add_file(t.fd);
    ASSERT_TRUE(slot.ok()) << slot.error();
    for (unsigned i = 0; i < kWrites; ++i) {
      fill(buf.get() + i * kBlock, kBlock, 1000 + i);
      ASSERT_EQ(qp->write(*slot, buf.get() + i * kBlock, kBlock, uint64_t{i} * kBlock,
                          Recorder::on_done, rec.arg(i)),
                0);
    }
    EXPECT_EQ(rec.done(), 0u);
    // Destroyed here, never polled.
  }
  for (unsigned i = 0; i < kWrites; ++i) {
    EXPECT_EQ(rec.calls[i], 1) << "request " << i;
    EXPECT_EQ(rec.results[i].status, 0) << "request " << i;
  }
  auto disk = read_back(t.fd, 0, kWrites * kBlock);
  EXPECT_EQ(std::memcmp(disk.data(), buf.get(), kWrites * kBlock), 0);
}

// A callback that writes the next chunk: new requests from inside poll() are submitted by
// the next poll(), and the destructor's drain runs the ones still pending.
struct Chain {
  QueuePair* qp = nullptr;
  int slot = -1;
  const uint8_t* buf = nullptr;
  unsigned next = 0;
  unsigned last = 0;
  unsigned done = 0;
  int worst = 0;
  static void on_done(void* arg, const Completion& c) noexcept {
    auto* ch = static_cast<Chain*>(arg);
    ch->done++;
    if (c.status != 0) ch->worst = c.status;
    if (ch->next < ch->last) {
      const unsigned i = ch->next++;
      if (ch->qp->write(ch->slot, ch->buf + i * kBlock, kBlock, uint64_t{i} * kBlock, on_done,
                        ch) != 0)
        ch->worst = -EAGAIN;
    }
  }
};

TEST_F(QueuePairTest, CallbacksMaySubmitAgain) {
  constexpr unsigned kWrites = 96;
  constexpr unsigned kStreams = 6;
  Buffer buf = aligned_buffer(kWrites * kBlock);
  ASSERT_TRUE(buf);
  fill(buf.get(), kWrites * kBlock, 99);
  Target t = direct_file("chain.bin");
  Chain ch;
  {
    QueuePairOptions opt;
    opt.depth = 4;
    opt.requests = kStreams;
    auto qp = make_qp(opt);
    ASSERT_TRUE(qp);
    auto slot = qp->add_file(t.fd);
    ASSERT_TRUE(slot.ok()) << slot.error();
    ch = Chain{qp.get(), *slot, buf.get(), kStreams, kWrites, 0, 0};
    for (unsigned i = 0; i < kStreams; ++i)
      ASSERT_EQ(qp->write(*slot, buf.get() + i * kBlock, kBlock, uint64_t{i} * kBlock,
                          Chain::on_done, &ch),
                0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (ch.done < kWrites / 2) {
      qp->poll();
      ASSERT_LE(qp->in_flight(), 4u);
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    }
    // Half done: the destructor must finish the chain, including what callbacks add.
  }
  EXPECT_EQ(ch.done, kWrites);
  EXPECT_EQ(ch.worst, 0);
  auto disk = read_back(t.fd, 0, kWrites * kBlock);
  EXPECT_EQ(std::memcmp(disk.data(), buf.get(), kWrites * kBlock), 0);
}

TEST_F(QueuePairTest, FlushAfterWrites) {
  Buffer buf = aligned_buffer(16 * kBlock);
  ASSERT_TRUE(buf);
  auto qp = make_qp(QueuePairOptions{});
  ASSERT_TRUE(qp);
  Target t = direct_file("flush.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();
  Recorder rec(17);
  for (unsigned i = 0; i < 16; ++i)
    ASSERT_EQ(qp->write(*slot, buf.get() + i * kBlock, kBlock, uint64_t{i} * kBlock,
                        Recorder::on_done, rec.arg(i)),
              0);
  poll_until(*qp, rec, 16);
  ASSERT_EQ(qp->flush(*slot, Recorder::on_done, rec.arg(16)), 0);
  poll_until(*qp, rec, 17);
  EXPECT_EQ(rec.calls[16], 1);
  EXPECT_EQ(rec.results[16].status, 0);
  EXPECT_EQ(rec.results[16].bytes, 0u);
  EXPECT_EQ(qp->stats().errors, 0u);
}

// wait(): with nothing in flight it returns at once; with writes in flight it returns when one
// completes (long before its timeout), having reaped it; every write is reaped by waits alone.
TEST_F(QueuePairTest, WaitReturnsWithACompletionNotAtTheTimeout) {
  Buffer buf = aligned_buffer(8 * kBlock);
  ASSERT_TRUE(buf);
  auto qp = make_qp(QueuePairOptions{});
  ASSERT_TRUE(qp);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(qp->wait(5'000'000), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1))
      << "waited with nothing in flight";
  Target t = direct_file("wait.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();
  Recorder rec(8);
  for (unsigned i = 0; i < 8; ++i)
    ASSERT_EQ(qp->write(*slot, buf.get() + i * kBlock, kBlock, uint64_t{i} * kBlock,
                        Recorder::on_done, rec.arg(i)),
              0);
  const auto t1 = std::chrono::steady_clock::now();
  unsigned waits = 0;
  while (rec.done() < 8 && waits < 100) {
    qp->wait(5'000'000);
    ++waits;
  }
  EXPECT_EQ(rec.done(), 8u);
  EXPECT_EQ(qp->in_flight(), 0u);
  // Eight 4 KiB writes: far less than one 5 s timeout, however many waits it took.
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::seconds(4));
  for (unsigned i = 0; i < 8; ++i) EXPECT_EQ(rec.results[i].status, 0);
}

TEST_F(QueuePairTest, FailedBufferRegistrationFallsBackToPlainWrites) {
  Buffer buf = aligned_buffer(kBlock);
  ASSERT_TRUE(buf);
  fill(buf.get(), kBlock, 5);
  QueuePairOptions opt;
  // A region the kernel cannot pin (no memory there): registration fails, writes go on.
  opt.buffers = {Region{nullptr, kBlock}};
  auto qp = make_qp(opt);
  ASSERT_TRUE(qp);
  EXPECT_FALSE(qp->registered_buffers());
  Target t = direct_file("fallback.bin");
  auto slot = qp->add_file(t.fd);
  ASSERT_TRUE(slot.ok()) << slot.error();
  Recorder rec(1);
  ASSERT_EQ(qp->write(*slot, buf.get(), kBlock, 0, Recorder::on_done, rec.arg(0)), 0);
  poll_until(*qp, rec, 1);
  EXPECT_EQ(rec.results[0].status, 0);
  EXPECT_EQ(qp->stats().fixed_writes, 0u);
  auto disk = read_back(t.fd, 0, kBlock);
  EXPECT_EQ(std::memcmp(disk.data(), buf.get(), kBlock), 0);
}

TEST_F(QueuePairTest, FileSlotsFillAndFree) {
  QueuePairOptions opt;
  opt.files = 2;
  auto qp = make_qp(opt);
  ASSERT_TRUE(qp);
  Target a = direct_file("a.bin");
  Target b = direct_file("b.bin");
  auto sa = qp->add_file(a.fd);
  auto sb = qp->add_file(b.fd);
  ASSERT_TRUE(sa.ok() && sb.ok());
  EXPECT_NE(*sa, *sb);
  auto full = qp->add_file(a.fd);
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error().find("slots"), std::string::npos) << full.error();
  qp->remove_file(*sa);
  auto again = qp->add_file(b.fd);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(*again, *sa);

  // A write to a freed slot reaches the callback as an error, not a crash.
  qp->remove_file(*again);
  Buffer buf = aligned_buffer(kBlock);
  Recorder rec(1);
  ASSERT_EQ(qp->write(*again, buf.get(), kBlock, 0, Recorder::on_done, rec.arg(0)), 0);
  poll_until(*qp, rec, 1);
  EXPECT_EQ(rec.results[0].status, -EBADF);
}

TEST(QueuePairCreate, RejectsBadDepth) {
  SKIP_WITHOUT_URING();
  QueuePairOptions opt;
  opt.depth = 0;
  EXPECT_FALSE(QueuePair::create(opt).ok());
  opt.depth = 5000;
  auto r = QueuePair::create(opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("4096"), std::string::npos) << r.error();
  opt.depth = 16;
  auto ok = QueuePair::create(opt);
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_EQ((*ok)->depth(), 16u);
  EXPECT_EQ((*ok)->free_requests(), 64u) << "requests 0 means 4 * depth";
}

TEST_F(QueuePairTest, OpenTargetRegularFile) {
  const std::string path = dir_ + "/target.bin";
  auto t = open_target(path, O_RDWR | O_CREAT, 0600, false);
  ASSERT_TRUE(t.ok()) << t.error();
  fds_.push_back(t->fd);
  EXPECT_TRUE(t->direct);
  EXPECT_FALSE(t->block_device);
  EXPECT_EQ(t->size, 0u);
  EXPECT_EQ(t->block, kBlock);
  EXPECT_TRUE(::fcntl(t->fd, F_GETFL) & O_DIRECT);
  ASSERT_EQ(::ftruncate(t->fd, 3 * kBlock), 0);
  auto again = open_target(path, O_RDWR, 0, false);
  ASSERT_TRUE(again.ok()) << again.error();
  fds_.push_back(again->fd);
  EXPECT_EQ(again->size, 3u * kBlock);
}

TEST_F(QueuePairTest, OpenTargetErrorsNameThePath) {
  auto dir = open_target(dir_, O_RDWR, 0, true);
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.error().find(dir_), std::string::npos) << dir.error();
  EXPECT_NE(dir.error().find("directory"), std::string::npos) << dir.error();

  const std::string missing = dir_ + "/no/such/file";
  auto m = open_target(missing, O_RDWR | O_CREAT, 0600, true);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().find(missing), std::string::npos) << m.error();

  auto m2 = open_target(dir_ + "/absent.bin", O_RDWR, 0, true);
  ASSERT_FALSE(m2.ok());
  EXPECT_NE(m2.error().find("does not exist"), std::string::npos) << m2.error();

  for (bool buffered : {false, true}) {
    auto null = open_target("/dev/null", O_WRONLY, 0, buffered);
    ASSERT_FALSE(null.ok()) << "buffered " << buffered;
    EXPECT_NE(null.error().find("/dev/null"), std::string::npos) << null.error();
    EXPECT_NE(null.error().find("character device"), std::string::npos) << null.error();
  }

  // A FIFO: refused before open, which would block waiting for a reader.
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto p = open_target(fifo, O_WRONLY, 0, true);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().find("a pipe"), std::string::npos) << p.error();
}

// Read-only, so it is harmless on the machine's own disk.
// A loop device of 8 MiB over a file (root: losetup; the sandbox here refuses /dev/vda even to
// root), else the first readable block device.
TEST(OpenTarget, BlockDeviceReportsSizeAndSectorSize) {
  std::string loop;
  const std::string backing = std::string(SLUICE_NVME_TEST_DIR) + "/loop-backing.img";
  if (::geteuid() == 0) {
    {
      std::ofstream f(backing, std::ios::binary | std::ios::trunc);
      f.seekp((8 << 20) - 1);
      f.put('\0');
    }
    if (FILE* p = ::popen(
            ("losetup --find --show --sector-size 512 " + backing + " 2>/dev/null").c_str(), "r")) {
      char buf[64] = {};
      if (std::fgets(buf, sizeof buf, p) != nullptr)
        loop = std::string(buf, std::strcspn(buf, "\n"));
      ::pclose(p);
    }
  }
  if (!loop.empty()) {
    auto t = open_target(loop, O_RDWR, 0, false);
    ASSERT_TRUE(t.ok()) << t.error();
    ::close(t->fd);
    EXPECT_TRUE(t->block_device) << loop;
    EXPECT_TRUE(t->direct) << loop;
    EXPECT_EQ(t->size, 8u << 20) << loop;
    EXPECT_EQ(t->block, 512u) << loop << ": the logical block size, not the default";
    EXPECT_EQ(std::system(("losetup -d " + loop).c_str()), 0);
    ::unlink(backing.c_str());
    return;
  }
  ::unlink(backing.c_str());
  for (const auto& e : std::filesystem::directory_iterator("/sys/block")) {
    const std::string name = e.path().filename();
    const std::string dev = "/dev/" + name;
    std::ifstream size_file(e.path() / "size");
    uint64_t sectors = 0;
    if (!(size_file >> sectors) || sectors == 0) continue;
    auto t = open_target(dev, O_RDONLY, 0, true);
    if (!t.ok()) continue;
    ::close(t->fd);
    EXPECT_TRUE(t->block_device) << dev;
    EXPECT_EQ(t->size, sectors * 512) << dev;
    EXPECT_TRUE(t->block == 512 || t->block == 4096) << dev << ": " << t->block;
    return;
  }
  std::printf("SKIPPED: no loop device (needs root and losetup) and no readable block device\n");
  GTEST_SKIP() << "no loop device and no readable block device";
}

TEST_F(QueuePairTest, ProbeDirect) {
  auto yes = probe_direct(dir_);
  ASSERT_TRUE(yes.ok()) << yes.error();
  EXPECT_TRUE(*yes);
  EXPECT_TRUE(std::filesystem::is_empty(dir_)) << "the probe file must be removed";

  auto missing = probe_direct(dir_ + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find(dir_ + "/nope"), std::string::npos) << missing.error();

  (void)direct_file("plain.bin");
  auto file = probe_direct(dir_ + "/plain.bin");
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.error().find("not a directory"), std::string::npos) << file.error();

  if (::geteuid() != 0) {
    const std::string ro = dir_ + "/ro";
    ASSERT_EQ(::mkdir(ro.c_str(), 0500), 0);
    auto denied = probe_direct(ro);
    ASSERT_FALSE(denied.ok());
    EXPECT_NE(denied.error().find("permission denied"), std::string::npos) << denied.error();
  }
}

TEST(UringAvailable, HereItIs) {
  auto ok = uring_available();
  if (!ok) {
    std::printf("SKIPPED: io_uring unavailable: %s\n", ok.error().c_str());
    GTEST_SKIP() << ok.error();
  }
  SUCCEED();
}

}  // namespace
}  // namespace sluice::nvme
