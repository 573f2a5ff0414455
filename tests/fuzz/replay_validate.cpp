// Replays fuzz corpus files (or folders of them) through validate_diff.h with a plain main, so
// the committed corpus runs in every build, sanitizers or not.
//   replay_validate PATH...

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "simd/validate.h"
#include "tests/fuzz/corpus.h"
#include "tests/fuzz/validate_diff.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const std::vector<fs::path> files = sluice::fuzz::corpus_files(argc, argv);
  if (files.empty()) {
    std::fprintf(stderr, "replay_validate: no corpus files given\n");
    return 1;
  }
  size_t packets = 0;
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    packets += sluice::fuzz::check_validate_input(bytes.data(), bytes.size());
  }
  std::printf("replayed %zu corpus files (%zu packets); every kernel this CPU runs matched:",
              files.size(), packets);
  for (auto k : sluice::simd::kKernels) {
    if (sluice::simd::kernel_supported(k)) {
      std::printf(" %s", std::string(sluice::simd::kernel_name(k)).c_str());
    }
  }
  std::printf("\n");
  return 0;
}
