#pragma once
// Frame builders and guarded memory for the simd tests (the scalar reference's tests and the
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

namespace sluice::simd::frames {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kSentinel = 0xA5;
constexpr uint32_t kEth = 14;

constexpr uint8_t kIcmp = 1;
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kGre = 47;
constexpr uint8_t kIcmpv6 = 58;
constexpr uint8_t kNoNext = 59;
constexpr uint8_t kSctp = 132;

constexpr uint8_t kHopByHop = 0;
constexpr uint8_t kRouting = 43;
constexpr uint8_t kFragment = 44;
constexpr uint8_t kAh = 51;
constexpr uint8_t kDestOpts = 60;
constexpr uint8_t kMobility = 135;
constexpr uint8_t kHip = 139;
constexpr uint8_t kShim6 = 140;

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

// ---- frame builders --------------------------------------------------------------------

inline void append16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

inline void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

inline Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline Bytes filler(size_t n, uint8_t v = 0xEE) {
  return Bytes(n, v);
}

// Ethernet header with optional VLAN tags (outermost first).
inline Bytes eth(uint16_t ethertype, std::initializer_list<uint16_t> tpids = {}) {
  Bytes b = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
  uint16_t vid = 100;
  for (uint16_t tpid : tpids) {
    append16(b, tpid);
    append16(b, vid++);
  }
  append16(b, ethertype);
  return b;
}

inline uint16_t ones_sum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(sum);
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
  const size_t header_len = 20 + h.options.size();
  Bytes b(header_len + payload.size(), 0);
  const uint8_t ihl = h.ihl.value_or(static_cast<uint8_t>(header_len / 4));
  b[0] = static_cast<uint8_t>(h.version << 4 | (ihl & 0x0F));
  put16(b, 2, h.total_len.value_or(static_cast<uint16_t>(header_len + payload.size())));
  put16(b, 4, 0x1234);
  put16(b, 6, h.frag);
  b[8] = 64;
  b[9] = h.proto;
  std::copy(h.src.begin(), h.src.end(), b.begin() + 12);
  std::copy(h.dst.begin(), h.dst.end(), b.begin() + 16);
  std::copy(h.options.begin(), h.options.end(), b.begin() + 20);
  uint16_t cksum = static_cast<uint16_t>(~ones_sum(b.data(), header_len));
  if (!h.good_checksum) cksum = static_cast<uint16_t>(cksum + 1);
  put16(b, 10, cksum);
  std::copy(payload.begin(), payload.end(), b.begin() + static_cast<ptrdiff_t>(header_len));
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
  Bytes b(40 + payload.size(), 0);
  b[0] = static_cast<uint8_t>(h.version << 4);
  b[1] = 0x00;
  put16(b, 4, h.payload_len.value_or(static_cast<uint16_t>(payload.size())));
  b[6] = h.next;
  b[7] = 64;
  std::copy(h.src.begin(), h.src.end(), b.begin() + 8);
  std::copy(h.dst.begin(), h.dst.end(), b.begin() + 24);
  std::copy(payload.begin(), payload.end(), b.begin() + 40);
  return b;
}

// Extension header of the (len+1)*8 kind (hop-by-hop, routing, destination, mobility, HIP,
// shim6).
inline Bytes ext(uint8_t next, uint8_t len_units = 0) {
  Bytes b((len_units + 1u) * 8, 0);
  b[0] = next;
  b[1] = len_units;
  b[2] = 1;  // PadN, so options-type headers are well formed
  b[3] = static_cast<uint8_t>(b.size() - 4);
  return b;
}

inline Bytes ah(uint8_t next, uint8_t len_field = 4) {
  Bytes b((len_field + 2u) * 4, 0x5A);
  b[0] = next;
  b[1] = len_field;
  b[2] = b[3] = 0;
  return b;
}

inline Bytes frag6(uint8_t next, uint16_t offset_units, bool more) {
  Bytes b(8, 0);
  b[0] = next;
  put16(b, 2, static_cast<uint16_t>(offset_units << 3 | (more ? 1 : 0)));
  b[4] = 0xde;
  b[5] = 0xad;
  b[6] = 0xbe;
  b[7] = 0xef;
  return b;
}

inline Bytes tcp(uint16_t sport, uint16_t dport, uint8_t data_offset = 5, size_t extra = 0) {
  Bytes b(20 + extra, 0);
  put16(b, 0, sport);
  put16(b, 2, dport);
  b[12] = static_cast<uint8_t>(data_offset << 4);
  b[13] = 0x02;  // SYN
  return b;
}

inline Bytes udp(uint16_t sport, uint16_t dport, size_t data = 0,
                 std::optional<uint16_t> len = std::nullopt) {
  Bytes b(8 + data, 0x33);
  put16(b, 0, sport);
  put16(b, 2, dport);
  put16(b, 4, len.value_or(static_cast<uint16_t>(8 + data)));
  put16(b, 6, 0);
  return b;
}

inline Bytes sctp(uint16_t sport, uint16_t dport) {
  Bytes b(12, 0);
  put16(b, 0, sport);
  put16(b, 2, dport);
  return b;
}

inline Bytes icmp(uint8_t type = 8) {
  Bytes b(8, 0);
  b[0] = type;
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
