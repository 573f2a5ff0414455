#pragma once
// A worker's exact-match flow cache in front of rte_acl (what OVS-DPDK calls the EMC): the
// classify answers of flow keys seen recently, each tagged with the rule generation that gave
// it. A lookup that finds the same key bytes under the same generation skips rte_acl; anything
// else is a miss, classified by the flow table and then cached. A reload needs no flush: the
// new generation's number makes every older entry a miss.
//
// Two-way set associative: a bucket is two 64-byte entries (adjacent cache lines), written
// and read by its worker only. The key is
// FlowKey bytes [0, 40) (protocol, in_port, l4_valid, family, ports, addresses): everything
// classification reads, so a hit gives exactly the flow table's answer.
//
// Traffic with no locality (a flood of new flows) only misses, and a miss costs more than rte_acl
// alone: the hash, the probe and the insert. So the cache watches itself: when more than 3 in 4
// packets of a window (as many packets as it has entries) missed, it stands aside for the next
// kBypassWindows windows (every key straight to rte_acl, counted as bypassed), then measures
// again with lookups and inserts.
//
// Cost (TSC cycles/packet, sluice-bench-stages BM_Worker, the whole burst with 1,000 rules):
// see tools/bench/stages.cpp and the README's measured table.

#include <smmintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "lib/flow/flow_table.h"
#include "lib/sys/result.h"
#include "simd/validate.h"

namespace sluice::flow {

class FlowCache {
 public:
  static constexpr size_t kKeyBytes = 40;
  static constexpr uint32_t kDefaultEntries = config::kDefaultFlowCache;
  static constexpr uint32_t kMaxEntries = config::kMaxFlowCache;

  // entries: a power of two (2..kMaxEntries), allocated on socket. 0 is not a cache: callers
  // keep a null pointer instead.
  static Result<std::unique_ptr<FlowCache>> create(uint32_t entries, int socket);
  ~FlowCache();
  FlowCache(const FlowCache&) = delete;
  FlowCache& operator=(const FlowCache&) = delete;

  static constexpr uint32_t kBypassWindows = 8;

  // FlowTable::classify through the cache, for the rule generation numbered gen (table is its
  // table): out[i] is the table's answer for keys[i]; hashes[i] is simd::key_hash(*keys[i]),
  // which the validator gives with each key. Misses are classified in one call (per 64 keys)
  // and cached.
  struct Counts {
    uint16_t misses = 0;    // looked up and not found (then classified and cached)
    uint16_t bypassed = 0;  // not looked up: the cache stands aside (see above)
    void add(const Counts& o) noexcept {
      misses = static_cast<uint16_t>(misses + o.misses);
      bypassed = static_cast<uint16_t>(bypassed + o.bypassed);
    }
  };
  Counts classify(const FlowTable& table, uint64_t gen, const simd::FlowKey* const* keys,
                  const uint32_t* hashes, uint16_t n, uint32_t* out) noexcept;
  // The same on n keys side by side (keys[i]: a whole burst valid, as the validator wrote it).
  Counts classify(const FlowTable& table, uint64_t gen, const simd::FlowKey* keys,
                  const uint32_t* hashes, uint16_t n, uint32_t* out) noexcept;
  // The same, hashing the keys here (tests and tools; the data path has the validator's).
  Counts classify(const FlowTable& table, uint64_t gen, const simd::FlowKey* const* keys,
                  uint16_t n, uint32_t* out) noexcept;

  // The bucket of a key: the high bits of its key_hash (the bits every key bit reaches, see
  // validate.h). The compare is on the whole key, so a bucket two keys share costs a way, never
  // an answer.
  uint32_t bucket_of(const simd::FlowKey& key) const noexcept {
    return bucket_of_hash(simd::key_hash(key));
  }
  uint32_t bucket_of_hash(uint32_t hash) const noexcept {
    return static_cast<uint32_t>(uint64_t{hash} >> shift_);
  }
  void prefetch(uint32_t bucket) const noexcept { __builtin_prefetch(&buckets_[bucket]); }

