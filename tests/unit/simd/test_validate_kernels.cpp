// Differential tests: one SIMD kernel (--kernel=NAME) against the scalar reference. Same return
// count, same verdict for every packet, the same 48 key bytes for every kOk packet, and keys of
// dropped packets untouched, on random valid packets, every header byte of valid packets
// mutated, the boundary cases of every CONTRACT reason, checksum hints, and every burst length
// 0..64. Every burst also goes through the mbuf entries (the kernel's and the scalar one) on
// fake mbufs holding the same views: the packets whose first segment is cut inside the headers
// come back split and untouched, the rest exactly as the reference. Packets, mbufs, the view
// and pointer arrays and the output arrays all end right before a PROT_NONE page, so a read or
// write past them faults.
//
//   test_simd_kernels --kernel=avx2 [gtest options]
// Exits 77 (meson: skipped) with a SKIPPED line when the CPU lacks the kernel.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "simd/validate.h"
#include "tests/unit/simd/frames.h"
#include "tests/unit/simd/kernel_main.h"

namespace sluice::simd {
namespace {

using namespace frames;

Kernel g_kernel = Kernel::kScalar;
ValidateBurstFn g_fn = nullptr;
size_t g_packets = 0;  // compared, over every test

struct Packet {
  Bytes bytes;
  uint32_t data_len;
  uint32_t frame_len;
  CksumHint hint = CksumHint::kUnknown;
};

Packet whole(Bytes b, CksumHint hint = CksumHint::kUnknown) {
  const auto n = static_cast<uint32_t>(b.size());
  return {std::move(b), n, n, hint};
}

constexpr size_t kMaxBurst = 64;
constexpr size_t kFrameCapacity = 8192;

// Guarded memory for one burst of up to kMaxBurst packets and its arrays, reused across calls.
class Harness {
 public:
  Harness()
      : views_(kMaxBurst * sizeof(PacketView)),
        keys_(kMaxBurst * sizeof(FlowKey)),
        verdicts_(kMaxBurst) {
    for (size_t i = 0; i < kMaxBurst; ++i) {
      frames_.push_back(std::make_unique<GuardedBuffer>(kFrameCapacity));
    }
  }

  // Runs the burst through both; every difference is a test failure naming `what`.
  void compare(const std::vector<Packet>& burst, const std::string& what) {
    const size_t n = burst.size();
    ASSERT_LE(n, kMaxBurst);
    auto* views = reinterpret_cast<PacketView*>(views_.last(n * sizeof(PacketView)));
    for (size_t i = 0; i < n; ++i) {
      const Packet& p = burst[i];
      ASSERT_LE(p.bytes.size(), kFrameCapacity);
      views[i] = {frames_[i]->place(p.bytes, p.data_len), p.data_len, p.frame_len, p.hint};
    }
    std::vector<FlowKey> ref_keys(n);
    std::vector<Verdict> ref_verdicts(n, static_cast<Verdict>(0xEE));
    std::memset(ref_keys.data(), kSentinel, n * sizeof(FlowKey));
    auto* keys = reinterpret_cast<FlowKey*>(keys_.last(n * sizeof(FlowKey)));
    auto* verdicts = reinterpret_cast<Verdict*>(verdicts_.last(n));
    std::memset(keys, kSentinel, n * sizeof(FlowKey));
    std::memset(verdicts, 0xEE, n);

    // A different ingress port for each burst size; hashes where the kernel writes them.
    const auto in_port = static_cast<uint8_t>(n * 37);
    std::vector<uint32_t> ref_hashes(n, 0xDEADBEEF), hashes(n, 0xDEADBEEF);
    const uint16_t ref_ok =
        validate_burst_scalar(views, static_cast<uint16_t>(n), in_port, ref_keys.data(),
                              ref_hashes.data(), ref_verdicts.data());
    const uint16_t ok =
        g_fn(views, static_cast<uint16_t>(n), in_port, keys, hashes.data(), verdicts);
    EXPECT_EQ(ok, ref_ok) << what << ": return count, burst of " << n;
    g_packets += n;
    for (size_t i = 0; i < n; ++i) {
      ++packets_;
      if (ref_verdicts[i] == Verdict::kOk) ++ok_packets_;
      if (verdicts[i] != ref_verdicts[i]) {
        ADD_FAILURE() << what << ": packet " << i << " of " << n << ": " << kernel_name(g_kernel)
                      << " says " << verdict_name(verdicts[i]) << ", scalar "
                      << verdict_name(ref_verdicts[i]) << "\n"
                      << describe(burst[i]);
        continue;
      }
      if (verdicts[i] == Verdict::kOk) {
        if (hashes[i] != ref_hashes[i] || hashes[i] != key_hash(ref_keys[i])) {
          ADD_FAILURE() << what << ": packet " << i << " of " << n << ": flow hash " << hashes[i]
                        << ", scalar " << ref_hashes[i] << ", key_hash " << key_hash(ref_keys[i])
                        << "\n"
                        << describe(burst[i]);
        }
        if (std::memcmp(&keys[i], &ref_keys[i], sizeof(FlowKey)) != 0) {
          ADD_FAILURE() << what << ": packet " << i << " of " << n << ": keys differ\n  "
                        << kernel_name(g_kernel) << ": " << hex(&keys[i], sizeof(FlowKey))
                        << "\n  scalar: " << hex(&ref_keys[i], sizeof(FlowKey)) << "\n"
                        << describe(burst[i]);
        }
      } else if (!key_untouched(keys[i]) || hashes[i] != 0xDEADBEEF) {
        ADD_FAILURE() << what << ": packet " << i
                      << ": the key or hash of a dropped packet was written";
      }
    }

    // The mbuf entry, the kernel's and the scalar one, on mbufs holding the same views.
    const void* const* mbufs = place_mbufs(views, n);
    const bool with_hashes = n % 3 != 1;
    compare_mbufs(mbuf_kernel_fn(g_kernel), kernel_name(g_kernel), mbufs, views, burst, in_port,
                  with_hashes, ref_ok, ref_keys, ref_hashes, ref_verdicts, what);
    if (g_kernel != Kernel::kScalar) {
      compare_mbufs(&validate_mbufs_scalar, "scalar", mbufs, views, burst, in_port, with_hashes,
                    ref_ok, ref_keys, ref_hashes, ref_verdicts, what);
    }
  }

