// The AVX2 kernel: the scalar reference's verdicts and keys (validate_scalar.cpp documents the
// semantics), eight packets per step. Built with -mavx2 in its own static library; only called
// where the CPU has AVX2 (dispatch.cpp).
//
// Fast path, eight packets at a time in 32-bit lanes (structure of arrays):
// - Each packet's bytes [12, 44) are read with two 128-bit loads and transposed (4x4 dword
//   unpacks per 128-bit half) so that one register holds bytes k..k+3 of all eight packets; a
//   third load (bytes [44, 60), the TCP data offset) only when one of the eight is TCP;
//   data_len, frame_len and the checksum hint of the eight PacketViews likewise.
//   One 0x8100 tag moves every field by four bytes: a blend per field picks the next dword.
// - IPv4 with IHL 5, not a fragment, TCP or UDP: the header checksum (ten 16-bit words summed
//   per lane, folded once), ethertype/version/IHL, every length, the UDP length and the TCP
//   data offset are vector compares on the eight lanes at once.
// - Keys: per packet, one 16-byte broadcast load of protocol, addresses and ports, one byte
//   shuffle into key bytes [0, 32), the burst's in_port and the flags OR-ed in, and a constant
//   for [32, 48) (offsets; fragment and padding zero).
// - Flow hashes (key_hash) of the eight lanes at once: addresses, ports and protocol are
//   already dwords of the transposed registers, so hash_mix is a few shifts and four vector
//   multiplies per eight packets instead of a scalar pass over the stored keys.
// Packets the fast path does not take, in the same burst and order:
// - IPv6 (untagged or one 0x8100 tag) without extension headers, TCP or UDP: a per-packet path
//   here (no checksum; the 32 address bytes are one 256-bit copy), ~10 cycles a packet.
// - Non-IP frames (ARP, LLDP, ...; untagged or one 0x8100 tag, data_len >= 60): the vector
//   step flags them, and the key is three stores of constants (~5 cycles a packet; ~45 through
//   the reference, which made scale's net_null frames 5x testpmd io's cost).
// - Everything else goes to the scalar reference one packet at a time (~25-40 cycles): any
//   packet that fails a check (the reference then finds the reason, so CONTRACT order holds by
//   construction), data_len < 60 (the window above must be readable; 60 is the shortest
//   Ethernet frame without FCS), QinQ and 0x88A8/0x9100 tags, IPv4 options and fragments,
//   IPv6 extension headers and fragments, protocols other than TCP/UDP, short non-IP frames. A
//   linearised multi-segment header is just a view with enough data_len, so it stays fast.
//
// Cost (TSC cycles/packet, bursts of 32, headers in L1, tools/bench/run validate, AMD EPYC
// (Zen 4) VM shared with other builds): ~6-7 on 64 B IPv4/UDP; ~11.5 on a random IPv4/IPv6/VLAN
// TCP/UDP mix, where each IPv6 packet costs ~25 (its lane fails the vector step, then the
// per-packet path). The scalar reference: ~25 and ~35 (its branches mispredict on the mix).

#include <immintrin.h>

#include <array>
#include <cstring>

#include "simd/kernel_common.h"
#include "simd/validate.h"

