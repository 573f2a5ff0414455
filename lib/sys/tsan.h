#pragma once
// ThreadSanitizer annotations for hand-offs ordered by code TSan cannot see: DPDK is the
// distribution's uninstrumented build, and rte_ring on x86 orders its stores with compiler
// barriers and volatile. A release on an address before the hand-off and an acquire on it
// after show TSan the edge that is really there. Nothing at all outside a TSan build.

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace sluice::sys {

inline void tsan_release(const void* addr) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(addr));
#else
  (void)addr;
#endif
}

inline void tsan_acquire(const void* addr) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(addr));
#else
  (void)addr;
#endif
}

}  // namespace sluice::sys
