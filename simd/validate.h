#pragma once
// Header validation and flow-key extraction on bursts of packets.
//
// This room includes nothing of DPDK: a packet is a pointer to its first contiguous bytes, how
// many of them are readable, and the frame's total length (a PacketView). The data path calls
// the mbuf entry (ValidateMbufsFn below), which reads those from each mbuf's first cache line
// itself and hands back the frames whose first segment ends inside their headers; the
// pipeline linearises those and validates their views (see lib/pipeline).

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace sluice::simd {

// Validation verdicts. The order is CONTRACT's: a packet gets the first reason that holds.
enum class Verdict : uint8_t {
  kOk = 0,
  kRunt,
  kL3Truncated,
  kIpv4Version,
  kIpv4Ihl,
  kIpv4Length,
  kIpv4Checksum,
  kIpv6Version,
  kIpv6Length,
  kIpv6Ext,
  kL4Truncated,
  kTcpOffset,
  kUdpLength,
};
inline constexpr size_t kVerdictCount = 13;

// CONTRACT names, the one table of them (lib/stats' drop names take theirs from it).
inline constexpr std::array<std::string_view, kVerdictCount> kVerdictNames = {
    "ok",           "runt",          "l3_truncated", "ipv4_version", "ipv4_ihl",
    "ipv4_length",  "ipv4_checksum", "ipv6_version", "ipv6_length",  "ipv6_ext",
    "l4_truncated", "tcp_offset",    "udp_length",
};
// kVerdictNames[v], "unknown" past its end.
std::string_view verdict_name(Verdict v) noexcept;

enum class Family : uint8_t { kNone = 0, kIpv4 = 4, kIpv6 = 6 };

// What the NIC said about the IPv4 header checksum (RTE_MBUF_F_RX_IP_CKSUM_*).
enum class CksumHint : uint8_t { kUnknown = 0, kGood, kBad };

struct PacketView {
  const uint8_t* data;  // first byte of the Ethernet header
  uint32_t data_len;    // bytes readable at data (<= frame_len)
  uint32_t frame_len;   // bytes in the whole frame
  CksumHint ip_cksum;
};

// The classification key. Its layout is also the rte_acl input buffer (lib/flow defines its
// fields on these offsets), so multi-byte fields are in network byte order.
struct alignas(8) FlowKey {
  uint8_t proto;                // IP protocol after any IPv6 extension headers; 0 for non-IP
  uint8_t in_port;              // ingress port id: the burst's, given to the validator
  uint8_t l4_valid;             // 1 when src_port/dst_port were read from a TCP/UDP/SCTP header
  Family family;                // kNone for non-IP frames (ARP, LLDP, ...)
  uint16_t src_port;            // network byte order; 0 unless l4_valid
  uint16_t dst_port;            // network byte order; 0 unless l4_valid
  std::array<uint8_t, 16> src;  // IPv4: first 4 bytes, the rest zero
  std::array<uint8_t, 16> dst;
  uint16_t l3_offset;  // offset of the IP header in the frame (not part of the ACL input)
  uint16_t l4_offset;  // offset of the L4 header; 0 when there is none (non-first fragment)
  uint8_t fragment;    // 1 for any IP fragment (first or not)
  uint8_t pad_[3];
};
static_assert(sizeof(FlowKey) == 48);
static_assert(offsetof(FlowKey, src_port) == 4);
static_assert(offsetof(FlowKey, src) == 8);
static_assert(offsetof(FlowKey, dst) == 24);

// Longest header chain the validator reads: Ethernet + 2 VLAN tags + IPv6 + 8 extension
// headers of typical size + L4. The pipeline linearises at most this many bytes of a
// multi-segment frame; a chain that runs past them is counted as ipv6_ext.
inline constexpr uint32_t kMaxHeaderBytes = 512;

// The flow hash of a key, by which the flow cache picks its bucket (lib/flow): a function of
// the key's first 40 bytes alone (everything classification reads), so every kernel gives the
// same one. Each 16-byte address is folded to 4 bytes by XOR (an IPv4 key's is its address:
// the rest is zero); then head word (protocol, in_port, l4_valid, family), ports and the two
// folds, each times its own odd constant, summed. That is multiplicative hashing: bit j of an
// input reaches bits j..31 of its product, so the hash's high bits depend on every input bit
// and the cache takes its bucket index from them (its low bits would miss an address's last
// octet). No finaliser: its two multiplies in a chain were ~25 cycles of latency on every eight
// packets of the AVX2 kernel, which computes this on eight IPv4 packets at once, in the lanes it
// already holds the fields in (hash_mix's vector twin). The multipliers of head, ports, src and
// dst:
inline constexpr uint32_t kHashHead = 0x9E3779B1u, kHashPorts = 0x85EBCA77u, kHashSrc = 0xC2B2AE3Du,
                          kHashDst = 0x27D4EB2Fu;
// murmur3's 32-bit finaliser (with these multipliers): every output bit depends on every input
// bit. (The distributor's flow_hash ends with it; key hashes do not, see above.)
inline constexpr uint32_t kHashFmix1 = 0x85EBCA6Bu, kHashFmix2 = 0xC2B2AE35u;
inline constexpr uint32_t hash_fmix(uint32_t h) noexcept {
  h ^= h >> 16;
  h *= kHashFmix1;
  h ^= h >> 13;
  h *= kHashFmix2;
  h ^= h >> 16;
  return h;
}
inline constexpr uint32_t hash_mix(uint32_t head, uint32_t ports, uint32_t src,
                                   uint32_t dst) noexcept {
  return head * kHashHead + ports * kHashPorts + src * kHashSrc + dst * kHashDst;
}
inline uint32_t key_hash(const FlowKey& key) noexcept {
  uint32_t w[10];
  std::memcpy(w, &key, sizeof w);
  return hash_mix(w[0], w[1], w[2] ^ w[3] ^ w[4] ^ w[5], w[6] ^ w[7] ^ w[8] ^ w[9]);
}

// Validates n packets, all received on port in_port. verdicts[i] is kOk or exactly one drop
// reason; for every packet with verdict kOk, keys[i] is filled (in_port included) and, unless
// hashes is null, hashes[i] = key_hash(keys[i]). Returns how many are kOk.
using ValidateBurstFn = uint16_t (*)(const PacketView* pkts, uint16_t n, uint8_t in_port,
                                     FlowKey* keys, uint32_t* hashes, Verdict* verdicts) noexcept;

// The scalar reference: every other kernel must give the same verdicts and keys.
uint16_t validate_burst_scalar(const PacketView* pkts, uint16_t n, uint8_t in_port, FlowKey* keys,
                               uint32_t* hashes, Verdict* verdicts) noexcept;

// The AVX2 kernel (validate_avx2.cpp, built with -mavx2): same outputs as the scalar
// reference. Call it only where kernel_supported(Kernel::kAvx2) holds.
uint16_t validate_burst_avx2(const PacketView* pkts, uint16_t n, uint8_t in_port, FlowKey* keys,
                             uint32_t* hashes, Verdict* verdicts) noexcept;

// ---- straight from the mbufs ------------------------------------------------------------
// The data path's entry: the kernel reads each frame's view from its DPDK mbuf itself, so
// no pass over the burst builds PacketViews first. This room still includes nothing of DPDK:
// it knows the few fields of the mbuf's first cache line it reads, at DPDK 22.11's offsets,
// and lib/pipeline static_asserts every one of them (and the flags) against rte_mbuf.h.
namespace mbuf {
inline constexpr size_t kBufAddr = 0;   // void*: the buffer
inline constexpr size_t kDataOff = 16;  // uint16_t: the frame's first byte, from buf_addr
inline constexpr size_t kOlFlags = 24;  // uint64_t: offload flags
inline constexpr size_t kPktLen = 36;   // uint32_t: the whole frame (every segment)
inline constexpr size_t kDataLen = 40;  // uint16_t: bytes in this first segment
// RTE_MBUF_F_RX_IP_CKSUM_*: the mask, BAD, GOOD, and NONE (both bits: header verified, field
// not filled in, as good as GOOD here).
inline constexpr uint64_t kIpCksumMask = uint64_t{1} << 4 | uint64_t{1} << 7;
inline constexpr uint64_t kIpCksumBad = uint64_t{1} << 4;
inline constexpr uint64_t kIpCksumGood = uint64_t{1} << 7;
}  // namespace mbuf

// The hint of offload flags ol_flags.
constexpr CksumHint cksum_hint_of(uint64_t ol_flags) noexcept {
  const uint64_t f = ol_flags & mbuf::kIpCksumMask;
  return f == mbuf::kIpCksumBad          ? CksumHint::kBad
         : (f & mbuf::kIpCksumGood) != 0 ? CksumHint::kGood
                                         : CksumHint::kUnknown;
}

// The first byte of the frame in the mbuf at m (buf_addr + data_off).
inline const uint8_t* frame_of_mbuf(const void* m) noexcept {
  const auto* b = static_cast<const uint8_t*>(m);
  const uint8_t* buf;
  uint16_t data_off;
  std::memcpy(&buf, b + mbuf::kBufAddr, sizeof buf);
  std::memcpy(&data_off, b + mbuf::kDataOff, sizeof data_off);
  return buf + data_off;
}
// The view of the frame in the mbuf at m (what the pipeline passed before the mbuf entry): its
// first segment's bytes. When that segment holds fewer than min(frame_len, kMaxHeaderBytes)
// bytes the view is not one a kernel takes (see split below).
inline PacketView view_of_mbuf(const void* m) noexcept {
  const auto* b = static_cast<const uint8_t*>(m);
  uint16_t data_len;
  uint32_t pkt_len;
  uint64_t ol_flags;
  std::memcpy(&data_len, b + mbuf::kDataLen, sizeof data_len);
  std::memcpy(&pkt_len, b + mbuf::kPktLen, sizeof pkt_len);
  std::memcpy(&ol_flags, b + mbuf::kOlFlags, sizeof ol_flags);
  return {frame_of_mbuf(m), data_len, pkt_len, cksum_hint_of(ol_flags)};
}
// Whether a view's readable bytes fall short of what the validator may read: a chain of
// segments cut inside its headers, which the caller linearises first.
constexpr bool view_split(const PacketView& v) noexcept {
  return v.data_len < (v.frame_len < kMaxHeaderBytes ? v.frame_len : kMaxHeaderBytes);
}

struct MbufBurst {
  uint16_t nb_ok = 0;  // kOk among the packets not split
  uint64_t split = 0;  // bit i: packet i's first segment is cut inside its headers (view_split):
                       // nothing written for it; the caller linearises and validates its view
  uint64_t bytes = 0;  // frame_len summed over all n packets, split ones included
};
// Validates n <= 64 packets received on in_port, from their mbufs: for every packet not split,
// verdicts, keys and hashes exactly as the same kernel's ValidateBurstFn on view_of_mbuf.
using ValidateMbufsFn = MbufBurst (*)(const void* const* mbufs, uint16_t n, uint8_t in_port,
                                      FlowKey* keys, uint32_t* hashes, Verdict* verdicts) noexcept;
inline constexpr uint16_t kMaxMbufBurst = 64;
MbufBurst validate_mbufs_scalar(const void* const* mbufs, uint16_t n, uint8_t in_port,
                                FlowKey* keys, uint32_t* hashes, Verdict* verdicts) noexcept;
MbufBurst validate_mbufs_avx2(const void* const* mbufs, uint16_t n, uint8_t in_port, FlowKey* keys,
                              uint32_t* hashes, Verdict* verdicts) noexcept;

// Kernels in order of preference, best last. Chosen once at start (kernel_fn), never at build
// time: the binary runs on any x86-64 and uses what the CPU has.
enum class Kernel : uint8_t { kScalar = 0, kAvx2 };
inline constexpr std::array<Kernel, 2> kKernels = {Kernel::kScalar, Kernel::kAvx2};

// "scalar", "avx2": the names of --simd.
std::string_view kernel_name(Kernel k) noexcept;
// The kernel of a name; nullopt when the name is none of them.
std::optional<Kernel> kernel_from_name(std::string_view name) noexcept;
// Widest vector register the kernel uses, in bits (DPDK's max SIMD bitwidth terms: 64 for
// scalar, then 128, 256, 512).
unsigned kernel_bitwidth(Kernel k) noexcept;
// Whether this CPU (and OS) can run the kernel. The scalar reference always can.
bool kernel_supported(Kernel k) noexcept;
// The best kernel this CPU supports within max_bitwidth (DPDK's rte_vect_get_max_simd_bitwidth).
Kernel best_kernel(unsigned max_bitwidth) noexcept;
ValidateBurstFn kernel_fn(Kernel k) noexcept;
ValidateMbufsFn mbuf_kernel_fn(Kernel k) noexcept;

}  // namespace sluice::simd
