// lib/capture/chunk: the CRC, the writer's byte layout, and scan_chunks on good, damaged and
// hostile input (CONTRACT "Capture store").

#include "lib/capture/chunk.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/capture/segment_builder.h"

namespace sluice::capture {
namespace {

using test::add_chunk;
using test::kT0;
using test::packets;

uint32_t u32_at(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
uint16_t u16_at(const std::vector<uint8_t>& b, size_t at) {
  uint16_t v;
  std::memcpy(&v, b.data() + at, 2);
  return v;
}
uint64_t u64_at(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}

TEST(Crc32c, CheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // 32 zero bytes: the iSCSI test vector of RFC 3720 B.4.
  const std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(ChunkWriter, LayoutOfATinyChunk) {
  ChunkWriter w({"p0"}, 128, "sluice 0.1.0");
  EXPECT_EQ(w.header_bytes(), 88u);
  std::vector<uint8_t> b(4096, 0xEE);
  w.begin(b.data(), b.size());
  const uint64_t ts = 0x0000000123456789ull;
  uint8_t* at = w.append(0, ts, 5, 60);
  ASSERT_EQ(at, b.data() + 88 + 28);
  std::memcpy(at, "ABCDE", 5);
  EXPECT_EQ(w.packets(), 1u);
  EXPECT_EQ(w.used(), 128u);
  ASSERT_EQ(w.finish(7), 4096u);

  // Section Header Block.
  EXPECT_EQ(u32_at(b, 0), 0x0A0D0D0Au);
  EXPECT_EQ(u32_at(b, 4), 48u);
  EXPECT_EQ(u32_at(b, 8), 0x1A2B3C4Du);
  EXPECT_EQ(u16_at(b, 12), 1u);
  EXPECT_EQ(u16_at(b, 14), 0u);
  EXPECT_EQ(u64_at(b, 16), ~uint64_t{0});
  EXPECT_EQ(u16_at(b, 24), 4u);   // shb_userappl
  EXPECT_EQ(u16_at(b, 26), 12u);  // its length
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&b[28]), 12), "sluice 0.1.0");
  EXPECT_EQ(u32_at(b, 40), 0u);  // opt_endofopt
  EXPECT_EQ(u32_at(b, 44), 48u);
  // Interface Description Block.
  EXPECT_EQ(u32_at(b, 48), 1u);
  EXPECT_EQ(u32_at(b, 52), 40u);
  EXPECT_EQ(u16_at(b, 56), 1u);  // LINKTYPE_ETHERNET
  EXPECT_EQ(u16_at(b, 58), 0u);
  EXPECT_EQ(u32_at(b, 60), 128u);  // snaplen
  EXPECT_EQ(u16_at(b, 64), 2u);    // if_name
  EXPECT_EQ(u16_at(b, 66), 2u);
  EXPECT_EQ(b[68], 'p');
  EXPECT_EQ(b[69], '0');
  EXPECT_EQ(u16_at(b, 70), 0u);  // padding
  EXPECT_EQ(u16_at(b, 72), 9u);  // if_tsresol
  EXPECT_EQ(u16_at(b, 74), 1u);
  EXPECT_EQ(b[76], 9u);
  EXPECT_EQ(b[77], 0u);
  EXPECT_EQ(u16_at(b, 78), 0u);
  EXPECT_EQ(u32_at(b, 80), 0u);  // opt_endofopt
  EXPECT_EQ(u32_at(b, 84), 40u);
  // Enhanced Packet Block.
  EXPECT_EQ(u32_at(b, 88), 6u);
  EXPECT_EQ(u32_at(b, 92), 40u);
  EXPECT_EQ(u32_at(b, 96), 0u);  // interface
  EXPECT_EQ(u32_at(b, 100), 0x1u);
  EXPECT_EQ(u32_at(b, 104), 0x23456789u);
  EXPECT_EQ(u32_at(b, 108), 5u);
  EXPECT_EQ(u32_at(b, 112), 60u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&b[116]), 5), "ABCDE");
  EXPECT_EQ(b[121], 0u);
  EXPECT_EQ(b[122], 0u);
  EXPECT_EQ(b[123], 0u);
  EXPECT_EQ(u32_at(b, 124), 40u);
  // SLCK trailer.
  EXPECT_EQ(u32_at(b, 128), 0x80534C43u);
  EXPECT_EQ(u32_at(b, 132), 4096u - 128u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&b[136]), 4), "SLCK");
  EXPECT_EQ(u32_at(b, 140), 1u);
  EXPECT_EQ(u64_at(b, 144), 7u);
  EXPECT_EQ(u64_at(b, 152), ts);
  EXPECT_EQ(u64_at(b, 160), ts);
  EXPECT_EQ(u32_at(b, 168), 1u);
  EXPECT_EQ(u32_at(b, 172), 128u);
  EXPECT_EQ(u32_at(b, 176), crc32c(b.data(), 128));
  for (size_t i = 180; i < 4092; ++i) ASSERT_EQ(b[i], 0u) << "padding at " << i;
  EXPECT_EQ(u32_at(b, 4092), 4096u - 128u);

  const auto chunks = scan_chunks(b.data(), b.size());
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].state, ChunkState::kGood) << chunks[0].why;
  EXPECT_EQ(chunks[0].seq, 7u);
}