  // Fake mbufs for views (their first 64 bytes, the part a kernel may read; every other field
  // random, and random offload flags beside the checksum bits of each hint) and the array of
  // pointers to them, both right before an unreadable page.
  const void* const* place_mbufs(const PacketView* views, size_t n) {
    auto* heads = mbufs_.last(n * kMbufBytes);
    auto* ptrs = reinterpret_cast<const void**>(mbuf_ptrs_.last(n * sizeof(void*)));
    for (size_t i = 0; i < n; ++i) {
      uint8_t* m = heads + i * kMbufBytes;
      for (size_t b = 0; b < kMbufBytes; ++b) m[b] = static_cast<uint8_t>(rng_());
      const auto data_off = static_cast<uint16_t>(rng_() % 256);
      const auto data = reinterpret_cast<uintptr_t>(views[i].data) - data_off;
      uint64_t ol_flags = (uint64_t{rng_()} << 32 | rng_()) & ~mbuf::kIpCksumMask;
      switch (views[i].ip_cksum) {
        case CksumHint::kGood:
          ol_flags |= rng_() % 2 ? mbuf::kIpCksumGood : mbuf::kIpCksumMask;  // GOOD or NONE
          break;
        case CksumHint::kBad:
          ol_flags |= mbuf::kIpCksumBad;
          break;
        case CksumHint::kUnknown:
          break;
      }
      const auto data_len = static_cast<uint16_t>(views[i].data_len);
      const uint32_t pkt_len = views[i].frame_len;
      std::memcpy(m + mbuf::kBufAddr, &data, sizeof data);
      std::memcpy(m + mbuf::kDataOff, &data_off, sizeof data_off);
      std::memcpy(m + mbuf::kOlFlags, &ol_flags, sizeof ol_flags);
      std::memcpy(m + mbuf::kPktLen, &pkt_len, sizeof pkt_len);
      std::memcpy(m + mbuf::kDataLen, &data_len, sizeof data_len);
      // (A hint outside the enum, which the kernels take as kUnknown, has no flags: kUnknown.)
      const CksumHint hint =
          views[i].ip_cksum > CksumHint::kBad ? CksumHint::kUnknown : views[i].ip_cksum;
      const PacketView back = view_of_mbuf(m);
      if (back.data != views[i].data || back.data_len != views[i].data_len ||
          back.frame_len != views[i].frame_len || back.ip_cksum != hint) {
        std::abort();  // the fake mbuf does not hold the view
      }
      ptrs[i] = m;
    }
    return ptrs;
  }

