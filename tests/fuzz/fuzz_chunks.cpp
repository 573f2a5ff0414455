// libFuzzer target: arbitrary bytes as a capture segment through scan_chunks, then the
// readers over each chunk it found. Besides the sanitizers' out-of-bounds and UB checks it
// asserts what verify and export rely on: the entries tile the input exactly, every packet
// lies inside its chunk, and a good chunk holds as many packets as its trailer counts, each on
// a described interface. Built and run by tools/fuzz (clang,
// -fsanitize=fuzzer,address,undefined); replay_chunks replays the corpus in every build.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "lib/capture/chunk.h"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_chunks: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::capture;
  // A copy of exactly size bytes, so that ASan sees a read one past the end even when the
  // caller's buffer is larger.
  const std::vector<uint8_t> bytes(data, data + size);
  const uint8_t* d = bytes.data();
  const auto chunks = scan_chunks(d, size);
  uint64_t at = 0;
  for (const ChunkInfo& c : chunks) {
    require(c.offset == at && c.length > 0 && c.length <= size - at, "entries do not tile");
    at += c.length;
    const auto names = chunk_interfaces(d + c.offset, c.length);
    uint32_t packets = 0;
    bool ports_ok = true;
    for_each_packet(d + c.offset, c.length, [&](const PacketRef& p) {
      require(p.data >= d + c.offset && p.data + p.caplen <= d + c.offset + c.length,
              "packet outside its chunk");
      ports_ok = ports_ok && p.port < names.size();
      ++packets;
    });
    if (c.state == ChunkState::kGood) {
      require(c.length % kChunkAlign == 0, "good chunk not 4096-aligned");
      require(packets == c.packets, "good chunk: packet count differs from its trailer");
      require(ports_ok, "good chunk: packet on an undescribed interface");
    } else {
      require(!c.why.empty(), "bad chunk without a reason");
    }
  }
  require(at == size, "entries do not cover the input");
  return 0;
}
