// The DPDK anchor of `tools/bench/run validate`: the validator's checks written the way a DPDK
// application writes them (rte_ether/rte_vlan/rte_ipv4/rte_ipv6/rte_tcp/rte_udp headers, plain
// field tests, rte_ipv4_cksum), one packet at a time, producing the same verdicts and keys.
// It covers Ethernet with up to two tags, IPv4 (options, fragments), IPv6 without extension
// headers, TCP/UDP/SCTP/ICMP: the benchmark traffic. An IPv6 extension header is counted as
// ipv6_ext (the anchor does not walk chains); the bench checks its outputs against the
// reference on its traffic before timing it.

#include "tools/bench/validate_anchor.h"

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_sctp.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <cstring>

namespace sluice::bench {

namespace {

using simd::CksumHint;
using simd::Family;
using simd::FlowKey;
using simd::PacketView;
using simd::Verdict;

bool is_tag(rte_be16_t type) {
  return type == RTE_BE16(RTE_ETHER_TYPE_VLAN) || type == RTE_BE16(RTE_ETHER_TYPE_QINQ) ||
         type == RTE_BE16(RTE_ETHER_TYPE_QINQ1);
}

bool is_ipv6_ext(uint8_t proto) {
  switch (proto) {
    case IPPROTO_HOPOPTS:
    case IPPROTO_ROUTING:
    case IPPROTO_FRAGMENT:
    case IPPROTO_DSTOPTS:
    case IPPROTO_AH:
    case 135:  // mobility
    case 139:  // HIP
    case 140:  // shim6
      return true;
    default:
      return false;
  }
}

// L4 of an unfragmented packet or first fragment: header room, TCP data offset, UDP length.
Verdict check_l4(const PacketView& p, uint32_t l4, uint32_t payload, bool fragment, FlowKey& key) {
  key.l4_offset = static_cast<uint16_t>(l4);
  uint32_t need = 0;
  switch (key.proto) {
    case IPPROTO_TCP:
      need = sizeof(rte_tcp_hdr);
      break;
    case IPPROTO_UDP:
      need = sizeof(rte_udp_hdr);
      break;
    case IPPROTO_SCTP:
      need = sizeof(rte_sctp_hdr);
      break;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      need = sizeof(rte_icmp_hdr);
      break;
    default:
      return Verdict::kOk;
  }
  if (payload < need || l4 + need > p.data_len) return Verdict::kL4Truncated;
  const uint8_t* h = p.data + l4;
  if (key.proto == IPPROTO_TCP) {
    const auto* tcp = reinterpret_cast<const rte_tcp_hdr*>(h);
    const uint32_t off = (tcp->data_off >> 4) * 4u;
    if (off < sizeof(rte_tcp_hdr) || off > payload) return Verdict::kTcpOffset;
    key.src_port = tcp->src_port;
    key.dst_port = tcp->dst_port;
  } else if (key.proto == IPPROTO_UDP) {
    const auto* udp = reinterpret_cast<const rte_udp_hdr*>(h);
    const uint32_t len = rte_be_to_cpu_16(udp->dgram_len);
    if (len < sizeof(rte_udp_hdr) || (!fragment && len > payload)) return Verdict::kUdpLength;
    key.src_port = udp->src_port;
    key.dst_port = udp->dst_port;
  } else if (key.proto == IPPROTO_SCTP) {
    const auto* sctp = reinterpret_cast<const rte_sctp_hdr*>(h);
    key.src_port = sctp->src_port;
    key.dst_port = sctp->dst_port;
  } else {
    return Verdict::kOk;
  }
  key.l4_valid = 1;
  return Verdict::kOk;
}

Verdict check_ipv4(const PacketView& p, uint32_t l3, FlowKey& key) {
  if (p.data_len < l3 + sizeof(rte_ipv4_hdr)) return Verdict::kL3Truncated;
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(p.data + l3);
  if ((ip->version_ihl >> 4) != 4) return Verdict::kIpv4Version;
  const uint32_t hl = rte_ipv4_hdr_len(ip);
  if (hl < sizeof(rte_ipv4_hdr) || l3 + hl > p.data_len) return Verdict::kIpv4Ihl;
  const uint32_t total = rte_be_to_cpu_16(ip->total_length);
  if (total < hl || l3 + total > p.frame_len) return Verdict::kIpv4Length;
  if (p.ip_cksum == CksumHint::kBad) return Verdict::kIpv4Checksum;
  if (p.ip_cksum != CksumHint::kGood && rte_ipv4_cksum(ip) != 0) return Verdict::kIpv4Checksum;
  key.family = Family::kIpv4;
  key.proto = ip->next_proto_id;
  std::memcpy(key.src.data(), &ip->src_addr, 4);
  std::memcpy(key.dst.data(), &ip->dst_addr, 4);
  const uint16_t frag = rte_be_to_cpu_16(ip->fragment_offset);
  const bool non_first = (frag & RTE_IPV4_HDR_OFFSET_MASK) != 0;
  key.fragment = non_first || (frag & RTE_IPV4_HDR_MF_FLAG) != 0;
  if (non_first) return Verdict::kOk;
  return check_l4(p, l3 + hl, total - hl, key.fragment != 0, key);
}

Verdict check_ipv6(const PacketView& p, uint32_t l3, FlowKey& key) {
  if (p.data_len < l3 + sizeof(rte_ipv6_hdr)) return Verdict::kL3Truncated;
  const auto* ip = reinterpret_cast<const rte_ipv6_hdr*>(p.data + l3);
  if ((rte_be_to_cpu_32(ip->vtc_flow) >> 28) != 6) return Verdict::kIpv6Version;
  const uint32_t payload = rte_be_to_cpu_16(ip->payload_len);
  if (l3 + sizeof(rte_ipv6_hdr) + payload > p.frame_len) return Verdict::kIpv6Length;
  if (is_ipv6_ext(ip->proto)) return Verdict::kIpv6Ext;
  key.family = Family::kIpv6;
  key.proto = ip->proto;
  std::memcpy(key.src.data(), ip->src_addr, 16);
  std::memcpy(key.dst.data(), ip->dst_addr, 16);
  return check_l4(p, l3 + sizeof(rte_ipv6_hdr), payload, false, key);
}

Verdict check_one(const PacketView& p, FlowKey& out) {
  if (p.data_len < sizeof(rte_ether_hdr)) return Verdict::kRunt;
  rte_be16_t type = reinterpret_cast<const rte_ether_hdr*>(p.data)->ether_type;
  uint32_t l3 = sizeof(rte_ether_hdr);
  for (int tags = 0; tags < 2 && is_tag(type); ++tags) {
    if (p.data_len < l3 + sizeof(rte_vlan_hdr)) return Verdict::kRunt;
    type = reinterpret_cast<const rte_vlan_hdr*>(p.data + l3)->eth_proto;
    l3 += sizeof(rte_vlan_hdr);
  }
  FlowKey key{};
  key.l3_offset = static_cast<uint16_t>(l3);
  Verdict v = Verdict::kOk;
  if (type == RTE_BE16(RTE_ETHER_TYPE_IPV4)) {
    v = check_ipv4(p, l3, key);
  } else if (type == RTE_BE16(RTE_ETHER_TYPE_IPV6)) {
    v = check_ipv6(p, l3, key);
  }
  if (v == Verdict::kOk) out = key;
  return v;
}

}  // namespace

uint16_t validate_burst_anchor(const PacketView* pkts, uint16_t n, uint8_t in_port, FlowKey* keys,
                               uint32_t* hashes, Verdict* verdicts) noexcept {
  uint16_t nb_ok = 0;
  for (uint16_t i = 0; i < n; ++i) {
    verdicts[i] = check_one(pkts[i], keys[i]);
    if (verdicts[i] != Verdict::kOk) continue;
    ++nb_ok;
    keys[i].in_port = in_port;
    if (hashes != nullptr) hashes[i] = simd::key_hash(keys[i]);
  }
  return nb_ok;
}

}  // namespace sluice::bench