  // One mbuf entry against the view reference: split exactly the packets view_split names
  // (nothing written for them), every other packet as the reference, the bytes of all n.
  void compare_mbufs(ValidateMbufsFn fn, std::string_view name, const void* const* mbufs,
                     const PacketView* views, const std::vector<Packet>& burst, uint8_t in_port,
                     bool with_hashes, uint16_t ref_ok, const std::vector<FlowKey>& ref_keys,
                     const std::vector<uint32_t>& ref_hashes,
                     const std::vector<Verdict>& ref_verdicts, const std::string& what) {
    const size_t n = burst.size();
    auto* keys = reinterpret_cast<FlowKey*>(keys_.last(n * sizeof(FlowKey)));
    auto* verdicts = reinterpret_cast<Verdict*>(verdicts_.last(n));
    auto* hashes = reinterpret_cast<uint32_t*>(hashes_.last(n * sizeof(uint32_t)));
    std::memset(keys, kSentinel, n * sizeof(FlowKey));
    std::memset(verdicts, 0xEE, n);
    std::fill(hashes, hashes + n, 0xDEADBEEF);
    const MbufBurst got = fn(mbufs, static_cast<uint16_t>(n), in_port, keys,
                             with_hashes ? hashes : nullptr, verdicts);
    uint64_t split = 0, bytes = 0;
    uint16_t nb_ok = 0;
    for (size_t i = 0; i < n; ++i) {
      bytes += views[i].frame_len;
      if (view_split(views[i])) {
        split |= uint64_t{1} << i;
      } else if (ref_verdicts[i] == Verdict::kOk) {
        ++nb_ok;
      }
    }
    const std::string where = what + ": " + std::string(name) + " mbuf entry, burst of " +
                              std::to_string(n) + (with_hashes ? "" : " (no hashes)");
    EXPECT_EQ(got.split, split) << where << ": split mask";
    EXPECT_EQ(got.bytes, bytes) << where << ": bytes";
    EXPECT_EQ(got.nb_ok, nb_ok) << where << ": return count (the view entry's: " << ref_ok << ")";
    for (size_t i = 0; i < n; ++i) {
      if (split >> i & 1) {
        if (verdicts[i] != static_cast<Verdict>(0xEE) || !key_untouched(keys[i]) ||
            hashes[i] != 0xDEADBEEF) {
          ADD_FAILURE() << where << ": packet " << i << " is split, yet its outputs were written\n"
                        << describe(burst[i]);
        }
        continue;
      }
      if (verdicts[i] != ref_verdicts[i]) {
        ADD_FAILURE() << where << ": packet " << i << " says " << verdict_name(verdicts[i])
                      << ", scalar views " << verdict_name(ref_verdicts[i]) << "\n"
                      << describe(burst[i]);
        continue;
      }
      const bool ok = verdicts[i] == Verdict::kOk;
      if (ok ? std::memcmp(&keys[i], &ref_keys[i], sizeof(FlowKey)) != 0
             : !key_untouched(keys[i])) {
        ADD_FAILURE() << where << ": packet " << i << ": key differs\n"
                      << hex(&keys[i], sizeof(FlowKey)) << "\n"
                      << describe(burst[i]);
      }
      if (hashes[i] != (ok && with_hashes ? ref_hashes[i] : 0xDEADBEEF)) {
        ADD_FAILURE() << where << ": packet " << i << ": hash " << hashes[i] << "\n"
                      << describe(burst[i]);
      }
    }
  }

  size_t packets() const { return packets_; }
  size_t ok_packets() const { return ok_packets_; }

 private:
  static bool key_untouched(const FlowKey& k) {
    const auto* p = reinterpret_cast<const uint8_t*>(&k);
    return std::all_of(p, p + sizeof(k), [](uint8_t b) { return b == kSentinel; });
  }

  static std::string hex(const void* data, size_t n) {
    std::string out;
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      std::array<char, 4> b{};
      std::snprintf(b.data(), b.size(), "%02x", p[i]);
      out += b.data();
    }
    return out;
  }

  static std::string describe(const Packet& p) {
    return "  data_len " + std::to_string(p.data_len) + ", frame_len " +
           std::to_string(p.frame_len) + ", hint " + std::to_string(static_cast<int>(p.hint)) +
           ", bytes " + hex(p.bytes.data(), std::min<size_t>(p.bytes.size(), 96));
  }

