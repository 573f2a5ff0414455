#pragma once
// main() of a test program run once per SIMD kernel (--kernel=NAME, a name --simd takes):
// exits 2 on a missing or unknown name, 77 (meson: skipped) with a SKIPPED line where the CPU
// lacks the kernel; otherwise calls use(kernel) and runs the tests.

#include <gtest/gtest.h>

#include <cstdio>
#include <string_view>

#include "simd/validate.h"

namespace sluice::simd::kernel_tests {

template <typename Use>
int kernel_test_main(int argc, char** argv, const char* what, Use&& use) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string_view name;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a.rfind("--kernel=", 0) == 0) name = a.substr(9);
  }
  const auto kernel = kernel_from_name(name);
  if (!kernel) {
    std::fprintf(stderr, "usage: %s --kernel=NAME (a kernel name of --simd) [gtest options]\n",
                 argv[0]);
    return 2;
  }
  if (!kernel_supported(*kernel)) {
    std::printf("SKIPPED: this CPU lacks %.*s; its %s did not run\n", static_cast<int>(name.size()),
                name.data(), what);
    return 77;
  }
  use(*kernel);
  return RUN_ALL_TESTS();
}

}  // namespace sluice::simd::kernel_tests
