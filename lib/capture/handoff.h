#pragma once
// What travels from a worker to the capture lcore: an mbuf reference (the worker adds one to
// its reference count, the capture lcore frees it once its bytes are in a chunk) with the
// burst's RX TSC in an mbuf dynamic field. Header-only: lib/pipeline writes it, lib/capture
// reads it.

#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include <cstdint>

namespace sluice::capture {

inline constexpr const char* kRxTscField = "sluice_dynfield_rx_tsc";

// The field's offset in the mbuf (registering it once per process; the same offset after),
// or -1 with rte_errno set.
inline int register_rx_tsc_field() noexcept {
  static const rte_mbuf_dynfield desc = {
      .name = "sluice_dynfield_rx_tsc",
      .size = sizeof(uint64_t),
      .align = alignof(uint64_t),
      .flags = 0,
  };
  return rte_mbuf_dynfield_register(&desc);
}

inline uint64_t* rx_tsc_of(rte_mbuf* m, int offset) noexcept {
  return RTE_MBUF_DYNFIELD(m, offset, uint64_t*);
}

}  // namespace sluice::capture
