// The scalar validator against hand-built frames: every drop reason, each boundary, the key
// contents. Every packet is placed right before a PROT_NONE page, so a read past data_len
// faults instead of passing silently.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "simd/validate.h"
#include "tests/unit/simd/frames.h"

namespace sluice::simd {
namespace {

using namespace frames;

// ---- running the validator -------------------------------------------------------------

struct Outcome {
  Verdict verdict;
  FlowKey key;
};

bool key_untouched(const FlowKey& k) {
  const auto* p = reinterpret_cast<const uint8_t*>(&k);
  return std::all_of(p, p + sizeof(k), [](uint8_t b) { return b == kSentinel; });
}

// The ingress port run() gives the validator.
constexpr uint8_t kInPort = 0x3C;

// Validates one packet of which data_len bytes are readable. Checks what holds for every
// packet: the return count, in_port as given, the flow hash key_hash's, dropped keys and
// hashes untouched.
Outcome run(const Bytes& frame, uint32_t data_len, uint32_t frame_len,
            CksumHint hint = CksumHint::kUnknown) {
  GuardedBuffer buf(data_len);
  const PacketView v{buf.place(frame, data_len), data_len, frame_len, hint};
  Outcome out;
  std::memset(&out.key, kSentinel, sizeof(out.key));
  out.verdict = static_cast<Verdict>(0xEE);
  uint32_t hash = 0xDEADBEEF;
  const uint16_t nb_ok = validate_burst_scalar(&v, 1, kInPort, &out.key, &hash, &out.verdict);
  EXPECT_LT(static_cast<size_t>(out.verdict), kVerdictCount);
  EXPECT_EQ(nb_ok, out.verdict == Verdict::kOk ? 1 : 0);
  if (out.verdict == Verdict::kOk) {
    EXPECT_EQ(out.key.in_port, kInPort);
    EXPECT_EQ(hash, key_hash(out.key));
    EXPECT_EQ(out.key.pad_[0], 0);
    EXPECT_EQ(out.key.pad_[1], 0);
    EXPECT_EQ(out.key.pad_[2], 0);
  } else {
    EXPECT_TRUE(key_untouched(out.key)) << "dropped packet's key was written";
    EXPECT_EQ(hash, 0xDEADBEEF) << "dropped packet's hash was written";
  }
  return out;
}

Outcome run(const Bytes& frame, CksumHint hint = CksumHint::kUnknown) {
  const auto n = static_cast<uint32_t>(frame.size());
  return run(frame, n, n, hint);
}

// Readable prefix of a frame; frame_len stays the whole frame.
Outcome run_prefix(const Bytes& frame, uint32_t data_len) {
  return run(frame, data_len, static_cast<uint32_t>(frame.size()));
}

Verdict verdict_of(const Bytes& frame) {
  return run(frame).verdict;
}

std::array<uint8_t, 2> be(uint16_t v) {
  return {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

std::array<uint8_t, 2> bytes_of(uint16_t field) {
  std::array<uint8_t, 2> b;
  std::memcpy(b.data(), &field, 2);
  return b;
}

std::array<uint8_t, 16> v4_addr(std::array<uint8_t, 4> a) {
  std::array<uint8_t, 16> out{};
  std::copy(a.begin(), a.end(), out.begin());
  return out;
}

void expect_no_l4(const FlowKey& k) {
  EXPECT_EQ(k.l4_valid, 0);
  EXPECT_EQ(k.src_port, 0);
  EXPECT_EQ(k.dst_port, 0);
}

void expect_ports(const FlowKey& k, uint16_t sport, uint16_t dport) {
  EXPECT_EQ(k.l4_valid, 1);
  EXPECT_EQ(bytes_of(k.src_port), be(sport));
  EXPECT_EQ(bytes_of(k.dst_port), be(dport));
}

void expect_non_ip_key(const FlowKey& k, uint16_t l3_offset) {
  EXPECT_EQ(k.family, Family::kNone);
  EXPECT_EQ(k.proto, 0);
  expect_no_l4(k);
  EXPECT_EQ(k.src, (std::array<uint8_t, 16>{}));
  EXPECT_EQ(k.dst, (std::array<uint8_t, 16>{}));
  EXPECT_EQ(k.l3_offset, l3_offset);
  EXPECT_EQ(k.l4_offset, 0);
  EXPECT_EQ(k.fragment, 0);
}

// ---- names and dispatch ----------------------------------------------------------------

TEST(VerdictName, EveryVerdictHasItsContractName) {
  constexpr std::array<std::string_view, kVerdictCount> kNames = {
      "ok",           "runt",          "l3_truncated", "ipv4_version", "ipv4_ihl",
      "ipv4_length",  "ipv4_checksum", "ipv6_version", "ipv6_length",  "ipv6_ext",
      "l4_truncated", "tcp_offset",    "udp_length"};
  for (size_t i = 0; i < kVerdictCount; ++i) {
    EXPECT_EQ(verdict_name(static_cast<Verdict>(i)), kNames[i]);
  }
  EXPECT_EQ(verdict_name(Verdict::kUdpLength), "udp_length");
  EXPECT_FALSE(verdict_name(static_cast<Verdict>(kVerdictCount)).empty());
}

TEST(Dispatch, ScalarKernel) {
  EXPECT_EQ(kernel_name(Kernel::kScalar), "scalar");
  EXPECT_EQ(kernel_fn(Kernel::kScalar), &validate_burst_scalar);
  EXPECT_TRUE(kernel_supported(Kernel::kScalar));
  EXPECT_EQ(kernel_bitwidth(Kernel::kScalar), 64u);
}

TEST(Dispatch, NamesRoundTrip) {
  for (Kernel k : kKernels) {
    EXPECT_EQ(kernel_from_name(kernel_name(k)), k);
    EXPECT_NE(kernel_fn(k), nullptr);
  }
  EXPECT_EQ(kernel_from_name("avx2"), Kernel::kAvx2);
  EXPECT_EQ(kernel_from_name("AVX2"), std::nullopt);
  EXPECT_EQ(kernel_from_name("auto"), std::nullopt);  // the app's word, not a kernel
  EXPECT_EQ(kernel_from_name(""), std::nullopt);
}

TEST(Dispatch, BestKernelRespectsBitwidth) {
  // DPDK's RTE_VECT_SIMD_DISABLED (64) and 128 leave only the scalar reference.
  EXPECT_EQ(best_kernel(64), Kernel::kScalar);
  EXPECT_EQ(best_kernel(128), Kernel::kScalar);
  const Kernel best = best_kernel(UINT16_MAX);
  EXPECT_TRUE(kernel_supported(best));
  for (Kernel k : kKernels) {
    if (kernel_supported(k)) {
      EXPECT_GE(kernel_bitwidth(best), kernel_bitwidth(k));
    }
  }
  EXPECT_EQ(best_kernel(256), kernel_supported(Kernel::kAvx2) ? Kernel::kAvx2 : Kernel::kScalar);
  EXPECT_EQ(kernel_supported(Kernel::kAvx2), __builtin_cpu_supports("avx2") != 0);
}

// ---- L2 --------------------------------------------------------------------------------

TEST(L2, RuntBelowEthernetHeader) {
  const Bytes f = v4_udp();
  for (uint32_t len = 0; len < kEth; ++len) {
    EXPECT_EQ(run(f, len, len).verdict, Verdict::kRunt) << len;
  }
}

TEST(L2, RuntWhenOnlyDataLenIsShort) {
  // frame_len says there is more, but fewer than 14 bytes are readable.
  const Bytes f = v4_udp();
  EXPECT_EQ(run_prefix(f, 13).verdict, Verdict::kRunt);
}

TEST(L2, NonIpExactlyEthernetHeader) {
  const Outcome o = run(eth(0x0806));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  expect_non_ip_key(o.key, 14);
}

TEST(L2, NonIpIgnoresPayloadAndHint) {
  const Outcome o = run(cat({eth(0x88CC), filler(46, 0xFF)}), CksumHint::kBad);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  expect_non_ip_key(o.key, 14);
}

TEST(L2, SingleVlanTagEachTpid) {
  for (uint16_t tpid : {0x8100, 0x88A8, 0x9100}) {
    const Bytes f = cat({eth(0x0800, {tpid}), ipv4({}, udp(1, 2))});
    const Outcome o = run(f);
    ASSERT_EQ(o.verdict, Verdict::kOk) << std::hex << tpid;
    EXPECT_EQ(o.key.l3_offset, 18);
    EXPECT_EQ(o.key.l4_offset, 38);
    EXPECT_EQ(o.key.family, Family::kIpv4);
    expect_ports(o.key, 1, 2);
  }
}

TEST(L2, VlanTagBoundary) {
  for (uint16_t tpid : {0x8100, 0x88A8, 0x9100}) {
    const Bytes f = eth(0x0806, {tpid});
    ASSERT_EQ(f.size(), 18u);
    EXPECT_EQ(run(f, 17, 17).verdict, Verdict::kRunt);
    EXPECT_EQ(run(f, 15, 15).verdict, Verdict::kRunt);
    EXPECT_EQ(run(f, 14, 14).verdict, Verdict::kRunt);
    const Outcome o = run(f);
    ASSERT_EQ(o.verdict, Verdict::kOk);
    expect_non_ip_key(o.key, 18);
  }
}

TEST(L2, QinQ) {
  const Bytes f = cat({eth(0x86DD, {0x88A8, 0x8100}), ipv6({.next = kTcp}, tcp(443, 51000))});
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.l3_offset, 22);
  EXPECT_EQ(o.key.l4_offset, 62);
  EXPECT_EQ(o.key.family, Family::kIpv6);
  expect_ports(o.key, 443, 51000);
}

TEST(L2, QinQBoundary) {
  const Bytes f = eth(0x0806, {0x9100, 0x9100});
  ASSERT_EQ(f.size(), 22u);
  EXPECT_EQ(run(f, 21, 21).verdict, Verdict::kRunt);
  EXPECT_EQ(run(f, 18, 18).verdict, Verdict::kRunt);
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  expect_non_ip_key(o.key, 22);
}

TEST(L2, ThirdTagIsTakenAsEthertype) {
  // After two tags 0x8100 is just an ethertype: non-IP, even if IPv4 follows.
  const Bytes f = cat({eth(0x8100, {0x8100, 0x8100}), ipv4({}, udp(1, 2))});
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  expect_non_ip_key(o.key, 22);
  // ... and it needs no further bytes.
  EXPECT_EQ(run(f, 22, 22).verdict, Verdict::kOk);
}

// ---- IPv4 header -----------------------------------------------------------------------

TEST(Ipv4, L3TruncatedBoundary) {
  const Bytes f = cat({eth(0x0800), ipv4({.proto = kGre}, {})});
  ASSERT_EQ(f.size(), 34u);
  EXPECT_EQ(run(f, 33, 33).verdict, Verdict::kL3Truncated);
  EXPECT_EQ(run(f, 14, 14).verdict, Verdict::kL3Truncated);
  EXPECT_EQ(run_prefix(f, 33).verdict, Verdict::kL3Truncated);  // present, not readable
  EXPECT_EQ(run(f).verdict, Verdict::kOk);
}

TEST(Ipv4, L3TruncatedAfterVlan) {
  const Bytes f = cat({eth(0x0800, {0x8100}), ipv4({.proto = kGre}, {})});
  EXPECT_EQ(run(f, 37, 37).verdict, Verdict::kL3Truncated);
  EXPECT_EQ(run(f).verdict, Verdict::kOk);
}

TEST(Ipv4, Version) {
  for (uint8_t version : {0, 5, 6, 15}) {
    EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.version = version}, udp(1, 2))})),
              Verdict::kIpv4Version)
        << int{version};
  }
  // A whole IPv6 packet behind the IPv4 ethertype.
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv6({}, udp(1, 2))})), Verdict::kIpv4Version);
}

