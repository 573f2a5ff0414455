// libFuzzer target: arbitrary bytes as a burst through every validator (validate_diff.h).
// Built and run by tools/fuzz (clang, -fsanitize=fuzzer,address,undefined).

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/validate_diff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::fuzz::check_validate_input(data, size);
  return 0;
}
