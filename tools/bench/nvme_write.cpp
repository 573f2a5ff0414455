// The raw store's write path alone, for tools/bench/run capture --raw-vm and --raw-loop: the
// queue pair writing 1 MiB chunks around a device the way the capture lcore does (queue depth D,
// D + 2 registered chunk buffers, a write issued as soon as one completes, the ring of slots
// after a 4 KiB header): passthrough on /dev/ngXnY (each chunk as many NVMe commands as the
// transfer limit needs), the block backend with O_DIRECT on a block device. No packets: what
// sluice's store costs beside fio on the same device, apart from the packet path.
//
//   sluice-bench-nvme DEVICE BYTES DEPTH
//
// Prints one line: BENCH-QP <bytes written> <seconds> <commands> <completions mode>.
// Exit 0, or 1 with the reason.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

using namespace sluice::nvme;

constexpr uint32_t kChunk = 1u << 20;
constexpr uint64_t kHeader = 4096;

struct Chunk {
  uint8_t* buf = nullptr;
  bool busy = false;
  int status = 0;
};

void on_done(void* arg, const Completion& c) noexcept {
  auto* k = static_cast<Chunk*>(arg);
  k->busy = false;
  k->status = c.status;
}

int die(const std::string& why) {
  std::fprintf(stderr, "sluice-bench-nvme: %s\n", why.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return die("usage: sluice-bench-nvme DEVICE BYTES DEPTH");
  const uint64_t bytes = std::strtoull(argv[2], nullptr, 0);
  const unsigned depth = static_cast<unsigned>(std::strtoul(argv[3], nullptr, 0));
  // A namespace's char device: passthrough; anything else (a block device, a loop device): the
  // block backend with O_DIRECT, as the raw store on a block device.
  struct stat st {};
  const bool passthru = stat(argv[1], &st) == 0 && S_ISCHR(st.st_mode);
  Namespace ns;
  Target target;
  uint64_t size = 0;
  if (passthru) {
    auto n = open_passthru(argv[1]);
    if (!n) return die(n.error());
    ns = *n;
    size = ns.size;
  } else {
    auto t = open_target(argv[1], O_WRONLY, 0, false);
    if (!t) return die(t.error());
    target = *t;
    size = t->size;
  }
  const uint64_t slots = size > kHeader ? (size - kHeader) / kChunk : 0;
  if (slots < 2 || depth == 0) return die("the namespace holds fewer than two chunks, or depth 0");

  std::vector<Chunk> chunks(depth + 2);
  QueuePairOptions qo;
  qo.depth = depth;
  qo.requests = depth + 8;
  qo.passthru = passthru;
  qo.iopoll = passthru && ns.poll_queues;
  for (Chunk& k : chunks) {
    k.buf = static_cast<uint8_t*>(std::aligned_alloc(4096, kChunk));
    if (k.buf == nullptr) return die("out of memory");
    std::memset(k.buf, 0xa5, kChunk);
    qo.buffers.push_back({k.buf, kChunk});
  }
  auto qp = QueuePair::create(qo);
  if (!qp) return die(qp.error());
  auto file = passthru ? (*qp)->add_namespace(ns) : (*qp)->add_file(target.fd);
  if (!file) return die(file.error());

  const auto start = std::chrono::steady_clock::now();
  uint64_t seq = 0;
  const uint64_t want = (bytes + kChunk - 1) / kChunk;
  while (seq < want || (*qp)->in_flight() != 0 || (*qp)->queued() != 0) {
    for (Chunk& k : chunks) {
      if (seq >= want) break;
      if (k.busy) continue;
      if (k.status != 0) return die("a write failed: " + std::string(std::strerror(-k.status)));
      const uint64_t offset = kHeader + (seq % slots) * kChunk;
      if ((*qp)->write(*file, k.buf, kChunk, offset, on_done, &k) != 0) break;
      k.busy = true;
      ++seq;
    }
    // Submits what was queued and reaps; with nothing ready, waits in the kernel for one.
    if ((*qp)->poll() == 0) (*qp)->wait(1000);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const Chunk& k : chunks) {
    if (k.status != 0) return die("a write failed: " + std::string(std::strerror(-k.status)));
  }
  std::printf("BENCH-QP %llu %.6f %llu %s\n", static_cast<unsigned long long>(seq * kChunk), s,
              static_cast<unsigned long long>((*qp)->stats().submitted),
              (*qp)->completions().c_str());
  qp->reset();
  if (passthru) close_passthru(ns);
  if (target.fd >= 0) close(target.fd);
  return 0;
}