namespace sluice::simd {

namespace {

constexpr unsigned kLanes = 8;
constexpr unsigned kAllLanes = (1u << kLanes) - 1;

using Vec = Bytes<32>;

// The vector constants, a table for the reason kernel_common.h gives.
struct alignas(32) Constants {
  Vec lo16 = splat<32>(0xFFFF);
  Vec low_byte = splat<32>(0xFF);
  Vec window_end_minus_1 = splat<32>(kWindowEnd - 1);
  Vec vlan_tpid = splat<32>(0x0081);          // 0x8100 as read little-endian
  Vec ipv4_eth_mask = splat<32>(0x00FFFFFF);  // ethertype, version/IHL
  Vec ipv4_eth = splat<32>(0x00450008);       // 0x0800, 0x45
  Vec frag_mask = splat<32>(0x0000FF3F);      // MF and the fragment offset
  Vec ipv6_eth_mask = splat<32>(0x00F0FFFF);  // ethertype, version
  Vec ipv6_eth = splat<32>(0x0060DD86);       // 0x86DD, 6
  // Ethertypes as read little-endian: IPv4, IPv6, and the tags other than 0x8100.
  Vec type_ipv4 = splat<32>(0x0008);
  Vec type_ipv6 = splat<32>(0xDD86);
  Vec type_qinq = splat<32>(0xA888);
  Vec type_qinq_old = splat<32>(0x0091);
  Vec tcp = splat<32>(kProtoTcp);
  Vec udp = splat<32>(kProtoUdp);
  Vec l3 = splat<32>(kEthHeaderLen);
  Vec tag_len = splat<32>(kVlanTagLen);
  Vec ip_header = splat<32>(kIpv4HeaderLen);
  Vec udp_need_minus_1 = splat<32>(kIpv4HeaderLen + 8 - 1);  // total length >= IP + UDP header
  Vec tcp_extra_need = splat<32>(12);                        // TCP header - UDP header
  Vec udp_min_minus_1 = splat<32>(7);
  Vec tcp_min_minus_1 = splat<32>(19);
  Vec tcp_offset_mask = splat<32>(0x3C);  // data offset * 4 after >> 18
  Vec hint_good = splat<32>(1);
  Vec hint_bad = splat<32>(2);
  Vec cksum_mask = splat<32>(static_cast<uint32_t>(mbuf::kIpCksumMask));
  Vec cksum_good = splat<32>(static_cast<uint32_t>(mbuf::kIpCksumGood));
  Vec cksum_bad = splat<32>(static_cast<uint32_t>(mbuf::kIpCksumBad));
  Vec max_header = splat<32>(kMaxHeaderBytes);
  Vec swap_lo = per_lane<32>(kSwapLo);
  Vec swap_hi = per_lane<32>(kSwapHi);
  Vec key_shuffle = kKeyShuffle;
  Vec key_flags = kKeyFlags;
  Vec head_flags = splat<32>(1u << 16 | static_cast<uint32_t>(Family::kIpv4) << 24);
  // hash_mix's constants (validate.h).
  Vec hash_head = splat<32>(kHashHead);
  Vec hash_ports = splat<32>(kHashPorts);
  Vec hash_src = splat<32>(kHashSrc);
  Vec hash_dst = splat<32>(kHashDst);
};

// What depends on the burst's ingress port, built once per burst: key bytes 0..31's flags
// with in_port in byte 1, and each lane's head word (protocol to come) for the hash.
struct PortConstants {
  __m256i key_flags;
  __m256i head_flags;
};

constexpr Constants kConstants{};

inline __m256i ld(const Vec& v) noexcept {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(v.data()));
}

inline __m256i blend(__m256i a, __m256i b, __m256i mask) noexcept {
  return _mm256_blendv_epi8(a, b, mask);
}

inline unsigned lanes_of(__m256i mask) noexcept {
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(mask)));
}

// Rows r0..r3 (each 128-bit half four dwords) become columns: out[k] = dword k of every row.
inline void transpose4(__m256i r0, __m256i r1, __m256i r2, __m256i r3, __m256i (&out)[4]) noexcept {
  const __m256i t0 = _mm256_unpacklo_epi32(r0, r1);
  const __m256i t1 = _mm256_unpackhi_epi32(r0, r1);
  const __m256i t2 = _mm256_unpacklo_epi32(r2, r3);
  const __m256i t3 = _mm256_unpackhi_epi32(r2, r3);
  out[0] = _mm256_unpacklo_epi64(t0, t2);
  out[1] = _mm256_unpackhi_epi64(t0, t2);
  out[2] = _mm256_unpacklo_epi64(t1, t3);
  out[3] = _mm256_unpackhi_epi64(t1, t3);
}