  // Whether the bucket holds key under generation gen; then *result is its classify answer.
  bool lookup(uint32_t bucket, const simd::FlowKey& key, uint64_t gen,
              uint32_t* result) const noexcept {
    const Bucket& b = buckets_[bucket];
    const Probe probe(key, gen);
    if (probe.matches(b.way[0])) [[likely]] {
      *result = b.way[0].result;
      return true;
    }
    if (probe.matches(b.way[1])) {
      *result = b.way[1].result;
      return true;
    }
    return false;
  }
  // Caches a classify answer: the newest entry of a bucket is way 0, the one it replaces
  // moves to way 1 (so two flows that share a bucket both stay).
  void insert(uint32_t bucket, const simd::FlowKey& key, uint64_t gen, uint32_t result) noexcept {
    Bucket& b = buckets_[bucket];
    if (Probe(key, gen).matches(b.way[0])) return;  // a key twice in a burst: evict nothing
    if (b.way[0].gen == gen) b.way[1] = b.way[0];
    std::memcpy(b.way[0].key, &key, kKeyBytes);
    b.way[0].gen = gen;
    b.way[0].result = result;
  }

  uint32_t entries() const noexcept { return 2u << (32 - shift_); }
  // Whether the next classify stands aside (reads no hashes): then they need not be computed.
  bool bypassing() const noexcept { return bypass_left_ != 0; }

 private:
  struct alignas(64) Entry {
    uint8_t key[kKeyBytes];
    uint64_t gen;  // 0: empty (generations are numbered from 1)
    uint32_t result;
  };
  static_assert(
      sizeof(Entry) == 64 && offsetof(Entry, gen) == 40 && kKeyBytes == 40,
      "Probe compares the key's bytes [32, 40) and the generation as entry bytes [32, 48)");
  struct Bucket {
    Entry way[2];
  };

  // What an entry holding key under generation gen has in its first 48 bytes, as three
  // vectors: key bytes [0, 16), [16, 32), and [32, 40) beside the generation (the entry's bytes
  // [32, 48)). One compare of all three (SSE4.1's ptest, in the baseline every x86-64 DPDK
  // build targets) and one branch an entry.
  struct Probe {
    __m128i a, b, tail;
    Probe(const simd::FlowKey& key, uint64_t gen) noexcept {
      const auto* k = reinterpret_cast<const __m128i*>(&key);
      a = _mm_loadu_si128(k);
      b = _mm_loadu_si128(k + 1);
      tail =
          _mm_unpacklo_epi64(_mm_loadl_epi64(k + 2), _mm_cvtsi64_si128(static_cast<int64_t>(gen)));
    }
    bool matches(const Entry& e) const noexcept {
      const auto* p = reinterpret_cast<const __m128i*>(e.key);
      const __m128i x = _mm_or_si128(_mm_or_si128(_mm_xor_si128(_mm_load_si128(p), a),
                                                  _mm_xor_si128(_mm_load_si128(p + 1), b)),
                                     _mm_xor_si128(_mm_load_si128(p + 2), tail));
      return _mm_testz_si128(x, x) != 0;
    }
  };

  static constexpr uint16_t kMaxKeys = 64;  // a burst
  // At most kMaxKeys keys; key_at(i) is key i (by pointer or in an array).
  template <typename KeyAt>
  Counts classify_burst(const FlowTable& table, uint64_t gen, KeyAt key_at, const uint32_t* hashes,
                        uint16_t n, uint32_t* out) noexcept;

  FlowCache() = default;
  Bucket* buckets_ = nullptr;
  uint32_t shift_ = 32;          // 32 - log2(buckets): a hash's top bits index a bucket
  uint32_t window_packets_ = 0;  // looked up in this window
  uint32_t window_misses_ = 0;
  uint32_t bypass_left_ = 0;  // packets still to send straight to rte_acl
};

}  // namespace sluice::flow
