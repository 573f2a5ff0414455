// The frame builder (lib/packet) against a checksum written here from RFC 1071 (big-endian
// 16-bit words, end-around carry), and against values pinned from the four builders it
// replaced (computed independently, in Python, from the RFCs): the generator's templates, the
// benchmarks' traffic and the tests' frames depend on these bytes staying what they are.

#include "lib/packet/frame_builder.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sluice::packet {
namespace {

using Bytes = std::vector<uint8_t>;

// RFC 1071: the ones'-complement sum of big-endian words, an odd last byte padded with zero.
uint32_t ref_sum(const uint8_t* p, size_t n, uint32_t s = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) s += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) s += static_cast<uint32_t>(p[n - 1] << 8);
  return s;
}
uint16_t ref_cksum(uint32_t s) {
  while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
  return static_cast<uint16_t>(~s);
}
// The TCP/UDP checksum over the pseudo-header (addresses of addr_len bytes each at addrs,
// protocol, segment length) and the segment, its checksum field taken as zero.
uint16_t ref_l4(const uint8_t* addrs, size_t addr_len, uint8_t proto, const uint8_t* seg,
                size_t len) {
  Bytes copy(seg, seg + len);
  put16(copy.data() + (proto == kProtoUdp ? 6 : 16), 0);
  uint32_t s = ref_sum(addrs, 2 * addr_len) + proto + static_cast<uint32_t>(len);
  const uint16_t c = ref_cksum(ref_sum(copy.data(), len, s));
  return c == 0 && proto == kProtoUdp ? 0xFFFF : c;
}

std::string hex(const Bytes& b) {
  std::string s;
  for (uint8_t x : b) {
    char h[3];
    std::snprintf(h, sizeof h, "%02x", x);
    s += h;
  }
  return s;
}

Bytes payload(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 37 + 1);
  return b;
}

// RFC 1071's usual worked example (a UDP datagram's IPv4 header): checksum 0xB861.
TEST(FrameBuilder, Ipv4HeaderChecksumOfAKnownHeader) {
  Bytes ip(kIpv4Len);
  Ipv4 h;
  h.src = {192, 168, 0, 1};
  h.dst = {192, 168, 0, 199};
  h.frag = 0x4000;
  ASSERT_EQ(write_ipv4(ip.data(), h, 0x73 - kIpv4Len), kIpv4Len);
  EXPECT_EQ(hex(ip), "45000073000040004011b861c0a80001c0a800c7");
  EXPECT_EQ(ref_sum(ip.data(), ip.size()) % 0xFFFF, 0u) << "a right checksum sums to 0xFFFF";
}

// Every header checksum agrees with the reference, options and all; bad_checksum is one off.
TEST(FrameBuilder, Ipv4ChecksumMatchesTheReference) {
  for (unsigned i = 0; i < 200; ++i) {
    Bytes opts(4 * (i % 11), static_cast<uint8_t>(i));
    Ipv4 h;
    h.proto = static_cast<uint8_t>(i * 7);
    h.src = {static_cast<uint8_t>(i), static_cast<uint8_t>(i * 3), 0xFF, 0xFF};
    h.dst = {0xFF, static_cast<uint8_t>(i * 5), static_cast<uint8_t>(255 - i), 1};
    h.id = static_cast<uint16_t>(i * 4099);
    h.frag = static_cast<uint16_t>(i * 111);
    h.options = opts;
    Bytes ip(kIpv4Len + opts.size());
    write_ipv4(ip.data(), h, i);
    Bytes zeroed = ip;
    put16(zeroed.data() + 10, 0);
    EXPECT_EQ(get16(ip.data() + 10), ref_cksum(ref_sum(zeroed.data(), zeroed.size()))) << i;
    h.bad_checksum = true;
    write_ipv4(ip.data(), h, i);
    EXPECT_EQ(get16(ip.data() + 10),
              static_cast<uint16_t>(ref_cksum(ref_sum(zeroed.data(), zeroed.size())) + 1));
  }
}

