#include "lib/flow/flow_cache.h"

#include <rte_malloc.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace sluice::flow {

Result<std::unique_ptr<FlowCache>> FlowCache::create(uint32_t entries, int socket) {
  if (entries < 2 || entries > kMaxEntries || (entries & (entries - 1)) != 0) {
    return Error{
        fmt::format("flow cache: {} entries; expected a power of two 2..{}", entries, kMaxEntries)};
  }
  std::unique_ptr<FlowCache> c(new FlowCache());
  const uint32_t buckets = entries / 2;
  c->buckets_ = static_cast<Bucket*>(
      rte_zmalloc_socket("sluice_flow_cache", sizeof(Bucket) * buckets, 128, socket));
  if (c->buckets_ == nullptr) {
    return Error{fmt::format("flow cache: cannot allocate {} KiB on socket {}",
                             sizeof(Bucket) * buckets / 1024, socket)};
  }
  c->shift_ = static_cast<uint32_t>(32 - __builtin_ctz(buckets));
  return c;
}

FlowCache::~FlowCache() {
  rte_free(buckets_);
}

FlowCache::Counts FlowCache::classify(const FlowTable& table, uint64_t gen,
                                      const simd::FlowKey* const* keys, uint16_t n,
                                      uint32_t* out) noexcept {
  Counts total;
  std::array<uint32_t, kMaxKeys> hashes;
  for (uint16_t base = 0; base < n; base += kMaxKeys) {
    const auto count = static_cast<uint16_t>(std::min<unsigned>(n - base, kMaxKeys));
    for (uint16_t i = 0; i < count; ++i) hashes[i] = simd::key_hash(*keys[base + i]);
    total.add(classify_burst(
        table, gen, [k = keys + base](unsigned i) -> const simd::FlowKey& { return *k[i]; },
        hashes.data(), count, out + base));
  }
  return total;
}

FlowCache::Counts FlowCache::classify(const FlowTable& table, uint64_t gen,
                                      const simd::FlowKey* const* keys, const uint32_t* hashes,
                                      uint16_t n, uint32_t* out) noexcept {
  // n is at most a burst; larger calls are taken a burst at a time rather than overrun.
  Counts total;
  for (uint16_t base = 0; base < n; base += kMaxKeys) {
    const auto count = static_cast<uint16_t>(std::min<unsigned>(n - base, kMaxKeys));
    total.add(classify_burst(
        table, gen, [k = keys + base](unsigned i) -> const simd::FlowKey& { return *k[i]; },
        hashes + base, count, out + base));
  }
  return total;
}

FlowCache::Counts FlowCache::classify(const FlowTable& table, uint64_t gen,
                                      const simd::FlowKey* keys, const uint32_t* hashes, uint16_t n,
                                      uint32_t* out) noexcept {
  Counts total;
  for (uint16_t base = 0; base < n; base += kMaxKeys) {
    const auto count = static_cast<uint16_t>(std::min<unsigned>(n - base, kMaxKeys));
    total.add(classify_burst(
        table, gen, [k = keys + base](unsigned i) -> const simd::FlowKey& { return k[i]; },
        hashes + base, count, out + base));
  }
  return total;
}

template <typename KeyAt>
FlowCache::Counts FlowCache::classify_burst(const FlowTable& table, uint64_t gen, KeyAt key_at,
                                            const uint32_t* hashes, uint16_t n,
                                            uint32_t* out) noexcept {
  constexpr uint16_t kMax = kMaxKeys;
  if (bypass_left_ != 0) [[unlikely]] {
    bypass_left_ -= std::min<uint32_t>(bypass_left_, n);
    std::array<const simd::FlowKey*, kMax> all;
    for (uint16_t i = 0; i < n; ++i) all[i] = &key_at(i);
    table.classify(all.data(), n, out);
    return {0, n};
  }
  std::array<uint32_t, kMax> slot;
  for (uint16_t i = 0; i < n; ++i) {
    slot[i] = bucket_of_hash(hashes[i]);
    prefetch(slot[i]);
  }
  std::array<const simd::FlowKey*, kMax> miss;
  std::array<uint8_t, kMax> miss_at;
  uint16_t nb_miss = 0;
  for (uint16_t i = 0; i < n; ++i) {
    const simd::FlowKey& key = key_at(i);
    if (!lookup(slot[i], key, gen, &out[i])) {
      miss[nb_miss] = &key;
      miss_at[nb_miss++] = static_cast<uint8_t>(i);
    }
  }
  window_packets_ += n;
  window_misses_ += nb_miss;
  if (window_packets_ >= entries()) [[unlikely]] {
    if (window_misses_ > window_packets_ / 4 * 3) bypass_left_ = kBypassWindows * entries();
    window_packets_ = window_misses_ = 0;
  }
  if (nb_miss == 0) [[likely]]
    return {};
  std::array<uint32_t, kMax> res;
  table.classify(miss.data(), nb_miss, res.data());
  for (uint16_t j = 0; j < nb_miss; ++j) {
    out[miss_at[j]] = res[j];
    insert(slot[miss_at[j]], *miss[j], gen, res[j]);
  }
  return {nb_miss, 0};
}

}  // namespace sluice::flow