// Packet j in the low half, packet j + 4 in the high half: lanes are packets 0..7 in order.
inline __m256i load_pair(const uint8_t* lo, const uint8_t* hi) noexcept {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

// data_len, frame_len and the checksum hint (as masks) of eight packets, lane k = packet k.
struct Lengths {
  __m256i data_len, frame_len, good, bad;
};

inline Lengths load_lengths(const PacketView* v, const Constants& c) noexcept {
  // data_len, frame_len, hint and padding of each view, transposed like the header bytes.
  auto lens_of = [v](unsigned k) { return reinterpret_cast<const uint8_t*>(&v[k].data_len); };
  const __m256i r0 = load_pair(lens_of(0), lens_of(4)), r1 = load_pair(lens_of(1), lens_of(5));
  const __m256i r2 = load_pair(lens_of(2), lens_of(6)), r3 = load_pair(lens_of(3), lens_of(7));
  const __m256i t0 = _mm256_unpacklo_epi32(r0, r1), t1 = _mm256_unpackhi_epi32(r0, r1);
  const __m256i t2 = _mm256_unpacklo_epi32(r2, r3), t3 = _mm256_unpackhi_epi32(r2, r3);
  const __m256i hint = _mm256_and_si256(_mm256_unpacklo_epi64(t1, t3), ld(c.low_byte));
  return {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
          _mm256_cmpeq_epi32(hint, ld(c.hint_good)), _mm256_cmpeq_epi32(hint, ld(c.hint_bad))};
}

// The same of eight mbufs (validate.h's mbuf offsets), from two 16-byte rows of each mbuf's
// first cache line transposed like the header bytes: bytes 16..31 (data_off, refcnt, nb_segs,
// port, ol_flags) and 32..47 (packet_type, pkt_len, data_len, vlan_tci, the RSS hash).
static_assert(mbuf::kOlFlags == 16 + 8 && mbuf::kPktLen == 32 + 4 && mbuf::kDataLen == 32 + 8,
              "the rows below hold ol_flags' low dword in dword 2, pkt_len in 1, data_len in 2");
inline Lengths load_mbuf_lengths(const void* const* m, const Constants& c) noexcept {
  auto at = [m](unsigned k, size_t off) { return static_cast<const uint8_t*>(m[k]) + off; };
  const __m256i f0 = load_pair(at(0, 16), at(4, 16)), f1 = load_pair(at(1, 16), at(5, 16));
  const __m256i f2 = load_pair(at(2, 16), at(6, 16)), f3 = load_pair(at(3, 16), at(7, 16));
  const __m256i ol =
      _mm256_unpacklo_epi64(_mm256_unpackhi_epi32(f0, f1), _mm256_unpackhi_epi32(f2, f3));
  const __m256i r0 = load_pair(at(0, 32), at(4, 32)), r1 = load_pair(at(1, 32), at(5, 32));
  const __m256i r2 = load_pair(at(2, 32), at(6, 32)), r3 = load_pair(at(3, 32), at(7, 32));
  const __m256i t0 = _mm256_unpacklo_epi32(r0, r1), t1 = _mm256_unpackhi_epi32(r0, r1);
  const __m256i t2 = _mm256_unpacklo_epi32(r2, r3), t3 = _mm256_unpackhi_epi32(r2, r3);
  return {_mm256_and_si256(_mm256_unpacklo_epi64(t1, t3), ld(c.lo16)),
          _mm256_unpackhi_epi64(t0, t2),
          _mm256_cmpeq_epi32(_mm256_and_si256(ol, ld(c.cksum_good)), ld(c.cksum_good)),
          _mm256_cmpeq_epi32(_mm256_and_si256(ol, ld(c.cksum_mask)), ld(c.cksum_bad))};
}

// hash_mix on eight lanes.
inline __m256i hash_lanes(__m256i head, __m256i ports, __m256i src, __m256i dst,
                          const Constants& c) noexcept {
  return _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(head, ld(c.hash_head)),
                                           _mm256_mullo_epi32(ports, ld(c.hash_ports))),
                          _mm256_add_epi32(_mm256_mullo_epi32(src, ld(c.hash_src)),
                                           _mm256_mullo_epi32(dst, ld(c.hash_dst))));
}

