// The kernel table and run-time choice. The app picks one kernel at start (best_kernel, or the
// --simd override checked with kernel_supported); the data path only sees its function.

#include "simd/validate.h"

namespace sluice::simd {

std::string_view kernel_name(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return "scalar";
    case Kernel::kAvx2:
      return "avx2";
  }
  return "unknown";
}

std::optional<Kernel> kernel_from_name(std::string_view name) noexcept {
  for (Kernel k : kKernels) {
    if (kernel_name(k) == name) return k;
  }
  return std::nullopt;
}

unsigned kernel_bitwidth(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return 64;
    case Kernel::kAvx2:
      return 256;
  }
  return 0;
}

bool kernel_supported(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return true;
    case Kernel::kAvx2:
      // libgcc's CPU model also checks that the OS saves the YMM state (XGETBV).
      return __builtin_cpu_supports("avx2") != 0;
  }
  return false;
}

Kernel best_kernel(unsigned max_bitwidth) noexcept {
  Kernel best = Kernel::kScalar;
  for (Kernel k : kKernels) {
    if (kernel_bitwidth(k) <= max_bitwidth && kernel_supported(k)) best = k;
  }
  return best;
}

// nullptr for a value outside the enum: the caller reports it, the data path never sees it.
ValidateBurstFn kernel_fn(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return &validate_burst_scalar;
    case Kernel::kAvx2:
      return &validate_burst_avx2;
  }
  return nullptr;
}

ValidateMbufsFn mbuf_kernel_fn(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return &validate_mbufs_scalar;
    case Kernel::kAvx2:
      return &validate_mbufs_avx2;
  }
  return nullptr;
}

}  // namespace sluice::simd
