#pragma once
// What SIMD kernels share (validate_avx2.cpp; the AVX-512 kernel in git history used it too): the
// fast path's constants, the per-packet IPv6 path, and the handling of lanes the vector step
// did not pass.
//
// Include it only from a kernel file. Everything here has internal linkage on purpose: each
// kernel compiles it with its own -m flags, and an inline function with external linkage would
// let the linker hand the AVX-512 copy to the AVX2 kernel's callers.

#include <immintrin.h>

#include <array>
#include <cstddef>
#include <cstring>

#include "simd/validate.h"

namespace sluice::simd {
namespace {

static_assert(sizeof(PacketView) == 24 && offsetof(PacketView, data_len) == 8 &&
                  offsetof(PacketView, frame_len) == 12 && offsetof(PacketView, ip_cksum) == 16,
              "the kernels' view loads assume this layout");
static_assert(static_cast<int>(CksumHint::kGood) == 1 && static_cast<int>(CksumHint::kBad) == 2);

constexpr uint32_t kWindowBegin = 12;  // the ethertype
constexpr uint32_t kWindowEnd = 60;    // three 16-byte loads from kWindowBegin
constexpr uint32_t kKeyBytes = 22;     // IPv4 TTL: protocol, checksum, addresses, ports follow
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint32_t kEthHeaderLen = 14;
constexpr uint32_t kVlanTagLen = 4;
constexpr uint32_t kIpv4HeaderLen = 20;
constexpr uint32_t kIpv6HeaderLen = 40;

// Readable stand-in for lanes that have no packet (burst tail) or too few readable bytes: its
// lane's results are never used.
alignas(64) constexpr std::array<uint8_t, kWindowEnd> kBlank{};

// Stands in for the mbufs past a burst's tail: readable, its frame kBlank, every length 0.
struct alignas(64) BlankMbuf {
  const uint8_t* buf_addr = kBlank.data();  // mbuf::kBufAddr
  std::array<uint8_t, 56> rest{};           // data_off, ol_flags, pkt_len, data_len: 0
};
static_assert(mbuf::kBufAddr == 0 && sizeof(BlankMbuf) == 64);
constexpr BlankMbuf kBlankMbuf{};

// ---- vector constants as bytes ---------------------------------------------------------
// GCC 12 rebuilds every set1 constant at each use with three instructions (mov, vmovd,
// vpbroadcastd). The kernels keep theirs in a table behind an address the compiler does not
// see through (launder), so they are memory operands of the instructions that use them.

template <size_t N>
using Bytes = std::array<uint8_t, N>;

constexpr uint8_t kZ = 0x80;  // vpshufb: zero this byte

template <size_t N>
constexpr Bytes<N> splat(uint32_t x) {
  Bytes<N> v{};
  for (size_t i = 0; i < N; ++i) v[i] = static_cast<uint8_t>(x >> (8 * (i % 4)));
  return v;
}

// A 16-byte pattern in every 128-bit lane (vpshufb controls work per lane).
template <size_t N>
constexpr Bytes<N> per_lane(Bytes<16> pattern) {
  Bytes<N> v{};
  for (size_t i = 0; i < N; ++i) v[i] = pattern[i % 16];
  return v;
}

// Bytes 0..1 (swap_lo) or 2..3 (swap_hi) of each dword, swapped: a big-endian 16-bit field.
constexpr Bytes<16> kSwapLo = {1, 0, kZ, kZ, 5, 4, kZ, kZ, 9, 8, kZ, kZ, 13, 12, kZ, kZ};
constexpr Bytes<16> kSwapHi = {3, 2, kZ, kZ, 7, 6, kZ, kZ, 11, 10, kZ, kZ, 15, 14, kZ, kZ};

// From IPv4 bytes 8..23 (TTL, protocol, checksum, src, dst, ports) in both 128-bit halves to key
// bytes 0..31: protocol, in_port, l4_valid, family, ports, src, 12 zeros, dst, 4 zeros.
constexpr Bytes<32> kKeyShuffle = {1,  kZ, kZ, kZ, 12, 13, 14, 15, 4, 5, 6,  7,  kZ, kZ, kZ, kZ,
                                   kZ, kZ, kZ, kZ, kZ, kZ, kZ, kZ, 8, 9, 10, 11, kZ, kZ, kZ, kZ};
constexpr Bytes<32> kKeyFlags = {0, 0, 1, static_cast<uint8_t>(Family::kIpv4)};  // l4_valid, family

// Key bytes 32..47 of an IPv4 fast-path key: l3_offset and l4_offset (host order) in bytes 8..11,
// fragment and padding zero; untagged and with one tag.
constexpr Bytes<16> key_tail(uint32_t l3) {
  const uint32_t offsets = l3 | (l3 + kIpv4HeaderLen) << 16;
  Bytes<16> v{};
  for (size_t i = 0; i < 4; ++i) v[8 + i] = static_cast<uint8_t>(offsets >> (8 * i));
  return v;
}
alignas(16) constexpr std::array<Bytes<16>, 2> kKeyTail = {key_tail(kEthHeaderLen),
                                                           key_tail(kEthHeaderLen + kVlanTagLen)};

template <typename T>
inline const T* launder(const T* p) noexcept {
  asm("" : "+r"(p));
  return p;
}

inline uint16_t load_be16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// ---- lanes the vector step did not pass ------------------------------------------------

// IPv6 without extension headers, TCP or UDP, at l3 (14 or 18): true with the key written when
// the reference would say kOk; false leaves everything to the reference.
[[gnu::always_inline]] inline bool ipv6_fast(const PacketView& v, uint32_t l3, uint8_t in_port,
                                             FlowKey& key) noexcept {
  const uint8_t* h = v.data + l3;
  const uint32_t l4 = l3 + kIpv6HeaderLen;
  const uint8_t next = h[6];
  uint32_t need;
  if (next == kProtoUdp) {
    need = 8;
  } else if (next == kProtoTcp) {
    need = 20;
  } else {
    return false;
  }
  const uint32_t payload = load_be16(h + 4);
  if ((h[0] >> 4) != 6 || l4 + payload > v.frame_len || payload < need || l4 + need > v.data_len) {
    return false;
  }
  const uint8_t* t = v.data + l4;
  if (next == kProtoUdp) {
    const uint32_t udp_len = load_be16(t + 4);
    if (udp_len < 8 || udp_len > payload) return false;
  } else {
    const uint32_t offset = (t[12] >> 4) * 4u;
    if (offset < 20 || offset > payload) return false;
  }
  uint32_t ports;
  std::memcpy(&ports, t, 4);
  auto* k = reinterpret_cast<uint8_t*>(&key);
  const uint64_t head = next | uint64_t{in_port} << 8 | uint64_t{1} << 16 |
                        uint64_t{static_cast<uint8_t>(Family::kIpv6)} << 24 | uint64_t{ports} << 32;
  const uint64_t tail = l3 | uint64_t{l4} << 16;  // fragment 0, pad 0
  std::memcpy(k, &head, 8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(k + 8),
                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + 8)));
  std::memcpy(k + 40, &tail, 8);
  return true;
}