// The vector step on eight packets whose first bytes are at data[k] (kBlank for lanes not in
// usable).
[[gnu::always_inline]] inline FastResult fast_group(const uint8_t* const* data, const Lengths& lens,
                                                    unsigned usable, FlowKey* keys,
                                                    uint32_t* hashes, const Constants& c,
                                                    const PortConstants& port) noexcept {
  // d[i] = bytes 12 + 4i .. 15 + 4i of every packet (i = 0..7).
  __m256i d[8];
  {
    const uint8_t* p0 = data[0] + kWindowBegin;
    const uint8_t* p1 = data[1] + kWindowBegin;
    const uint8_t* p2 = data[2] + kWindowBegin;
    const uint8_t* p3 = data[3] + kWindowBegin;
    const uint8_t* p4 = data[4] + kWindowBegin;
    const uint8_t* p5 = data[5] + kWindowBegin;
    const uint8_t* p6 = data[6] + kWindowBegin;
    const uint8_t* p7 = data[7] + kWindowBegin;
    __m256i col[4];
    transpose4(load_pair(p0, p4), load_pair(p1, p5), load_pair(p2, p6), load_pair(p3, p7), col);
    d[0] = col[0], d[1] = col[1], d[2] = col[2], d[3] = col[3];
    transpose4(load_pair(p0 + 16, p4 + 16), load_pair(p1 + 16, p5 + 16),
               load_pair(p2 + 16, p6 + 16), load_pair(p3 + 16, p7 + 16), col);
    d[4] = col[0], d[5] = col[1], d[6] = col[2], d[7] = col[3];
  }

  // Fields relative to the ethertype: with one 0x8100 tag, each is the next dword.
  const __m256i vlan = _mm256_cmpeq_epi32(_mm256_and_si256(d[0], ld(c.lo16)), ld(c.vlan_tpid));
  const unsigned vlan_lanes = lanes_of(vlan) & usable;
  __m256i eth = d[0];   // ethertype, version/IHL, TOS
  __m256i len = d[1];   // total length, id
  __m256i frag = d[2];  // flags/fragment offset, TTL, protocol
  __m256i w24 = d[3];   // checksum, src 0..1
  __m256i w28 = d[4];   // src 2..3, dst 0..1
  __m256i w32 = d[5];   // dst 2..3, L4 source port
  __m256i w36 = d[6];   // L4 destination port, UDP length
  if (vlan_lanes != 0) {
    eth = blend(d[0], d[1], vlan);
    len = blend(d[1], d[2], vlan);
    frag = blend(d[2], d[3], vlan);
    w24 = blend(d[3], d[4], vlan);
    w28 = blend(d[4], d[5], vlan);
    w32 = blend(d[5], d[6], vlan);
    w36 = blend(d[6], d[7], vlan);
  }

  // Ethertype 0x0800 and 0x45; not a fragment (MF and offset zero; DF, reserved ignored).
  __m256i ok = _mm256_cmpeq_epi32(_mm256_and_si256(eth, ld(c.ipv4_eth_mask)), ld(c.ipv4_eth));
  ok = _mm256_and_si256(
      ok, _mm256_cmpeq_epi32(_mm256_and_si256(frag, ld(c.frag_mask)), _mm256_setzero_si256()));
  const __m256i proto = _mm256_srli_epi32(frag, 24);
  const __m256i is_tcp = _mm256_cmpeq_epi32(proto, ld(c.tcp));
  const __m256i is_udp = _mm256_cmpeq_epi32(proto, ld(c.udp));

  // Lengths (all below 2^17, so signed compares are exact; a frame_len of 2^31 or more
  // compares as negative and fails, leaving the packet to the reference):
  // l3 + total <= frame_len; total >= 20 + the L4 header; the UDP length, the TCP offset.
  const __m256i l3 = _mm256_add_epi32(ld(c.l3), _mm256_and_si256(vlan, ld(c.tag_len)));
  const __m256i total = _mm256_shuffle_epi8(len, ld(c.swap_lo));
  const __m256i payload = _mm256_sub_epi32(total, ld(c.ip_header));
  ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_add_epi32(l3, total), lens.frame_len), ok);
  const __m256i need_minus_1 =
      _mm256_add_epi32(ld(c.udp_need_minus_1), _mm256_and_si256(is_tcp, ld(c.tcp_extra_need)));
  ok = _mm256_and_si256(ok, _mm256_cmpgt_epi32(total, need_minus_1));
  const __m256i udp_len = _mm256_shuffle_epi8(w36, ld(c.swap_hi));
  const __m256i udp_ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(udp_len, payload),
                                             _mm256_cmpgt_epi32(udp_len, ld(c.udp_min_minus_1)));
  __m256i l4_ok = _mm256_and_si256(is_udp, udp_ok);
  // The TCP data offset (bytes 44..51, the tag's four bytes later) only where a lane is TCP: a
  // burst of UDP skips the third block's loads (a branch that follows the traffic's protocol
  // mix, taken whenever any of the eight lanes is TCP).
  if ((lanes_of(is_tcp) & usable) != 0) {
    const uint8_t* const p0 = data[0] + kWindowBegin + 32;
    const __m256i t0 =
        _mm256_unpacklo_epi32(load_pair(p0, data[4] + kWindowBegin + 32),
                              load_pair(data[1] + kWindowBegin + 32, data[5] + kWindowBegin + 32));
    const __m256i t2 =
        _mm256_unpacklo_epi32(load_pair(data[2] + kWindowBegin + 32, data[6] + kWindowBegin + 32),
                              load_pair(data[3] + kWindowBegin + 32, data[7] + kWindowBegin + 32));
    const __m256i d8 = _mm256_unpacklo_epi64(t0, t2);
    const __m256i w44 = vlan_lanes != 0 ? blend(d8, _mm256_unpackhi_epi64(t0, t2), vlan) : d8;
    const __m256i tcp_off = _mm256_and_si256(_mm256_srli_epi32(w44, 18), ld(c.tcp_offset_mask));
    const __m256i tcp_ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(tcp_off, payload),
                                               _mm256_cmpgt_epi32(tcp_off, ld(c.tcp_min_minus_1)));
    l4_ok = _mm256_or_si256(l4_ok, _mm256_and_si256(is_tcp, tcp_ok));
  }
  ok = _mm256_and_si256(ok, l4_ok);

  // Header checksum: the ten 16-bit words (byte-swapped, which one's complement sums do not
  // mind) of eth[2..3], len, frag, w24, w28, w32[0..1]. hi = the upper halves of the four
  // whole dwords; their plain 32-bit sum minus hi << 16 is the sum of the lower halves.
  const __m256i hi =
      _mm256_add_epi32(_mm256_add_epi32(_mm256_srli_epi32(len, 16), _mm256_srli_epi32(frag, 16)),
                       _mm256_add_epi32(_mm256_srli_epi32(w24, 16), _mm256_srli_epi32(w28, 16)));
  const __m256i whole = _mm256_add_epi32(_mm256_add_epi32(len, frag), _mm256_add_epi32(w24, w28));
  __m256i sum = _mm256_sub_epi32(whole, _mm256_slli_epi32(hi, 16));
  sum = _mm256_add_epi32(
      _mm256_add_epi32(sum, hi),
      _mm256_add_epi32(_mm256_srli_epi32(eth, 16), _mm256_and_si256(w32, ld(c.lo16))));
  // sum < 10 * 2^16: one fold leaves at most 0xFFFF + 9, and only 0xFFFF folds to 0xFFFF.
  sum = _mm256_add_epi32(_mm256_and_si256(sum, ld(c.lo16)), _mm256_srli_epi32(sum, 16));
  ok = _mm256_and_si256(
      ok, _mm256_andnot_si256(lens.bad,
                              _mm256_or_si256(lens.good, _mm256_cmpeq_epi32(sum, ld(c.lo16)))));

  FastResult r;
  r.ok = lanes_of(ok) & usable;
  r.vlan = vlan_lanes;
  if (r.ok != kAllLanes) {
    r.ipv6 =
        lanes_of(_mm256_cmpeq_epi32(_mm256_and_si256(eth, ld(c.ipv6_eth_mask)), ld(c.ipv6_eth))) &
        usable;
    // Non-IP: the ethertype after at most one 0x8100 tag is neither IP nor a tag (a second
    // tag, or a first 0x88A8/0x9100, is the reference's).
    const __m256i type = _mm256_and_si256(eth, ld(c.lo16));
    const __m256i known =
        _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi32(type, ld(c.type_ipv4)),
                                        _mm256_cmpeq_epi32(type, ld(c.type_ipv6))),
                        _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi32(type, ld(c.vlan_tpid)),
                                                        _mm256_cmpeq_epi32(type, ld(c.type_qinq))),
                                        _mm256_cmpeq_epi32(type, ld(c.type_qinq_old))));
    r.non_ip = ~lanes_of(known) & usable;
  }

  // Hashes of the passed lanes: the key's words as little-endian dwords, from the fields above
  // (src = IPv4 bytes 12..15, dst 16..19, ports the L4 header's first four bytes).
  if (hashes != nullptr) {
    const __m256i src = _mm256_or_si256(_mm256_srli_epi32(w24, 16), _mm256_slli_epi32(w28, 16));
    const __m256i dst = _mm256_or_si256(_mm256_srli_epi32(w28, 16), _mm256_slli_epi32(w32, 16));
    const __m256i ports = _mm256_or_si256(_mm256_srli_epi32(w32, 16), _mm256_slli_epi32(w36, 16));
    const __m256i h = hash_lanes(_mm256_or_si256(proto, port.head_flags), ports, src, dst, c);
    if (r.ok == kAllLanes) [[likely]] {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hashes), h);
    } else {
      alignas(32) std::array<uint32_t, kLanes> lane;
      _mm256_store_si256(reinterpret_cast<__m256i*>(lane.data()), h);
      for (unsigned m = r.ok; m != 0; m &= m - 1) hashes[__builtin_ctz(m)] = lane[__builtin_ctz(m)];
    }
  }

  // Keys: IPv4 bytes 8..23 hold protocol, addresses and ports in key order but for a shuffle.
  const __m256i key_shuffle = ld(c.key_shuffle), key_flags = port.key_flags;
  auto store_key = [&](unsigned k, unsigned tagged, FlowKey& to) {
    const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(
        reinterpret_cast<const __m128i*>(data[k] + kKeyBytes + tagged * kVlanTagLen)));
    const __m256i head = _mm256_or_si256(_mm256_shuffle_epi8(bytes, key_shuffle), key_flags);
    auto* key = reinterpret_cast<uint8_t*>(&to);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(key), head);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(key + 32),
                     _mm_load_si128(reinterpret_cast<const __m128i*>(kKeyTail[tagged].data())));
  };
  if (r.ok == kAllLanes && vlan_lanes == 0) [[likely]] {
    for (unsigned k = 0; k < kLanes; ++k) store_key(k, 0, keys[k]);
  } else {
    // Lanes that did not pass write a scratch key of their own: a select, not a branch, since
    // which lanes pass depends on the traffic and a branch per lane would mispredict.
    std::array<FlowKey, kLanes> scratch;
    for (unsigned k = 0; k < kLanes; ++k) {
      store_key(k, vlan_lanes >> k & 1, (r.ok >> k & 1) ? keys[k] : scratch[k]);
    }
  }
  return r;
}