  std::vector<std::unique_ptr<GuardedBuffer>> frames_;
  GuardedBuffer views_;
  GuardedBuffer keys_;
  GuardedBuffer verdicts_;
  static constexpr size_t kMbufBytes = 64;
  GuardedBuffer mbufs_{kMaxBurst * kMbufBytes};
  GuardedBuffer mbuf_ptrs_{kMaxBurst * sizeof(void*)};
  GuardedBuffer hashes_{kMaxBurst * sizeof(uint32_t)};
  std::mt19937 rng_{11};
  size_t packets_ = 0;
  size_t ok_packets_ = 0;
};

// Sends packets through in bursts of `burst` (the last one shorter).
void compare_all(Harness& h, const std::vector<Packet>& packets, const std::string& what,
                 size_t burst = 32) {
  for (size_t i = 0; i < packets.size(); i += burst) {
    const auto end = std::min(packets.size(), i + burst);
    h.compare(std::vector<Packet>(packets.begin() + static_cast<ptrdiff_t>(i),
                                  packets.begin() + static_cast<ptrdiff_t>(end)),
              what + " #" + std::to_string(i));
  }
}

// ---- random valid traffic --------------------------------------------------------------

template <size_t N>
std::array<uint8_t, N> random_bytes(std::mt19937& rng) {
  std::array<uint8_t, N> a;
  for (auto& b : a) b = static_cast<uint8_t>(rng());
  return a;
}

Bytes random_l4(std::mt19937& rng, uint8_t proto, bool first_fragment) {
  const auto sport = static_cast<uint16_t>(rng());
  const auto dport = static_cast<uint16_t>(rng());
  const size_t data = rng() % 4 == 0 ? 0 : rng() % 80;
  switch (proto) {
    case kTcp: {
      const auto offset = static_cast<uint8_t>(5 + (rng() % 4 == 0 ? rng() % 11 : 0));
      Bytes b = tcp(sport, dport, offset, (offset - 5u) * 4 + data);
      b[13] = static_cast<uint8_t>(rng());
      return b;
    }
    case kUdp:
      // A first fragment's UDP length describes the whole datagram: it may exceed the payload.
      return udp(sport, dport, data,
                 first_fragment
                     ? std::optional<uint16_t>(static_cast<uint16_t>(8 + data + rng() % 1000))
                     : std::nullopt);
    case kSctp:
      return cat({sctp(sport, dport), filler(data, 0x44)});
    case kIcmp:
    case kIcmpv6:
      return cat({icmp(static_cast<uint8_t>(rng())), filler(data, 0x55)});
    default:
      return filler(data, 0x66);
  }
}

uint8_t random_proto(std::mt19937& rng, bool v6) {
  const unsigned pick = rng() % 20;
  if (pick < 8) return kTcp;
  if (pick < 16) return kUdp;
  if (pick < 17) return kSctp;
  if (pick < 18) return v6 ? kIcmpv6 : kIcmp;
  if (pick < 19) return v6 ? kNoNext : kGre;
  return static_cast<uint8_t>(rng());
}

Bytes random_v4(std::mt19937& rng) {
  V4 h;
  h.proto = random_proto(rng, false);
  h.src = random_bytes<4>(rng);
  h.dst = random_bytes<4>(rng);
  if (rng() % 8 == 0) h.options = filler((1 + rng() % 10) * 4, static_cast<uint8_t>(rng()));
  h.frag = rng() % 2 ? 0x4000 : 0;        // DF
  if (rng() % 16 == 0) h.frag |= 0x8000;  // reserved bit: ignored
  bool first_fragment = false;
  if (rng() % 8 == 0) {
    if (rng() % 2) {
      h.frag |= 0x2000;  // first fragment
      first_fragment = true;
    } else {
      h.frag |= static_cast<uint16_t>(1 + rng() % 0x1FFF) | (rng() % 2 ? 0x2000 : 0);
    }
  }
  Bytes b = ipv4(h, random_l4(rng, h.proto, first_fragment));
  b[1] = static_cast<uint8_t>(rng());  // TOS
  b[8] = static_cast<uint8_t>(rng());  // TTL
  // Re-checksum after the TOS and TTL changes.
  packet::set_ipv4_cksum(b.data());
  return b;
}

Bytes random_chain(std::mt19937& rng, uint8_t& first, uint8_t last) {
  static constexpr std::array<uint8_t, 7> kTypes = {kRouting, kDestOpts, kAh,      kMobility,
                                                    kHip,     kShim6,    kFragment};
  const unsigned count = 1 + rng() % 4;
  std::vector<uint8_t> types;
  if (rng() % 2) types.push_back(kHopByHop);
  while (types.size() < count) types.push_back(kTypes[rng() % kTypes.size()]);
  first = types[0];
  Bytes chain;
  for (size_t i = 0; i < types.size(); ++i) {
    const uint8_t next = i + 1 < types.size() ? types[i + 1] : last;
    switch (types[i]) {
      case kAh:
        chain = cat({chain, ah(next, static_cast<uint8_t>(1 + rng() % 6))});
        break;
      case kFragment:
        chain = cat({chain, frag6(next, rng() % 4 == 0 ? static_cast<uint16_t>(1 + rng() % 100) : 0,
                                  rng() % 2 == 0)});
        break;
      default:
        chain = cat({chain, ext(next, static_cast<uint8_t>(rng() % 3))});
    }
  }
  return chain;
}

Bytes random_v6(std::mt19937& rng) {
  V6 h;
  h.src = random_bytes<16>(rng);
  h.dst = random_bytes<16>(rng);
  const uint8_t proto = random_proto(rng, true);
  Bytes payload;
  if (rng() % 6 == 0) {
    payload = cat({random_chain(rng, h.next, proto), random_l4(rng, proto, false)});
  } else {
    h.next = proto;
    payload = random_l4(rng, proto, false);
  }
  Bytes b = ipv6(h, payload);
  b[1] = static_cast<uint8_t>(rng());  // traffic class and flow label
  b[2] = static_cast<uint8_t>(rng());
  b[3] = static_cast<uint8_t>(rng());
  return b;
}

// A frame the reference mostly accepts: every family, tag layout and L4 protocol it knows.
Packet random_valid(std::mt19937& rng) {
  const unsigned l2 = rng() % 20;
  std::vector<uint16_t> tags;
  if (l2 < 5) {
    tags = {0x8100};
  } else if (l2 < 7) {
    tags = {0x88A8, 0x8100};
  } else if (l2 < 8) {
    tags = {static_cast<uint16_t>(rng() % 2 ? 0x88A8 : 0x9100)};
  }
  auto eth_tags = [&](uint16_t type) {
    switch (tags.size()) {
      case 0:
        return eth(type);
      case 1:
        return eth(type, {tags[0]});
      default:
        return eth(type, {tags[0], tags[1]});
    }
  };
  Bytes f;
  const unsigned family = rng() % 20;
  if (family < 11) {
    f = cat({eth_tags(0x0800), random_v4(rng)});
  } else if (family < 18) {
    f = cat({eth_tags(0x86DD), random_v6(rng)});
  } else {
    f = cat({eth_tags(rng() % 2 ? 0x0806 : 0x88CC), filler(rng() % 60, 0x77)});
  }
  if (rng() % 2 && f.size() < 60) f.resize(60, 0);  // Ethernet minimum
  if (rng() % 8 == 0) f.resize(f.size() + rng() % 40, static_cast<uint8_t>(rng()));
  const unsigned hint = rng() % 8;
  return whole(std::move(f), hint == 0 ? CksumHint::kGood : CksumHint::kUnknown);
}

TEST(Differential, RandomValidPackets) {
  Harness h;
  std::mt19937 rng(1);
  std::vector<Packet> packets;
  for (int i = 0; i < 40000; ++i) packets.push_back(random_valid(rng));
  compare_all(h, packets, "random valid");
  // The generator must mostly make packets the reference accepts, or this tests little.
  EXPECT_GT(h.ok_packets() * 10, h.packets() * 8) << h.ok_packets() << " of " << h.packets();
}

TEST(Differential, RandomBytes) {
  Harness h;
  std::mt19937 rng(2);
  std::vector<Packet> packets;
  for (int i = 0; i < 20000; ++i) {
    Bytes f(rng() % 128);
    for (auto& b : f) b = static_cast<uint8_t>(rng());
    if (f.size() >= 14 && rng() % 2) put16(f, 12, rng() % 2 ? 0x0800 : 0x86DD);
    if (f.size() >= 15 && rng() % 2) f[14] = rng() % 2 ? 0x45 : 0x60;
    Packet p = whole(std::move(f), static_cast<CksumHint>(rng() % 4));
    packets.push_back(std::move(p));
  }
  compare_all(h, packets, "random bytes");
}

// ---- mutations -------------------------------------------------------------------------

// Valid frames of every shape the kernels treat differently.
std::vector<Bytes> seed_frames() {
  std::vector<Bytes> s;
  for (uint8_t proto : {kTcp, kUdp, kSctp, kIcmp, kGre}) {
    s.push_back(cat({eth(0x0800), ipv4({.proto = proto}, l4_header(proto, 20))}));
    s.push_back(cat({eth(0x0800, {0x8100}), ipv4({.proto = proto}, l4_header(proto, 28))}));
  }
  // The AVX2 fast path reads 60 bytes: untagged IPv4 TCP/UDP at 54 bytes go to the reference,
  // so every byte of the same headers is also mutated at 60 and 64 bytes.
  for (uint8_t proto : {kTcp, kUdp}) {
    for (size_t l4 : {26, 30})
      s.push_back(cat({eth(0x0800), ipv4({.proto = proto}, l4_header(proto, l4))}));
  }
  s.push_back(cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 8, 12))}));          // TCP options
  s.push_back(cat({eth(0x0800), ipv4({.proto = kUdp}, udp(1, 2, 18))}));             // 60 bytes
  s.push_back(cat({eth(0x0800), ipv4({.proto = kUdp}, udp(1, 2)), filler(20, 0)}));  // padded
  s.push_back(cat({eth(0x0800), ipv4({.options = filler(8, 1)}, udp(1, 2, 10))}));
  s.push_back(cat({eth(0x0800), ipv4({.frag = 0x2000}, udp(1, 2, 10))}));
  s.push_back(cat({eth(0x0800), ipv4({.frag = 0x0010}, filler(16))}));
  s.push_back(cat({eth(0x0800, {0x88A8, 0x8100}), ipv4({.proto = kTcp}, tcp(1, 2))}));
  s.push_back(cat({eth(0x0800, {0x9100}), ipv4({.proto = kUdp}, udp(1, 2, 10))}));
  for (uint8_t proto : {kTcp, kUdp, kSctp, kIcmpv6, kNoNext}) {
    s.push_back(cat({eth(0x86DD), ipv6({.next = proto}, l4_header(proto, 20))}));
    s.push_back(cat({eth(0x86DD, {0x8100}), ipv6({.next = proto}, l4_header(proto, 24))}));
  }
  s.push_back(v6_with(cat({ext(kUdp, 1), udp(1, 2, 4)}), kHopByHop));
  s.push_back(v6_with(cat({frag6(kTcp, 0, true), tcp(1, 2)}), kFragment));
  s.push_back(v6_with(cat({frag6(kTcp, 7, false), filler(8)}), kFragment));
  s.push_back(v6_with(cat({ah(kTcp, 2), tcp(1, 2)}), kAh));
  s.push_back(cat({eth(0x0806), filler(46, 0)}));
  return s;
}