TEST(ChunkWriter, EmptyChunkIsGood) {
  ChunkWriter w({"a", "b"}, 1518, "sluice 0.1.0");
  std::vector<uint8_t> b(w.min_chunk_bytes());
  w.begin(b.data(), b.size());
  EXPECT_TRUE(w.empty());
  const size_t n = w.finish(0);
  EXPECT_EQ(n, 4096u);
  const auto chunks = scan_chunks(b.data(), n);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].state, ChunkState::kGood) << chunks[0].why;
  EXPECT_EQ(chunks[0].first_ns, 0u);
  EXPECT_EQ(chunks[0].packets, 0u);
  EXPECT_EQ(chunk_interfaces(b.data(), n), (std::vector<std::string>{"a", "b"}));
}

TEST(ChunkWriter, AppendRefusesWhenFull) {
  ChunkWriter w({"p0"}, 2000, "sluice 0.1.0");
  EXPECT_EQ(w.min_chunk_bytes(), 4096u);  // 88 + 2032 + 56 fits 4096
  std::vector<uint8_t> b(8192);
  w.begin(b.data(), b.size());
  size_t accepted = 0;
  while (w.append(0, kT0 + accepted, 100, 100) != nullptr) ++accepted;
  // Refused exactly when one more would leave no room for the trailer.
  EXPECT_GT(w.used() + epb_bytes(100) + kTrailerMinBytes, b.size());
  EXPECT_LE(w.used() + kTrailerMinBytes, b.size());
  EXPECT_EQ(w.packets(), accepted);
  // A smaller packet that still fits is taken, up to the exact last byte.
  const size_t room = b.size() - w.used() - kTrailerMinBytes;
  if (room >= kEpbOverhead) {
    const auto caplen = static_cast<uint32_t>((room - kEpbOverhead) & ~size_t{3});
    EXPECT_NE(w.append(0, kT0 + accepted, caplen, caplen), nullptr);
    EXPECT_EQ(w.used() + kTrailerMinBytes, b.size());
    EXPECT_EQ(w.append(0, kT0, 0, 0), nullptr);
  }
  EXPECT_EQ(w.finish(3), 8192u);
  const auto chunks = scan_chunks(b.data(), b.size());
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].state, ChunkState::kGood) << chunks[0].why;
  EXPECT_EQ(chunks[0].length, 8192u);
}

// room_for is what the capture lcore takes off its rings when no buffer is left behind the
// current one: it must be exactly what append() then accepts, never more.
TEST(ChunkWriter, RoomForIsWhatAppendAccepts) {
  ChunkWriter w({"p0"}, 1518, "sluice 0.1.0");
  std::vector<uint8_t> b(16384);
  for (const uint32_t caplen : {60u, 61u, 1518u}) {
    w.begin(b.data(), b.size());
    for (uint32_t pre = 0; pre < 7; ++pre) ASSERT_NE(w.append(0, kT0, 100, 100), nullptr);
    const size_t room = w.room_for(caplen);
    size_t accepted = 0;
    while (w.append(0, kT0 + accepted, caplen, caplen) != nullptr) ++accepted;
    EXPECT_EQ(room, accepted) << "caplen " << caplen;
    EXPECT_EQ(w.room_for(caplen), 0u);
  }
}

TEST(ChunkWriter, MinChunkBytesHoldsOneSnaplenPacket) {
  ChunkWriter w({"eth0", "eth1"}, 9000, "sluice 0.1.0");
  std::vector<uint8_t> b(w.min_chunk_bytes());
  EXPECT_EQ(b.size() % kChunkAlign, 0u);
  w.begin(b.data(), b.size());
  EXPECT_NE(w.append(1, kT0, 9000, 9000), nullptr);
  EXPECT_LE(w.finish(0), b.size());
}

