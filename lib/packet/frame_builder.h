#pragma once
// The one frame builder (STYLE 13): Ethernet (VLAN tags), IPv4 (options), IPv6 (extension
// headers), TCP, UDP, SCTP and ICMP headers written into a caller's buffer, with the
// deliberately wrong fields the tests need (raw IHL, version, lengths, data offset, a bad
// checksum), and checksums from DPDK's rte_ip.h. sluice-gen builds its templates with it,
// the benchmarks their traffic, the unit tests their frames. Headers only of DPDK: nothing
// here needs an EAL, and nothing allocates.

#include <rte_ip.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace sluice::packet {

using Mac = std::array<uint8_t, 6>;

inline constexpr uint32_t kEthLen = 14;
inline constexpr uint32_t kVlanLen = 4;
inline constexpr uint32_t kIpv4Len = 20;  // without options
inline constexpr uint32_t kIpv6Len = 40;
inline constexpr uint32_t kUdpLen = 8;
inline constexpr uint32_t kTcpLen = 20;  // without options
inline constexpr uint32_t kSctpLen = 12;
inline constexpr uint32_t kIcmpLen = 8;
inline constexpr uint32_t kIpv6FragLen = 8;

inline constexpr uint16_t kEtherIpv4 = 0x0800;
inline constexpr uint16_t kEtherIpv6 = 0x86DD;
inline constexpr uint16_t kEtherVlan = 0x8100;
inline constexpr uint16_t kEtherQinq = 0x88A8;

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoGre = 47;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoNoNext = 59;
inline constexpr uint8_t kProtoSctp = 132;
// IPv6 extension headers.
inline constexpr uint8_t kProtoHopByHop = 0;
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoAh = 51;
inline constexpr uint8_t kProtoDestOpts = 60;
inline constexpr uint8_t kProtoMobility = 135;
inline constexpr uint8_t kProtoHip = 139;
inline constexpr uint8_t kProtoShim6 = 140;

inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpPshAck = 0x18;
inline constexpr uint8_t kTcpAck = 0x10;

// Big-endian stores and loads at any alignment.
inline void put16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put32(uint8_t* p, uint32_t v) noexcept {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}
inline uint16_t get16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// ---- headers -----------------------------------------------------------------------------
// Each write_* writes one header at p and returns its length; bytes it does not own (payload,
// option contents past what it says) are left as the caller put them.

struct VlanTag {
  uint16_t tpid = kEtherVlan;
  uint16_t tci = 0;  // PCP, DEI and VLAN id
};

// Ethernet header with tags (outermost first) before the ethertype.
uint32_t write_eth(uint8_t* p, const Mac& dst, const Mac& src, uint16_t ethertype,
                   std::span<const VlanTag> tags = {}) noexcept;

struct Ipv4 {
  uint8_t proto = kProtoUdp;
  std::array<uint8_t, 4> src{};
  std::array<uint8_t, 4> dst{};
  std::span<const uint8_t> options{};  // copied after the fixed header
  std::optional<uint8_t> ihl{};        // raw IHL field; default: the header's length / 4
  uint8_t version = 4;
  uint16_t frag = 0;                    // flags and fragment offset field
  std::optional<uint16_t> total_len{};  // default: header + payload_len
  uint16_t id = 0;
  uint8_t tos = 0;
  uint8_t ttl = 64;
  bool bad_checksum = false;  // the right checksum + 1
};

// The IPv4 header (options included) of a payload_len-byte payload, its checksum set.
uint32_t write_ipv4(uint8_t* p, const Ipv4& h, uint32_t payload_len) noexcept;

// Sets the checksum of the IPv4 header at ip, header_len bytes long (default: its IHL) -
// a header whose IHL field is deliberately wrong still gets a right checksum of the bytes.
void set_ipv4_cksum(uint8_t* ip, uint32_t header_len = 0) noexcept;

struct Ipv6 {
  uint8_t next = kProtoUdp;
  std::array<uint8_t, 16> src{};
  std::array<uint8_t, 16> dst{};
  uint8_t version = 6;
  std::optional<uint16_t> payload_len{};  // default: payload_len, extension headers included
  uint8_t hop_limit = 64;
};

uint32_t write_ipv6(uint8_t* p, const Ipv6& h, uint32_t payload_len) noexcept;