// A wrong IHL (the ipv4_ihl tests) still gets the right checksum of the bytes written.
TEST(FrameBuilder, RawIhlKeepsAChecksumOfTheWrittenHeader) {
  for (uint8_t ihl : {0, 4, 6, 15}) {
    Ipv4 h;
    h.ihl = ihl;
    Bytes ip(kIpv4Len);
    write_ipv4(ip.data(), h, 8);
    EXPECT_EQ(ip[0], 0x40 | ihl);
    EXPECT_EQ(ref_sum(ip.data(), ip.size()) % 0xFFFF, 0u) << int{ihl};
  }
}

Frame flow(bool ipv6, uint8_t proto) {
  Frame f;
  f.dst = {2, 0, 0, 0, 0, 2};
  f.src = {2, 0, 0, 0, 0, 1};
  f.ipv6 = ipv6;
  f.proto = proto;
  if (ipv6) {
    f.src_ip = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    f.dst_ip = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  } else {
    f.src_ip = {10, 0, 0, 1};
    f.dst_ip = {192, 168, 0, 1};
  }
  f.sport = 1024;
  f.dport = 5001;
  f.ip_id = 7;
  f.tcp_seq = 1;
  f.tcp_flags = kTcpPshAck;
  f.l4_cksum = true;
  return f;
}

// sluice-gen's kind of frame: IPv4/TCP and IPv6/UDP with an odd-length payload, checksums
// pinned (RFC 793/768 pseudo-headers, computed in Python) and checked against the reference.
TEST(FrameBuilder, L4ChecksumsArePinnedAndMatchTheReference) {
  const Bytes pay = payload(13);
  struct Case {
    bool ipv6;
    uint8_t proto;
    uint16_t ip_cksum, l4_cksum;
  };
  for (const Case c : {Case{false, kProtoTcp, 0xB012, 0xB24E}, Case{true, kProtoUdp, 0, 0x7189}}) {
    const Frame f = flow(c.ipv6, c.proto);
    Bytes b(frame_header_len(f) + pay.size());
    std::copy(pay.begin(), pay.end(), b.end() - static_cast<long>(pay.size()));
    const Layout at = write_frame(b.data(), f, static_cast<uint32_t>(pay.size()));
    ASSERT_EQ(at.len, b.size());
    ASSERT_EQ(at.l3, kEthLen);
    if (!c.ipv6) {
      EXPECT_EQ(get16(&b[at.l3 + 10]), c.ip_cksum);
    }
    EXPECT_EQ(get16(&b[at.cksum_off]), c.l4_cksum);
    const size_t addr = c.ipv6 ? 16 : 4;
    EXPECT_EQ(get16(&b[at.cksum_off]),
              ref_l4(&b[at.l3 + (c.ipv6 ? 8 : 12)], addr, c.proto, &b[at.l4], b.size() - at.l4));
  }
}

// Behind a hop-by-hop header the pseudo-header carries the UDP length and protocol, not the
// IPv6 header's: the same segment has the same checksum as without it.
TEST(FrameBuilder, Ipv6ChecksumSkipsExtensionHeaders) {
  const Bytes pay = payload(13);
  const Frame f = flow(true, kProtoUdp);
  Bytes b(kEthLen + kIpv6Len + 8 + kUdpLen + pay.size());
  uint8_t* ip = b.data() + write_eth(b.data(), f.dst, f.src, kEtherIpv6);
  const auto seg_len = static_cast<uint16_t>(kUdpLen + pay.size());
  write_ipv6(ip, {kProtoHopByHop, f.src_ip, f.dst_ip}, 8 + seg_len);
  uint8_t* l4 = ip + kIpv6Len + write_ipv6_ext(ip + kIpv6Len, kProtoUdp);
  write_udp(l4, f.sport, f.dport, seg_len);
  std::copy(pay.begin(), pay.end(), l4 + kUdpLen);
  set_l4_cksum_v6(ip, l4, seg_len, kProtoUdp);
  EXPECT_EQ(get16(l4 + 6), 0x7189);
}