// Three chunks of different lengths, packets crossing 4096 boundaries, one nearly empty.
struct Segment {
  std::vector<uint8_t> bytes;
  std::vector<size_t> starts, lengths;
};
// random_payload: packet bytes from a PRNG instead of letters, so a walk sent astray by a
// damaged length meets arbitrary values.
Segment three_chunks(bool random_payload = false) {
  Segment s;
  ChunkWriter w({"eth0", "eth1"}, 256, "sluice 0.1.0");
  const size_t caps[] = {8192, 4096, 12288};
  const size_t counts[] = {30, 3, 50};
  uint64_t ts = kT0;
  std::mt19937 rng(7);
  for (int i = 0; i < 3; ++i) {
    s.starts.push_back(s.bytes.size());
    auto p = packets(counts[i], ts);
    if (random_payload) {
      for (auto& tp : p) {
        for (size_t j = 14; j < tp.frame.size(); ++j) tp.frame[j] = static_cast<uint8_t>(rng());
      }
    }
    const size_t n = add_chunk(s.bytes, w, caps[i], 40 + i, p);
    s.lengths.push_back(n);
    ts += 1000000;
  }
  return s;
}

TEST(ScanChunks, GoodSegment) {
  const Segment s = three_chunks();
  ASSERT_EQ(s.lengths[0], 8192u);
  ASSERT_EQ(s.lengths[1], 4096u);
  ASSERT_GE(s.lengths[2], 8192u);
  const auto chunks = scan_chunks(s.bytes.data(), s.bytes.size());
  ASSERT_EQ(chunks.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(chunks[i].state, ChunkState::kGood) << chunks[i].why;
    EXPECT_EQ(chunks[i].offset, s.starts[i]);
    EXPECT_EQ(chunks[i].length, s.lengths[i]);
    EXPECT_EQ(chunks[i].seq, 40u + i);
  }
  EXPECT_EQ(chunks[0].packets, 30u);
  EXPECT_EQ(chunks[0].first_ns, kT0);
  EXPECT_EQ(chunks[0].last_ns, kT0 + 29 * 1000);
}

TEST(ScanChunks, CorruptTornUnwritten) {
  Segment s = three_chunks();
  s.bytes[s.starts[1] + 200] ^= 0x10;            // a packet byte of chunk 1
  s.bytes.resize(s.bytes.size() + 3 * 4096, 0);  // preallocated, never written
  std::vector<uint8_t> cut = s.bytes;
  cut.resize(s.starts[2] + 5000);  // chunk 2 cut short
  const auto c = scan_chunks(s.bytes.data(), s.bytes.size());
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0].state, ChunkState::kGood);
  EXPECT_EQ(c[1].state, ChunkState::kCorrupt);
  EXPECT_NE(c[1].why.find("CRC"), std::string::npos) << c[1].why;
  EXPECT_EQ(c[1].seq, 41u);
  EXPECT_EQ(c[2].state, ChunkState::kGood);
  EXPECT_EQ(c[3].state, ChunkState::kUnwritten);
  EXPECT_EQ(c[3].length, 3u * 4096u);  // one entry for the whole run

  const auto t = scan_chunks(cut.data(), cut.size());
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[2].state, ChunkState::kTorn);
  EXPECT_EQ(t[2].offset, s.starts[2]);
  EXPECT_EQ(t[2].length, 5000u);
  EXPECT_FALSE(t[2].why.empty());
}

TEST(ScanChunks, TornChunkThenResynchronises) {
  // A chunk whose write stopped after its first 4096 bytes (the rest still zero), then a
  // good one: the zeros are part of the torn chunk's span or unwritten, the next is good.
  Segment s = three_chunks();
  std::memset(s.bytes.data() + 4096, 0, 4096);  // second half of chunk 0 lost
  const auto c = scan_chunks(s.bytes.data(), s.bytes.size());
  ASSERT_GE(c.size(), 3u);
  EXPECT_EQ(c[0].state, ChunkState::kTorn);
  EXPECT_EQ(c[0].offset, 0u);
  EXPECT_EQ(c[c.size() - 2].state, ChunkState::kGood);
  EXPECT_EQ(c[c.size() - 2].offset, s.starts[1]);
  EXPECT_EQ(c.back().state, ChunkState::kGood);
}

TEST(ScanChunks, NotASegment) {
  const std::string text = "hello, this is not a capture segment\n";
  const auto c = scan_chunks(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].state, ChunkState::kTorn);
  EXPECT_EQ(c[0].length, text.size());
  EXPECT_TRUE(scan_chunks(nullptr, 0).empty());
}

