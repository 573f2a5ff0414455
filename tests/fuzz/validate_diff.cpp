#include "tests/fuzz/validate_diff.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "simd/flow_hash.h"
#include "simd/validate.h"

namespace sluice::fuzz {

namespace {

using simd::CksumHint;
using simd::FlowKey;
using simd::PacketView;
using simd::Verdict;

constexpr size_t kMaxPackets = 64;
constexpr uint8_t kUntouched = 0xA5;

struct Burst {
  std::vector<std::unique_ptr<uint8_t[]>> bytes;
  std::vector<PacketView> views;
};

Burst decode(const uint8_t* data, size_t size) {
  Burst b;
  size_t at = 0;
  while (at + 4 <= size && b.views.size() < kMaxPackets) {
    const size_t want = (data[at] | size_t{data[at + 1]} << 8) % 2048;
    const uint8_t cut = data[at + 2];
    const uint8_t flags = data[at + 3];
    at += 4;
    const size_t len = std::min(want, size - at);
    const size_t readable = len - std::min<size_t>(cut, len);
    // new[] of 0 bytes is still a distinct pointer; ASan flags any read from it.
    auto copy = std::make_unique<uint8_t[]>(readable);
    if (readable != 0) std::memcpy(copy.get(), data + at, readable);
    at += len;
    PacketView v;
    v.data = copy.get();
    v.data_len = static_cast<uint32_t>(readable);
    v.frame_len = static_cast<uint32_t>(len + ((flags & 2) ? (flags >> 2) * 8u : 0u));
    v.ip_cksum = (flags & 1) ? static_cast<CksumHint>((flags >> 4) % 3) : CksumHint::kUnknown;
    b.bytes.push_back(std::move(copy));
    b.views.push_back(v);
  }
  return b;
}

std::string hex(const void* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    char b[4];
    std::snprintf(b, sizeof(b), "%02x", static_cast<const uint8_t*>(p)[i]);
    s += b;
  }
  return s;
}

[[noreturn]] void differ(simd::Kernel k, size_t i, const PacketView& v, const std::string& what) {
  std::fprintf(stderr,
               "validate: %s differs from the scalar reference on packet %zu: %s\n"
               "  data_len %u, frame_len %u, hint %d, bytes %s\n",
               std::string(simd::kernel_name(k)).c_str(), i, what.c_str(), v.data_len, v.frame_len,
               static_cast<int>(v.ip_cksum),
               hex(v.data, std::min<size_t>(v.data_len, 128)).c_str());
  std::abort();
}

bool untouched(const FlowKey& k) {
  const auto* p = reinterpret_cast<const uint8_t*>(&k);
  return std::all_of(p, p + sizeof(k), [](uint8_t b) { return b == kUntouched; });
}

// The distributor's burst hash kernels on the same frames: a frame a kernel marks hashed is one
// flow_hash_fast takes, with its hash; the scalar kernel marks every such frame, a vector one
// every such frame with at least 44 readable bytes (its loads); no bit past the burst.
void check_flow_hash(const PacketView* views, size_t n) {
  auto data = std::make_unique<const uint8_t*[]>(std::max<size_t>(n, 1));
  auto len = std::make_unique<uint32_t[]>(std::max<size_t>(n, 1));
  for (size_t i = 0; i < n; ++i) {
    data[i] = views[i].data;
    len[i] = views[i].data_len;
  }
  for (simd::Kernel k : simd::kKernels) {
    if (!simd::kernel_supported(k)) continue;
    auto hashes = std::make_unique<uint32_t[]>(std::max<size_t>(n, 1));
    const uint64_t done =
        simd::flow_hash_fn(k)(data.get(), len.get(), static_cast<unsigned>(n), hashes.get());
    if (n < 64 && (done >> n) != 0) differ(k, n, views[0], "flow hash: a bit past the burst");
    for (size_t i = 0; i < n; ++i) {
      uint32_t want = 0;
      const bool fast = simd::flow_hash_fast(data[i], len[i], &want);
      const bool marked = (done >> i & 1) != 0;
      if (marked && (!fast || hashes[i] != want)) differ(k, i, views[i], "flow hash differs");
      if (!marked && fast && (k == simd::Kernel::kScalar || len[i] >= 44)) {
        differ(k, i, views[i], "flow hash: a common frame left to the caller");
      }
    }
  }
}

// The mbuf entries (every kernel's, the scalar one included) on fake mbufs holding the views
// (each its own 64-byte allocation, the part a kernel may read): packets view_split names come
// back split with nothing written, every other one as the reference, the bytes of all n.
void check_mbuf_entries(const PacketView* views, size_t n, uint8_t in_port, const FlowKey* ref_keys,
                        const uint32_t* ref_hashes, const Verdict* ref_verdicts) {
  std::vector<std::unique_ptr<uint8_t[]>> heads;
  auto ptrs = std::make_unique<const void*[]>(std::max<size_t>(n, 1));
  uint64_t want_split = 0, want_bytes = 0;
  unsigned want_ok = 0;
  for (size_t i = 0; i < n; ++i) {
    auto m = std::make_unique<uint8_t[]>(64);
    std::memset(m.get(), static_cast<int>(0x3C ^ i), 64);  // every other field: not zero
    const PacketView& v = views[i];
    const uint16_t data_off = static_cast<uint16_t>(i * 7);
    const auto buf = reinterpret_cast<uintptr_t>(v.data) - data_off;
    // Flags beside the checksum bits; GOOD or NONE for a good hint.
    uint64_t ol_flags = (0x0123456789ABCDEFull * (i + 1)) & ~simd::mbuf::kIpCksumMask;
    if (v.ip_cksum == CksumHint::kGood) {
      ol_flags |= i % 2 ? simd::mbuf::kIpCksumGood : simd::mbuf::kIpCksumMask;
    } else if (v.ip_cksum == CksumHint::kBad) {
      ol_flags |= simd::mbuf::kIpCksumBad;
    }
    const auto data_len = static_cast<uint16_t>(v.data_len);
    std::memcpy(m.get() + simd::mbuf::kBufAddr, &buf, sizeof buf);
    std::memcpy(m.get() + simd::mbuf::kDataOff, &data_off, sizeof data_off);
    std::memcpy(m.get() + simd::mbuf::kOlFlags, &ol_flags, sizeof ol_flags);
    std::memcpy(m.get() + simd::mbuf::kPktLen, &v.frame_len, sizeof v.frame_len);
    std::memcpy(m.get() + simd::mbuf::kDataLen, &data_len, sizeof data_len);
    ptrs[i] = m.get();
    heads.push_back(std::move(m));
    want_bytes += v.frame_len;
    if (simd::view_split(v)) {
      want_split |= uint64_t{1} << i;
    } else if (ref_verdicts[i] == Verdict::kOk) {
      ++want_ok;
    }
  }
  for (simd::Kernel k : simd::kKernels) {
    if (!simd::kernel_supported(k)) continue;
    auto keys = std::make_unique<FlowKey[]>(std::max<size_t>(n, 1));
    auto verdicts = std::make_unique<Verdict[]>(std::max<size_t>(n, 1));
    auto hashes = std::make_unique<uint32_t[]>(std::max<size_t>(n, 1));
    std::memset(keys.get(), kUntouched, n * sizeof(FlowKey));
    std::memset(verdicts.get(), kUntouched, n);
    std::fill(hashes.get(), hashes.get() + n, 0xDEADBEEF);
    const simd::MbufBurst got = simd::mbuf_kernel_fn(k)(
        ptrs.get(), static_cast<uint16_t>(n), in_port, keys.get(), hashes.get(), verdicts.get());
    for (size_t i = 0; i < n; ++i) {
      if (want_split >> i & 1) {
        if (static_cast<uint8_t>(verdicts[i]) != kUntouched || !untouched(keys[i]) ||
            hashes[i] != 0xDEADBEEF) {
          differ(k, i, views[i], "mbuf entry: a split packet's outputs were written");
        }
        continue;
      }
      if (verdicts[i] != ref_verdicts[i]) {
        differ(k, i, views[i],
               "mbuf entry: " + std::string(simd::verdict_name(verdicts[i])) + " instead of " +
                   std::string(simd::verdict_name(ref_verdicts[i])));
      }
      const bool ok = verdicts[i] == Verdict::kOk;
      if (ok ? std::memcmp(&keys[i], &ref_keys[i], sizeof(FlowKey)) != 0 : !untouched(keys[i])) {
        differ(k, i, views[i], "mbuf entry: key " + hex(&keys[i], sizeof(FlowKey)));
      }
      if (hashes[i] != (ok ? ref_hashes[i] : 0xDEADBEEF)) {
        differ(k, i, views[i], "mbuf entry: flow hash differs");
      }
    }
    if (got.split != want_split || got.bytes != want_bytes || got.nb_ok != want_ok) {
      std::fprintf(
          stderr, "validate: %s mbuf entry: split %llx bytes %llu kOk %u, want %llx %llu %u\n",
          std::string(simd::kernel_name(k)).c_str(), static_cast<unsigned long long>(got.split),
          static_cast<unsigned long long>(got.bytes), unsigned{got.nb_ok},
          static_cast<unsigned long long>(want_split), static_cast<unsigned long long>(want_bytes),
          want_ok);
      std::abort();
    }
  }
}

}  // namespace

