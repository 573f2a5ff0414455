// The AVX-512 kernel (F, BW, VL): the AVX2 kernel's method (validate_avx2.cpp) on sixteen
// packets per step in 512-bit registers. What AVX-512 adds: compares into mask registers that
// chain (no and/andnot/movemask), unsigned compares, masked moves for the 0x8100 shift, byte-
// masked key stores that skip in_port (no load and blend of the old key) and store nothing for
// lanes that did not pass (no scratch keys). Same fallbacks as the AVX2 kernel.
//
// Built with -mavx512f -mavx512bw -mavx512vl in its own static library; only called where the
// CPU has them and EAL allows 512-bit SIMD (dispatch.cpp, app --simd).
//
// Cost (tools/bench/run validate, AMD EPYC (Zen 4) VM, which runs 512-bit operations as two
// 256-bit halves): ~8.3 TSC cycles/packet on 64 B IPv4/UDP against the AVX2 kernel's ~5.8, and
// about the same as AVX2 on the mix.

// GCC 12's AVX-512 headers warn about their own _mm512_undefined_* (GCC PR 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <array>
#include <cstring>

#include "simd/kernel_common.h"
#include "simd/validate.h"

namespace sluice::simd {

namespace {

constexpr unsigned kLanes = 16;
constexpr uint32_t kAllLanes = (1u << kLanes) - 1;

using Vec = Bytes<64>;

// The vector constants, a table for the reason kernel_common.h gives.
struct alignas(64) Constants {
  Vec lo16 = splat<64>(0xFFFF);
  Vec low_byte = splat<64>(0xFF);
  Vec window_end = splat<64>(kWindowEnd);
  Vec vlan_tpid = splat<64>(0x0081);          // 0x8100 as read little-endian
  Vec ipv4_eth_mask = splat<64>(0x00FFFFFF);  // ethertype, version/IHL
  Vec ipv4_eth = splat<64>(0x00450008);       // 0x0800, 0x45
  Vec frag_mask = splat<64>(0x0000FF3F);      // MF and the fragment offset
  Vec ipv6_eth_mask = splat<64>(0x00F0FFFF);  // ethertype, version
  Vec ipv6_eth = splat<64>(0x0060DD86);       // 0x86DD, 6
  Vec tcp = splat<64>(kProtoTcp);
  Vec udp = splat<64>(kProtoUdp);
  Vec l3 = splat<64>(kEthHeaderLen);
  Vec l3_tagged = splat<64>(kEthHeaderLen + kVlanTagLen);
  Vec ip_header = splat<64>(kIpv4HeaderLen);
  Vec udp_need = splat<64>(kIpv4HeaderLen + 8);   // total length >= IP + UDP header
  Vec tcp_need = splat<64>(kIpv4HeaderLen + 20);  // total length >= IP + TCP header
  Vec udp_min = splat<64>(8);
  Vec tcp_min = splat<64>(20);
  Vec tcp_offset_mask = splat<64>(0x3C);  // data offset * 4 after >> 18
  Vec hint_good = splat<64>(1);
  Vec hint_bad = splat<64>(2);
  Vec swap_lo = per_lane<64>(kSwapLo);
  Vec swap_hi = per_lane<64>(kSwapHi);
  Bytes<32> key_shuffle = kKeyShuffle;
  Bytes<32> key_flags = kKeyFlags;
};

constexpr Constants kConstants{};

// Key bytes a fast-path store writes: all of [0, 32) but in_port (byte 1).
constexpr __mmask32 kKeyHeadBytes = ~__mmask32{2};

inline __m512i ld(const Vec& v) noexcept {
  return _mm512_load_si512(v.data());
}

// Rows r0..r3 (each 128-bit lane four dwords) become columns: out[k] = dword k of every row.
inline void transpose4(__m512i r0, __m512i r1, __m512i r2, __m512i r3, __m512i (&out)[4]) noexcept {
  const __m512i t0 = _mm512_unpacklo_epi32(r0, r1);
  const __m512i t1 = _mm512_unpackhi_epi32(r0, r1);
  const __m512i t2 = _mm512_unpacklo_epi32(r2, r3);
  const __m512i t3 = _mm512_unpackhi_epi32(r2, r3);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

inline __m128i load16(const uint8_t* p) noexcept {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// 16 bytes at at(j), at(j + 4), at(j + 8), at(j + 12) in the four 128-bit lanes: after
// transpose4 of the rows j = 0..3, lanes are packets 0..15 in order. (at(k) is computed where
// it is loaded: GCC vectorizes an array of sixteen pointers and then extracts them again.)
template <typename At>
inline __m512i load_row(At at, unsigned j) noexcept {
  const __m256i lo =
      _mm256_inserti128_si256(_mm256_castsi128_si256(load16(at(j))), load16(at(j + 4)), 1);
  const __m256i hi =
      _mm256_inserti128_si256(_mm256_castsi128_si256(load16(at(j + 8))), load16(at(j + 12)), 1);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

struct Lengths {
  __m512i data_len, frame_len, hint;
};

inline Lengths load_lengths(const PacketView* v, const Constants& c) noexcept {
  // data_len, frame_len, hint and padding of each view, transposed like the header bytes.
  auto lens = [v](unsigned k) { return reinterpret_cast<const uint8_t*>(&v[k].data_len); };
  const __m512i r0 = load_row(lens, 0), r1 = load_row(lens, 1);
  const __m512i r2 = load_row(lens, 2), r3 = load_row(lens, 3);
  const __m512i t0 = _mm512_unpacklo_epi32(r0, r1), t1 = _mm512_unpackhi_epi32(r0, r1);
  const __m512i t2 = _mm512_unpacklo_epi32(r2, r3), t3 = _mm512_unpackhi_epi32(r2, r3);
  return {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
          _mm512_and_si512(_mm512_unpacklo_epi64(t1, t3), ld(c.low_byte))};
}

// The vector step on sixteen views whose lanes in `usable` have at least kWindowEnd readable
// bytes (the others point at kBlank). Writes the keys of the lanes it passes.
[[gnu::always_inline]] inline FastResult fast_group(const PacketView* v, const Lengths& lens,
                                                    __mmask16 usable, FlowKey* keys,
                                                    const Constants& c) noexcept {
  auto block = [v](uint32_t at) {
    return [v, at](unsigned k) { return v[k].data + kWindowBegin + at; };
  };
  // d[i] = bytes 12 + 4i .. 15 + 4i of every packet (i = 0..9).
  __m512i d[10];
  {
    __m512i col[4];
    const auto b0 = block(0), b1 = block(16), b2 = block(32);
    transpose4(load_row(b0, 0), load_row(b0, 1), load_row(b0, 2), load_row(b0, 3), col);
    d[0] = col[0], d[1] = col[1], d[2] = col[2], d[3] = col[3];
    transpose4(load_row(b1, 0), load_row(b1, 1), load_row(b1, 2), load_row(b1, 3), col);
    d[4] = col[0], d[5] = col[1], d[6] = col[2], d[7] = col[3];
    // Only the first two dwords of the third block matter (the TCP data offset).
    const __m512i t0 = _mm512_unpacklo_epi32(load_row(b2, 0), load_row(b2, 1));
    const __m512i t2 = _mm512_unpacklo_epi32(load_row(b2, 2), load_row(b2, 3));
    d[8] = _mm512_unpacklo_epi64(t0, t2);
    d[9] = _mm512_unpackhi_epi64(t0, t2);
  }

  // Fields relative to the ethertype: with one 0x8100 tag, each is the next dword.
  const __mmask16 vlan =
      _mm512_cmpeq_epi32_mask(_mm512_and_si512(d[0], ld(c.lo16)), ld(c.vlan_tpid)) & usable;
  const __m512i eth = _mm512_mask_mov_epi32(d[0], vlan, d[1]);   // ethertype, version/IHL
  const __m512i len = _mm512_mask_mov_epi32(d[1], vlan, d[2]);   // total length, id
  const __m512i frag = _mm512_mask_mov_epi32(d[2], vlan, d[3]);  // flags/offset, TTL, protocol
  const __m512i w24 = _mm512_mask_mov_epi32(d[3], vlan, d[4]);   // checksum, src 0..1
  const __m512i w28 = _mm512_mask_mov_epi32(d[4], vlan, d[5]);   // src 2..3, dst 0..1
  const __m512i w32 = _mm512_mask_mov_epi32(d[5], vlan, d[6]);   // dst 2..3, source port
  const __m512i w36 = _mm512_mask_mov_epi32(d[6], vlan, d[7]);   // destination port, UDP length
  const __m512i w44 = _mm512_mask_mov_epi32(d[8], vlan, d[9]);   // TCP data offset in byte 2

  // Ethertype 0x0800 and 0x45; not a fragment (MF and offset zero; DF, reserved ignored).
  __mmask16 ok = _mm512_mask_cmpeq_epi32_mask(usable, _mm512_and_si512(eth, ld(c.ipv4_eth_mask)),
                                              ld(c.ipv4_eth));
  ok = _mm512_mask_testn_epi32_mask(ok, frag, ld(c.frag_mask));
  const __m512i proto = _mm512_srli_epi32(frag, 24);
  const __mmask16 is_tcp = _mm512_mask_cmpeq_epi32_mask(ok, proto, ld(c.tcp));
  const __mmask16 is_udp = _mm512_mask_cmpeq_epi32_mask(ok, proto, ld(c.udp));

  // Lengths: l3 + total <= frame_len; total >= 20 + the L4 header; the UDP length, TCP offset.
  const __m512i l3 = _mm512_mask_mov_epi32(ld(c.l3), vlan, ld(c.l3_tagged));
  const __m512i total = _mm512_shuffle_epi8(len, ld(c.swap_lo));
  const __m512i payload = _mm512_sub_epi32(total, ld(c.ip_header));
  ok = _mm512_mask_cmple_epu32_mask(is_tcp | is_udp, _mm512_add_epi32(l3, total), lens.frame_len);
  const __m512i udp_len = _mm512_shuffle_epi8(w36, ld(c.swap_hi));
  __mmask16 udp_ok = _mm512_mask_cmpge_epu32_mask(ok & is_udp, total, ld(c.udp_need));
  udp_ok = _mm512_mask_cmpge_epu32_mask(udp_ok, udp_len, ld(c.udp_min));
  udp_ok = _mm512_mask_cmple_epu32_mask(udp_ok, udp_len, payload);
  const __m512i tcp_off = _mm512_and_si512(_mm512_srli_epi32(w44, 18), ld(c.tcp_offset_mask));
  __mmask16 tcp_ok = _mm512_mask_cmpge_epu32_mask(ok & is_tcp, total, ld(c.tcp_need));
  tcp_ok = _mm512_mask_cmpge_epu32_mask(tcp_ok, tcp_off, ld(c.tcp_min));
  tcp_ok = _mm512_mask_cmple_epu32_mask(tcp_ok, tcp_off, payload);
  ok = udp_ok | tcp_ok;

  // Header checksum, as in the AVX2 kernel: the ten 16-bit words of eth[2..3], len, frag, w24,
  // w28, w32[0..1], summed per lane and folded once.
  const __m512i hi =
      _mm512_add_epi32(_mm512_add_epi32(_mm512_srli_epi32(len, 16), _mm512_srli_epi32(frag, 16)),
                       _mm512_add_epi32(_mm512_srli_epi32(w24, 16), _mm512_srli_epi32(w28, 16)));
  const __m512i whole = _mm512_add_epi32(_mm512_add_epi32(len, frag), _mm512_add_epi32(w24, w28));
  __m512i sum = _mm512_sub_epi32(whole, _mm512_slli_epi32(hi, 16));
  sum = _mm512_add_epi32(
      _mm512_add_epi32(sum, hi),
      _mm512_add_epi32(_mm512_srli_epi32(eth, 16), _mm512_and_si512(w32, ld(c.lo16))));
  sum = _mm512_add_epi32(_mm512_and_si512(sum, ld(c.lo16)), _mm512_srli_epi32(sum, 16));
  const __mmask16 good = _mm512_cmpeq_epi32_mask(lens.hint, ld(c.hint_good));
  const __mmask16 bad = _mm512_cmpeq_epi32_mask(lens.hint, ld(c.hint_bad));
  ok &= static_cast<__mmask16>(~bad & (good | _mm512_cmpeq_epi32_mask(sum, ld(c.lo16))));

  FastResult r;
  r.ok = ok;
  r.vlan = vlan;
  r.ipv6 = ok == kAllLanes
               ? 0
               : _mm512_mask_cmpeq_epi32_mask(usable, _mm512_and_si512(eth, ld(c.ipv6_eth_mask)),
                                              ld(c.ipv6_eth));

  // Keys: IPv4 bytes 8..23 hold protocol, addresses and ports in key order but for a shuffle.
  // The stores are byte-masked: in_port is never written, and a lane that did not pass writes
  // nothing (its mask is zero), so no lane needs a branch.
  const __m256i key_shuffle =
      _mm256_load_si256(reinterpret_cast<const __m256i*>(c.key_shuffle.data()));
  const __m256i key_flags = _mm256_load_si256(reinterpret_cast<const __m256i*>(c.key_flags.data()));
  for (unsigned k = 0; k < kLanes; ++k) {
    const uint32_t pass = 0u - (r.ok >> k & 1);  // all ones or zero
    const unsigned tagged = r.vlan >> k & 1;
    const __m256i bytes =
        _mm256_broadcastsi128_si256(load16(v[k].data + kKeyBytes + tagged * kVlanTagLen));
    const __m256i head = _mm256_or_si256(_mm256_shuffle_epi8(bytes, key_shuffle), key_flags);
    auto* key = reinterpret_cast<uint8_t*>(&keys[k]);
    _mm256_mask_storeu_epi8(key, kKeyHeadBytes & pass, head);
    _mm_mask_storeu_epi8(key + 32, static_cast<__mmask16>(pass),
                         _mm_load_si128(reinterpret_cast<const __m128i*>(kKeyTail[tagged].data())));
  }
  return r;
}

// Sixteen views (live: which lanes are packets of the burst). Writes verdicts and keys of the
// live packets, returns how many are kOk.
[[gnu::always_inline]] inline unsigned validate_group(const PacketView* v, FlowKey* keys,
                                                      Verdict* verdicts, uint32_t live,
                                                      const Constants& c) noexcept {
  const Lengths lens = load_lengths(v, c);
  const uint32_t usable = _mm512_cmpge_epu32_mask(lens.data_len, ld(c.window_end)) & live;
  FastResult r;
  if (usable == kAllLanes) [[likely]] {
    r = fast_group(v, lens, static_cast<__mmask16>(usable), keys, c);
  } else if (usable != 0) {
    r = fast_group(with_blanks<kLanes>(v, usable).data(), lens, static_cast<__mmask16>(usable),
                   keys, c);
  }
  return finish_group<kLanes>(v, keys, verdicts, live, r);
}

}  // namespace

uint16_t validate_burst_avx512(const PacketView* pkts, uint16_t n, FlowKey* keys,
                               Verdict* verdicts) noexcept {
  const Constants& c = *launder(&kConstants);
  return run_burst<kLanes>(pkts, n, keys, verdicts,
                           [&c](const PacketView* v, FlowKey* k, Verdict* out, uint32_t live) {
                             return validate_group(v, k, out, live, c);
                           });
}

}  // namespace sluice::simd