// Eight lanes' first bytes with kBlank behind the lanes not in usable, for the vector step.
inline std::array<const uint8_t*, kLanes> blanked(const std::array<const uint8_t*, kLanes>& data,
                                                  unsigned usable) noexcept {
  std::array<const uint8_t*, kLanes> out;
  for (unsigned k = 0; k < kLanes; ++k) out[k] = (usable >> k & 1) ? data[k] : kBlank.data();
  return out;
}

// Eight views (live: which lanes are packets of the burst). Writes verdicts and keys of the
// live packets, returns how many are kOk.
[[gnu::always_inline]] inline unsigned validate_group(const PacketView* v, uint8_t in_port,
                                                      FlowKey* keys, uint32_t* hashes,
                                                      Verdict* verdicts, uint32_t live,
                                                      const Constants& c,
                                                      const PortConstants& port) noexcept {
  const Lengths lens = load_lengths(v, c);
  const unsigned usable =
      lanes_of(_mm256_cmpgt_epi32(lens.data_len, ld(c.window_end_minus_1))) & live;
  const std::array<const uint8_t*, kLanes> data = {v[0].data, v[1].data, v[2].data, v[3].data,
                                                   v[4].data, v[5].data, v[6].data, v[7].data};
  FastResult r;
  if (usable == kAllLanes) [[likely]] {
    r = fast_group(data.data(), lens, usable, keys, hashes, c, port);
  } else if (usable != 0) {
    r = fast_group(blanked(data, usable).data(), lens, usable, keys, hashes, c, port);
  }
  return finish_group<kLanes>([v](unsigned k) -> const PacketView& { return v[k]; }, in_port, keys,
                              hashes, verdicts, live, r);
}

