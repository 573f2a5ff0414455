#pragma once
// rte_eal_cleanup and what it leaves behind. On a clean exit a DPDK 22.11 primary process leaves
// its hugepage files (they keep their pages from every other process until the next start with
// the same --file-prefix) and its runtime folder (/var/run/dpdk/<prefix>: the config lock,
// memseg arrays, sockets). eal_cleanup_and_tidy removes both, and nothing else:
// - hugepage files: those EAL holds a descriptor for (read while the memory is still mapped),
//   named <prefix>map_*; with --no-huge, --in-memory or --huge-unlink there are none (the
//   descriptors are memfds or name deleted files), and keep_hugepage_files (--huge-unlink=never:
//   the user asked for them to stay) leaves them;
// - the runtime folder: only .../dpdk/<prefix> for the prefix EAL runs with ("." and ".."
//   never), only the files EAL puts there, then the folder itself if that left it empty.
// A secondary process leaves its primary's alone. Header-only: sluice and its tools (sluice-gen,
// the benches) link different libraries.

#include <rte_eal.h>
#include <rte_memory.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace sluice::port {

struct EalTidy {
  size_t hugepage_files = 0;  // <prefix>map_* files found while mapped
  size_t removed = 0;         // of them, unlinked
  std::string runtime_dir;    // empty: not ours to remove
  bool runtime_dir_removed = false;
};

// The files DPDK 22.11 keeps in a primary's runtime folder.
inline bool eal_runtime_file(std::string_view name) {
  for (std::string_view p :
       {"config", "hugepage_info", "mp_socket", "fbarray_", "dpdk_telemetry", "telemetry"}) {
    if (name.substr(0, p.size()) == p) return true;
  }
  return false;
}

// Whether a runtime folder is one EAL made for a prefix of its own: .../dpdk/<prefix>, the
// prefix neither "." nor ".." (EAL takes both, and their folders are /run/dpdk itself or /run).
inline bool eal_runtime_dir_is_own(const std::filesystem::path& dir) {
  const std::string prefix = dir.filename().string();
  return !prefix.empty() && prefix != "." && prefix != ".." &&
         dir.parent_path().filename() == "dpdk";
}

inline EalTidy eal_cleanup_and_tidy(bool keep_hugepage_files = false) {
  std::vector<std::string> files;
  EalTidy t;
  std::string prefix;
  if (rte_eal_process_type() == RTE_PROC_PRIMARY) {
    const std::filesystem::path dir(rte_eal_get_runtime_dir());
    prefix = dir.filename().string();
    const bool ours = eal_runtime_dir_is_own(dir);
    if (ours) t.runtime_dir = dir.string();
    if (ours && !keep_hugepage_files) {
      rte_memseg_walk(
          [](const rte_memseg_list*, const rte_memseg* ms, void* arg) {
            const int fd = rte_memseg_get_fd_thread_unsafe(ms);
            if (fd < 0) return 0;
            char link[32], path[PATH_MAX];
            std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            const ssize_t n = ::readlink(link, path, sizeof path - 1);
            if (n > 0) static_cast<std::vector<std::string>*>(arg)->emplace_back(path, n);
            return 0;
          },
          &files);
      const std::string mine = prefix + "map_";
      std::erase_if(files, [&](const std::string& f) {
        const std::string name = std::filesystem::path(f).filename().string();
        return name.compare(0, mine.size(), mine) != 0 || f.find(" (deleted)") != std::string::npos;
      });
      std::sort(files.begin(), files.end());
      files.erase(std::unique(files.begin(), files.end()), files.end());
    }
  }
  rte_eal_cleanup();
  t.hugepage_files = files.size();
  for (const auto& f : files) t.removed += ::unlink(f.c_str()) == 0;
  if (!t.runtime_dir.empty()) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(t.runtime_dir, ec), end; !ec && it != end;
         it.increment(ec)) {
      std::error_code type_ec;
      if (eal_runtime_file(it->path().filename().string()) && !it->is_directory(type_ec)) {
        ::unlink(it->path().c_str());
      }
    }
    t.runtime_dir_removed = ::rmdir(t.runtime_dir.c_str()) == 0;  // only when nothing else is left
  }
  return t;
}

}  // namespace sluice::port