TEST(Differential, EveryHeaderByteMutated) {
  Harness h;
  std::mt19937 rng(3);
  const std::vector<Bytes> seeds = seed_frames();
  for (size_t s = 0; s < seeds.size(); ++s) {
    const Bytes& seed = seeds[s];
    std::vector<Packet> packets;
    packets.push_back(whole(seed));
    for (size_t at = 0; at < std::min<size_t>(seed.size(), 96); ++at) {
      std::vector<uint8_t> values = {0x00, 0xFF, static_cast<uint8_t>(seed[at] + 1),
                                     static_cast<uint8_t>(seed[at] - 1)};
      for (unsigned bit = 0; bit < 8; ++bit) values.push_back(seed[at] ^ (1u << bit));
      for (int r = 0; r < 4; ++r) values.push_back(static_cast<uint8_t>(rng()));
      for (uint8_t value : values) {
        Bytes f = seed;
        f[at] = value;
        packets.push_back(whole(f));
        // The same with a good and a bad checksum hint, and with a second random byte.
        packets.push_back(whole(f, rng() % 2 ? CksumHint::kGood : CksumHint::kBad));
        f[rng() % f.size()] = static_cast<uint8_t>(rng());
        packets.push_back(whole(f));
      }
    }
    compare_all(h, packets, "seed " + std::to_string(s) + " mutated");
  }
}