// A non-IP frame's key (the reference's: proto, family, addresses, ports, l4_offset and
// fragment zero), L2 ending at l3.
[[gnu::always_inline]] inline void non_ip_key(uint32_t l3, uint8_t in_port, FlowKey& key) noexcept {
  auto* k = reinterpret_cast<uint8_t*>(&key);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(k), _mm_cvtsi32_si128(in_port << 8));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(k + 16), _mm_setzero_si128());
  _mm_storeu_si128(reinterpret_cast<__m128i*>(k + 32), _mm_set_epi64x(l3, 0));
}

// What a vector step found, one bit per lane.
struct FastResult {
  uint32_t ok = 0;      // IPv4 fast path passed: verdict kOk, key written
  uint32_t ipv6 = 0;    // ethertype IPv6 and version 6 after at most one 0x8100 tag
  uint32_t vlan = 0;    // one 0x8100 tag
  uint32_t non_ip = 0;  // readable window, and after at most one 0x8100 tag an ethertype that
                        // is neither IP nor a tag: kOk with non_ip_key, whatever follows
};

// Verdicts of a group of kLanes views after its vector step (live: the lanes that are packets
// of the burst): kOk for passed lanes (their keys and hashes written by the vector step); the
// others take the IPv6 path or the reference. Returns how many are kOk.
// view(k) gives lane k's PacketView. finish_lanes is all but the common case, every lane
// passed, which finish_group below decides where it is inlined.
template <unsigned kLanes, typename ViewOf>
unsigned finish_lanes(ViewOf&& view, uint8_t in_port, FlowKey* keys, uint32_t* hashes,
                      Verdict* verdicts, uint32_t live, const FastResult& r) noexcept {
  constexpr uint32_t kAll = kLanes == 32 ? ~0u : (1u << kLanes) - 1;
  unsigned nb_ok = static_cast<unsigned>(__builtin_popcount(r.ok));
  if (live == kAll) {
    std::memset(verdicts, 0, kLanes);  // the other lanes are overwritten below
  } else {
    for (uint32_t m = r.ok; m != 0; m &= m - 1) verdicts[__builtin_ctz(m)] = Verdict::kOk;
  }
  for (uint32_t m = live & ~r.ok; m != 0; m &= m - 1) {
    const auto k = static_cast<unsigned>(__builtin_ctz(m));
    if (r.non_ip >> k & 1) {
      non_ip_key(kEthHeaderLen + (r.vlan >> k & 1) * kVlanTagLen, in_port, keys[k]);
      verdicts[k] = Verdict::kOk;
      // key_hash of that key: only its head word (in_port) is not zero.
      if (hashes != nullptr) hashes[k] = hash_mix(uint32_t{in_port} << 8, 0, 0, 0);
      ++nb_ok;
      continue;
    }
    const PacketView& v = view(k);
    if ((r.ipv6 >> k & 1) &&
        ipv6_fast(v, kEthHeaderLen + (r.vlan >> k & 1) * kVlanTagLen, in_port, keys[k])) {
      verdicts[k] = Verdict::kOk;
      if (hashes != nullptr) hashes[k] = key_hash(keys[k]);
      ++nb_ok;
    } else {
      nb_ok += validate_burst_scalar(&v, 1, in_port, &keys[k],
                                     hashes != nullptr ? &hashes[k] : nullptr, &verdicts[k]);
    }
  }
  return nb_ok;
}

