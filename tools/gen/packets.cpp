#include "tools/gen/packets.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "lib/packet/frame_builder.h"

namespace sluice::gen {

namespace {

using packet::get16;
using packet::kEthLen;
using packet::kIpv4Len;
using packet::kIpv6Len;
using packet::kProtoTcp;
using packet::kProtoUdp;
using packet::kUdpLen;
using packet::put16;
constexpr uint32_t kFcs = 4;

using Bytes = std::vector<uint8_t>;

// Fills t.cksum_* from where the frame's L4 checksum field is and the raw sum of its
// segment (packet::set_l4_cksum_*): stamp() finishes it over the trailer.
void keep_l4_checksum(Template& t, uint32_t l4, uint8_t proto, uint16_t raw) {
  t.cksum_base = raw;
  t.cksum_off = static_cast<uint16_t>(l4 + (proto == kProtoUdp ? 6u : 16u));
  t.l4_off = static_cast<uint16_t>(l4);
  t.udp = proto == kProtoUdp;
}

void add_to_address(std::array<uint8_t, 16>& a, bool ipv6, uint32_t n) {
  uint8_t* p = a.data() + (ipv6 ? 12 : 0);
  uint32_t v = static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
               static_cast<uint32_t>(p[2]) << 8 | p[3];
  packet::put32(p, v + n);
}

packet::Frame frame_of(const FlowSpec& s, unsigned flow) {
  packet::Frame f;
  f.dst = s.mac_dst;
  f.src = s.mac_src;
  f.ipv6 = s.ipv6;
  f.proto = static_cast<uint8_t>(s.proto);
  f.src_ip = s.src;
  add_to_address(f.src_ip, s.ipv6, flow);
  f.dst_ip = s.dst;
  f.sport = static_cast<uint16_t>(s.sport + flow);
  f.dport = static_cast<uint16_t>(s.dport + flow % std::max(1u, s.dport_count));
  f.ip_id = static_cast<uint16_t>(flow);
  f.tcp_seq = 1;
  f.tcp_flags = packet::kTcpPshAck;
  f.l4_cksum = true;
  return f;
}

// A well-formed frame of flow `flow`, frame_len bytes (no FCS, at least the headers).
Template build(const FlowSpec& s, unsigned flow, uint32_t frame_len) {
  Template t;
  t.frame.assign(frame_len, 0);
  const packet::Frame f = frame_of(s, flow);
  const packet::Layout at =
      packet::write_frame(t.frame.data(), f, frame_len - packet::frame_header_len(f));
  keep_l4_checksum(t, at.l4, f.proto, at.l4_raw);
  return t;
}

FlowSpec with_family(const FlowSpec& s, bool ipv6, Proto proto) {
  if (s.ipv6 == ipv6) {
    FlowSpec r = s;
    r.proto = proto;
    return r;
  }
  FlowSpec r = s;
  r.ipv6 = ipv6;
  r.proto = proto;
  bool v6 = false;
  parse_ip(ipv6 ? "2001:db8::1" : "10.0.0.1", r.src, v6);
  parse_ip(ipv6 ? "2001:db8:1::1" : "192.168.0.1", r.dst, v6);
  return r;
}

Template malformed(const FlowSpec& spec, simd::Verdict reason) {
  using V = simd::Verdict;
  const uint32_t l3 = kEthLen;
  const FlowSpec v4udp = with_family(spec, false, Proto::kUdp);
  const FlowSpec v6udp = with_family(spec, true, Proto::kUdp);
  Template t;
  switch (reason) {
    case V::kRunt:  // shorter than the Ethernet header
      t = build(v4udp, 0, 60);
      t.frame.resize(10);
      break;
    case V::kL3Truncated:  // IPv4 ethertype, half an IPv4 header
      t = build(v4udp, 0, 60);
      t.frame.resize(kEthLen + 10);
      break;
    case V::kIpv4Version:
      t = build(v4udp, 0, 60);
      t.frame[l3] = 0x65;
      packet::set_ipv4_cksum(&t.frame[l3]);
      break;
    case V::kIpv4Ihl:
      t = build(v4udp, 0, 60);
      t.frame[l3] = 0x44;
      break;
    case V::kIpv4Length:  // total length beyond the frame
      t = build(v4udp, 0, 60);
      put16(&t.frame[l3 + 2], static_cast<uint16_t>(60 - kEthLen + 100));
      packet::set_ipv4_cksum(&t.frame[l3]);
      break;
    case V::kIpv4Checksum:
      t = build(v4udp, 0, 60);
      t.frame[l3 + 10] ^= 0x5A;
      break;
    case V::kIpv6Version:
      t = build(v6udp, 0, 80);
      t.frame[l3] = static_cast<uint8_t>(0x40 | (t.frame[l3] & 0x0F));
      break;
    case V::kIpv6Length:  // payload length beyond the frame
      t = build(v6udp, 0, 80);
      put16(&t.frame[l3 + 4], static_cast<uint16_t>(80 - kEthLen - kIpv6Len + 100));
      break;
    case V::kIpv6Ext:  // a hop-by-hop header claiming 1,608 bytes
      t = build(v6udp, 0, 80);
      t.frame[l3 + 6] = packet::kProtoHopByHop;
      t.frame[l3 + kIpv6Len] = kProtoUdp;
      t.frame[l3 + kIpv6Len + 1] = 200;
      break;
    case V::kL4Truncated:  // IP payload of 4 bytes for a UDP header; the rest is padding
      t = build(v4udp, 0, 60);
      put16(&t.frame[l3 + 2], kIpv4Len + 4);
      packet::set_ipv4_cksum(&t.frame[l3]);
      break;
    case V::kTcpOffset:  // data offset 4 (16 bytes) < 5
      t = build(with_family(spec, false, Proto::kTcp), 0, 60);
      t.frame[l3 + kIpv4Len + 12] = 4 << 4;
      break;
    case V::kUdpLength:  // UDP length 4 < 8
      t = build(v4udp, 0, 60);
      put16(&t.frame[l3 + kIpv4Len + 4], 4);
      break;
    case V::kOk:
      break;
  }
  t.stream = kNoStream;
  t.cksum_off = 0;
  t.expect = reason;
  return t;
}

}  // namespace

void stamp(const Template& t, uint8_t* frame, uint64_t seq, uint64_t tsc) noexcept {
  const auto len = static_cast<uint32_t>(t.frame.size());
  uint8_t* tr = frame + len - kTrailerLen;
  write_trailer(tr, t.stream, seq, tsc);
  if (t.cksum_off == 0) return;
  const uint16_t c = packet::cksum_extend(static_cast<uint16_t>(t.cksum_base), tr, kTrailerLen,
                                          len - kTrailerLen - t.l4_off, t.udp);
  std::memcpy(frame + t.cksum_off, &c, 2);
}

std::vector<uint16_t> imix_sizes() {
  // 7 x 64, 4 x 594, 1 x 1518, spread out rather than in runs.
  return {64, 594, 64, 64, 594, 64, 1518, 64, 594, 64, 64, 594};
}

uint16_t min_wire_size(const FlowSpec& spec) {
  return static_cast<uint16_t>(
      std::max<uint32_t>(64, packet::frame_header_len(frame_of(spec, 0)) + kTrailerLen + kFcs));
}

Result<TrafficPlan> flow_plan(const FlowSpec& spec) {
  if (spec.flows == 0 || spec.flows > kMaxStreams) {
    return Error{fmt::format("--flows: expected 1..{}, got {}", kMaxStreams, spec.flows)};
  }
  if (spec.sizes.empty()) return Error{"--size: no sizes given"};
  TrafficPlan plan;
  plan.streams = spec.flows;
  // Distinct sizes, each raised to what the headers and trailer need.
  const uint16_t min = min_wire_size(spec);
  std::vector<uint16_t> sizes;
  std::vector<uint32_t> size_index;  // per entry of spec.sizes
  bool raised = false;
  for (uint16_t s : spec.sizes) {
    if (s > 1518 + 4 * 2) {
      return Error{fmt::format("--size: {} is larger than 1526 (1518 + two VLAN tags)", s)};
    }
    if (s < min) raised = true;
    s = std::max(s, min);
    auto it = std::find(sizes.begin(), sizes.end(), s);
    if (it == sizes.end()) it = sizes.insert(sizes.end(), s);
    size_index.push_back(static_cast<uint32_t>(it - sizes.begin()));
  }
  for (unsigned f = 0; f < spec.flows; ++f) {
    for (uint16_t s : sizes) {
      Template t = build(spec, f, s - kFcs);
      t.stream = static_cast<uint16_t>(f);
      plan.templates.push_back(std::move(t));
    }
  }
  // Each flow sends the size pattern in order, flows in turn.
  for (unsigned f = 0; f < spec.flows; ++f) {
    for (uint32_t si : size_index) {
      plan.schedule.push_back(static_cast<uint32_t>(f * sizes.size() + si));
    }
  }
  plan.summary = fmt::format(
      "{} flow{} of {}/{}, wire size{} {}{}", spec.flows, spec.flows == 1 ? "" : "s",
      spec.ipv6 ? "IPv6" : "IPv4", spec.proto == Proto::kUdp ? "UDP" : "TCP",
      spec.sizes.size() == 1 ? "" : "s",
      fmt::join(spec.sizes.begin(), spec.sizes.begin() + std::min<size_t>(spec.sizes.size(), 12),
                ","),
      raised ? fmt::format(" (sizes below {} raised to {}: headers + {}-byte trailer + FCS)", min,
                           min, kTrailerLen)
             : "");
  return plan;
}

void add_malformed(TrafficPlan& plan, const FlowSpec& spec) {
  for (size_t v = 1; v < simd::kVerdictCount; ++v) {
    plan.malformed.push_back(static_cast<uint32_t>(plan.templates.size()));
    plan.templates.push_back(malformed(spec, static_cast<simd::Verdict>(v)));
  }
}

Result<TrafficPlan> pcap_plan(const std::string& path, uint32_t max_frame) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{fmt::format("--pcap: cannot open {}", path)};
  Bytes data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < 24) return Error{fmt::format("--pcap: {}: not a pcap file (too short)", path)};
  uint32_t magic;
  std::memcpy(&magic, data.data(), 4);
  bool swap;
  if (magic == 0xA1B2C3D4 || magic == 0xA1B23C4D) {
    swap = false;
  } else if (magic == 0xD4C3B2A1 || magic == 0x4D3CB2A1) {
    swap = true;
  } else {
    return Error{
        fmt::format("--pcap: {}: bad magic {:#x} (classic pcap only; convert pcapng with "
                    "`editcap -F pcap IN OUT`)",
                    path, magic)};
  }
  auto u32 = [&](size_t off) {
    uint32_t v;
    std::memcpy(&v, &data[off], 4);
    return swap ? __builtin_bswap32(v) : v;
  };
  if (u32(20) != 1) {
    return Error{fmt::format("--pcap: {}: link type {} is not Ethernet (1)", path, u32(20))};
  }
  TrafficPlan plan;
  size_t off = 24, skipped = 0, stamped = 0;
  while (off + 16 <= data.size()) {
    const uint32_t incl = u32(off + 8);
    if (off + 16 + incl > data.size()) break;  // a truncated last record
    if (incl == 0 || incl > max_frame) {
      ++skipped;
      off += 16 + incl;
      continue;
    }
    Template t;
    t.frame.assign(data.begin() + static_cast<long>(off + 16),
                   data.begin() + static_cast<long>(off + 16 + incl));
    off += 16 + incl;
    simd::PacketView v{t.frame.data(), incl, incl, simd::CksumHint::kUnknown};
    simd::FlowKey key{};
    simd::validate_burst_scalar(&v, 1, 0, &key, nullptr, &t.expect);
    const bool l4 = t.expect == simd::Verdict::kOk && key.l4_valid && !key.fragment &&
                    (key.proto == kProtoUdp || key.proto == kProtoTcp);
    if (l4) {
      const uint32_t l3 = key.l3_offset, l4o = key.l4_offset;
      const bool v6 = key.family == simd::Family::kIpv6;
      const uint32_t ip_end =
          l3 + (v6 ? kIpv6Len + get16(&t.frame[l3 + 4]) : get16(&t.frame[l3 + 2]));
      const uint32_t l4_hdr = key.proto == kProtoUdp ? kUdpLen : (t.frame[l4o + 12] >> 4) * 4u;
      // Room after the L4 header, and no Ethernet padding after the IP packet.
      if (ip_end == incl && l4o + l4_hdr + kTrailerLen <= incl) {
        const bool had_cksum =
            get16(&t.frame[l4o + (key.proto == kProtoUdp ? 6 : 16)]) != 0 || key.proto == kProtoTcp;
        std::fill(t.frame.end() - kTrailerLen, t.frame.end(), 0);
        if (had_cksum) {
          uint8_t* ip = &t.frame[l3];
          uint8_t* seg = &t.frame[l4o];
          keep_l4_checksum(
              t, l4o, key.proto,
              v6 ? packet::set_l4_cksum_v6(ip, seg, static_cast<uint16_t>(incl - l4o), key.proto)
                 : packet::set_l4_cksum_v4(ip, seg));
        }
        t.stream = 0;
        ++stamped;
      }
    }
    plan.schedule.push_back(static_cast<uint32_t>(plan.templates.size()));
    plan.templates.push_back(std::move(t));
  }
  if (plan.templates.empty()) {
    return Error{fmt::format("--pcap: {}: no frames of 1..{} bytes", path, max_frame)};
  }
  plan.streams = stamped ? 1 : 0;
  plan.summary = fmt::format(
      "{}: {} frames replayed in a loop, {} stamped (stream 0){}", path, plan.templates.size(),
      stamped,
      skipped ? fmt::format(", {} skipped (empty or > {} bytes)", skipped, max_frame) : "");
  return plan;
}

