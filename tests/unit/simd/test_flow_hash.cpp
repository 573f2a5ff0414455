// The distributor's burst hash kernels (simd/flow_hash.h), one per run (--kernel=NAME), against
// flow_hash_fast, the scalar definition of the common frame's hash (test_distributor checks
// that one against the whole parse). Every frame a kernel marks done has flow_hash_fast's hash;
// every frame it leaves is one flow_hash_fast does not take, or (a vector kernel) one with
// fewer than 44 readable bytes. Frames and the hash array end right before a PROT_NONE page,
// so a read or write past them faults.
//
//   test_flow_hash --kernel=avx2 [gtest options]
// Exits 77 (meson: skipped) with a SKIPPED line when the CPU lacks the kernel.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "simd/flow_hash.h"
#include "tests/unit/simd/frames.h"
#include "tests/unit/simd/kernel_main.h"

namespace sluice::simd {
namespace {

using namespace frames;

Kernel g_kernel = Kernel::kScalar;
FlowHashBurstFn g_fn = nullptr;

constexpr unsigned kMaxBurst = 64;
constexpr uint32_t kVectorLoads = 44;  // what the AVX2 kernel reads: bytes 12..43

struct Frame {
  Bytes bytes;
  uint32_t len;  // readable
};

class Harness {
 public:
  Harness() : hashes_(kMaxBurst * sizeof(uint32_t)) {
    for (unsigned i = 0; i < kMaxBurst; ++i)
      frames_.push_back(std::make_unique<GuardedBuffer>(4096));
  }

  // Returns how many frames the kernel hashed; every wrong answer is a failure naming `what`.
  unsigned check(const std::vector<Frame>& burst, const std::string& what) {
    const auto n = static_cast<unsigned>(burst.size());
    std::vector<const uint8_t*> data(n);
    std::vector<uint32_t> len(n);
    for (unsigned i = 0; i < n; ++i) {
      data[i] = frames_[i]->place(burst[i].bytes, burst[i].len);
      len[i] = burst[i].len;
    }
    uint32_t* hashes = reinterpret_cast<uint32_t*>(hashes_.last(n * sizeof(uint32_t)));
    const uint64_t done = g_fn(data.data(), len.data(), n, hashes);
    if (n < 64) {
      EXPECT_EQ(done >> n, 0u) << what << ": a bit past the burst of " << n;
    }
    unsigned hashed = 0;
    for (unsigned i = 0; i < n; ++i) {
      uint32_t want = 0;
      const bool fast = flow_hash_fast(data[i], len[i], &want);
      const bool marked = (done >> i & 1) != 0;
      const bool must = fast && (g_kernel == Kernel::kScalar || len[i] >= kVectorLoads);
      if (marked && !fast) {
        ADD_FAILURE() << what << ": frame " << i << " of " << n << " (" << len[i]
                      << " bytes) marked hashed, but it is not the common frame";
      } else if (marked && hashes[i] != want) {
        ADD_FAILURE() << what << ": frame " << i << " of " << n << ": hash " << hashes[i]
                      << ", flow_hash_fast " << want;
      } else if (must && !marked) {
        ADD_FAILURE() << what << ": frame " << i << " of " << n << " (" << len[i]
                      << " bytes) left to the caller, though the kernel takes it";
      }
      hashed += marked ? 1 : 0;
    }
    return hashed;
  }

