// sluice-gen's pure parts: every template against sluice's scalar validator (valid ones pass,
// each malformed one gets exactly its CONTRACT reason), L4 checksums stay valid after
// stamping, the trailer round-trips, pcap replay, options, and the stream tracker's loss,
// duplicate and reorder accounting.

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tools/gen/options.h"
#include "tools/gen/packets.h"
#include "tools/gen/streams.h"

namespace sluice::gen {
namespace {

simd::Verdict verdict_of(const std::vector<uint8_t>& f, simd::FlowKey* key_out = nullptr) {
  simd::PacketView v{f.data(), static_cast<uint32_t>(f.size()), static_cast<uint32_t>(f.size()),
                     simd::CksumHint::kUnknown};
  simd::FlowKey key{};
  simd::Verdict verdict{};
  simd::validate_burst_scalar(&v, 1, 0, &key, nullptr, &verdict);
  if (key_out) *key_out = key;
  return verdict;
}

uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// The L4 checksum of a whole frame, computed from scratch: 0 when it verifies (or is absent).
uint16_t l4_residual(const std::vector<uint8_t>& f) {
  simd::FlowKey k{};
  EXPECT_EQ(verdict_of(f, &k), simd::Verdict::kOk);
  const bool v6 = k.family == simd::Family::kIpv6;
  const uint32_t l3 = k.l3_offset, l4 = k.l4_offset;
  const uint32_t end = v6 ? l3 + 40 + be16(&f[l3 + 4]) : l3 + be16(&f[l3 + 2]);
  const uint32_t len = end - l4;
  if (k.proto == 17 && be16(&f[l4 + 6]) == 0 && !v6) return 0;
  uint32_t s = 0;
  auto add = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i + 1 < n; i += 2) s += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    if (n & 1) s += static_cast<uint32_t>(p[n - 1] << 8);
  };
  if (v6) {
    add(&f[l3 + 8], 32);
  } else {
    add(&f[l3 + 12], 8);
  }
  s += len >> 16;
  s += len & 0xFFFF;
  s += k.proto;
  add(&f[l4], len);
  while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

FlowSpec spec(bool ipv6, Proto proto, std::vector<uint16_t> sizes, unsigned flows = 3) {
  FlowSpec s;
  s.flows = flows;
  s.ipv6 = ipv6;
  s.proto = proto;
  s.sizes = std::move(sizes);
  bool v6 = false;
  parse_ip(ipv6 ? "2001:db8::1" : "10.0.0.1", s.src, v6);
  parse_ip(ipv6 ? "2001:db8:1::1" : "192.168.0.1", s.dst, v6);
  return s;
}

TEST(Trailer, RoundTripsAndRejectsForeignBytes) {
  std::array<uint8_t, kTrailerLen> b{};
  write_trailer(b.data(), 513, 0x123456789ABCull, 0xFFFF0000FFFFull);
  Trailer t{};
  ASSERT_TRUE(read_trailer(b.data(), t));
  EXPECT_EQ(t.stream, 513);
  EXPECT_EQ(t.seq, 0x123456789ABCull);
  EXPECT_EQ(t.tsc, 0xFFFF0000FFFFull);
  write_trailer(b.data(), 1, (uint64_t{1} << 48) + 5, 0);  // 48 bits on the wire
  ASSERT_TRUE(read_trailer(b.data(), t));
  EXPECT_EQ(t.seq, 5u);
  b[0] ^= 1;
  EXPECT_FALSE(read_trailer(b.data(), t));
}

TEST(FlowPlan, EveryFamilyProtocolAndSizeIsValidAndStampedWithAGoodChecksum) {
  std::mt19937_64 rng(5);
  for (bool v6 : {false, true}) {
    for (Proto p : {Proto::kUdp, Proto::kTcp}) {
      const FlowSpec s = spec(v6, p, {64, 65, 127, 128, 594, 1017, 1518});
      auto plan = flow_plan(s);
      ASSERT_TRUE(plan) << plan.error();
      EXPECT_EQ(plan->streams, 3u);
      EXPECT_EQ(plan->schedule.size(), 3u * 7);
      ASSERT_TRUE(verify_plan(*plan)) << verify_plan(*plan).error();
      std::set<uint32_t> lengths;
      for (const Template& t : plan->templates) {
        ASSERT_NE(t.stream, kNoStream);
        EXPECT_GE(t.frame.size() + 4, min_wire_size(s));
        lengths.insert(static_cast<uint32_t>(t.frame.size()));
        for (int i = 0; i < 20; ++i) {
          auto f = t.frame;
          const uint64_t seq = rng(), tsc = rng();
          stamp(t, f.data(), seq, tsc);
          Trailer tr{};
          ASSERT_TRUE(read_trailer(&f[f.size() - kTrailerLen], tr));
          EXPECT_EQ(tr.stream, t.stream);
          EXPECT_EQ(tr.seq, seq & kMask48);
          EXPECT_EQ(l4_residual(f), 0) << "v6=" << v6 << " size=" << f.size();
        }
      }
      // Odd and even lengths both occur, so both trailer alignments are covered.
      EXPECT_TRUE(std::any_of(lengths.begin(), lengths.end(), [](uint32_t l) { return l & 1; }));
    }
  }
}

TEST(FlowPlan, FlowsDifferInSourceAddressAndPorts) {
  FlowSpec s = spec(false, Proto::kUdp, {64}, 300);
  s.dport_count = 4;
  auto plan = flow_plan(s);
  ASSERT_TRUE(plan);
  std::set<std::string> keys;
  for (const Template& t : plan->templates) {
    simd::FlowKey k{};
    ASSERT_EQ(verdict_of(t.frame, &k), simd::Verdict::kOk);
    keys.insert(std::string(reinterpret_cast<const char*>(k.src.data()), 4) +
                std::to_string(k.src_port) + "/" + std::to_string(k.dst_port));
  }
  EXPECT_EQ(keys.size(), 300u);
  EXPECT_EQ(plan->templates[299].frame[14 + 12 + 2], 1);  // 10.0.0.1 + 299 = 10.0.1.44
  EXPECT_EQ(plan->templates[299].frame[14 + 12 + 3], 44);
}

TEST(FlowPlan, SmallSizesAreRaisedAndSaidSo) {
  auto plan = flow_plan(spec(true, Proto::kTcp, {64}));
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->templates[0].frame.size(), 14u + 40 + 20 + kTrailerLen);
  EXPECT_NE(plan->summary.find("raised"), std::string::npos) << plan->summary;
  auto v4 = flow_plan(spec(false, Proto::kUdp, {64}));
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->templates[0].frame.size(), 60u);  // 64 on the wire: exactly room for the trailer
  EXPECT_EQ(v4->summary.find("raised"), std::string::npos);
}