TEST(Ipv4, IhlBelowFive) {
  for (uint8_t ihl : {0, 1, 4}) {
    EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.ihl = ihl}, udp(1, 2))})), Verdict::kIpv4Ihl)
        << int{ihl};
  }
}

TEST(Ipv4, IhlBeyondReadableBytes) {
  V4 h;
  h.proto = kGre;
  h.options = {0x01, 0x01, 0x01, 0x00};  // NOP NOP NOP EOL: IHL 6
  const Bytes f = cat({eth(0x0800), ipv4(h, {})});
  ASSERT_EQ(f.size(), 38u);
  EXPECT_EQ(run(f, 37, 37).verdict, Verdict::kIpv4Ihl);
  EXPECT_EQ(run_prefix(f, 37).verdict, Verdict::kIpv4Ihl);
  EXPECT_EQ(run(f).verdict, Verdict::kOk);

  // IHL 15 on a 20-byte header.
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.ihl = 15}, {})})), Verdict::kIpv4Ihl);
}

TEST(Ipv4, OptionsMoveL4) {
  V4 h;
  h.proto = kTcp;
  h.options = Bytes(40, 0x01);  // IHL 15
  h.options.back() = 0x00;
  const Outcome o = run(cat({eth(0x0800), ipv4(h, tcp(22, 60000))}));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.l3_offset, 14);
  EXPECT_EQ(o.key.l4_offset, 14 + 60);
  expect_ports(o.key, 22, 60000);
}

TEST(Ipv4, TotalLengthBelowHeader) {
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.total_len = 19}, udp(1, 2))})),
            Verdict::kIpv4Length);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.total_len = 0}, udp(1, 2))})),
            Verdict::kIpv4Length);
  V4 h;
  h.proto = kGre;
  h.options = {1, 1, 1, 0};
  h.total_len = 23;
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4(h, filler(8))})), Verdict::kIpv4Length);
  h.total_len = 24;  // header only
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4(h, filler(8))})), Verdict::kOk);
}

