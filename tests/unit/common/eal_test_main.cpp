// gtest main for tests that need DPDK: an EAL in this process with no hugepages, no PCI
// and no shared files, so the tests run anywhere (CI, a laptop, a container).

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_log.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

// DPDK memory for the test's EAL, MiB (a test that needs more defines it in its meson.build).
#ifndef SLUICE_TEST_EAL_MB
#define SLUICE_TEST_EAL_MB "512"
#endif

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string prefix = "--file-prefix=sluice-test-" + std::to_string(getpid());
  std::vector<std::string> args = {"sluice-test",
                                   "--no-huge",
                                   "-m",
                                   SLUICE_TEST_EAL_MB,
                                   "--no-pci",
                                   "--no-shconf",
                                   "--no-telemetry",
                                   "--log-level=lib.eal:error",
                                   prefix,
                                   "-l",
                                   "0"};
  std::vector<char*> eal_argv;
  for (auto& a : args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "eal_test_main: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  int rc = RUN_ALL_TESTS();
  // --no-shconf still makes a runtime folder per file prefix (empty without telemetry).
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  rmdir(runtime_dir.c_str());
  return rc;
}