TEST(FlowPlan, ImixIsSevenFourOne) {
  auto sizes = imix_sizes();
  EXPECT_EQ(std::count(sizes.begin(), sizes.end(), 64), 7);
  EXPECT_EQ(std::count(sizes.begin(), sizes.end(), 594), 4);
  EXPECT_EQ(std::count(sizes.begin(), sizes.end(), 1518), 1);
}

TEST(Malformed, OneTemplatePerContractReasonEachGettingExactlyIt) {
  for (bool v6 : {false, true}) {
    auto plan = flow_plan(spec(v6, Proto::kUdp, {64}));
    ASSERT_TRUE(plan);
    add_malformed(*plan, spec(v6, Proto::kUdp, {64}));
    ASSERT_EQ(plan->malformed.size(), simd::kVerdictCount - 1);
    std::set<simd::Verdict> reasons;
    for (uint32_t i : plan->malformed) {
      const Template& t = plan->templates[i];
      EXPECT_EQ(t.stream, kNoStream);
      EXPECT_EQ(verdict_of(t.frame), t.expect) << simd::verdict_name(t.expect);
      reasons.insert(t.expect);
    }
    EXPECT_EQ(reasons.size(), simd::kVerdictCount - 1);
    EXPECT_EQ(reasons.count(simd::Verdict::kOk), 0u);
    EXPECT_TRUE(verify_plan(*plan));
  }
}

TEST(Pcap, ReplaysTheDemoCaptureStampingWhatHasRoom) {
  auto plan = pcap_plan(SLUICE_SOURCE_ROOT "/config/demo/traffic.pcap", 2048);
  ASSERT_TRUE(plan) << plan.error();
  EXPECT_EQ(plan->templates.size(), 2000u);
  EXPECT_EQ(plan->schedule.size(), 2000u);
  size_t stamped = 0;
  for (const Template& t : plan->templates) {
    if (t.stream == kNoStream) continue;
    ++stamped;
    auto f = t.frame;
    stamp(t, f.data(), 77, 1);
    EXPECT_EQ(verdict_of(f), simd::Verdict::kOk);
    EXPECT_EQ(l4_residual(f), 0);
  }
  EXPECT_GT(stamped, 1000u);
  EXPECT_LT(stamped, 2000u);  // malformed frames, ARP, fragments... go out untouched
  EXPECT_TRUE(verify_plan(*plan));
}

TEST(Pcap, ErrorsSayWhatIsWrong) {
  auto missing = pcap_plan("/nonexistent.pcap", 2048);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("cannot open"), std::string::npos);
  const std::string path = ::testing::TempDir() + "/not-a.pcap";
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not a pcap file at all, just text", f);
  std::fclose(f);
  auto bad = pcap_plan(path, 2048);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("bad magic"), std::string::npos) << bad.error();
}