size_t check_validate_input(const uint8_t* data, size_t size) {
  const Burst b = decode(data, size);
  const size_t n = b.views.size();
  // Exactly sized arrays (heap, so ASan sees reads and writes past them).
  auto views = std::make_unique<PacketView[]>(std::max<size_t>(n, 1));
  std::copy(b.views.begin(), b.views.end(), views.get());
  auto ref_keys = std::make_unique<FlowKey[]>(std::max<size_t>(n, 1));
  auto ref_verdicts = std::make_unique<Verdict[]>(std::max<size_t>(n, 1));
  std::memset(ref_keys.get(), kUntouched, n * sizeof(FlowKey));
  // The ingress port every key carries: from the input, so the corpus covers several.
  const uint8_t in_port = size != 0 ? data[size - 1] : 0;
  auto ref_hashes = std::make_unique<uint32_t[]>(std::max<size_t>(n, 1));
  const uint16_t ref_ok =
      simd::validate_burst_scalar(views.get(), static_cast<uint16_t>(n), in_port, ref_keys.get(),
                                  ref_hashes.get(), ref_verdicts.get());
  for (size_t i = 0; i < n; ++i) {
    if (ref_verdicts[i] == Verdict::kOk &&
        (ref_keys[i].in_port != in_port || ref_hashes[i] != simd::key_hash(ref_keys[i]))) {
      differ(simd::Kernel::kScalar, i, views[i], "in_port or key_hash not as given");
    }
  }
  for (simd::Kernel k : simd::kKernels) {
    if (k == simd::Kernel::kScalar || !simd::kernel_supported(k)) continue;
    auto keys = std::make_unique<FlowKey[]>(std::max<size_t>(n, 1));
    auto verdicts = std::make_unique<Verdict[]>(std::max<size_t>(n, 1));
    auto hashes = std::make_unique<uint32_t[]>(std::max<size_t>(n, 1));
    std::memset(keys.get(), kUntouched, n * sizeof(FlowKey));
    const uint16_t ok = simd::kernel_fn(k)(views.get(), static_cast<uint16_t>(n), in_port,
                                           keys.get(), hashes.get(), verdicts.get());
    for (size_t i = 0; i < n; ++i) {
      if (verdicts[i] != ref_verdicts[i]) {
        differ(k, i, views[i],
               std::string(simd::verdict_name(verdicts[i])) + " instead of " +
                   std::string(simd::verdict_name(ref_verdicts[i])));
      }
      if (verdicts[i] == Verdict::kOk &&
          std::memcmp(&keys[i], &ref_keys[i], sizeof(FlowKey)) != 0) {
        differ(k, i, views[i],
               "key " + hex(&keys[i], sizeof(FlowKey)) + " instead of " +
                   hex(&ref_keys[i], sizeof(FlowKey)));
      }
      if (verdicts[i] == Verdict::kOk && hashes[i] != ref_hashes[i]) {
        differ(k, i, views[i], "flow hash differs");
      }
      if (verdicts[i] != Verdict::kOk && !untouched(keys[i])) {
        differ(k, i, views[i], "the key of a dropped packet was written");
      }
    }
    if (ok != ref_ok) {
      std::fprintf(stderr, "validate: %s returns %u kOk packets, the scalar reference %u\n",
                   std::string(simd::kernel_name(k)).c_str(), unsigned{ok}, unsigned{ref_ok});
      std::abort();
    }
  }
  check_mbuf_entries(views.get(), n, in_port, ref_keys.get(), ref_hashes.get(), ref_verdicts.get());
  check_flow_hash(views.get(), n);
  return n;
}

}  // namespace sluice::fuzz
