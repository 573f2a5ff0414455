// The AVX2 burst hash (flow_hash.h): eight frames at a time in 32-bit lanes, as the validator
// holds its packets. Bytes [12, 44) of each frame are two 128-bit loads, transposed so that one
// register holds bytes k..k+3 of all eight; the common-frame test, the ordered address and port
// pairs (vector min and max) and flow_mix are lane-wise. Frames with fewer than 44 readable
// bytes, and lanes past the burst, read a blank frame instead and are left to the caller, as
// are frames that are not the common one.

#include <immintrin.h>

#include "simd/flow_hash.h"
#include "simd/kernel_common.h"

namespace sluice::simd {

namespace {

constexpr unsigned kLanes = 8;
constexpr uint32_t kNeed = 44;  // the two loads: bytes 12..43

struct alignas(32) HashConstants {
  Bytes<32> eth_mask = splat<32>(0x00FFFFFF);   // ethertype, version/IHL
  Bytes<32> ipv4_eth = splat<32>(0x00450008);   // 0x0800, 0x45
  Bytes<32> frag_mask = splat<32>(0x0000FF3F);  // MF and the fragment offset
  Bytes<32> tcp = splat<32>(kProtoTcp);
  Bytes<32> udp = splat<32>(kProtoUdp);
  Bytes<32> lo16 = splat<32>(0xFFFF);
  Bytes<32> k_lo = splat<32>(kFlowHashLo);
  Bytes<32> k_hi = splat<32>(kFlowHashHi);
  Bytes<32> k_ports = splat<32>(kFlowHashPorts);
  Bytes<32> k_proto = splat<32>(kFlowHashProto);
  Bytes<32> fmix1 = splat<32>(kHashFmix1);
  Bytes<32> fmix2 = splat<32>(kHashFmix2);
};
constexpr HashConstants kHashConstants{};

inline __m256i ld(const Bytes<32>& v) noexcept {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(v.data()));
}

// Frame j in the low half, frame j + 4 in the high half: lanes are frames 0..7 in order.
inline __m256i load_pair(const uint8_t* lo, const uint8_t* hi) noexcept {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

// Eight frames (p[k] readable for kNeed bytes): their hashes, and bit k set where frame k is
// the common one.
inline unsigned hash_group(const uint8_t* const* p, uint32_t* out,
                           const HashConstants& c) noexcept {
  // d[i] = bytes 12 + 4i .. 15 + 4i of every frame, for the i used below.
  const __m256i r0 = load_pair(p[0] + 12, p[4] + 12), r1 = load_pair(p[1] + 12, p[5] + 12);
  const __m256i r2 = load_pair(p[2] + 12, p[6] + 12), r3 = load_pair(p[3] + 12, p[7] + 12);
  const __m256i s0 = load_pair(p[0] + 28, p[4] + 28), s1 = load_pair(p[1] + 28, p[5] + 28);
  const __m256i s2 = load_pair(p[2] + 28, p[6] + 28), s3 = load_pair(p[3] + 28, p[7] + 28);
  const __m256i a0 = _mm256_unpacklo_epi32(r0, r1), a1 = _mm256_unpackhi_epi32(r0, r1);
  const __m256i a2 = _mm256_unpacklo_epi32(r2, r3), a3 = _mm256_unpackhi_epi32(r2, r3);
  const __m256i b0 = _mm256_unpacklo_epi32(s0, s1), b1 = _mm256_unpackhi_epi32(s0, s1);
  const __m256i b2 = _mm256_unpacklo_epi32(s2, s3), b3 = _mm256_unpackhi_epi32(s2, s3);
  const __m256i eth = _mm256_unpacklo_epi64(a0, a2);   // bytes 12..15
  const __m256i frag = _mm256_unpacklo_epi64(a1, a3);  // 20..23: flags/offset, TTL, protocol
  const __m256i w24 = _mm256_unpackhi_epi64(a1, a3);   // checksum, src 0..1
  const __m256i w28 = _mm256_unpacklo_epi64(b0, b2);   // src 2..3, dst 0..1
  const __m256i w32 = _mm256_unpackhi_epi64(b0, b2);   // dst 2..3, source port
  const __m256i w36 = _mm256_unpacklo_epi64(b1, b3);   // destination port, ...

  const __m256i proto = _mm256_srli_epi32(frag, 24);
  __m256i ok = _mm256_cmpeq_epi32(_mm256_and_si256(eth, ld(c.eth_mask)), ld(c.ipv4_eth));
  ok = _mm256_and_si256(
      ok, _mm256_cmpeq_epi32(_mm256_and_si256(frag, ld(c.frag_mask)), _mm256_setzero_si256()));
  ok = _mm256_and_si256(ok, _mm256_or_si256(_mm256_cmpeq_epi32(proto, ld(c.tcp)),
                                            _mm256_cmpeq_epi32(proto, ld(c.udp))));

  const __m256i src = _mm256_or_si256(_mm256_srli_epi32(w24, 16), _mm256_slli_epi32(w28, 16));
  const __m256i dst = _mm256_or_si256(_mm256_srli_epi32(w28, 16), _mm256_slli_epi32(w32, 16));
  const __m256i sport = _mm256_srli_epi32(w32, 16);
  const __m256i dport = _mm256_and_si256(w36, ld(c.lo16));
  const __m256i lo = _mm256_min_epu32(src, dst), hi = _mm256_max_epu32(src, dst);
  const __m256i ports = _mm256_or_si256(_mm256_min_epu32(sport, dport),
                                        _mm256_slli_epi32(_mm256_max_epu32(sport, dport), 16));
  const __m256i h = _mm256_add_epi32(
      _mm256_add_epi32(_mm256_mullo_epi32(lo, ld(c.k_lo)), _mm256_mullo_epi32(hi, ld(c.k_hi))),
      _mm256_add_epi32(_mm256_mullo_epi32(ports, ld(c.k_ports)),
                       _mm256_mullo_epi32(proto, ld(c.k_proto))));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), fmix_lanes(h, ld(c.fmix1), ld(c.fmix2)));
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(ok)));
}

}  // namespace

