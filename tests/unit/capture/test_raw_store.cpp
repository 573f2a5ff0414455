// lib/capture/raw_store: the raw-device store's header block, full-slot chunks, and the binary
// search that finds where the ring left off (newest at slot 0, in the middle, just before the
// wrap, after one and two wraps, holes left by a crash), reading O(log n) slots, not all.

#include "lib/capture/raw_store.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "lib/capture/chunk.h"

namespace sluice::capture {
namespace {

TEST(RawHeader, RoundTripAndLayout) {
  RawHeader h;
  h.store_id = 0x1122334455667788ull;
  h.chunk_bytes = 65536;
  h.slots = 127;
  h.created_ns = 1796162400000000000ull;
  std::vector<uint8_t> b(kRawHeaderBytes, 0xEE);
  encode_raw_header(h, b.data());
  EXPECT_EQ(std::memcmp(b.data(), "SLCKRING", 8), 0);
  auto u32_at = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, b.data() + at, 4);
    return v;
  };
  auto u64_at = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, b.data() + at, 8);
    return v;
  };
  EXPECT_EQ(u32_at(8), 1u);
  EXPECT_EQ(u32_at(12), 4096u);
  EXPECT_EQ(u64_at(16), h.store_id);
  EXPECT_EQ(u64_at(24), 65536u);
  EXPECT_EQ(u64_at(32), 127u);
  EXPECT_EQ(u64_at(40), 4096u);
  EXPECT_EQ(u64_at(48), h.created_ns);
  for (size_t i = 56; i < kRawHeaderBytes - 4; ++i) ASSERT_EQ(b[i], 0) << i;
  EXPECT_EQ(u32_at(kRawHeaderBytes - 4), crc32c(b.data(), kRawHeaderBytes - 4));

  const RawHeaderRead r = decode_raw_header(b.data(), b.size());
  ASSERT_EQ(r.state, RawHeaderState::kValid) << r.why;
  EXPECT_EQ(r.header.store_id, h.store_id);
  EXPECT_EQ(r.header.chunk_bytes, h.chunk_bytes);
  EXPECT_EQ(r.header.slots, h.slots);
  EXPECT_EQ(r.header.created_ns, h.created_ns);
  EXPECT_EQ(r.header.slot_offset(3), 4096u + 3 * 65536);
  EXPECT_EQ(r.header.bytes(), 4096u + 127 * 65536);
}

TEST(RawHeader, ForeignDamagedAndVersion) {
  RawHeader h;
  h.chunk_bytes = 65536;
  h.slots = 10;
  std::vector<uint8_t> b(kRawHeaderBytes);
  EXPECT_EQ(decode_raw_header(b.data(), b.size()).state, RawHeaderState::kForeign);  // zeros
  encode_raw_header(h, b.data());
  EXPECT_EQ(decode_raw_header(b.data(), b.size() - 1).state, RawHeaderState::kForeign);
  // Every single-bit flip in the header block is refused.
  for (size_t bit = 0; bit < kRawHeaderBytes * 8; ++bit) {
    std::vector<uint8_t> f = b;
    f[bit / 8] ^= uint8_t(1u << (bit % 8));
    ASSERT_NE(decode_raw_header(f.data(), f.size()).state, RawHeaderState::kValid) << bit;
  }
  // Another version with a good CRC.
  std::vector<uint8_t> v = b;
  v[8] = 2;
  const uint32_t crc = crc32c(v.data(), kRawHeaderBytes - 4);
  std::memcpy(v.data() + kRawHeaderBytes - 4, &crc, 4);
  EXPECT_EQ(decode_raw_header(v.data(), v.size()).state, RawHeaderState::kVersion);
  // Fields out of range with a good CRC: one slot.
  h.slots = 1;
  encode_raw_header(h, b.data());
  EXPECT_EQ(decode_raw_header(b.data(), b.size()).state, RawHeaderState::kDamaged);
}

TEST(RawHeader, Slots) {
  EXPECT_EQ(raw_slots(8 << 20, 65536), 127u);  // 8 MiB less the header block
  EXPECT_EQ(raw_slots(4096 + 2 * 65536, 65536), 2u);
  EXPECT_EQ(raw_slots(4096 + 2 * 65536 - 1, 65536), 1u);
  EXPECT_EQ(raw_slots(4096, 65536), 0u);
}

