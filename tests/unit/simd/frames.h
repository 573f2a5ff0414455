#pragma once
// Frames and guarded memory for the simd tests (the scalar reference's tests and the
// differential tests of every kernel against it).

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <vector>

#include "lib/packet/frame_builder.h"

namespace sluice::simd::frames {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kSentinel = 0xA5;
constexpr uint32_t kEth = packet::kEthLen;

constexpr uint8_t kIcmp = packet::kProtoIcmp;
constexpr uint8_t kTcp = packet::kProtoTcp;
constexpr uint8_t kUdp = packet::kProtoUdp;
constexpr uint8_t kGre = packet::kProtoGre;
constexpr uint8_t kIcmpv6 = packet::kProtoIcmpv6;
constexpr uint8_t kNoNext = packet::kProtoNoNext;
constexpr uint8_t kSctp = packet::kProtoSctp;

constexpr uint8_t kHopByHop = packet::kProtoHopByHop;
constexpr uint8_t kRouting = packet::kProtoRouting;
constexpr uint8_t kFragment = packet::kProtoFragment;
constexpr uint8_t kAh = packet::kProtoAh;
constexpr uint8_t kDestOpts = packet::kProtoDestOpts;
constexpr uint8_t kMobility = packet::kProtoMobility;
constexpr uint8_t kHip = packet::kProtoHip;
constexpr uint8_t kShim6 = packet::kProtoShim6;

// ---- guarded memory --------------------------------------------------------------------

// Bytes placed at the end of read-write pages followed by a PROT_NONE page.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t capacity) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    usable_ = std::max<size_t>(1, (capacity + page_ - 1) / page_) * page_;
    void* m =
        mmap(nullptr, usable_ + page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) std::abort();
    base_ = static_cast<uint8_t*>(m);
    if (mprotect(base_ + usable_, page_, PROT_NONE) != 0) std::abort();
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  ~GuardedBuffer() { munmap(base_, usable_ + page_); }

  // Copies the first n bytes of b so that the byte after them is unreadable.
  const uint8_t* place(const Bytes& b, size_t n) {
    if (n > usable_ || n > b.size()) std::abort();
    uint8_t* p = base_ + usable_ - n;
    if (n != 0) std::memcpy(p, b.data(), n);
    return p;
  }

  // The last n bytes, writable, right before the unreadable page.
  uint8_t* last(size_t n) {
    if (n > usable_) std::abort();
    return base_ + usable_ - n;
  }

 private:
  uint8_t* base_ = nullptr;
  size_t page_ = 0;
  size_t usable_ = 0;
};

// ---- frames ----------------------------------------------------------------------------
// The simd tests' vocabulary over the one frame builder (lib/packet): headers as byte
// vectors to concatenate, with these tests' addresses and defaults. No header layout and no
// checksum is computed here.

inline void put16(Bytes& b, size_t at, uint16_t v) {
  packet::put16(b.data() + at, v);
}

inline Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline Bytes filler(size_t n, uint8_t v = 0xEE) {
  return Bytes(n, v);
}

// Ethernet header with optional VLAN tags (outermost first), VLAN ids 100, 101, ...
inline Bytes eth(uint16_t ethertype, std::initializer_list<uint16_t> tpids = {}) {
  std::vector<packet::VlanTag> tags;
  uint16_t vid = 100;
  for (uint16_t tpid : tpids) tags.push_back({tpid, vid++});
  Bytes b(packet::kEthLen + tags.size() * packet::kVlanLen);
  packet::write_eth(b.data(), {0x02, 0x00, 0x00, 0x00, 0x00, 0x01},
                    {0x02, 0x00, 0x00, 0x00, 0x00, 0x02}, ethertype, tags);
  return b;
}

struct V4 {
  uint8_t proto = kUdp;
  std::array<uint8_t, 4> src{10, 1, 2, 3};
  std::array<uint8_t, 4> dst{192, 168, 40, 50};
  Bytes options{};               // after the fixed header; IHL follows unless ihl is set
  std::optional<uint8_t> ihl{};  // raw IHL field
  uint8_t version = 4;
  uint16_t frag = 0;                    // flags and fragment offset field
  std::optional<uint16_t> total_len{};  // default: header + payload
  bool good_checksum = true;
};

inline Bytes ipv4(const V4& h, const Bytes& payload) {
  packet::Ipv4 p;
  p.proto = h.proto;
  p.src = h.src;
  p.dst = h.dst;
  p.options = h.options;
  p.ihl = h.ihl;
  p.version = h.version;
  p.frag = h.frag;
  p.total_len = h.total_len;
  p.id = 0x1234;
  p.bad_checksum = !h.good_checksum;
  Bytes b(packet::kIpv4Len + h.options.size() + payload.size());
  const uint32_t header_len =
      packet::write_ipv4(b.data(), p, static_cast<uint32_t>(payload.size()));
  std::copy(payload.begin(), payload.end(), b.begin() + header_len);
  return b;
}