uint64_t flow_hash_burst_avx2(const uint8_t* const* data, const uint32_t* len, unsigned n,
                              uint32_t* hashes) noexcept {
  const HashConstants& c = *launder(&kHashConstants);
  const __m256i need_minus_1 = _mm256_set1_epi32(kNeed - 1);
  uint64_t done = 0;
  unsigned i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    // Lengths are data_len values (below 2^16): a signed compare is exact.
    const unsigned usable =
        static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(len + i)), need_minus_1))));
    unsigned ok;
    if (usable == (1u << kLanes) - 1) [[likely]] {
      ok = hash_group(data + i, hashes + i, c);
    } else {
      const uint8_t* p[kLanes];
      for (unsigned k = 0; k < kLanes; ++k) p[k] = (usable >> k & 1) ? data[i + k] : kBlank.data();
      ok = hash_group(p, hashes + i, c) & usable;
    }
    done |= uint64_t{ok} << i;
  }
  if (i < n) {
    // The tail as a group, a blank frame behind each lane past the burst.
    const uint8_t* p[kLanes];
    unsigned usable = 0;
    for (unsigned k = 0; k < kLanes; ++k) {
      const bool in = i + k < n && len[i + k] >= kNeed;
      p[k] = in ? data[i + k] : kBlank.data();
      usable |= unsigned{in} << k;
    }
    uint32_t h[kLanes];
    const unsigned ok = hash_group(p, h, c) & usable;
    for (unsigned k = 0; i + k < n; ++k) hashes[i + k] = h[k];
    done |= uint64_t{ok} << i;
  }
  return done;
}

}  // namespace sluice::simd