// A UDP checksum that computes to zero goes out as 0xFFFF (RFC 768); TCP keeps its zero.
TEST(FrameBuilder, UdpZeroChecksumIsSentAsAllOnes) {
  Frame f = flow(false, kProtoUdp);
  Bytes b(frame_header_len(f) + 2);
  write_frame(b.data(), f, 2);
  // Payload words that bring the sum to 0xFFFF: the complement of the sum without them.
  const uint16_t fill = static_cast<uint16_t>(get16(&b[kEthLen + kIpv4Len + 6]));
  put16(&b[b.size() - 2], fill);
  const Layout at = write_frame(b.data(), f, 2);
  EXPECT_EQ(get16(&b[at.cksum_off]), 0xFFFF);
  EXPECT_EQ(ref_l4(&b[kEthLen + 12], 4, kProtoUdp, &b[at.l4], b.size() - at.l4), 0xFFFF);
}

// cksum_extend (sluice-gen's stamp) gives what a full recompute gives, at even and odd
// offsets of the late bytes from the segment's start.
TEST(FrameBuilder, ExtendingARawSumEqualsRecomputing) {
  for (bool ipv6 : {false, true}) {
    for (uint8_t proto : {kProtoUdp, kProtoTcp}) {
      for (uint32_t extra = 18; extra < 30; ++extra) {
        const Frame f = flow(ipv6, proto);
        Bytes b(frame_header_len(f) + extra, 0);
        const Layout at = write_frame(b.data(), f, extra);
        const Bytes tail = payload(18);
        std::copy(tail.begin(), tail.end(), b.end() - 18);
        const uint16_t c = cksum_extend(at.l4_raw, tail.data(), tail.size(), b.size() - 18 - at.l4,
                                        proto == kProtoUdp);
        uint16_t got;
        std::memcpy(&got, &c, 2);
        Bytes whole = b;
        write_frame(whole.data(), f, extra);
        uint16_t want;
        std::memcpy(&want, &whole[at.cksum_off], 2);
        EXPECT_EQ(got, want) << ipv6 << " " << int{proto} << " " << extra;
      }
    }
  }
}

// The worker tests' frame (tests/unit/pipeline) and the bench's kind of frame, byte for byte
// as the builders before this one wrote them.
TEST(FrameBuilder, FramesAreWhatTheOldBuildersWrote) {
  Frame f;
  f.dst = {2, 0, 0, 0, 0, 2};
  f.src = {2, 0, 0, 0, 0, 1};
  f.src_ip = {10, 0, 0, 1};
  f.dst_ip = {192, 168, 1, 1};
  f.sport = 12345;
  f.dport = 53;
  Bytes b(64, 0);
  write_frame(b.data(), f, 64 - frame_header_len(f));
  EXPECT_EQ(hex(b),
            "020000000002020000000001080045000032000000004011af110a000001c0a8010130390035001e0000"
            "00000000000000000000000000000000000000000000");
  Frame v;
  v.vlan = 7;
  v.proto = kProtoTcp;
  v.ip_frag = 0x4000;
  v.src_ip = {10, 1, 2, 3};
  v.dst_ip = {192, 168, 4, 5};
  v.sport = 1024;
  v.dport = 2048;
  Bytes t(frame_header_len(v), 0);
  write_frame(t.data(), v, 0);
  EXPECT_EQ(hex(t),
            "000000000000000000000000810000070800"        // Ethernet, VLAN 7
            "450000280000400040066a1f0a010203c0a80405"    // IPv4, DF
            "0400080000000000000000005010ffff00000000");  // TCP, ACK
}

}  // namespace
}  // namespace sluice::packet