// Eight mbufs (every pointer readable: the burst tail's are kBlankMbuf) whose frames start at
// data[k]; live as above. Lanes whose first segment is cut inside the headers are left alone
// and returned in *split. Adds the live frames' lengths to bytes (four 64-bit lanes).
[[gnu::always_inline]] inline unsigned validate_mbuf_group(
    const void* const* m, const std::array<const uint8_t*, kLanes>& data, uint8_t in_port,
    FlowKey* keys, uint32_t* hashes, Verdict* verdicts, uint32_t live, uint32_t* split,
    __m256i& bytes, const Constants& c, const PortConstants& port) noexcept {
  const Lengths lens = load_mbuf_lengths(m, c);
  bytes = _mm256_add_epi64(
      bytes, _mm256_add_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(lens.frame_len)),
                              _mm256_cvtepu32_epi64(_mm256_extracti128_si256(lens.frame_len, 1))));
  // view_split: data_len < min(frame_len, kMaxHeaderBytes) (both sides below 2^31).
  const unsigned cut = lanes_of(_mm256_cmpgt_epi32(
                           _mm256_min_epu32(lens.frame_len, ld(c.max_header)), lens.data_len)) &
                       live;
  *split = cut;
  live &= ~cut;
  const unsigned usable =
      lanes_of(_mm256_cmpgt_epi32(lens.data_len, ld(c.window_end_minus_1))) & live;
  FastResult r;
  if (usable == kAllLanes) [[likely]] {
    r = fast_group(data.data(), lens, usable, keys, hashes, c, port);
  } else if (usable != 0) {
    r = fast_group(blanked(data, usable).data(), lens, usable, keys, hashes, c, port);
  }
  return finish_group<kLanes>([m](unsigned k) { return view_of_mbuf(m[k]); }, in_port, keys, hashes,
                              verdicts, live, r);
}

