#pragma once
// The ring distributor (CONTRACT `distribute: ring`): a port without RSS has one RX queue,
// and the worker that polls it spreads each burst over the workers by a symmetric flow hash.
// Its own share it processes at once; the rest goes, in arrival order, into one SP/SC
// rte_ring per (port, worker), which the receiving worker drains between its RX polls. A flow
// always hashes to one worker and takes one path to it, so its packets stay in order; both
// directions of a flow hash alike, so they meet on one worker (as a symmetric RSS key does on a
// NIC). A full ring drops what does not fit and counts it under ring_full; nothing waits.

#include <cstdint>

struct rte_mbuf;

namespace sluice::pipeline {

// Symmetric flow hash of a frame's bytes: IPv4/IPv6 addresses, protocol and, for TCP, UDP and
// SCTP first fragments, the ports; the same value with source and destination swapped. VLAN
// and QinQ tags are skipped. Non-IP and truncated frames hash by what they have (their
// EtherType), so they land on one worker, in order.
uint32_t flow_hash_slow(const uint8_t* frame, uint32_t len) noexcept;

namespace detail {
// The endpoints ordered, so that swapping them gives the same words, then mixed (multiply and
// xor-shift, splitmix64's finaliser).
inline uint32_t mix(uint64_t a, uint64_t b, uint16_t pa, uint16_t pb, uint8_t proto) noexcept {
  if (a > b || (a == b && pa > pb)) {
    const uint64_t t = a;
    a = b;
    b = t;
    const uint16_t u = pa;
    pa = pb;
    pb = u;
  }
  uint64_t x = a * 0x9e3779b97f4a7c15ull;
  x ^= (b + (uint64_t{pa} << 40 | uint64_t{pb} << 24 | proto)) * 0xc2b2ae3d27d4eb4full;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  return static_cast<uint32_t>(x >> 32);
}
}  // namespace detail

// flow_hash_slow's value; inline for the common frame (untagged IPv4 of 20 header bytes, TCP or
// UDP, not a fragment), the rest out of line.
inline uint32_t flow_hash(const uint8_t* f, uint32_t len) noexcept {
  if (len >= 38 && f[12] == 0x08 && f[13] == 0x00 && f[14] == 0x45 && (f[23] == 6 || f[23] == 17) &&
      (f[20] & 0x3f) == 0 && f[21] == 0) [[likely]] {
    uint32_t s, d;
    __builtin_memcpy(&s, f + 26, 4);
    __builtin_memcpy(&d, f + 30, 4);
    return detail::mix(s, d, static_cast<uint16_t>(f[34] << 8 | f[35]),
                       static_cast<uint16_t>(f[36] << 8 | f[37]), f[23]);
  }
  return flow_hash_slow(f, len);
}

// The worker (0..workers-1) a hash belongs to: an even split without a division.
inline unsigned worker_of(uint32_t hash, unsigned workers) noexcept {
  return static_cast<unsigned>((uint64_t{hash} * workers) >> 32);
}

// flow_hash of an mbuf's first segment.
uint32_t flow_hash(const rte_mbuf* m) noexcept;

}  // namespace sluice::pipeline