TEST(Ipv4, TotalLengthBeyondFrame) {
  const Bytes ok = cat({eth(0x0800), ipv4({.proto = kGre}, filler(10))});
  EXPECT_EQ(verdict_of(ok), Verdict::kOk);
  const Bytes one_more = cat({eth(0x0800), ipv4({.proto = kGre, .total_len = 31}, filler(10))});
  EXPECT_EQ(verdict_of(one_more), Verdict::kIpv4Length);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kGre, .total_len = 0xFFFF}, {})})),
            Verdict::kIpv4Length);
}

TEST(Ipv4, TotalLengthCountsPresentNotReadableBytes) {
  // 200-byte UDP datagram, only the headers are readable: fine.
  const Bytes f = cat({eth(0x0800), ipv4({}, udp(5000, 6000, 192))});
  const Outcome o = run_prefix(f, 14 + 20 + 8);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  expect_ports(o.key, 5000, 6000);
  // The same frame with frame_len one short of total_length.
  EXPECT_EQ(run(f, 42, static_cast<uint32_t>(f.size()) - 1).verdict, Verdict::kIpv4Length);
}

TEST(Ipv4, EthernetPaddingIgnored) {
  // 60-byte minimum frame: 14 + 20 + 8 (ICMP) + 18 bytes of padding.
  const Bytes f = cat({eth(0x0800), ipv4({.proto = kIcmp}, icmp()), filler(18, 0xFF)});
  ASSERT_EQ(f.size(), 60u);
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.proto, kIcmp);
  // UDP length equal to the IP payload, padding after it.
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({}, udp(1, 2)), filler(18)})), Verdict::kOk);
}

TEST(Ipv4, ChecksumComputed) {
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.good_checksum = false}, udp(1, 2))})),
            Verdict::kIpv4Checksum);
  Bytes f = v4_udp();
  EXPECT_EQ(verdict_of(f), Verdict::kOk);
  f[14 + 8] ^= 0x01;  // TTL
  EXPECT_EQ(verdict_of(f), Verdict::kIpv4Checksum);
}

TEST(Ipv4, ChecksumCoversOptions) {
  V4 h;
  h.proto = kUdp;
  h.options = {0x01, 0x01, 0x01, 0x00, 0x01, 0x01, 0x01, 0x00};
  Bytes f = cat({eth(0x0800), ipv4(h, udp(1, 2))});
  EXPECT_EQ(verdict_of(f), Verdict::kOk);
  f[14 + 21] ^= 0x80;
  EXPECT_EQ(verdict_of(f), Verdict::kIpv4Checksum);
}

TEST(Ipv4, ChecksumIgnoresPayload) {
  Bytes f = v4_udp();
  f[14 + 20 + 8] ^= 0xFF;
  EXPECT_EQ(verdict_of(f), Verdict::kOk);
}

TEST(Ipv4, ChecksumHints) {
  const Bytes bad = cat({eth(0x0800), ipv4({.good_checksum = false}, udp(1, 2))});
  const Bytes good = v4_udp();
  EXPECT_EQ(run(bad, CksumHint::kGood).verdict, Verdict::kOk);
  EXPECT_EQ(run(bad, CksumHint::kUnknown).verdict, Verdict::kIpv4Checksum);
  EXPECT_EQ(run(bad, CksumHint::kBad).verdict, Verdict::kIpv4Checksum);
  EXPECT_EQ(run(good, CksumHint::kBad).verdict, Verdict::kIpv4Checksum);
  EXPECT_EQ(run(good, CksumHint::kGood).verdict, Verdict::kOk);
  EXPECT_EQ(run(good, CksumHint::kUnknown).verdict, Verdict::kOk);
}

TEST(Ipv4, EarlierReasonsWinOverChecksum) {
  const Bytes wrong_version = cat({eth(0x0800), ipv4({.version = 5}, udp(1, 2))});
  EXPECT_EQ(run(wrong_version, CksumHint::kBad).verdict, Verdict::kIpv4Version);
  const Bytes long_total = cat({eth(0x0800), ipv4({.total_len = 200}, udp(1, 2))});
  EXPECT_EQ(run(long_total, CksumHint::kBad).verdict, Verdict::kIpv4Length);
}

TEST(Ipv4, ChecksumBeforeL4) {
  // A truncated UDP header behind a bad checksum counts as a checksum error.
  const Bytes f = cat({eth(0x0800), ipv4({.good_checksum = false}, filler(4))});
  EXPECT_EQ(verdict_of(f), Verdict::kIpv4Checksum);
  EXPECT_EQ(run(f, CksumHint::kGood).verdict, Verdict::kL4Truncated);
}

TEST(Ipv6, ChecksumHintIgnored) {
  EXPECT_EQ(run(v6_with(udp(1, 2), kUdp), CksumHint::kBad).verdict, Verdict::kOk);
}

TEST(Ipv4, KeyContents) {
  V4 h;
  h.proto = kTcp;
  h.src = {198, 51, 100, 7};
  h.dst = {203, 0, 113, 255};
  const Outcome o = run(cat({eth(0x0800, {0x8100}), ipv4(h, tcp(0x1234, 0xABCD))}));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.proto, kTcp);
  EXPECT_EQ(o.key.family, Family::kIpv4);
  expect_ports(o.key, 0x1234, 0xABCD);
  EXPECT_EQ(o.key.src, v4_addr(h.src));
  EXPECT_EQ(o.key.dst, v4_addr(h.dst));
  EXPECT_EQ(o.key.l3_offset, 18);
  EXPECT_EQ(o.key.l4_offset, 38);
  EXPECT_EQ(o.key.fragment, 0);
}

TEST(Ipv4, DontFragmentAndReservedBitAreNotFragments) {
  for (uint16_t flags : {0x4000, 0x8000, 0xC000}) {
    const Outcome o = run(cat({eth(0x0800), ipv4({.frag = flags}, udp(1, 2))}));
    ASSERT_EQ(o.verdict, Verdict::kOk) << std::hex << flags;
    EXPECT_EQ(o.key.fragment, 0);
    expect_ports(o.key, 1, 2);
  }
}

// ---- IPv4 fragments --------------------------------------------------------------------

TEST(Ipv4Fragment, FirstFragmentParsesL4) {
  // UDP length describes the whole datagram (1000 bytes), more than this fragment holds.
  const Bytes f = cat({eth(0x0800), ipv4({.frag = 0x2000}, udp(7000, 8000, 16, 1000))});
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.fragment, 1);
  EXPECT_EQ(o.key.proto, kUdp);
  EXPECT_EQ(o.key.l4_offset, 34);
  expect_ports(o.key, 7000, 8000);
}