PortConstants port_constants(uint8_t in_port, const Constants& c) noexcept {
  const __m256i port_byte = _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, in_port << 8);
  return {_mm256_or_si256(ld(c.key_flags), port_byte),
          _mm256_or_si256(ld(c.head_flags), _mm256_set1_epi32(in_port << 8))};
}

// The frames of mbufs m[0..count) into data (kBlank past count), each prefetched: the group
// after the one being validated, so that its header lines arrive meanwhile.
inline void frames_of(const void* const* m, unsigned count,
                      std::array<const uint8_t*, kLanes>& data) noexcept {
  for (unsigned k = 0; k < kLanes; ++k) {
    data[k] = k < count ? frame_of_mbuf(m[k]) : kBlank.data();
    _mm_prefetch(reinterpret_cast<const char*>(data[k]), _MM_HINT_T0);
  }
}

}  // namespace

uint16_t validate_burst_avx2(const PacketView* pkts, uint16_t n, uint8_t in_port, FlowKey* keys,
                             uint32_t* hashes, Verdict* verdicts) noexcept {
  const Constants& c = *launder(&kConstants);
  const PortConstants port = port_constants(in_port, c);
  return run_burst<kLanes>(
      pkts, n, keys, hashes, verdicts,
      [&](const PacketView* v, FlowKey* k, uint32_t* h, Verdict* out, uint32_t live) {
        return validate_group(v, in_port, k, h, out, live, c, port);
      });
}

MbufBurst validate_mbufs_avx2(const void* const* mbufs, uint16_t n, uint8_t in_port, FlowKey* keys,
                              uint32_t* hashes, Verdict* verdicts) noexcept {
  const Constants& c = *launder(&kConstants);
  const PortConstants port = port_constants(in_port, c);
  auto hashes_at = [hashes](unsigned at) { return hashes != nullptr ? hashes + at : nullptr; };
  MbufBurst r;
  unsigned nb_ok = 0;
  __m256i bytes = _mm256_setzero_si256();
  std::array<const uint8_t*, kLanes> data, next;
  if (n != 0) frames_of(mbufs, n < kLanes ? n : kLanes, data);
  unsigned i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const unsigned after = n - i - kLanes;
    if (after != 0) frames_of(mbufs + i + kLanes, after < kLanes ? after : kLanes, next);
    uint32_t split;
    nb_ok += validate_mbuf_group(mbufs + i, data, in_port, keys + i, hashes_at(i), verdicts + i,
                                 kAllLanes, &split, bytes, c, port);
    r.split |= uint64_t{split} << i;
    if (after != 0) data = next;
  }
  if (i < n) {
    const unsigned rest = n - i;
    std::array<const void*, kLanes> tail;
    for (unsigned k = 0; k < kLanes; ++k) tail[k] = k < rest ? mbufs[i + k] : &kBlankMbuf;
    uint32_t split;
    nb_ok += validate_mbuf_group(tail.data(), data, in_port, keys + i, hashes_at(i), verdicts + i,
                                 (1u << rest) - 1, &split, bytes, c, port);
    r.split |= uint64_t{split} << i;
  }
  alignas(32) std::array<uint64_t, 4> sum;
  _mm256_store_si256(reinterpret_cast<__m256i*>(sum.data()), bytes);
  r.bytes = sum[0] + sum[1] + sum[2] + sum[3];
  r.nb_ok = static_cast<uint16_t>(nb_ok);
  return r;
}

}  // namespace sluice::simd
