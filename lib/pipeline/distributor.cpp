#include "lib/pipeline/distributor.h"

#include <rte_mbuf.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace sluice::pipeline {

namespace {

uint16_t be16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

uint32_t load32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint16_t load16(const uint8_t* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

bool has_ports(uint8_t proto) noexcept {
  return proto == 6 /* TCP */ || proto == 17 /* UDP */ || proto == 132 /* SCTP */;
}

}  // namespace

uint32_t flow_hash_slow(const uint8_t* f, uint32_t len) noexcept {
  if (len < 14) return 0;
  uint32_t off = 12;
  uint16_t type = be16(f + off);
  for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88a8); ++tags) {
    if (len < off + 6) return type;
    off += 4;
    type = be16(f + off);
  }
  off += 2;  // start of L3
  if (type == 0x0800) {
    if (len < off + 20) return type;
    const uint8_t* ip = f + off;
    const uint32_t ihl = uint32_t{ip[0] & 0x0fu} * 4;
    const uint8_t proto = ip[9];
    const bool first_fragment_only = (be16(ip + 6) & 0x3fff) == 0;  // neither MF nor an offset
    uint16_t sp = 0, dp = 0;
    if (has_ports(proto) && first_fragment_only && ihl >= 20 && len >= off + ihl + 4) {
      sp = load16(ip + ihl);
      dp = load16(ip + ihl + 2);
    }
    return simd::flow_mix(load32(ip + 12), load32(ip + 16), sp, dp, proto);
  }
  if (type == 0x86dd) {
    if (len < off + 40) return type;
    const uint8_t* ip = f + off;
    const uint8_t proto = ip[6];
    uint16_t sp = 0, dp = 0;
    if (has_ports(proto) && len >= off + 44) {
      sp = load16(ip + 40);
      dp = load16(ip + 42);
    }
    // Each address folded to 32 bits first, so the pair orders as a whole.
    const uint32_t s = load32(ip + 8) ^ load32(ip + 12) ^ load32(ip + 16) ^ load32(ip + 20);
    const uint32_t d = load32(ip + 24) ^ load32(ip + 28) ^ load32(ip + 32) ^ load32(ip + 36);
    return simd::flow_mix(s, d, sp, dp, proto);
  }
  return type;
}

uint32_t flow_hash(const rte_mbuf* m) noexcept {
  if (hash_fits_first_segment(m->data_len, m->pkt_len)) [[likely]]
    return flow_hash(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len);
  const uint32_t want = std::min<uint32_t>(m->pkt_len, kFlowHashBytes);
  std::array<uint8_t, kFlowHashBytes> copy;
  const auto* f = static_cast<const uint8_t*>(rte_pktmbuf_read(m, 0, want, copy.data()));
  return f != nullptr ? flow_hash(f, want) : 0;
}

}  // namespace sluice::pipeline