TEST(Ipv4Fragment, FirstFragmentL4Checks) {
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kTcp, .frag = 0x2000}, filler(16))})),
            Verdict::kL4Truncated);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.frag = 0x2000}, udp(1, 2, 0, 7))})),
            Verdict::kUdpLength);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kTcp, .frag = 0x2000}, tcp(1, 2, 4))})),
            Verdict::kTcpOffset);
}

TEST(Ipv4Fragment, NonFirstFragmentSkipsL4) {
  for (uint16_t frag : {0x0001, 0x00B9, 0x1000, 0x1FFF, 0x2001, 0x20B9, 0x4001, 0x9000}) {
    // 8 bytes of data that would fail every TCP check.
    const Bytes f = cat({eth(0x0800), ipv4({.proto = kTcp, .frag = frag}, filler(8, 0))});
    const Outcome o = run(f);
    ASSERT_EQ(o.verdict, Verdict::kOk) << std::hex << frag;
    EXPECT_EQ(o.key.fragment, 1);
    EXPECT_EQ(o.key.proto, kTcp);
    EXPECT_EQ(o.key.l4_offset, 0);
    EXPECT_EQ(o.key.l3_offset, 14);
    expect_no_l4(o.key);
  }
}

TEST(Ipv4Fragment, NonFirstFragmentWithoutPayload) {
  const Bytes f = cat({eth(0x0800), ipv4({.proto = kUdp, .frag = 0x0010}, {})});
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.fragment, 1);
  expect_no_l4(o.key);
}

TEST(Ipv4Fragment, NonFirstFragmentStillChecksIpHeader) {
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.frag = 0x0010, .good_checksum = false}, {})})),
            Verdict::kIpv4Checksum);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.frag = 0x0010, .total_len = 100}, {})})),
            Verdict::kIpv4Length);
}

TEST(Ipv4Fragment, UnfragmentedUdpLengthBeyondPayload) {
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({}, udp(1, 2, 16, 1000))})), Verdict::kUdpLength);
}

// ---- L4 over IPv4 ----------------------------------------------------------------------

struct L4Case {
  uint8_t proto;
  uint32_t need;
};
constexpr std::array<L4Case, 5> kL4Cases = {
    {{kTcp, 20}, {kUdp, 8}, {kSctp, 12}, {kIcmp, 8}, {kIcmpv6, 8}}};

TEST(L4, IpPayloadBoundaryV4) {
  for (const L4Case& c : kL4Cases) {
    const Bytes whole = l4_header(c.proto, c.need);
    const Bytes short_by_one(whole.begin(), whole.end() - 1);
    EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = c.proto}, short_by_one)})),
              Verdict::kL4Truncated)
        << int{c.proto};
    // Short IP payload even when the frame has more bytes (padding).
    EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = c.proto}, short_by_one), filler(20)})),
              Verdict::kL4Truncated)
        << int{c.proto};
    const Outcome o = run(cat({eth(0x0800), ipv4({.proto = c.proto}, whole)}));
    EXPECT_EQ(o.verdict, Verdict::kOk) << int{c.proto};
    EXPECT_EQ(o.key.l4_offset, 34);
    if (c.proto == kTcp || c.proto == kUdp || c.proto == kSctp) {
      expect_ports(o.key, 80, 81);
    } else {
      expect_no_l4(o.key);
    }
  }
}

TEST(L4, ReadableBoundaryV4) {
  for (const L4Case& c : kL4Cases) {
    // The IP payload is long enough; only the readable bytes vary.
    const Bytes f = cat({eth(0x0800), ipv4({.proto = c.proto}, l4_header(c.proto, c.need + 64))});
    EXPECT_EQ(run_prefix(f, 34 + c.need - 1).verdict, Verdict::kL4Truncated) << int{c.proto};
    EXPECT_EQ(run_prefix(f, 34).verdict, Verdict::kL4Truncated) << int{c.proto};
    EXPECT_EQ(run_prefix(f, 34 + c.need).verdict, Verdict::kOk) << int{c.proto};
  }
}

TEST(L4, TcpDataOffset) {
  for (uint8_t doff : {0, 1, 4}) {
    EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, doff))})),
              Verdict::kTcpOffset)
        << int{doff};
  }
  // Offset 6 needs 24 bytes of IP payload.
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 6, 3))})),
            Verdict::kTcpOffset);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 6, 4))})), Verdict::kOk);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 15, 39))})),
            Verdict::kTcpOffset);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 15, 40))})), Verdict::kOk);
}

TEST(L4, TcpOptionsNeedNotBeReadable) {
  const Bytes f = cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 15, 40))});
  EXPECT_EQ(run_prefix(f, 34 + 20).verdict, Verdict::kOk);
}

TEST(L4, TcpOffsetAgainstIpPayloadNotFrame) {
  // Offset 6 with only 20 bytes of IP payload, the rest of the frame is padding.
  const Bytes f = cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 6)), filler(20)});
  EXPECT_EQ(verdict_of(f), Verdict::kTcpOffset);
}

TEST(L4, UdpLength) {
  for (uint16_t len : {0, 1, 7}) {
    EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({}, udp(1, 2, 0, len))})), Verdict::kUdpLength)
        << len;
  }
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({}, udp(1, 2, 0, 8))})), Verdict::kOk);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({}, udp(1, 2, 10, 18))})), Verdict::kOk);
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({}, udp(1, 2, 10, 19))})), Verdict::kUdpLength);
  // Shorter than the IP payload is accepted.
  EXPECT_EQ(verdict_of(cat({eth(0x0800), ipv4({}, udp(1, 2, 10, 8))})), Verdict::kOk);
}

TEST(L4, OtherProtocolsHaveNoChecks) {
  for (uint8_t proto : {uint8_t{kGre}, uint8_t{50}, uint8_t{0}, uint8_t{kNoNext}, uint8_t{255}}) {
    const Outcome o = run(cat({eth(0x0800), ipv4({.proto = proto}, {})}));
    ASSERT_EQ(o.verdict, Verdict::kOk) << int{proto};
    EXPECT_EQ(o.key.proto, proto);
    EXPECT_EQ(o.key.l4_offset, 34);
    expect_no_l4(o.key);
  }
  // IPv6 extension header numbers mean nothing after IPv4.
  const Outcome o = run(cat({eth(0x0800), ipv4({.proto = kFragment}, filler(3))}));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.proto, kFragment);
}

TEST(L4, SctpPorts) {
  const Outcome o = run(cat({eth(0x0800), ipv4({.proto = kSctp}, sctp(2905, 0x0102))}));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  expect_ports(o.key, 2905, 0x0102);
}

TEST(L4, IcmpHasNoPorts) {
  Bytes echo = icmp(8);
  echo[4] = 0x12;  // identifier: not a port
  echo[5] = 0x34;
  const Outcome o = run(cat({eth(0x0800), ipv4({.proto = kIcmp}, echo)}));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.l4_offset, 34);
  expect_no_l4(o.key);
}

// ---- IPv6 header -----------------------------------------------------------------------