TEST(Streams, InOrderLossDuplicatesAndReordering) {
  StreamTracker t(2);
  using S = StreamTracker::Seen;
  for (uint64_t q = 0; q < 10; ++q) EXPECT_EQ(t.update(0, q), S::kNew);
  EXPECT_EQ(t.counts(0).unique, 10u);
  EXPECT_EQ(t.update(0, 15), S::kNew);        // 10..14 missing
  EXPECT_EQ(t.update(0, 12), S::kReordered);  // late, not a duplicate
  EXPECT_EQ(t.update(0, 12), S::kDuplicate);
  EXPECT_EQ(t.update(0, 15), S::kDuplicate);
  EXPECT_EQ(t.update(0, 3), S::kDuplicate);
  const auto& c = t.counts(0);
  EXPECT_EQ(c.received, 15u);
  EXPECT_EQ(c.unique, 12u);
  EXPECT_EQ(c.duplicated, 3u);
  EXPECT_EQ(c.reordered, 1u);
  EXPECT_EQ(c.next, 16u);
  EXPECT_EQ(c.next - c.unique, 4u);  // 10, 11, 13, 14 lost
  EXPECT_EQ(t.counts(1).received, 0u);
}

TEST(Streams, WindowForgetsOldPositionsAfterAJump) {
  StreamTracker t(1);
  using S = StreamTracker::Seen;
  t.update(0, 0);
  t.update(0, 1);
  // A jump of more than the window clears it; the old positions must not read as seen.
  EXPECT_EQ(t.update(0, StreamTracker::kWindow * 3 + 1), S::kNew);
  EXPECT_EQ(t.update(0, StreamTracker::kWindow * 3 - 5), S::kReordered);
  EXPECT_EQ(t.update(0, StreamTracker::kWindow * 3 - 5), S::kDuplicate);
  // Older than the window: counted as reordered, never as a duplicate.
  EXPECT_EQ(t.update(0, 1), S::kReordered);
  // A jump shorter than the window clears only the skipped positions.
  StreamTracker u(1);
  for (uint64_t q = 0; q < StreamTracker::kWindow; ++q) u.update(0, q);
  EXPECT_EQ(u.update(0, StreamTracker::kWindow + 10), S::kNew);
  EXPECT_EQ(u.update(0, StreamTracker::kWindow + 3), S::kReordered);
  EXPECT_EQ(u.update(0, 20), S::kDuplicate);
}

Result<Options> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "sluice-gen");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

TEST(Options, ParsesModesAndRejectsNonsenseWithTheOptionName) {
  auto o = parse({"-l", "0,1", "--", "--mode", "flowgen", "--flows", "1000", "--rate=1e6", "--size",
                  "imix", "--ipv6", "--proto", "tcp", "--hold"});
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->mode, Mode::kFlowGen);
  EXPECT_EQ(o->flow.flows, 1000u);
  EXPECT_DOUBLE_EQ(o->rate_pps, 1e6);
  EXPECT_EQ(o->flow.sizes.size(), 12u);
  EXPECT_TRUE(o->flow.ipv6);
  EXPECT_EQ(o->flow.proto, Proto::kTcp);
  EXPECT_TRUE(o->hold);
  EXPECT_EQ(o->eal_args.size(), 3u);
  auto v6 = parse({"--", "--src", "2001:db8::5", "--dst", "2001:db8::9"});
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->flow.ipv6);
  for (auto [args, word] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--", "--mode", "bogus"}, "--mode"},
           {{"--", "--rate", "-5"}, "--rate"},
           {{"--", "--burst", "65"}, "--burst"},
           {{"--", "--size", "63"}, "--size"},
           {{"--", "--flows", "0"}, "--flows"},
           {{"--", "--src", "10.0.0.1", "--dst", "2001:db8::1"}, "same family"},
           {{"--", "--mode", "pcap"}, "--pcap"},
           {{"--", "--malformed-share", "1.5"}, "--malformed-share"},
           {{"--", "--duration"}, "needs a value"},
           {{"--no-huge"}, "EAL options go before"},
       }) {
    auto r = parse(args);
    ASSERT_FALSE(r) << word;
    EXPECT_NE(r.error().find(word), std::string::npos) << r.error();
  }
}

TEST(Options, TxOnlyIsOneTemplate) {
  auto o = parse({"--", "--mode", "txonly", "--flows", "50", "--size", "64,128"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->flow.flows, 1u);
  EXPECT_EQ(o->flow.sizes.size(), 1u);
}

}  // namespace
}  // namespace sluice::gen
