#pragma once
// The ring distributor (CONTRACT `distribute: ring`): a port without RSS has one RX queue,
// and the worker that polls it spreads each burst over the workers by a symmetric flow hash.
// Its own share it processes at once; the rest goes, in arrival order, into one SP/SC
// rte_ring per (port, worker), which the receiving worker drains between its RX polls. A flow
// always hashes to one worker and takes one path to it, so its packets stay in order; both
// directions of a flow hash alike, so they meet on one worker (as a symmetric RSS key does on a
// NIC). A full ring drops what does not fit and counts it under ring_full; nothing waits.

#include <cstdint>

#include "simd/flow_hash.h"

struct rte_mbuf;

namespace sluice::pipeline {

// Symmetric flow hash of a frame's bytes: IPv4/IPv6 addresses, protocol and, for TCP, UDP and
// SCTP first fragments, the ports; the same value with source and destination swapped. VLAN
// and QinQ tags are skipped. Non-IP and truncated frames hash by what they have (their
// EtherType), so they land on one worker, in order.
uint32_t flow_hash_slow(const uint8_t* frame, uint32_t len) noexcept;

// flow_hash_slow's value; inline for the common frame (simd::flow_hash_fast), the rest out of
// line.
inline uint32_t flow_hash(const uint8_t* f, uint32_t len) noexcept {
  uint32_t h;
  if (simd::flow_hash_fast(f, len, &h)) [[likely]]
    return h;
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