TEST(Ipv6, L3TruncatedBoundary) {
  const Bytes f = v6_with({}, kNoNext);
  ASSERT_EQ(f.size(), 54u);
  EXPECT_EQ(run(f, 53, 53).verdict, Verdict::kL3Truncated);
  EXPECT_EQ(run(f, 14, 14).verdict, Verdict::kL3Truncated);
  EXPECT_EQ(run_prefix(f, 53).verdict, Verdict::kL3Truncated);
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.proto, kNoNext);
  EXPECT_EQ(o.key.l4_offset, 54);
  expect_no_l4(o.key);
}

TEST(Ipv6, Version) {
  for (uint8_t version : {0, 4, 7, 15}) {
    EXPECT_EQ(verdict_of(cat({eth(0x86DD), ipv6({.version = version}, udp(1, 2))})),
              Verdict::kIpv6Version)
        << int{version};
  }
}

TEST(Ipv6, PayloadLengthBoundary) {
  const Bytes body = udp(1, 2, 4);
  EXPECT_EQ(verdict_of(cat({eth(0x86DD), ipv6({.payload_len = 13}, body)})), Verdict::kIpv6Length);
  EXPECT_EQ(verdict_of(cat({eth(0x86DD), ipv6({.payload_len = 0xFFFF}, body)})),
            Verdict::kIpv6Length);
  EXPECT_EQ(verdict_of(cat({eth(0x86DD), ipv6({.payload_len = 12}, body)})), Verdict::kOk);
}

TEST(Ipv6, PayloadLengthCountsPresentNotReadableBytes) {
  const Bytes f = v6_with(udp(1, 2, 400), kUdp);
  EXPECT_EQ(run_prefix(f, 14 + 40 + 8).verdict, Verdict::kOk);
  EXPECT_EQ(run(f, 62, static_cast<uint32_t>(f.size()) - 1).verdict, Verdict::kIpv6Length);
}

TEST(Ipv6, PaddingIgnored) {
  const Bytes f = cat({eth(0x86DD), ipv6({.next = kIcmpv6}, icmp(128)), filler(30)});
  EXPECT_EQ(verdict_of(f), Verdict::kOk);
  // The L4 length check uses payload_length, not the padded frame.
  const Bytes f2 = cat({eth(0x86DD), ipv6({.next = kTcp}, filler(12, 0)), filler(30)});
  EXPECT_EQ(verdict_of(f2), Verdict::kL4Truncated);
}

TEST(Ipv6, KeyContents) {
  const Outcome o =
      run(cat({eth(0x86DD, {0x8100}), ipv6({.next = kUdp}, udp(0x0035, 0xC001, 20))}));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.family, Family::kIpv6);
  EXPECT_EQ(o.key.proto, kUdp);
  EXPECT_EQ(o.key.src, kSrc6);
  EXPECT_EQ(o.key.dst, kDst6);
  EXPECT_EQ(o.key.l3_offset, 18);
  EXPECT_EQ(o.key.l4_offset, 58);
  EXPECT_EQ(o.key.fragment, 0);
  expect_ports(o.key, 0x0035, 0xC001);
}

TEST(Ipv6, L4BoundaryEveryProtocol) {
  for (const L4Case& c : kL4Cases) {
    const Bytes whole = l4_header(c.proto, c.need);
    const Bytes short_by_one(whole.begin(), whole.end() - 1);
    EXPECT_EQ(verdict_of(v6_with(short_by_one, c.proto)), Verdict::kL4Truncated) << int{c.proto};
    EXPECT_EQ(verdict_of(v6_with(whole, c.proto)), Verdict::kOk) << int{c.proto};
    const Bytes longer = v6_with(l4_header(c.proto, c.need + 32), c.proto);
    EXPECT_EQ(run_prefix(longer, 54 + c.need - 1).verdict, Verdict::kL4Truncated) << int{c.proto};
    EXPECT_EQ(run_prefix(longer, 54 + c.need).verdict, Verdict::kOk) << int{c.proto};
  }
}

// ---- IPv6 extension headers ------------------------------------------------------------

struct ExtCase {
  uint8_t type;
  Bytes (*make)(uint8_t next);
  uint32_t size;
};

const std::array<ExtCase, 8> kExtCases = {{
    {kHopByHop, [](uint8_t n) { return ext(n, 1); }, 16},
    {kRouting, [](uint8_t n) { return ext(n, 2); }, 24},
    {kFragment, [](uint8_t n) { return frag6(n, 0, false); }, 8},  // atomic
    {kDestOpts, [](uint8_t n) { return ext(n, 0); }, 8},
    {kAh, [](uint8_t n) { return ah(n, 4); }, 24},
    {kMobility, [](uint8_t n) { return ext(n, 1); }, 16},
    {kHip, [](uint8_t n) { return ext(n, 3); }, 32},
    {kShim6, [](uint8_t n) { return ext(n, 0); }, 8},
}};

TEST(Ipv6Ext, EachTypeThenUdp) {
  for (const ExtCase& c : kExtCases) {
    const Bytes hdr = c.make(kUdp);
    ASSERT_EQ(hdr.size(), c.size);
    const Outcome o = run(v6_with(cat({hdr, udp(4000, 4001, 3)}), c.type));
    ASSERT_EQ(o.verdict, Verdict::kOk) << int{c.type};
    EXPECT_EQ(o.key.proto, kUdp) << int{c.type};
    EXPECT_EQ(o.key.l4_offset, 54 + c.size) << int{c.type};
    EXPECT_EQ(o.key.fragment, 0) << int{c.type};
    expect_ports(o.key, 4000, 4001);
  }
}

TEST(Ipv6Ext, EachTypeTruncatedByPayloadLength) {
  for (const ExtCase& c : kExtCases) {
    const Bytes hdr = c.make(kNoNext);
    // Exactly the header: ok.
    const Outcome o = run(v6_with(hdr, c.type));
    ASSERT_EQ(o.verdict, Verdict::kOk) << int{c.type};
    EXPECT_EQ(o.key.proto, kNoNext);
    EXPECT_EQ(o.key.l4_offset, 54 + c.size);
    // payload_length one byte short of the header, the bytes still in the frame.
    V6 h;
    h.next = c.type;
    h.payload_len = static_cast<uint16_t>(c.size - 1);
    EXPECT_EQ(verdict_of(cat({eth(0x86DD), ipv6(h, hdr)})), Verdict::kIpv6Ext) << int{c.type};
    // Not even the two length bytes.
    for (uint16_t len : {0, 1}) {
      h.payload_len = len;
      EXPECT_EQ(verdict_of(cat({eth(0x86DD), ipv6(h, hdr)})), Verdict::kIpv6Ext) << int{c.type};
    }
  }
}