Result<void> verify_plan(const TrafficPlan& plan) {
  for (size_t i = 0; i < plan.templates.size(); ++i) {
    const Template& t = plan.templates[i];
    Bytes copy = t.frame;
    if (t.stream != kNoStream) stamp(t, copy.data(), 1, 1);
    const auto len = static_cast<uint32_t>(copy.size());
    simd::PacketView v{copy.data(), len, len, simd::CksumHint::kUnknown};
    simd::FlowKey key{};
    simd::Verdict got{};
    simd::validate_burst_scalar(&v, 1, 0, &key, nullptr, &got);
    if (got != t.expect) {
      return Error{fmt::format("template {} ({} bytes): sluice's validator says {}, expected {}", i,
                               len, simd::verdict_name(got), simd::verdict_name(t.expect))};
    }
  }
  return {};
}

bool parse_ip(const std::string& text, std::array<uint8_t, 16>& out, bool& ipv6) {
  out.fill(0);
  if (inet_pton(AF_INET, text.c_str(), out.data()) == 1) {
    ipv6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), out.data()) == 1) {
    ipv6 = true;
    return true;
  }
  return false;
}

bool parse_mac(const std::string& text, std::array<uint8_t, 6>& out) {
  unsigned b[6];
  char tail;
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                  &tail) != 6) {
    return false;
  }
  for (int i = 0; i < 6; ++i) {
    if (b[i] > 0xFF) return false;
    out[i] = static_cast<uint8_t>(b[i]);
  }
  return true;
}

}  // namespace sluice::gen