template <unsigned kLanes, typename ViewOf>
[[gnu::always_inline]] inline unsigned finish_group(ViewOf&& view, uint8_t in_port, FlowKey* keys,
                                                    uint32_t* hashes, Verdict* verdicts,
                                                    uint32_t live, const FastResult& r) noexcept {
  constexpr uint32_t kAll = kLanes == 32 ? ~0u : (1u << kLanes) - 1;
  if (r.ok == kAll) [[likely]] {
    std::memset(verdicts, 0, kLanes);  // Verdict::kOk
    return kLanes;
  }
  return finish_lanes<kLanes>(view, in_port, keys, hashes, verdicts, live, r);
}

// hash_fmix on eight lanes (m1, m2: kHashFmix1 and kHashFmix2 in every lane).
inline __m256i fmix_lanes(__m256i h, __m256i m1, __m256i m2) noexcept {
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  h = _mm256_mullo_epi32(h, m1);
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
  h = _mm256_mullo_epi32(h, m2);
  return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

// A burst in groups of kLanes; the tail runs as a group padded with blank views whose lanes
// are not live. group(views, keys, hashes, verdicts, live) returns how many are kOk (hashes
// null, or offset like keys).
template <unsigned kLanes, typename Group>
uint16_t run_burst(const PacketView* pkts, uint16_t n, FlowKey* keys, uint32_t* hashes,
                   Verdict* verdicts, Group&& group) noexcept {
  constexpr uint32_t kAll = kLanes == 32 ? ~0u : (1u << kLanes) - 1;
  unsigned nb_ok = 0;
  uint16_t i = 0;
  auto hashes_at = [hashes](unsigned at) { return hashes != nullptr ? hashes + at : nullptr; };
  for (; i + kLanes <= n; i += kLanes)
    nb_ok += group(pkts + i, keys + i, hashes_at(i), verdicts + i, kAll);
  if (i < n) {
    std::array<PacketView, kLanes> tail;
    const unsigned rest = n - i;
    for (unsigned k = 0; k < kLanes; ++k) {
      tail[k] = k < rest ? pkts[i + k] : PacketView{kBlank.data(), 0, 0, CksumHint::kUnknown};
    }
    nb_ok += group(tail.data(), keys + i, hashes_at(i), verdicts + i, (1u << rest) - 1);
  }
  return static_cast<uint16_t>(nb_ok);
}

}  // namespace
}  // namespace sluice::simd