TEST(Ipv6Ext, EachTypeNotReadable) {
  for (const ExtCase& c : kExtCases) {
    const Bytes f = v6_with(cat({c.make(kUdp), udp(1, 2, 100)}), c.type);
    EXPECT_EQ(run_prefix(f, 54).verdict, Verdict::kIpv6Ext) << int{c.type};
    EXPECT_EQ(run_prefix(f, 55).verdict, Verdict::kIpv6Ext) << int{c.type};
    EXPECT_EQ(run_prefix(f, 54 + c.size - 1).verdict, Verdict::kIpv6Ext) << int{c.type};
    EXPECT_EQ(run_prefix(f, 54 + c.size).verdict, Verdict::kL4Truncated) << int{c.type};
    EXPECT_EQ(run_prefix(f, 54 + c.size + 8).verdict, Verdict::kOk) << int{c.type};
  }
}

TEST(Ipv6Ext, LargestLengths) {
  // len 255: (255+1)*8 = 2048 bytes; AH len 255: (255+2)*4 = 1028 bytes.
  const Outcome o = run(v6_with(cat({ext(kAh, 255), ah(kTcp, 255), tcp(1, 2)}), kDestOpts));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.l4_offset, 54 + 2048 + 1028);
  expect_ports(o.key, 1, 2);
}

TEST(Ipv6Ext, EightHeadersOkNineRejected) {
  const Outcome eight = run(v6_with(cat({chain_of(8), udp(9, 10)}), kHopByHop));
  ASSERT_EQ(eight.verdict, Verdict::kOk);
  EXPECT_EQ(eight.key.proto, kUdp);
  EXPECT_EQ(eight.key.l4_offset, 54 + 64);
  expect_ports(eight.key, 9, 10);

  EXPECT_EQ(verdict_of(v6_with(cat({chain_of(9), udp(9, 10)}), kHopByHop)), Verdict::kIpv6Ext);
  EXPECT_EQ(verdict_of(v6_with(cat({chain_of(20), udp(9, 10)}), kHopByHop)), Verdict::kIpv6Ext);
  // Eight headers then no-next-header.
  EXPECT_EQ(verdict_of(v6_with(chain_of(8, kNoNext), kHopByHop)), Verdict::kOk);
}

TEST(Ipv6Ext, MixedEightTypes) {
  // Every type once: hop-by-hop, routing, atomic fragment, AH, mobility, HIP, shim6, dest.
  const Bytes chain =
      cat({ext(kRouting, 0), ext(kFragment, 1), frag6(kAh, 0, false), ah(kMobility, 1),
           ext(kHip, 0), ext(kShim6, 0), ext(kDestOpts, 0), ext(kTcp, 0)});
  const Outcome o = run(v6_with(cat({chain, tcp(1, 2)}), kHopByHop));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.proto, kTcp);
  EXPECT_EQ(o.key.l4_offset, 54 + chain.size());
  // One more header makes nine.
  const Bytes nine = cat({chain, ext(kTcp, 0)});
  Bytes nine_fixed = nine;
  nine_fixed[chain.size() - 8] = kDestOpts;  // the 8th now points at the 9th
  EXPECT_EQ(verdict_of(v6_with(cat({nine_fixed, tcp(1, 2)}), kHopByHop)), Verdict::kIpv6Ext);
}

TEST(Ipv6Ext, HopByHopOnlyFirst) {
  EXPECT_EQ(verdict_of(v6_with(cat({ext(kHopByHop, 0), ext(kUdp, 0), udp(1, 2)}), kDestOpts)),
            Verdict::kIpv6Ext);
  EXPECT_EQ(verdict_of(v6_with(cat({ext(kHopByHop, 0), ext(kUdp, 0), udp(1, 2)}), kHopByHop)),
            Verdict::kIpv6Ext);
  EXPECT_EQ(verdict_of(v6_with(cat({ext(kDestOpts, 0), ext(kUdp, 0), udp(1, 2)}), kHopByHop)),
            Verdict::kOk);
}

TEST(Ipv6Ext, L4PayloadExcludesChain) {
  // 16 bytes of extension headers + UDP: payload_length must cover both.
  const Bytes chain = cat({ext(kRouting, 0), ext(kUdp, 0)});
  EXPECT_EQ(verdict_of(v6_with(cat({chain, udp(1, 2)}), kDestOpts)), Verdict::kOk);
  EXPECT_EQ(verdict_of(v6_with(cat({chain, filler(7)}), kDestOpts)), Verdict::kL4Truncated);
  // UDP length against the payload after the chain.
  EXPECT_EQ(verdict_of(v6_with(cat({chain, udp(1, 2, 4, 12)}), kDestOpts)), Verdict::kOk);
  EXPECT_EQ(verdict_of(v6_with(cat({chain, udp(1, 2, 4, 13)}), kDestOpts)), Verdict::kUdpLength);
  // TCP offset against the payload after the chain.
  const Bytes tchain = cat({ext(kRouting, 0), ext(kTcp, 0)});
  EXPECT_EQ(verdict_of(v6_with(cat({tchain, tcp(1, 2, 6, 3)}), kDestOpts)), Verdict::kTcpOffset);
  EXPECT_EQ(verdict_of(v6_with(cat({tchain, tcp(1, 2, 6, 4)}), kDestOpts)), Verdict::kOk);
}

TEST(Ipv6Ext, ChainPastHeaderBudget) {
  // A multi-segment frame linearised to kMaxHeaderBytes: the chain runs past them.
  const Bytes chain = cat({ext(kRouting, 40), ext(kUdp, 40)});  // 2 * 328 bytes
  const Bytes f = v6_with(cat({chain, udp(1, 2, 100)}), kDestOpts);
  ASSERT_GT(f.size(), kMaxHeaderBytes);
  EXPECT_EQ(run_prefix(f, kMaxHeaderBytes).verdict, Verdict::kIpv6Ext);
  EXPECT_EQ(verdict_of(f), Verdict::kOk);
}

TEST(Ipv6Ext, NoNextHeaderAfterChain) {
  const Outcome o = run(v6_with(cat({ext(kNoNext, 0), filler(12)}), kDestOpts));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.proto, kNoNext);
  EXPECT_EQ(o.key.l4_offset, 62);
  expect_no_l4(o.key);
}

// ---- IPv6 fragments --------------------------------------------------------------------

TEST(Ipv6Fragment, NonFirstStopsChain) {
  // Offset != 0: what follows is data, not a header (here: garbage "extension headers").
  for (bool more : {false, true}) {
    const Bytes f = v6_with(cat({frag6(kTcp, 185, more), filler(16, 0xFF)}), kFragment);
    const Outcome o = run(f);
    ASSERT_EQ(o.verdict, Verdict::kOk);
    EXPECT_EQ(o.key.fragment, 1);
    EXPECT_EQ(o.key.proto, kTcp);
    EXPECT_EQ(o.key.l4_offset, 0);
    EXPECT_EQ(o.key.family, Family::kIpv6);
    expect_no_l4(o.key);
  }
}