 private:
  std::vector<std::unique_ptr<GuardedBuffer>> frames_;
  GuardedBuffer hashes_;
};

Frame whole(Bytes b) {
  const auto n = static_cast<uint32_t>(b.size());
  return {std::move(b), n};
}

V4 v4(uint8_t proto, std::mt19937& rng) {
  V4 h;
  h.proto = proto;
  for (auto& b : h.src) b = static_cast<uint8_t>(rng());
  for (auto& b : h.dst) b = static_cast<uint8_t>(rng());
  return h;
}

// One random frame: mostly the common one (UDP or TCP, random addresses and ports), the rest
// every kind the kernel must leave or must not be fooled by.
Frame random_frame(std::mt19937& rng) {
  const auto port = [&rng] { return static_cast<uint16_t>(rng()); };
  switch (rng() % 12) {
    case 0:
    case 1:
    case 2:
      return whole(cat({eth(0x0800), ipv4(v4(kUdp, rng), udp(port(), port(), rng() % 40))}));
    case 3:
    case 4:
      return whole(cat({eth(0x0800), ipv4(v4(kTcp, rng), tcp(port(), port()))}));
    case 5: {  // the common frame cut short: every length around the kernels' bounds
      Frame f = whole(cat({eth(0x0800), ipv4(v4(kUdp, rng), udp(port(), port(), 30))}));
      f.len = 30 + rng() % 20;
      return f;
    }
    case 6: {  // a fragment (MF, or an offset), DF alone is not one
      V4 h = v4(kUdp, rng);
      const uint16_t kinds[] = {0x2000, 0x0001, 0x1FFF, 0x4000, 0x8000};
      h.frag = kinds[rng() % 5];
      return whole(cat({eth(0x0800), ipv4(h, udp(port(), port(), 8))}));
    }
    case 7: {  // options move the ports
      V4 h = v4(kTcp, rng);
      h.options = Bytes(4 * (1 + rng() % 3), 1);
      return whole(cat({eth(0x0800), ipv4(h, tcp(port(), port()))}));
    }
    case 8:  // tagged
      return whole(cat({eth(0x0800, {0x8100}), ipv4(v4(kUdp, rng), udp(port(), port(), 8))}));
    case 9: {  // other protocols over IPv4
      const uint8_t protos[] = {kIcmp, kSctp, kGre, 0, 255};
      const uint8_t p = protos[rng() % 5];
      return whole(cat({eth(0x0800), ipv4(v4(p, rng), l4_header(p, 20))}));
    }
    case 10:
      return whole(v6_with(udp(port(), port(), 8), kUdp));
    default: {  // bytes 12..43 of a common frame, one of them changed at random
      Frame f = whole(cat({eth(0x0800), ipv4(v4(kUdp, rng), udp(port(), port(), 20))}));
      f.bytes[12 + rng() % 32] ^= static_cast<uint8_t>(1 + rng() % 255);
      return f;
    }
  }
}

TEST(FlowHashBurst, EveryBurstLengthAgreesWithTheScalarDefinition) {
  Harness h;
  std::mt19937 rng(7);
  unsigned hashed = 0, frames = 0;
  for (unsigned round = 0; round < 40; ++round) {
    for (unsigned n = 0; n <= kMaxBurst; ++n) {
      std::vector<Frame> burst;
      for (unsigned i = 0; i < n; ++i) burst.push_back(random_frame(rng));
      hashed +=
          h.check(burst, "round " + std::to_string(round) + ", burst of " + std::to_string(n));
      frames += n;
    }
  }
  // Most frames are the common one: a kernel that left everything to its caller would pass the
  // checks above only with the `must` test, so count too.
  EXPECT_GT(hashed, frames / 3) << hashed << " of " << frames << " hashed";
}

TEST(FlowHashBurst, WholeBurstsOfTheCommonFrame) {
  Harness h;
  std::mt19937 rng(11);
  for (unsigned n : {8u, 32u, 64u}) {
    std::vector<Frame> burst;
    for (unsigned i = 0; i < n; ++i) {
      burst.push_back(
          whole(cat({eth(0x0800), ipv4(v4(i % 2 ? kTcp : kUdp, rng),
                                       i % 2 ? tcp(1000 + i, 80) : udp(53, 2000 + i, 18))})));
    }
    EXPECT_EQ(h.check(burst, "common frames, burst of " + std::to_string(n)), n);
  }
}

TEST(FlowHashBurst, BothDirectionsHashAlike) {
  Harness h;
  std::mt19937 rng(5);
  std::vector<Frame> burst;
  for (unsigned i = 0; i < 32; ++i) {
    V4 a = v4(i % 2 ? kTcp : kUdp, rng);
    const auto sp = static_cast<uint16_t>(rng()), dp = static_cast<uint16_t>(rng());
    V4 b = a;
    std::swap(b.src, b.dst);
    burst.push_back(whole(cat({eth(0x0800), ipv4(a, i % 2 ? tcp(sp, dp) : udp(sp, dp, 18))})));
    burst.push_back(whole(cat({eth(0x0800), ipv4(b, i % 2 ? tcp(dp, sp) : udp(dp, sp, 18))})));
  }
  std::vector<const uint8_t*> data;
  std::vector<uint32_t> len;
  for (const Frame& f : burst) {
    data.push_back(f.bytes.data());
    len.push_back(f.len);
  }
  std::vector<uint32_t> hashes(64);
  ASSERT_EQ(g_fn(data.data(), len.data(), 64, hashes.data()), ~uint64_t{0});
  for (unsigned i = 0; i < 64; i += 2) {
    EXPECT_EQ(hashes[i], hashes[i + 1]) << "flow " << i / 2;
    if (i >= 2) {
      EXPECT_NE(hashes[i], hashes[i - 2]) << "flows " << i / 2 - 1 << " and " << i / 2;
    }
  }
  (void)h;
}

}  // namespace
}  // namespace sluice::simd

int main(int argc, char** argv) {
  using namespace sluice::simd;
  return kernel_tests::kernel_test_main(argc, argv, "flow hash tests", [](Kernel k) {
    g_kernel = k;
    g_fn = flow_hash_fn(k);
  });
}
