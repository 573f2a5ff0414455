#pragma once
// rte_eal_cleanup and what it leaves behind. On a clean exit a DPDK 22.11 primary process leaves
// its hugepage files (they keep their pages from every other process until the next start with
// the same --file-prefix) and its runtime folder (/var/run/dpdk/<prefix>: the config lock,
// memseg arrays, sockets). eal_cleanup_and_tidy removes both: the files are found by the
// descriptors EAL holds for its pages, read while the memory is still mapped, so nothing is
// guessed from names. No files with --no-huge, --huge-unlink or --in-memory. Header-only: sluice
// and its tools (sluice-gen, the benches) link different libraries.

#include <rte_eal.h>
#include <rte_memory.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace sluice::port {

struct EalTidy {
  size_t hugepage_files = 0;  // found while mapped
  size_t removed = 0;         // of them, unlinked
  std::string runtime_dir;    // removed when it was EAL's own (.../dpdk/<prefix>)
  std::error_code error;      // of removing the runtime folder
};

inline EalTidy eal_cleanup_and_tidy() {
  std::vector<std::string> files;
  EalTidy t;
  const bool primary = rte_eal_process_type() == RTE_PROC_PRIMARY;
  if (primary) {
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
    std::sort(files.begin(), files.end());
    files.erase(std::unique(files.begin(), files.end()), files.end());
    t.runtime_dir = rte_eal_get_runtime_dir();
  }
  rte_eal_cleanup();
  t.hugepage_files = files.size();
  for (const auto& f : files) t.removed += ::unlink(f.c_str()) == 0;
  // Only a folder EAL made for its prefix, never one --file-prefix or XDG_RUNTIME_DIR might
  // point elsewhere; a secondary process leaves its primary's alone.
  const std::filesystem::path dir(t.runtime_dir);
  if (!t.runtime_dir.empty() && dir.parent_path().filename() == "dpdk") {
    std::filesystem::remove_all(dir, t.error);
  }
  return t;
}

}  // namespace sluice::port