// ---- boundaries of every CONTRACT reason ------------------------------------------------

// Every readable prefix (runt, l3_truncated, ipv4_ihl, ipv6_ext, l4_truncated all sit on
// one), with frame_len the whole frame, and every frame_len from the whole frame down.
TEST(Boundary, EveryDataLenAndFrameLen) {
  Harness h;
  const std::vector<Bytes> seeds = seed_frames();
  for (size_t s = 0; s < seeds.size(); ++s) {
    const Bytes& f = seeds[s];
    const auto n = static_cast<uint32_t>(f.size());
    std::vector<Packet> packets;
    for (uint32_t len = 0; len <= n; ++len) {
      packets.push_back({f, len, n, CksumHint::kUnknown});
      packets.push_back({f, len, len, CksumHint::kUnknown});
    }
    compare_all(h, packets, "seed " + std::to_string(s) + " cut");
  }
}

// Frames longer than the header budget, their first segment ending anywhere around it: the
// mbuf entry splits exactly those cut short of kMaxHeaderBytes (a chain cut inside the
// headers), and takes the rest, data_len at the budget or past it, as they are.
TEST(Boundary, FirstSegmentAroundTheHeaderBudget) {
  Harness h;
  std::vector<Packet> packets;
  for (const Bytes& seed : seed_frames()) {
    for (uint32_t frame_len : {kMaxHeaderBytes - 1, kMaxHeaderBytes, kMaxHeaderBytes + 1, 1514u}) {
      Bytes f = seed;
      f.resize(std::max<size_t>(f.size(), frame_len), 0x33);
      const auto n = static_cast<uint32_t>(f.size());
      for (uint32_t len = kMaxHeaderBytes - 8; len <= kMaxHeaderBytes + 8; ++len) {
        packets.push_back({f, std::min(len, n), n, CksumHint::kUnknown});
      }
      for (uint32_t len : {0u, 14u, 34u, 54u, 64u, 128u, n}) {
        packets.push_back({f, len, n, CksumHint::kUnknown});
      }
    }
  }
  compare_all(h, packets, "around the header budget", 16);
}

TEST(Boundary, Ipv4Fields) {
  Harness h;
  std::vector<Packet> packets;
  for (uint16_t tpid : {uint16_t{0}, uint16_t{0x8100}}) {
    const Bytes l2 = tpid ? eth(0x0800, {tpid}) : eth(0x0800);
    for (uint8_t proto : {kTcp, kUdp}) {
      // 60 bytes or more, tagged or not, so that the AVX2 fast path reads every one.
      const Bytes l4 = l4_header(proto, tpid ? 24 : 26);
      // Version and IHL: every value.
      for (uint8_t version = 0; version < 16; ++version) {
        for (uint8_t ihl = 0; ihl < 16; ++ihl) {
          packets.push_back(
              whole(cat({l2, ipv4({.proto = proto, .ihl = ihl, .version = version}, l4)})));
        }
      }
      // Total length around every edge: IHL*4, the L4 header, the frame.
      for (uint32_t total = 0; total <= 20 + l4.size() + 3; ++total) {
        const auto t = static_cast<uint16_t>(total);
        packets.push_back(whole(cat({l2, ipv4({.proto = proto, .total_len = t}, l4)})));
        packets.push_back(whole(cat({l2, ipv4({.proto = proto, .total_len = t}, l4), filler(9)})));
      }
      // Checksum good, bad, each with every hint.
      for (bool good : {true, false}) {
        for (int hint = 0; hint < 4; ++hint) {
          packets.push_back(whole(cat({l2, ipv4({.proto = proto, .good_checksum = good}, l4)}),
                                  static_cast<CksumHint>(hint)));
        }
      }
      // Fragment field: each flag bit and offsets.
      for (uint16_t frag : {0x0000, 0x4000, 0x8000, 0x2000, 0x0001, 0x1FFF, 0x2001, 0x6000}) {
        packets.push_back(whole(cat({l2, ipv4({.proto = proto, .frag = frag}, l4)})));
      }
    }
  }
  compare_all(h, packets, "ipv4 fields");
}