TEST(Ipv6Fragment, NonFirstProtoIsItsNextHeader) {
  // Even an extension-header number: the chain stops at the fragment header.
  const Outcome o =
      run(v6_with(cat({ext(kFragment, 0), frag6(kDestOpts, 1, false), filler(8)}), kHopByHop));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.proto, kDestOpts);
  EXPECT_EQ(o.key.fragment, 1);
  EXPECT_EQ(o.key.l4_offset, 0);
}

TEST(Ipv6Fragment, NonFirstWithoutData) {
  const Outcome o = run(v6_with(frag6(kUdp, 1, false), kFragment));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.fragment, 1);
  expect_no_l4(o.key);
}

TEST(Ipv6Fragment, FirstFragmentContinues) {
  // UDP length is the whole datagram: more than this fragment holds, still ok.
  const Bytes f =
      v6_with(cat({frag6(kDestOpts, 0, true), ext(kUdp, 0), udp(5353, 5354, 8, 3000)}), kFragment);
  const Outcome o = run(f);
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.fragment, 1);
  EXPECT_EQ(o.key.proto, kUdp);
  EXPECT_EQ(o.key.l4_offset, 54 + 16);
  expect_ports(o.key, 5353, 5354);
}

TEST(Ipv6Fragment, FirstFragmentL4Checks) {
  EXPECT_EQ(verdict_of(v6_with(cat({frag6(kTcp, 0, true), filler(12)}), kFragment)),
            Verdict::kL4Truncated);
  EXPECT_EQ(verdict_of(v6_with(cat({frag6(kUdp, 0, true), udp(1, 2, 0, 7)}), kFragment)),
            Verdict::kUdpLength);
  EXPECT_EQ(verdict_of(v6_with(cat({frag6(kTcp, 0, true), tcp(1, 2, 3)}), kFragment)),
            Verdict::kTcpOffset);
}

TEST(Ipv6Fragment, AtomicFragmentIsNotAFragment) {
  const Outcome o = run(v6_with(cat({frag6(kUdp, 0, false), udp(1, 2, 4)}), kFragment));
  ASSERT_EQ(o.verdict, Verdict::kOk);
  EXPECT_EQ(o.key.fragment, 0);
  EXPECT_EQ(o.key.l4_offset, 62);
  // So the UDP length check against the payload applies.
  EXPECT_EQ(verdict_of(v6_with(cat({frag6(kUdp, 0, false), udp(1, 2, 4, 100)}), kFragment)),
            Verdict::kUdpLength);
}

TEST(Ipv6Fragment, FragmentHeaderTruncated) {
  V6 h;
  h.next = kFragment;
  h.payload_len = 7;
  EXPECT_EQ(verdict_of(cat({eth(0x86DD), ipv6(h, frag6(kUdp, 1, false))})), Verdict::kIpv6Ext);
  const Bytes f = v6_with(cat({frag6(kUdp, 1, false), filler(8)}), kFragment);
  EXPECT_EQ(run_prefix(f, 61).verdict, Verdict::kIpv6Ext);
  EXPECT_EQ(run_prefix(f, 62).verdict, Verdict::kOk);
}

TEST(Ipv6Fragment, NinthHeaderIsTooManyEvenAsFragment) {
  Bytes chain = chain_of(8, kFragment);
  chain = cat({chain, frag6(kUdp, 10, false), filler(8)});
  EXPECT_EQ(verdict_of(v6_with(chain, kHopByHop)), Verdict::kIpv6Ext);
  // As the 8th it is fine.
  Bytes seven = chain_of(7, kFragment);
  seven = cat({seven, frag6(kUdp, 10, false), filler(8)});
  EXPECT_EQ(verdict_of(v6_with(seven, kHopByHop)), Verdict::kOk);
}

// ---- bursts ----------------------------------------------------------------------------

TEST(Burst, Empty) {
  std::array<FlowKey, 2> keys;
  std::memset(keys.data(), kSentinel, sizeof(keys));
  std::array<Verdict, 2> verdicts{Verdict::kUdpLength, Verdict::kUdpLength};
  PacketView v{};
  EXPECT_EQ(validate_burst_scalar(&v, 0, 0, keys.data(), nullptr, verdicts.data()), 0);
  EXPECT_EQ(validate_burst_scalar(nullptr, 0, 0, nullptr, nullptr, nullptr), 0);
  EXPECT_TRUE(key_untouched(keys[0]));
  EXPECT_EQ(verdicts[0], Verdict::kUdpLength);
}

struct BurstPacket {
  Bytes frame;
  uint32_t data_len;
  CksumHint hint;
  Verdict expected;
};

std::vector<BurstPacket> mixed_packets() {
  std::vector<BurstPacket> p;
  auto add = [&p](Bytes f, Verdict v, CksumHint hint = CksumHint::kUnknown,
                  std::optional<uint32_t> data_len = std::nullopt) {
    const auto len = data_len.value_or(static_cast<uint32_t>(f.size()));
    p.push_back({std::move(f), len, hint, v});
  };
  add(v4_udp(1, 2), Verdict::kOk);
  add(eth(0x0800), Verdict::kL3Truncated);
  add(filler(10), Verdict::kRunt);
  add(v6_with(tcp(3, 4), kTcp), Verdict::kOk);
  add(cat({eth(0x0800), ipv4({.good_checksum = false}, udp(1, 2))}), Verdict::kIpv4Checksum);
  add(cat({eth(0x0800), ipv4({.good_checksum = false}, udp(1, 2))}), Verdict::kOk,
      CksumHint::kGood);
  add(eth(0x0806), Verdict::kOk);
  add(cat({eth(0x0800), ipv4({.version = 6}, {})}), Verdict::kIpv4Version);
  add(cat({eth(0x0800), ipv4({.ihl = 3}, {})}), Verdict::kIpv4Ihl);
  add(cat({eth(0x0800), ipv4({.total_len = 99}, {})}), Verdict::kIpv4Length);
  add(cat({eth(0x86DD), ipv6({.version = 4}, {})}), Verdict::kIpv6Version);
  add(cat({eth(0x86DD), ipv6({.payload_len = 9}, {})}), Verdict::kIpv6Length);
  add(v6_with(chain_of(9), kHopByHop), Verdict::kIpv6Ext);
  add(v6_with(filler(3), kUdp), Verdict::kL4Truncated);
  add(cat({eth(0x0800), ipv4({.proto = kTcp}, tcp(1, 2, 2))}), Verdict::kTcpOffset);
  add(cat({eth(0x0800), ipv4({}, udp(1, 2, 0, 4))}), Verdict::kUdpLength);
  add(cat({eth(0x0800, {0x8100}), ipv4({.frag = 0x0040}, filler(8))}), Verdict::kOk);
  add(v4_udp(5, 6, 300), Verdict::kOk, CksumHint::kUnknown, 14 + 20 + 8);
  return p;
}

