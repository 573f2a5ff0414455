#pragma once
// The DPDK anchor of the validate benchmark (validate_anchor.cpp).

#include <cstdint>

#include "simd/validate.h"

namespace sluice::bench {

// The reference's checks in plain DPDK style, one packet at a time (no IPv6 extension chains).
uint16_t validate_burst_anchor(const simd::PacketView* pkts, uint16_t n, uint8_t in_port,
                               simd::FlowKey* keys, uint32_t* hashes,
                               simd::Verdict* verdicts) noexcept;

}  // namespace sluice::bench