// An extension header of the (len_units + 1) * 8 kind (hop-by-hop, routing, destination
// options, mobility, HIP, shim6): a PadN option fills it, so options-type headers are well
// formed.
uint32_t write_ipv6_ext(uint8_t* p, uint8_t next, uint8_t len_units = 0) noexcept;
// Authentication header, (len_field + 2) * 4 bytes: next, length, reserved; SPI, sequence
// number and ICV are the caller's.
uint32_t write_ipv6_ah(uint8_t* p, uint8_t next, uint8_t len_field) noexcept;
// Fragment header.
uint32_t write_ipv6_frag(uint8_t* p, uint8_t next, uint16_t offset_units, bool more,
                         uint32_t id) noexcept;

// UDP header, checksum 0 (none).
uint32_t write_udp(uint8_t* p, uint16_t sport, uint16_t dport, uint16_t len) noexcept;

struct Tcp {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t seq = 0;
  uint8_t data_offset = 5;  // raw field, in 32-bit words
  uint8_t flags = kTcpSyn;
  uint16_t window = 0;
};

// The fixed 20 bytes of a TCP header, checksum 0; options past them are the caller's.
uint32_t write_tcp(uint8_t* p, const Tcp& h) noexcept;
uint32_t write_sctp(uint8_t* p, uint16_t sport, uint16_t dport) noexcept;
uint32_t write_icmp(uint8_t* p, uint8_t type, uint8_t code = 0) noexcept;

// ---- L4 checksums ------------------------------------------------------------------------
// Each sets the TCP or UDP checksum field of the segment at l4 and returns the segment's raw
// sum (not complemented, in rte_raw_cksum's byte order, taken with the field zero), which
// cksum_extend() finishes when more bytes are written into the segment later.

// Behind the IPv4 header at ip: its protocol, addresses, IHL and total length as written.
uint16_t set_l4_cksum_v4(const uint8_t* ip, uint8_t* l4) noexcept;
// Behind the IPv6 header at ip (its addresses): a segment of len bytes of protocol proto,
// extension headers between them or not (RFC 8200 8.1: the upper-layer length and protocol).
uint16_t set_l4_cksum_v6(const uint8_t* ip, uint8_t* l4, uint16_t len, uint8_t proto) noexcept;

// The checksum field (to store as is: network byte order) of a segment whose raw sum was
// `raw` with n bytes at offset `at` from its start still zero, once they hold p[0..n).
// A UDP checksum that computes to 0 is sent as 0xFFFF (RFC 768). No allocation; a few ns.
inline uint16_t cksum_extend(uint16_t raw, const uint8_t* p, size_t n, size_t at,
                             bool udp) noexcept {
  uint16_t part = rte_raw_cksum(p, n);
  // Words at an odd offset from the segment start add in byte-swapped (RFC 1071, 2.(B)).
  if (at & 1) part = static_cast<uint16_t>(part << 8 | part >> 8);
  uint32_t s = uint32_t{raw} + part;
  s = (s & 0xFFFF) + (s >> 16);
  auto c = static_cast<uint16_t>(~s);
  if (c == 0 && udp) c = 0xFFFF;
  return c;
}

// ---- whole frames ------------------------------------------------------------------------

// A well-formed Ethernet [+ 802.1Q] + IPv4/IPv6 + UDP/TCP frame.
struct Frame {
  Mac dst{};
  Mac src{};
  std::optional<uint16_t> vlan{};  // one 802.1Q tag with this TCI
  bool ipv6 = false;
  uint8_t proto = kProtoUdp;         // kProtoUdp or kProtoTcp
  std::array<uint8_t, 16> src_ip{};  // IPv4: the first 4 bytes
  std::array<uint8_t, 16> dst_ip{};
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint16_t ip_id = 0;    // IPv4 only
  uint16_t ip_frag = 0;  // IPv4 only: flags and fragment offset
  uint32_t tcp_seq = 0;
  uint8_t tcp_flags = kTcpAck;
  uint16_t tcp_window = 0xFFFF;
  bool l4_cksum = false;  // a UDP or TCP checksum of 0 otherwise
};

// Where write_frame put things.
struct Layout {
  uint32_t len = 0;  // headers + payload
  uint16_t l3 = 0;
  uint16_t l4 = 0;
  uint16_t cksum_off = 0;  // the L4 checksum field
  uint16_t l4_raw = 0;     // the segment's raw sum when f.l4_cksum (see cksum_extend)
};

// Writes the frame with an L4 payload of payload_len bytes at p; the payload is what p
// holds there already (zero it first for a zero payload). Bytes past layout.len (Ethernet
// padding) are not touched.
Layout write_frame(uint8_t* p, const Frame& f, uint32_t payload_len) noexcept;

// Headers only: the length write_frame gives a zero payload.
uint32_t frame_header_len(const Frame& f) noexcept;

}  // namespace sluice::packet
