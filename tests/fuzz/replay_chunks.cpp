// Replays fuzz corpus files (or folders of them) through the chunk fuzzer's target with a
// plain main, so the committed corpus runs in every build, sanitizers or not. Seeds named
// good-* (written by make_chunk_corpus.py, a second writer of the format) must scan as all
// good; flip-* (one bit flipped) as exactly one corrupt chunk, the others good.
//   replay_chunks PATH...

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "lib/capture/chunk.h"
#include "tests/fuzz/corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const std::vector<fs::path> files = sluice::fuzz::corpus_files(argc, argv);
  if (files.empty()) {
    std::fprintf(stderr, "replay_chunks: no corpus files given\n");
    return 1;
  }
  size_t bytes = 0;
  unsigned failed = 0;
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(b.data(), b.size());
    bytes += b.size();
    const std::string name = f.filename().string();
    const bool good = name.rfind("good-", 0) == 0, flipped = name.rfind("flip-", 0) == 0;
    if (good || flipped) {
      using namespace sluice::capture;
      unsigned bad = 0, corrupt = 0;
      for (const ChunkInfo& c : scan_chunks(b.data(), b.size())) {
        bad += c.state != ChunkState::kGood;
        corrupt += c.state == ChunkState::kCorrupt;
      }
      if ((good && bad != 0) || (flipped && (bad != 1 || corrupt != 1))) {
        std::fprintf(stderr, "replay_chunks: %s: %u chunks not good, %u corrupt\n",
                     f.string().c_str(), bad, corrupt);
        ++failed;
      }
    }
  }
  if (failed != 0) return 1;
  std::printf("replayed %zu chunk corpus files (%zu bytes): every check held\n", files.size(),
              bytes);
  return 0;
}