// A ring of real full-slot chunks in memory: slot_seq on their bytes.
TEST(SlotSeq, FullSlotChunks) {
  constexpr size_t kChunk = 16384;
  constexpr uint64_t kSlots = 5;
  ChunkWriter w({"wan"}, 1500, "sluice test");
  std::vector<uint8_t> slot(kChunk);
  w.begin(slot.data(), kChunk);
  uint8_t* p = w.append(0, 1796162400000000000ull, 60, 60);
  ASSERT_NE(p, nullptr);
  std::memset(p, 0xAB, 60);
  ASSERT_EQ(w.finish(7, kChunk), kChunk);  // one small packet, padded to the whole slot
  const auto scanned = scan_chunks(slot.data(), kChunk);
  ASSERT_EQ(scanned.size(), 1u);
  EXPECT_EQ(scanned[0].state, ChunkState::kGood) << scanned[0].why;
  EXPECT_EQ(scanned[0].length, kChunk);
  EXPECT_EQ(slot_seq(slot.data(), kChunk, kSlots, 7 % kSlots), std::optional<uint64_t>(7));
  EXPECT_EQ(slot_seq(slot.data(), kChunk, kSlots, 1), std::nullopt);  // out of place
  std::vector<uint8_t> bad = slot;
  bad[200] ^= 1;  // a packet byte: the CRC
  EXPECT_EQ(slot_seq(bad.data(), kChunk, kSlots, 2), std::nullopt);
  const std::vector<uint8_t> zeros(kChunk);
  EXPECT_EQ(slot_seq(zeros.data(), kChunk, kSlots, 2), std::nullopt);
  // A chunk shorter than the slot (the directory store's kind) is not a slot's chunk.
  w.begin(slot.data(), kChunk);
  std::memset(w.append(0, 1, 60, 60), 0, 60);
  ASSERT_EQ(w.finish(2), 4096u);
  EXPECT_EQ(slot_seq(slot.data(), kChunk, kSlots, 2), std::nullopt);
}

// The ring after writing `written` chunks (seq s to slot s % n), optionally with holes.
struct Ring {
  uint64_t n;
  std::vector<std::optional<uint64_t>> slot;
  uint64_t reads = 0;
  Ring(uint64_t slots, uint64_t written) : n(slots), slot(slots) {
    for (uint64_t s = 0; s < written; ++s) slot[s % n] = s;
  }
  RingPosition find(uint64_t window = 8) {
    return find_ring_position(n, window, [this](uint64_t i) {
      ++reads;
      return slot[i];
    });
  }
};

uint64_t log2_ceil(uint64_t n) {
  return static_cast<uint64_t>(std::ceil(std::log2(static_cast<double>(n))));
}

void expect_newest(uint64_t slots, uint64_t written, uint64_t window = 8) {
  Ring r(slots, written);
  const RingPosition p = r.find(window);
  SCOPED_TRACE(testing::Message() << slots << " slots, " << written << " written");
  ASSERT_FALSE(p.empty);
  EXPECT_EQ(p.newest_seq, written - 1);
  EXPECT_EQ(p.next_seq, written);
  EXPECT_EQ(p.count, std::min(written, slots));
  EXPECT_EQ(p.first_slot, written >= slots ? written % slots : 0);
  // The binary search, slot n-1 at most, and the window: never the whole ring.
  EXPECT_LE(p.probes, log2_ceil(slots) + 2 + window);
  EXPECT_EQ(p.probes, r.reads);  // each slot read once
}

TEST(RingPosition, Empty) {
  Ring r(1000, 0);
  const RingPosition p = r.find();
  EXPECT_TRUE(p.empty);
  EXPECT_EQ(p.next_seq, 0u);
  EXPECT_EQ(p.count, 0u);
  EXPECT_LE(p.probes, 10u);
}

TEST(RingPosition, NewestAtSlotZero) {
  expect_newest(1000, 1);     // only slot 0 written
  expect_newest(1000, 1001);  // the wrap's first chunk
  expect_newest(1000, 2001);  // two wraps
}

TEST(RingPosition, NewestInTheMiddle) {
  expect_newest(1000, 500);
  expect_newest(1000, 1500);
  expect_newest(1000, 2500);  // two wraps
  expect_newest(127, 64);
}

TEST(RingPosition, NewestJustBeforeTheWrap) {
  expect_newest(1000, 999);   // slot 998, the ring not yet full
  expect_newest(1000, 1000);  // slot 999: the ring full, not yet wrapped
  expect_newest(1000, 1999);
  expect_newest(1000, 2000);  // two laps exactly
}

TEST(RingPosition, EveryPositionOfSmallRings) {
  for (uint64_t n : {2u, 3u, 7u, 16u, 127u}) {
    for (uint64_t written = 1; written <= 3 * n + 1; ++written) expect_newest(n, written);
  }
}

// A crash with writes in flight: the slot after the newest good chunk in order is torn (or
// still holds the old lap) while a later write completed. The window finds the later one.
TEST(RingPosition, HoleBeforeCompletedWrites) {
  for (uint64_t written : {10u, 1005u, 2010u}) {
    Ring r(1000, written);
    const uint64_t hole = (written - 3) % 1000;  // seq written - 3 torn
    r.slot[hole] = std::nullopt;
    const RingPosition p = r.find(8);
    EXPECT_EQ(p.newest_seq, written - 1) << written;
  }
  // The torn chunk at slot 0 after a wrap: the last slot anchors, the window goes on.
  Ring r(1000, 1003);
  r.slot[0] = std::nullopt;
  EXPECT_EQ(r.find(8).newest_seq, 1002u);
  Ring r2(1000, 1001);
  r2.slot[0] = std::nullopt;  // the only chunk of the second lap torn
  EXPECT_EQ(r2.find(8).newest_seq, 999u);
  // The first chunk of all torn, the next ones done.
  Ring r3(1000, 4);
  r3.slot[0] = std::nullopt;
  EXPECT_EQ(r3.find(8).newest_seq, 3u);
}

}  // namespace
}  // namespace sluice::capture
