#pragma once
// One fuzz input as a burst of packets, run through the scalar reference and every SIMD kernel
// this CPU supports; any difference aborts with a report. Shared by the libFuzzer target
// (fuzz_validate.cpp) and the corpus replay of the default build (replay_validate.cpp).
//
// Input: packets one after another, each a 4-byte header then its bytes:
//   [0..1] length L (little endian, modulo 2048), [2] cut, [3] flags
//   then L bytes (fewer when the input ends first).
//   data_len = bytes - min(cut, bytes); frame_len = bytes + (flags >> 2) * 8 when flags bit 1 is
//   set, else bytes; hint = flags & 1 ? (flags >> 4) % 3 : unknown.
// At most 64 packets; each is copied into its own allocation of exactly data_len bytes so that
// AddressSanitizer sees any read past it.

#include <cstddef>
#include <cstdint>

namespace sluice::fuzz {

// Returns the number of packets in the burst (aborts on a difference).
size_t check_validate_input(const uint8_t* data, size_t size);

}  // namespace sluice::fuzz