TEST(Boundary, L4Fields) {
  Harness h;
  std::vector<Packet> packets;
  for (uint16_t tpid : {uint16_t{0}, uint16_t{0x8100}}) {
    auto v4 = [&](uint8_t proto, const Bytes& l4) {
      return cat({tpid ? eth(0x0800, {tpid}) : eth(0x0800), ipv4({.proto = proto}, l4)});
    };
    auto v6 = [&](uint8_t proto, const Bytes& l4) {
      return cat({tpid ? eth(0x86DD, {tpid}) : eth(0x86DD), ipv6({.next = proto}, l4)});
    };
    for (int family = 0; family < 2; ++family) {
      auto frame = [&](uint8_t proto, const Bytes& l4) {
        return family == 0 ? v4(proto, l4) : v6(proto, l4);
      };
      // TCP data offset: every value, with 0..48 bytes of options present.
      for (size_t extra : {size_t{0}, size_t{4}, size_t{20}, size_t{40}}) {
        for (uint8_t offset = 0; offset < 16; ++offset) {
          packets.push_back(whole(frame(kTcp, tcp(1, 2, offset, extra))));
        }
      }
      // UDP length around 8 and the payload; with and without Ethernet padding.
      for (size_t data : {size_t{0}, size_t{4}, size_t{18}}) {
        for (uint32_t len = 0; len <= 8 + data + 2; ++len) {
          const Bytes f = frame(kUdp, udp(1, 2, data, static_cast<uint16_t>(len)));
          packets.push_back(whole(f));
          packets.push_back(whole(cat({f, filler(6, 0)})));
        }
      }
      // Every L4 protocol one byte short of its header and exactly its header.
      for (auto [proto, need] : {std::pair<uint8_t, uint32_t>{kTcp, 20},
                                 {kUdp, 8},
                                 {kSctp, 12},
                                 {kIcmp, 8},
                                 {kIcmpv6, 8}}) {
        const Bytes l4 = l4_header(proto, need);
        packets.push_back(whole(frame(proto, l4)));
        packets.push_back(whole(frame(proto, Bytes(l4.begin(), l4.end() - 1))));
        packets.push_back(whole(cat({frame(proto, Bytes(l4.begin(), l4.end() - 1)), filler(30)})));
      }
    }
  }
  compare_all(h, packets, "l4 fields");
}

TEST(Boundary, Ipv6Fields) {
  Harness h;
  std::vector<Packet> packets;
  for (uint16_t tpid : {uint16_t{0}, uint16_t{0x8100}, uint16_t{0x88A8}}) {
    const Bytes l2 = tpid ? eth(0x86DD, {tpid}) : eth(0x86DD);
    for (uint8_t proto : {kTcp, kUdp}) {
      const Bytes l4 = l4_header(proto, 24);
      for (uint8_t version = 0; version < 16; ++version) {
        packets.push_back(whole(cat({l2, ipv6({.next = proto, .version = version}, l4)})));
      }
      for (uint32_t plen = 0; plen <= l4.size() + 3; ++plen) {
        const auto p = static_cast<uint16_t>(plen);
        packets.push_back(whole(cat({l2, ipv6({.next = proto, .payload_len = p}, l4)})));
        packets.push_back(whole(cat({l2, ipv6({.next = proto, .payload_len = p}, l4), filler(7)})));
      }
      // Extension chains of 0..10 headers, cut at every length.
      for (unsigned count = 1; count <= 10; ++count) {
        const Bytes chain = cat({chain_of(count, proto), l4});
        packets.push_back(whole(cat({l2, ipv6({.next = kHopByHop}, chain)})));
      }
    }
  }
  compare_all(h, packets, "ipv6 fields");
}