TEST(ScanChunks, SequenceMustContinue) {
  ChunkWriter w({"eth0"}, 256, "sluice 0.1.0");
  std::vector<uint8_t> seg;
  add_chunk(seg, w, 4096, 10, packets(2, kT0, 1));
  add_chunk(seg, w, 4096, 12, packets(2, kT0, 1));  // 11 is missing
  const auto c = scan_chunks(seg.data(), seg.size());
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].state, ChunkState::kGood);  // the first chunk of a segment: any seq
  EXPECT_EQ(c[1].state, ChunkState::kCorrupt);
  EXPECT_NE(c[1].why.find("sequence"), std::string::npos) << c[1].why;
}

// Acceptance test 4: any single-bit flip in a closed segment makes exactly its own chunk
// corrupt and leaves every other chunk good. Every bit of the segment is tried.
class EveryBitFlip : public testing::TestWithParam<bool> {};

TEST_P(EveryBitFlip, HitsOnlyItsChunk) {
  const Segment s = three_chunks(GetParam());
  std::vector<uint8_t> b = s.bytes;
  size_t failures = 0;
  for (size_t byte = 0; byte < b.size(); ++byte) {
    const size_t k = byte < s.starts[1] ? 0 : byte < s.starts[2] ? 1 : 2;
    for (int bit = 0; bit < 8; ++bit) {
      b[byte] ^= static_cast<uint8_t>(1u << bit);
      const auto c = scan_chunks(b.data(), b.size());
      bool ok = c.size() == 3;
      for (size_t i = 0; ok && i < 3; ++i) {
        ok = c[i].offset == s.starts[i] && c[i].length == s.lengths[i] &&
             c[i].state == (i == k ? ChunkState::kCorrupt : ChunkState::kGood);
      }
      if (!ok && ++failures <= 10) {
        std::string got;
        for (const auto& e : c) {
          got += " [" + std::to_string(e.offset) + "+" + std::to_string(e.length) + " " +
                 std::string(chunk_state_name(e.state)) + " " + e.why + "]";
        }
        ADD_FAILURE() << "bit " << bit << " of byte " << byte << " (chunk " << k << "):" << got;
      }
      b[byte] ^= static_cast<uint8_t>(1u << bit);
    }
  }
  EXPECT_EQ(failures, 0u);
}
INSTANTIATE_TEST_SUITE_P(Payload, EveryBitFlip, testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Random" : "Letters"; });

TEST(ChunkReaders, InterfacesAndPackets) {
  ChunkWriter w({"eth0", "uplink-1"}, 64, "sluice 0.1.0");
  std::vector<uint8_t> seg;
  const auto in = packets(5, kT0, 2, 50);
  add_chunk(seg, w, 4096, 0, in);
  EXPECT_EQ(chunk_interfaces(seg.data(), seg.size()),
            (std::vector<std::string>{"eth0", "uplink-1"}));
  std::vector<PacketRef> out;
  for_each_packet(seg.data(), seg.size(), [&](const PacketRef& p) { out.push_back(p); });
  ASSERT_EQ(out.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out[i].port, in[i].port);
    EXPECT_EQ(out[i].ts_ns, in[i].ts_ns);
    EXPECT_EQ(out[i].origlen, in[i].frame.size());
    EXPECT_EQ(out[i].caplen, std::min<size_t>(64, in[i].frame.size()));
    EXPECT_EQ(std::memcmp(out[i].data, in[i].frame.data(), out[i].caplen), 0);
  }
  const std::string text = "not pcapng";
  EXPECT_TRUE(chunk_interfaces(reinterpret_cast<const uint8_t*>(text.data()), text.size()).empty());
}

// Random damage and random bytes never read out of bounds (ASan builds check that) and every
// byte of the input is accounted for by exactly one entry.
TEST(ScanChunks, HostileInputIsCoveredExactly) {
  const Segment s = three_chunks();
  std::mt19937_64 rng(42);
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint8_t> b = s.bytes;
    const size_t keep = rng() % (b.size() + 1);
    b.resize(keep);
    for (int i = 0; i < 8 && !b.empty(); ++i) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    std::vector<uint8_t> exact(b.begin(), b.end());  // exact size: ASan sees any overrun
    const auto c = scan_chunks(exact.data(), exact.size());
    uint64_t at = 0;
    for (const auto& e : c) {
      ASSERT_EQ(e.offset, at);
      ASSERT_GT(e.length, 0u);
      at += e.length;
      for_each_packet(exact.data() + e.offset, e.length, [](const PacketRef&) {});
      (void)chunk_interfaces(exact.data() + e.offset, e.length);
    }
    ASSERT_EQ(at, exact.size());
  }
}

}  // namespace
}  // namespace sluice::capture
