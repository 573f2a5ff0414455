#include "lib/capture/raw_store.h"

#include <cstring>
#include <map>

#include <fmt/format.h>

#include "lib/capture/chunk.h"
#include "lib/capture/pcapng_format.h"

namespace sluice::capture {

using namespace format;

namespace {

constexpr uint8_t kMagic[8] = {'S', 'L', 'C', 'K', 'R', 'I', 'N', 'G'};
constexpr size_t kOffVersion = 8, kOffHeaderBytes = 12, kOffStoreId = 16, kOffChunk = 24,
                 kOffSlots = 32, kOffData = 40, kOffCreated = 48, kOffCrc = kRawHeaderBytes - 4;

}  // namespace

void encode_raw_header(const RawHeader& h, uint8_t* out) noexcept {
  std::memset(out, 0, kRawHeaderBytes);
  std::memcpy(out, kMagic, sizeof kMagic);
  st32(out + kOffVersion, kRawVersion);
  st32(out + kOffHeaderBytes, kRawHeaderBytes);
  st64(out + kOffStoreId, h.store_id);
  st64(out + kOffChunk, h.chunk_bytes);
  st64(out + kOffSlots, h.slots);
  st64(out + kOffData, h.data_offset);
  st64(out + kOffCreated, h.created_ns);
  st32(out + kOffCrc, crc32c(out, kOffCrc));
}

RawHeaderRead decode_raw_header(const uint8_t* b, size_t len) {
  RawHeaderRead r;
  if (len < kRawHeaderBytes || std::memcmp(b, kMagic, sizeof kMagic) != 0) {
    r.state = RawHeaderState::kForeign;
    r.why = "no sluice raw-store header (magic SLCKRING) at offset 0";
    return r;
  }
  if (ld32(b + kOffCrc) != crc32c(b, kOffCrc)) {
    r.state = RawHeaderState::kDamaged;
    r.why = "the raw-store header's CRC-32C does not match";
    return r;
  }
  if (ld32(b + kOffVersion) != kRawVersion) {
    r.state = RawHeaderState::kVersion;
    r.why = fmt::format("raw-store header version {}; this build knows version {}",
                        ld32(b + kOffVersion), kRawVersion);
    return r;
  }
  RawHeader& h = r.header;
  h.store_id = ld64(b + kOffStoreId);
  h.chunk_bytes = ld64(b + kOffChunk);
  h.slots = ld64(b + kOffSlots);
  h.data_offset = ld64(b + kOffData);
  h.created_ns = ld64(b + kOffCreated);
  if (ld32(b + kOffHeaderBytes) != kRawHeaderBytes || h.chunk_bytes == 0 ||
      h.chunk_bytes % kChunkAlign != 0 || h.chunk_bytes > (1ull << 32) || h.slots < 2 ||
      h.data_offset < kRawHeaderBytes || h.data_offset % kChunkAlign != 0 ||
      h.slots > (UINT64_MAX - h.data_offset) / h.chunk_bytes) {
    r.state = RawHeaderState::kDamaged;
    r.why = fmt::format("raw-store header fields out of range (chunk {}, slots {}, data at {})",
                        h.chunk_bytes, h.slots, h.data_offset);
    return r;
  }
  r.state = RawHeaderState::kValid;
  return r;
}

uint64_t raw_slots(uint64_t bytes, uint64_t chunk_bytes) noexcept {
  if (chunk_bytes == 0 || bytes <= kRawHeaderBytes) return 0;
  return (bytes - kRawHeaderBytes) / chunk_bytes;
}

std::optional<uint64_t> slot_seq(const uint8_t* slot, size_t chunk_bytes, uint64_t slots,
                                 uint64_t index) {
  if (slots == 0 || chunk_bytes < kTrailerMinBytes) return std::nullopt;
  // Cheap refusals first (an unwritten slot, or an old lap's chunk): the trailer ends the slot.
  const uint32_t total = ld32(slot + chunk_bytes - 4);
  if (total < kTrailerMinBytes || total > chunk_bytes || total % 4 != 0) return std::nullopt;
  const uint8_t* t = slot + chunk_bytes - total;
  if (ld32(t) != kTrailerType || ld32(t + 4) != total) return std::nullopt;
  if (ld64(t + 16) % slots != index) return std::nullopt;
  const auto chunks = scan_chunks(slot, chunk_bytes);
  if (chunks.size() != 1 || chunks[0].state != ChunkState::kGood ||
      chunks[0].length != chunk_bytes || chunks[0].seq % slots != index) {
    return std::nullopt;
  }
  return chunks[0].seq;
}

RingPosition find_ring_position(uint64_t slots, uint64_t window,
                                const std::function<std::optional<uint64_t>(uint64_t)>& probe) {
  RingPosition pos;
  if (slots == 0) return pos;
  std::map<uint64_t, std::optional<uint64_t>> seen;
  auto seq_at = [&](uint64_t i) {
    auto [it, fresh] = seen.try_emplace(i);
    if (fresh) it->second = probe(i);
    return it->second;
  };
  bool found = false;
  uint64_t best = 0;
  uint64_t after = 0;  // the window starts here
  if (const auto s0 = seq_at(0)) {
    // Slots 0..p are in slot 0's lap, the rest in the lap before (or unwritten): find p.
    const uint64_t lap = *s0 / slots;
    uint64_t lo = 0, hi = slots;  // seq_at(lo) is in the lap; hi is past it
    while (hi - lo > 1) {
      const uint64_t mid = lo + (hi - lo) / 2;
      const auto s = seq_at(mid);
      if (s && *s / slots == lap) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    found = true;
    best = lap * slots + lo;
    after = (lo + 1) % slots;
  } else if (const auto sl = seq_at(slots - 1)) {
    // Slot 0 torn or never written although the ring went round: the last slot is the newest
    // (unless the window finds later ones).
    found = true;
    best = *sl;
    after = 0;
  } else {
    after = 1;
  }
  for (uint64_t k = 0; k < window && k < slots; ++k) {
    const uint64_t i = (after + k) % slots;
    if (const auto s = seq_at(i); s && (!found || *s > best)) {
      found = true;
      best = *s;
    }
  }
  pos.probes = seen.size();
  if (!found) return pos;
  pos.empty = false;
  pos.newest_seq = best;
  pos.next_seq = best + 1;
  if (best + 1 >= slots) {
    pos.count = slots;
    pos.first_slot = (best + 1) % slots;
  } else {
    pos.count = best + 1;
    pos.first_slot = 0;
  }
  return pos;
}

}  // namespace sluice::capture
