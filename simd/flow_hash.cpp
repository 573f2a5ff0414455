// The scalar burst hash and the kernel table's entry for it (flow_hash.h).

#include "simd/flow_hash.h"

namespace sluice::simd {

uint64_t flow_hash_burst_scalar(const uint8_t* const* data, const uint32_t* len, unsigned n,
                                uint32_t* hashes) noexcept {
  uint64_t done = 0;
  for (unsigned i = 0; i < n; ++i) {
    if (flow_hash_fast(data[i], len[i], &hashes[i])) done |= uint64_t{1} << i;
  }
  return done;
}

FlowHashBurstFn flow_hash_fn(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return &flow_hash_burst_scalar;
    case Kernel::kAvx2:
      return &flow_hash_burst_avx2;
  }
  return nullptr;
}

}  // namespace sluice::simd
