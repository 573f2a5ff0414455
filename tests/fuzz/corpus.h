#pragma once
// The corpus files a replay main is given: files, and the regular files of folders.

#include <filesystem>
#include <vector>

namespace sluice::fuzz {

inline std::vector<std::filesystem::path> corpus_files(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path p = argv[i];
    if (fs::is_directory(p)) {
      for (const auto& e : fs::directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else {
      files.push_back(p);
    }
  }
  return files;
}

}  // namespace sluice::fuzz
