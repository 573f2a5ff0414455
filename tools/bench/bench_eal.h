#pragma once
// The EAL of the benchmark tools: no hugepages, no PCI, no shared files, no telemetry, lcore 0
// (they need DPDK memory for rte_acl, never a device), and its clean-up.

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "lib/port/eal_exit.h"

namespace sluice::bench {

inline bool eal_init(const char* tool, unsigned mem_mib) {
  std::vector<std::string> args = {
      tool,
      "--no-huge",
      "-m",
      std::to_string(mem_mib),
      "--no-pci",
      "--no-shconf",
      "--no-telemetry",
      "--log-level=lib.eal:error",
      "--file-prefix=" + std::string(tool) + "-" + std::to_string(getpid()),
      "-l",
      "0"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    std::fprintf(stderr, "%s: rte_eal_init failed: %s\n", tool, rte_strerror(rte_errno));
    return false;
  }
  return true;
}

// --no-shconf still makes a runtime folder per file prefix (empty with --no-telemetry); the
// pid in the prefix would leave one behind per run.
inline void eal_cleanup() {
  port::eal_cleanup_and_tidy();
}

}  // namespace sluice::bench
