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
// The two addresses ordered and the two ports ordered, each pair on its own, so that swapping
// source and destination gives the same words, then mixed (multiply and xor-shift, splitmix64's
// finaliser). min and max are conditional moves, not a branch: whether a packet's source is
// the larger address is a coin toss across the flows of real traffic, and a branch on it cost
// ~8 cycles a packet there (sluice-bench-ring's hash_mixed), none on a replayed bench whose
// sources all sort below their destinations.
inline uint32_t mix(uint64_t a, uint64_t b, uint16_t pa, uint16_t pb, uint8_t proto) noexcept {
  const uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
  const uint64_t plo = pa < pb ? pa : pb, phi = pa < pb ? pb : pa;
  uint64_t x = lo * 0x9e3779b97f4a7c15ull;
  x ^= (hi + (plo << 40 | phi << 24 | proto)) * 0xc2b2ae3d27d4eb4full;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  return static_cast<uint32_t>(x >> 32);
}
}  // namespace detail

// flow_hash_slow's value; inline for the common frame (untagged IPv4 of 20 header bytes, TCP or
// UDP, not a fragment), the rest out of line. The frame is tested a word at a time: bytes
// 12..14 are ethertype 0x0800 and version/IHL 0x45; bytes 20..21 have neither MF nor an
// offset (DF and the reserved bit ignored); byte 23 is the protocol.
inline uint32_t flow_hash(const uint8_t* f, uint32_t len) noexcept {
  if (len >= 38) [[likely]] {
    uint64_t w12, w20;
    uint32_t s, d, ports;
    __builtin_memcpy(&w12, f + 12, 8);
    __builtin_memcpy(&w20, f + 20, 8);
    const auto proto = static_cast<uint8_t>(w20 >> 24);
    if ((w12 & 0xFFFFFF) == 0x450008 && (w20 & 0xFF3F) == 0 && (proto == 6 || proto == 17))
        [[likely]] {
      __builtin_memcpy(&s, f + 26, 4);
      __builtin_memcpy(&d, f + 30, 4);
      __builtin_memcpy(&ports, f + 34, 4);
      ports = __builtin_bswap32(ports);
      return detail::mix(s, d, static_cast<uint16_t>(ports >> 16), static_cast<uint16_t>(ports),
                         proto);
    }
  }
  return flow_hash_slow(f, len);
}

// The most bytes of a frame flow_hash reads: two tags, an IPv4 header with 40 bytes of options,
// the ports.
inline constexpr uint32_t kFlowHashBytes = 14 + 2 * 4 + 60 + 4;
// Whether a frame's first segment (data_len of its pkt_len bytes) holds all flow_hash reads; a
// chain cut shorter is read across its segments (flow_hash of the mbuf).
inline bool hash_fits_first_segment(uint32_t data_len, uint32_t pkt_len) noexcept {
  return data_len >= (pkt_len < kFlowHashBytes ? pkt_len : kFlowHashBytes);
}

// The worker (0..workers-1) a hash belongs to: an even split without a division.
inline unsigned worker_of(uint32_t hash, unsigned workers) noexcept {
  return static_cast<unsigned>((uint64_t{hash} * workers) >> 32);
}

// flow_hash of an mbuf's frame. A chain whose first segment ends before the bytes the hash
// reads is read across its segments, so every packet of a flow hashes alike however the driver
// cut it.
uint32_t flow_hash(const rte_mbuf* m) noexcept;

}  // namespace sluice::pipeline