TEST(Boundary, VlanTags) {
  Harness h;
  std::vector<Packet> packets;
  const Bytes v4 = ipv4({.proto = kUdp}, udp(1, 2, 20));
  const Bytes v6 = ipv6({.next = kTcp}, tcp(1, 2));
  for (uint16_t a : {0x8100, 0x88A8, 0x9100, 0x8101, 0x0800}) {
    for (uint16_t b : {0x8100, 0x88A8, 0x9100, 0x0800, 0x86DD}) {
      for (const Bytes* l3 : {&v4, &v6}) {
        const uint16_t type = l3 == &v4 ? 0x0800 : 0x86DD;
        packets.push_back(whole(cat({eth(type, {a}), *l3})));
        packets.push_back(whole(cat({eth(type, {a, b}), *l3})));
        packets.push_back(whole(cat({eth(type, {a, b, 0x8100}), *l3})));
      }
    }
  }
  compare_all(h, packets, "vlan tags");
}

// ---- bursts ----------------------------------------------------------------------------

TEST(Burst, EveryLength) {
  Harness h;
  std::mt19937 rng(4);
  for (size_t n = 0; n <= kMaxBurst; ++n) {
    for (int round = 0; round < 20; ++round) {
      std::vector<Packet> burst;
      for (size_t i = 0; i < n; ++i) {
        Packet p = random_valid(rng);
        if (rng() % 4 == 0 && !p.bytes.empty()) {
          p.bytes[rng() % std::min<size_t>(p.bytes.size(), 64)] = static_cast<uint8_t>(rng());
        }
        if (rng() % 8 == 0) p.data_len = rng() % (p.data_len + 1);
        burst.push_back(std::move(p));
      }
      h.compare(burst, "burst of " + std::to_string(n));
    }
  }
}

TEST(Burst, EmptyTouchesNothing) {
  std::array<FlowKey, 1> keys;
  std::memset(keys.data(), kSentinel, sizeof(keys));
  std::array<Verdict, 1> verdicts{Verdict::kUdpLength};
  EXPECT_EQ(g_fn(nullptr, 0, 0, keys.data(), nullptr, verdicts.data()), 0);
  EXPECT_EQ(g_fn(nullptr, 0, 0, nullptr, nullptr, nullptr), 0);
  EXPECT_EQ(verdicts[0], Verdict::kUdpLength);
}

// The same packet in every lane position of a burst, alone among others of each verdict.
TEST(Burst, EveryLanePosition) {
  Harness h;
  const std::vector<Bytes> seeds = seed_frames();
  const Packet bad = whole(cat({eth(0x0800), ipv4({.good_checksum = false}, udp(1, 2, 18))}));
  for (const Bytes& s : seeds) {
    for (size_t pos = 0; pos < 16; ++pos) {
      std::vector<Packet> burst(16, bad);
      burst[pos] = whole(s);
      h.compare(burst, "lane " + std::to_string(pos));
      std::vector<Packet> good(16, whole(seeds[1]));
      good[pos] = whole(s, CksumHint::kBad);
      h.compare(good, "bad hint in lane " + std::to_string(pos));
    }
  }
}

TEST(Burst, KeysTakeInPortAndOverwriteTheRest) {
  // in_port is the burst's; everything else of a kOk key is written, whatever it held before,
  // with or without hashes.
  const std::vector<Bytes> seeds = seed_frames();
  std::vector<std::unique_ptr<GuardedBuffer>> bufs;
  std::vector<PacketView> views;
  for (const Bytes& s : seeds) {
    bufs.push_back(std::make_unique<GuardedBuffer>(s.size()));
    views.push_back({bufs.back()->place(s, s.size()), static_cast<uint32_t>(s.size()),
                     static_cast<uint32_t>(s.size()), CksumHint::kUnknown});
  }
  const auto n = static_cast<uint16_t>(views.size());
  for (uint8_t fill : {0x00, 0xFF, 0x5A}) {
    std::vector<FlowKey> a(n), b(n);
    std::memset(a.data(), fill, n * sizeof(FlowKey));
    std::memset(b.data(), fill, n * sizeof(FlowKey));
    std::vector<Verdict> va(n), vb(n);
    const auto port = static_cast<uint8_t>(fill ^ 0x81);
    EXPECT_EQ(validate_burst_scalar(views.data(), n, port, a.data(), nullptr, va.data()),
              g_fn(views.data(), n, port, b.data(), nullptr, vb.data()));
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(va[i], vb[i]) << i;
      EXPECT_EQ(std::memcmp(&a[i], &b[i], sizeof(FlowKey)), 0) << i;
      EXPECT_EQ(b[i].in_port, port) << i;
    }
  }
}

}  // namespace
}  // namespace sluice::simd

int main(int argc, char** argv) {
  using namespace sluice::simd;
  const int rc = kernel_tests::kernel_test_main(argc, argv, "differential tests", [](Kernel k) {
    g_kernel = k;
    g_fn = kernel_fn(k);
    std::printf("differential tests: %.*s against the scalar reference\n",
                static_cast<int>(kernel_name(k).size()), kernel_name(k).data());
  });
  if (rc != 77 && rc != 2) std::printf("%zu packets compared\n", g_packets);
  return rc;
}
