// The kernel table. Only the scalar reference exists so far; SIMD kernels add their entries
// here and the pipeline picks one at start (never at build time).

#include "simd/validate.h"

namespace sluice::simd {

std::string_view kernel_name(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return "scalar";
  }
  return "unknown";
}

// nullptr for a value outside the enum: the caller reports it, the data path never sees it.
ValidateBurstFn kernel_fn(Kernel k) noexcept {
  switch (k) {
    case Kernel::kScalar:
      return &validate_burst_scalar;
  }
  return nullptr;
}

}  // namespace sluice::simd
