#include "lib/packet/frame_builder.h"

#include <algorithm>

namespace sluice::packet {

namespace {

// A checksum DPDK computed (network byte order in a host integer) into its field.
void store_cksum(uint8_t* field, uint16_t c) noexcept {
  std::memcpy(field, &c, 2);
}

uint32_t l4_cksum_field(uint8_t proto) noexcept {
  return proto == kProtoUdp ? 6u : 16u;
}

}  // namespace

uint32_t write_eth(uint8_t* p, const Mac& dst, const Mac& src, uint16_t ethertype,
                   std::span<const VlanTag> tags) noexcept {
  std::memcpy(p, dst.data(), 6);
  std::memcpy(p + 6, src.data(), 6);
  uint32_t off = 12;
  for (const VlanTag& t : tags) {
    put16(p + off, t.tpid);
    put16(p + off + 2, t.tci);
    off += kVlanLen;
  }
  put16(p + off, ethertype);
  return off + 2;
}

void set_ipv4_cksum(uint8_t* ip, uint32_t header_len) noexcept {
  const uint32_t ihl_len = (ip[0] & 0x0Fu) * 4;
  if (header_len == 0) header_len = ihl_len;
  put16(ip + 10, 0);
  const auto* h = reinterpret_cast<const rte_ipv4_hdr*>(ip);
  store_cksum(ip + 10, header_len == ihl_len
                           ? rte_ipv4_cksum(h)
                           : static_cast<uint16_t>(~rte_raw_cksum(ip, header_len)));
}

uint32_t write_ipv4(uint8_t* p, const Ipv4& h, uint32_t payload_len) noexcept {
  const auto len = static_cast<uint32_t>(kIpv4Len + h.options.size());
  const uint8_t ihl = h.ihl.value_or(static_cast<uint8_t>(len / 4));
  p[0] = static_cast<uint8_t>(h.version << 4 | (ihl & 0x0F));
  p[1] = h.tos;
  put16(p + 2, h.total_len.value_or(static_cast<uint16_t>(len + payload_len)));
  put16(p + 4, h.id);
  put16(p + 6, h.frag);
  p[8] = h.ttl;
  p[9] = h.proto;
  std::memcpy(p + 12, h.src.data(), 4);
  std::memcpy(p + 16, h.dst.data(), 4);
  if (!h.options.empty()) std::memcpy(p + kIpv4Len, h.options.data(), h.options.size());
  set_ipv4_cksum(p, len);
  if (h.bad_checksum) put16(p + 10, static_cast<uint16_t>(get16(p + 10) + 1));
  return len;
}

uint32_t write_ipv6(uint8_t* p, const Ipv6& h, uint32_t payload_len) noexcept {
  put32(p, static_cast<uint32_t>(h.version) << 28);
  put16(p + 4, h.payload_len.value_or(static_cast<uint16_t>(payload_len)));
  p[6] = h.next;
  p[7] = h.hop_limit;
  std::memcpy(p + 8, h.src.data(), 16);
  std::memcpy(p + 24, h.dst.data(), 16);
  return kIpv6Len;
}

uint32_t write_ipv6_ext(uint8_t* p, uint8_t next, uint8_t len_units) noexcept {
  const uint32_t len = (len_units + 1u) * 8;
  std::memset(p, 0, len);
  p[0] = next;
  p[1] = len_units;
  p[2] = 1;  // PadN over the rest
  p[3] = static_cast<uint8_t>(len - 4);
  return len;
}

uint32_t write_ipv6_ah(uint8_t* p, uint8_t next, uint8_t len_field) noexcept {
  p[0] = next;
  p[1] = len_field;
  p[2] = p[3] = 0;
  return (len_field + 2u) * 4;
}

uint32_t write_ipv6_frag(uint8_t* p, uint8_t next, uint16_t offset_units, bool more,
                         uint32_t id) noexcept {
  p[0] = next;
  p[1] = 0;
  put16(p + 2, static_cast<uint16_t>(offset_units << 3 | (more ? 1 : 0)));
  put32(p + 4, id);
  return kIpv6FragLen;
}

uint32_t write_udp(uint8_t* p, uint16_t sport, uint16_t dport, uint16_t len) noexcept {
  put16(p, sport);
  put16(p + 2, dport);
  put16(p + 4, len);
  put16(p + 6, 0);
  return kUdpLen;
}

uint32_t write_tcp(uint8_t* p, const Tcp& h) noexcept {
  std::memset(p, 0, kTcpLen);
  put16(p, h.sport);
  put16(p + 2, h.dport);
  put32(p + 4, h.seq);
  p[12] = static_cast<uint8_t>(h.data_offset << 4);
  p[13] = h.flags;
  put16(p + 14, h.window);
  return kTcpLen;
}

uint32_t write_sctp(uint8_t* p, uint16_t sport, uint16_t dport) noexcept {
  std::memset(p, 0, kSctpLen);
  put16(p, sport);
  put16(p + 2, dport);
  return kSctpLen;
}

uint32_t write_icmp(uint8_t* p, uint8_t type, uint8_t code) noexcept {
  std::memset(p, 0, kIcmpLen);
  p[0] = type;
  p[1] = code;
  return kIcmpLen;
}

uint16_t set_l4_cksum_v4(const uint8_t* ip, uint8_t* l4) noexcept {
  uint8_t* field = l4 + l4_cksum_field(ip[9]);
  put16(field, 0);
  const uint16_t c = rte_ipv4_udptcp_cksum(reinterpret_cast<const rte_ipv4_hdr*>(ip), l4);
  store_cksum(field, c);
  return static_cast<uint16_t>(~c);
}

uint16_t set_l4_cksum_v6(const uint8_t* ip, uint8_t* l4, uint16_t len, uint8_t proto) noexcept {
  // rte_ipv6_udptcp_cksum takes length and protocol from the IPv6 header, which with
  // extension headers are not the upper layer's: give it a header that says the segment's.
  rte_ipv6_hdr pseudo{};
  std::memcpy(pseudo.src_addr, ip + 8, 16);
  std::memcpy(pseudo.dst_addr, ip + 24, 16);
  pseudo.payload_len = rte_cpu_to_be_16(len);
  pseudo.proto = proto;
  uint8_t* field = l4 + l4_cksum_field(proto);
  put16(field, 0);
  const uint16_t c = rte_ipv6_udptcp_cksum(&pseudo, l4);
  store_cksum(field, c);
  return static_cast<uint16_t>(~c);
}

uint32_t frame_header_len(const Frame& f) noexcept {
  return kEthLen + (f.vlan ? kVlanLen : 0) + (f.ipv6 ? kIpv6Len : kIpv4Len) +
         (f.proto == kProtoTcp ? kTcpLen : kUdpLen);
}

Layout write_frame(uint8_t* p, const Frame& f, uint32_t payload_len) noexcept {
  Layout at;
  const VlanTag tag{kEtherVlan, f.vlan.value_or(0)};
  at.l3 =
      static_cast<uint16_t>(write_eth(p, f.dst, f.src, f.ipv6 ? kEtherIpv6 : kEtherIpv4,
                                      f.vlan ? std::span(&tag, 1) : std::span<const VlanTag>{}));
  const uint32_t l4_len = (f.proto == kProtoTcp ? kTcpLen : kUdpLen) + payload_len;
  uint8_t* ip = p + at.l3;
  if (f.ipv6) {
    Ipv6 h;
    h.next = f.proto;
    std::copy(f.src_ip.begin(), f.src_ip.end(), h.src.begin());
    std::copy(f.dst_ip.begin(), f.dst_ip.end(), h.dst.begin());
    at.l4 = static_cast<uint16_t>(at.l3 + write_ipv6(ip, h, l4_len));
  } else {
    Ipv4 h;
    h.proto = f.proto;
    std::copy(f.src_ip.begin(), f.src_ip.begin() + 4, h.src.begin());
    std::copy(f.dst_ip.begin(), f.dst_ip.begin() + 4, h.dst.begin());
    h.id = f.ip_id;
    h.frag = f.ip_frag;
    at.l4 = static_cast<uint16_t>(at.l3 + write_ipv4(ip, h, l4_len));
  }
  uint8_t* l4 = p + at.l4;
  if (f.proto == kProtoTcp) {
    write_tcp(l4, {f.sport, f.dport, f.tcp_seq, 5, f.tcp_flags, f.tcp_window});
  } else {
    write_udp(l4, f.sport, f.dport, static_cast<uint16_t>(l4_len));
  }
  at.cksum_off = static_cast<uint16_t>(at.l4 + l4_cksum_field(f.proto));
  if (f.l4_cksum) {
    at.l4_raw = f.ipv6 ? set_l4_cksum_v6(ip, l4, static_cast<uint16_t>(l4_len), f.proto)
                       : set_l4_cksum_v4(ip, l4);
  }
  at.len = at.l4 + l4_len;
  return at;
}

}  // namespace sluice::packet
