// What the exit clean-up (lib/port/eal_exit.h) may remove: only a runtime folder EAL made for a
// prefix of its own, and in it only EAL's files.
#include "lib/port/eal_exit.h"

#include <gtest/gtest.h>

namespace {

using sluice::port::eal_runtime_dir_is_own;
using sluice::port::eal_runtime_file;

TEST(EalExit, RuntimeFolderOnlyForAPrefixOfItsOwn) {
  EXPECT_TRUE(eal_runtime_dir_is_own("/var/run/dpdk/sluice"));
  EXPECT_TRUE(eal_runtime_dir_is_own("/run/user/1000/dpdk/rte"));
  EXPECT_TRUE(eal_runtime_dir_is_own("/tmp/dpdk/t-1"));
  // --file-prefix .. and . are EAL's /run and /run/dpdk: never.
  EXPECT_FALSE(eal_runtime_dir_is_own("/var/run/dpdk/.."));
  EXPECT_FALSE(eal_runtime_dir_is_own("/var/run/dpdk/."));
  EXPECT_FALSE(eal_runtime_dir_is_own("/var/run/dpdk/"));
  EXPECT_FALSE(eal_runtime_dir_is_own("/var/run/other/sluice"));
  EXPECT_FALSE(eal_runtime_dir_is_own(""));
}

TEST(EalExit, OnlyEalsFilesInIt) {
  for (const char* f :
       {"config", "hugepage_info", "mp_socket", "mp_socket_123_4567", "fbarray_memseg-2048k-0-0",
        "fbarray_memzone", "dpdk_telemetry.v2", "telemetry"}) {
    EXPECT_TRUE(eal_runtime_file(f)) << f;
  }
  for (const char* f : {"sluice.yaml", "stats.json", "flows", "x-config"}) {
    EXPECT_FALSE(eal_runtime_file(f)) << f;
  }
}

}  // namespace