TEST(Burst, MixedVerdictsInOrder) {
  const std::vector<BurstPacket> packets = mixed_packets();
  const size_t n = packets.size();
  std::vector<std::unique_ptr<GuardedBuffer>> bufs;
  std::vector<PacketView> views;
  for (const BurstPacket& p : packets) {
    bufs.push_back(std::make_unique<GuardedBuffer>(p.data_len));
    views.push_back({bufs.back()->place(p.frame, p.data_len), p.data_len,
                     static_cast<uint32_t>(p.frame.size()), p.hint});
  }
  std::vector<FlowKey> keys(n);
  std::memset(keys.data(), kSentinel, n * sizeof(FlowKey));
  std::vector<Verdict> verdicts(n, static_cast<Verdict>(0xEE));
  const uint16_t nb_ok = validate_burst_scalar(views.data(), static_cast<uint16_t>(n), kInPort,
                                               keys.data(), nullptr, verdicts.data());

  size_t expected_ok = 0;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(verdicts[i], packets[i].expected)
        << "packet " << i << ": " << verdict_name(verdicts[i]);
    if (packets[i].expected == Verdict::kOk) {
      ++expected_ok;
      EXPECT_EQ(keys[i].in_port, kInPort);
    } else {
      EXPECT_TRUE(key_untouched(keys[i])) << i;
    }
    // Each packet gives the same answer alone.
    const Outcome alone = run(packets[i].frame, packets[i].data_len,
                              static_cast<uint32_t>(packets[i].frame.size()), packets[i].hint);
    EXPECT_EQ(alone.verdict, verdicts[i]) << i;
    if (alone.verdict == Verdict::kOk) {
      EXPECT_EQ(std::memcmp(&alone.key, &keys[i], sizeof(FlowKey)), 0) << i;
    }
  }
  EXPECT_EQ(nb_ok, expected_ok);
  // Every reason appears at least once.
  for (size_t r = 0; r < kVerdictCount; ++r) {
    EXPECT_NE(std::find(verdicts.begin(), verdicts.end(), static_cast<Verdict>(r)), verdicts.end())
        << verdict_name(static_cast<Verdict>(r));
  }
}

TEST(Burst, KeysOverwriteStaleContents) {
  // A key reused from an earlier burst holds nothing of the old packet (except in_port).
  const Bytes v6 = v6_with(tcp(3, 4), kTcp);
  const Bytes arp = eth(0x0806);
  GuardedBuffer b1(v6.size());
  GuardedBuffer b2(arp.size());
  PacketView v{b1.place(v6, v6.size()), static_cast<uint32_t>(v6.size()),
               static_cast<uint32_t>(v6.size()), CksumHint::kUnknown};
  FlowKey key;
  std::memset(&key, 0xFF, sizeof(key));
  Verdict verdict;
  ASSERT_EQ(validate_burst_scalar(&v, 1, 7, &key, nullptr, &verdict), 1);
  v = {b2.place(arp, arp.size()), static_cast<uint32_t>(arp.size()),
       static_cast<uint32_t>(arp.size()), CksumHint::kUnknown};
  ASSERT_EQ(validate_burst_scalar(&v, 1, 9, &key, nullptr, &verdict), 1);
  EXPECT_EQ(key.in_port, 9);
  expect_non_ip_key(key, 14);
  EXPECT_EQ(key.pad_[0] | key.pad_[1] | key.pad_[2], 0);
}

// ---- robustness ------------------------------------------------------------------------

// Mutated valid frames and random cut-offs: no read past data_len (the guard page faults),
// the count matches, every verdict is a known one, and ok keys are consistent.
TEST(Robustness, MutatedFramesNeverReadPastDataLen) {
  const std::vector<BurstPacket> seeds = mixed_packets();
  std::vector<Bytes> frames;
  for (const BurstPacket& p : seeds) frames.push_back(p.frame);
  frames.push_back(v6_with(cat({chain_of(8), udp(9, 10)}), kHopByHop));
  frames.push_back(v6_with(cat({frag6(kDestOpts, 0, true), ext(kUdp, 0), udp(1, 2)}), kFragment));
  frames.push_back(v6_with(cat({ext(kAh, 3), ah(kSctp, 2), sctp(1, 2)}), kRouting));
  frames.push_back(cat({eth(0x86DD, {0x88A8, 0x8100}), ipv6({.next = kTcp}, tcp(1, 2))}));

  std::mt19937 rng(20240611);
  constexpr unsigned kBurst = 32;
  std::vector<std::unique_ptr<GuardedBuffer>> bufs;
  for (unsigned i = 0; i < kBurst; ++i) bufs.push_back(std::make_unique<GuardedBuffer>(4096));
  std::array<PacketView, kBurst> views;
  std::array<FlowKey, kBurst> keys;
  std::array<Verdict, kBurst> verdicts;
  std::array<Bytes, kBurst> storage;

  for (int round = 0; round < 2000; ++round) {
    for (unsigned i = 0; i < kBurst; ++i) {
      Bytes f = frames[rng() % frames.size()];
      const unsigned flips = rng() % 4;
      for (unsigned k = 0; k < flips && !f.empty(); ++k) f[rng() % f.size()] = rng() & 0xFF;
      if (rng() % 4 == 0) f.resize(f.size() + rng() % 64, static_cast<uint8_t>(rng()));
      const auto frame_len = static_cast<uint32_t>(f.size());
      const uint32_t data_len = rng() % 2 == 0 ? frame_len : rng() % (frame_len + 1);
      storage[i] = std::move(f);
      views[i] = {bufs[i]->place(storage[i], data_len), data_len, frame_len,
                  static_cast<CksumHint>(rng() % 3)};
    }
    std::memset(keys.data(), kSentinel, sizeof(keys));
    const uint16_t nb_ok =
        validate_burst_scalar(views.data(), kBurst, kInPort, keys.data(), nullptr, verdicts.data());
    unsigned counted = 0;
    for (unsigned i = 0; i < kBurst; ++i) {
      ASSERT_LT(static_cast<size_t>(verdicts[i]), kVerdictCount);
      if (verdicts[i] != Verdict::kOk) {
        ASSERT_TRUE(key_untouched(keys[i]));
        continue;
      }
      ++counted;
      const FlowKey& k = keys[i];
      ASSERT_EQ(k.in_port, kInPort);
      ASSERT_LE(k.l3_offset, views[i].data_len);
      ASSERT_LE(k.l4_offset, views[i].frame_len);
      if (k.l4_valid) {
        ASSERT_TRUE(k.proto == kTcp || k.proto == kUdp || k.proto == kSctp);
        ASSERT_NE(k.l4_offset, 0);
      } else {
        ASSERT_EQ(k.src_port | k.dst_port, 0);
      }
      if (k.family == Family::kNone) {
        ASSERT_EQ(k.proto, 0);
      }
      if (k.family != Family::kIpv6) {
        ASSERT_TRUE(std::all_of(k.src.begin() + 4, k.src.end(), [](uint8_t b) { return !b; }));
      }
    }
    ASSERT_EQ(nb_ok, counted);
  }
}

}  // namespace
}  // namespace sluice::simd