constexpr std::array<uint8_t, 16> kSrc6{0x20, 0x01, 0x0d, 0xb8, 1, 2,  3,  4,
                                        5,    6,    7,    8,    9, 10, 11, 12};
constexpr std::array<uint8_t, 16> kDst6{0xfe, 0x80, 0,    0,    0,    0,    0,    0,
                                        0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22};

struct V6 {
  uint8_t next = kUdp;
  std::array<uint8_t, 16> src = kSrc6;
  std::array<uint8_t, 16> dst = kDst6;
  uint8_t version = 6;
  std::optional<uint16_t> payload_len{};  // default: payload size
};

// payload includes any extension headers.
inline Bytes ipv6(const V6& h, const Bytes& payload) {
  Bytes b(packet::kIpv6Len + payload.size());
  packet::write_ipv6(b.data(), {h.next, h.src, h.dst, h.version, h.payload_len},
                     static_cast<uint32_t>(payload.size()));
  std::copy(payload.begin(), payload.end(), b.begin() + packet::kIpv6Len);
  return b;
}

// Extension header of the (len+1)*8 kind (hop-by-hop, routing, destination, mobility, HIP,
// shim6).
inline Bytes ext(uint8_t next, uint8_t len_units = 0) {
  Bytes b((len_units + 1u) * 8);
  packet::write_ipv6_ext(b.data(), next, len_units);
  return b;
}

inline Bytes ah(uint8_t next, uint8_t len_field = 4) {
  Bytes b((len_field + 2u) * 4, 0x5A);
  packet::write_ipv6_ah(b.data(), next, len_field);
  return b;
}

inline Bytes frag6(uint8_t next, uint16_t offset_units, bool more) {
  Bytes b(packet::kIpv6FragLen);
  packet::write_ipv6_frag(b.data(), next, offset_units, more, 0xdeadbeef);
  return b;
}

inline Bytes tcp(uint16_t sport, uint16_t dport, uint8_t data_offset = 5, size_t extra = 0) {
  Bytes b(packet::kTcpLen + extra, 0);
  packet::write_tcp(b.data(), {.sport = sport, .dport = dport, .data_offset = data_offset});
  return b;
}

inline Bytes udp(uint16_t sport, uint16_t dport, size_t data = 0,
                 std::optional<uint16_t> len = std::nullopt) {
  Bytes b(packet::kUdpLen + data, 0x33);
  packet::write_udp(b.data(), sport, dport,
                    len.value_or(static_cast<uint16_t>(packet::kUdpLen + data)));
  return b;
}

inline Bytes sctp(uint16_t sport, uint16_t dport) {
  Bytes b(packet::kSctpLen);
  packet::write_sctp(b.data(), sport, dport);
  return b;
}

inline Bytes icmp(uint8_t type = 8) {
  Bytes b(packet::kIcmpLen);
  packet::write_icmp(b.data(), type);
  return b;
}

inline Bytes v4_udp(uint16_t sport = 1000, uint16_t dport = 53, size_t data = 4) {
  return cat({eth(0x0800), ipv4({}, udp(sport, dport, data))});
}

inline Bytes v6_with(const Bytes& chain_and_l4, uint8_t first_next) {
  V6 h;
  h.next = first_next;
  return cat({eth(0x86DD), ipv6(h, chain_and_l4)});
}

// A header of `need` bytes that passes the protocol's checks.
inline Bytes l4_header(uint8_t proto, uint32_t size) {
  switch (proto) {
    case kTcp:
      return tcp(80, 81, 5, size - 20);
    case kUdp:
      return udp(80, 81, size - 8);
    case kSctp: {
      Bytes b = sctp(80, 81);
      b.resize(size, 0);
      return b;
    }
    default: {
      Bytes b = icmp();
      b.resize(size, 0);
      return b;
    }
  }
}

// A chain of n extension headers (hop-by-hop first, then destination options) ending in UDP.
inline Bytes chain_of(unsigned n, uint8_t last_next = kUdp) {
  Bytes chain;
  for (unsigned i = 0; i < n; ++i) {
    const uint8_t next = i + 1 == n ? last_next : kDestOpts;
    chain = cat({chain, ext(next, 0)});
  }
  return chain;
}

}  // namespace sluice::simd::frames
