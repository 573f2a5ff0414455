#pragma once
// The ring distributor's symmetric flow hash (lib/pipeline/distributor.h has the whole parse,
// flow_hash_slow): its mix, and burst kernels for the common frame, scalar and AVX2, chosen at
// run time like the validators (dispatch.cpp).

#include <cstdint>

#include "simd/validate.h"

namespace sluice::simd {

// The two addresses ordered and the two ports ordered, each pair on its own, so that swapping
// source and destination gives the same words; then each word times its own odd constant,
// summed, and hash_fmix (worker_of takes the high bits). 32-bit words and multiplies only, so the
// AVX2 kernel computes the same value on eight frames at once. min and max are conditional moves or
// vector min/max, not a branch: whether a packet's source is the larger address is a coin toss
// across the flows of real traffic, and a branch on it cost ~8 cycles a packet there
// (sluice-bench-ring's hash_mixed). Ports and addresses are taken as the little-endian words they
// load as (any fixed byte order hashes both directions alike).
inline constexpr uint32_t kFlowHashLo = 0x9E3779B1u, kFlowHashHi = 0x85EBCA77u,
                          kFlowHashPorts = 0xC2B2AE3Du, kFlowHashProto = 0x27D4EB2Fu;
inline constexpr uint32_t flow_mix(uint32_t a, uint32_t b, uint32_t pa, uint32_t pb,
                                   uint32_t proto) noexcept {
  const uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
  const uint32_t plo = pa < pb ? pa : pb, phi = pa < pb ? pb : pa;
  return hash_fmix(lo * kFlowHashLo + hi * kFlowHashHi + (plo | phi << 16) * kFlowHashPorts +
                   proto * kFlowHashProto);
}

// The common frame, tested a word at a time: at least 38 bytes; bytes 12..14 are ethertype
// 0x0800 and version/IHL 0x45; bytes 20..21 have neither MF nor an offset (DF and the reserved
// bit ignored); byte 23 is TCP or UDP. Then its hash is flow_mix of the addresses (bytes
// 26..29, 30..33), the ports (34..35, 36..37) and the protocol. Returns false for any other
// frame (the full parse takes it).
inline bool flow_hash_fast(const uint8_t* f, uint32_t len, uint32_t* hash) noexcept {
  if (len < 38) return false;
  uint64_t w12, w20;
  uint32_t s, d, ports;
  __builtin_memcpy(&w12, f + 12, 8);
  __builtin_memcpy(&w20, f + 20, 8);
  const auto proto = static_cast<uint8_t>(w20 >> 24);
  if ((w12 & 0xFFFFFF) != 0x450008 || (w20 & 0xFF3F) != 0 || (proto != 6 && proto != 17)) {
    return false;
  }
  __builtin_memcpy(&s, f + 26, 4);
  __builtin_memcpy(&d, f + 30, 4);
  __builtin_memcpy(&ports, f + 34, 4);
  *hash = flow_mix(s, d, ports & 0xFFFF, ports >> 16, proto);
  return true;
}

// Hashes of up to 64 frames (frame i: len[i] bytes readable at data[i]): hashes[i] for every
// frame flow_hash_fast takes, whose bit i the result has; the other frames are the caller's
// (hashes[i] is then unspecified). The AVX2 kernel takes the same frames when at least 44 bytes
// are readable (its loads), and leaves shorter ones to the caller too.
using FlowHashBurstFn = uint64_t (*)(const uint8_t* const* data, const uint32_t* len, unsigned n,
                                     uint32_t* hashes) noexcept;
uint64_t flow_hash_burst_scalar(const uint8_t* const* data, const uint32_t* len, unsigned n,
                                uint32_t* hashes) noexcept;
uint64_t flow_hash_burst_avx2(const uint8_t* const* data, const uint32_t* len, unsigned n,
                              uint32_t* hashes) noexcept;
// The kernel's burst hash (nullptr for a value outside the enum).
FlowHashBurstFn flow_hash_fn(Kernel k) noexcept;

}  // namespace sluice::simd
