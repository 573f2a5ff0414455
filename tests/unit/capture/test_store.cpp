// lib/capture/store: segment names, listing, repair after a crash, retention.

#include "lib/capture/store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/capture/segment_builder.h"

namespace sluice::capture {
namespace {

namespace fs = std::filesystem;
using test::add_chunk;
using test::kT0;
using test::packets;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-store-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// chunks good chunks of 8192 bytes with seq from seq0.
std::vector<uint8_t> segment(uint64_t seq0, int chunks) {
  ChunkWriter w({"eth0", "eth1"}, 256, "sluice 0.1.0");
  std::vector<uint8_t> seg;
  for (int i = 0; i < chunks; ++i) {
    const size_t n = add_chunk(seg, w, 8192, seq0 + i, packets(40, kT0 + (seq0 + i) * 1000000));
    EXPECT_EQ(n, 8192u);
  }
  return seg;
}

TEST(SegmentName, UtcTimeAndNumber) {
  EXPECT_EQ(segment_name(kT0 + 999999999, 42, false), "sluice-20261201T220000Z-000042.pcapng");
  EXPECT_EQ(segment_name(kT0 + 61ull * 1000000000, 7, true),
            "sluice-20261201T220101Z-000007.pcapng.part");
  EXPECT_EQ(segment_name(0, 1234567, false), "sluice-19700101T000000Z-1234567.pcapng");
}

TEST(ListSegments, ParsesSortsAndIgnoresOthers) {
  TempDir d;
  write_file(d / segment_name(kT0, 10, false), {1, 2, 3});
  write_file(d / segment_name(kT0 + 5000000000ull, 2, false), {1});
  write_file(d / segment_name(kT0, 11, true), {});
  write_file(d / "notes.txt", {1});
  write_file(d / "sluice-2026120XT220000Z-000001.pcapng", {1});
  write_file(d / "sluice-20261201T220000Z-.pcapng", {1});
  write_file(d / "sluice-20261201T220000Z-000003.pcap", {1});
  fs::create_directory(d / segment_name(kT0, 4, false));  // a directory, not a segment
  auto r = list_segments(d.path());
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].number, 2u);
  EXPECT_EQ((*r)[0].first_s, kT0 / 1000000000 + 5);
  EXPECT_EQ((*r)[1].number, 10u);
  EXPECT_EQ((*r)[1].size, 3u);
  EXPECT_FALSE((*r)[1].part);
  EXPECT_EQ((*r)[2].number, 11u);
  EXPECT_TRUE((*r)[2].part);
  EXPECT_EQ((*r)[2].path, d / segment_name(kT0, 11, true));

  auto missing = list_segments(d / "nope");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find(d / "nope"), std::string::npos) << missing.error();
}

TEST(Repair, CutsTornAndUnwrittenTailsAndDeletesEmptyParts) {
  TempDir d;
  // Segment 1 closed: seq 0..2. Segment 2 .part: seq 3..5 good, a torn chunk, zeros.
  write_file(d / segment_name(kT0, 1, false), segment(0, 3));
  std::vector<uint8_t> part = segment(3, 3);
  const size_t good = part.size();
  std::vector<uint8_t> torn = segment(6, 1);
  torn.resize(5000);
  part.insert(part.end(), torn.begin(), torn.end());
  part.resize(part.size() + 3 * 4096 + 100, 0);
  write_file(d / segment_name(kT0, 2, true), part);
  // Segment 3 .part: only zeros (preallocated, crash before the first write).
  write_file(d / segment_name(kT0, 3, true), std::vector<uint8_t>(64 * 1024, 0));

  auto r = repair(d.path());
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->repaired, 1u);
  EXPECT_EQ(r->removed, 1u);
  EXPECT_EQ(r->bytes_cut, part.size() - good + 64 * 1024);
  EXPECT_EQ(r->next_seq, 6u);
  EXPECT_EQ(r->next_segment, 4u);
  EXPECT_EQ(r->store_bytes, segment(0, 3).size() + good);
  EXPECT_EQ(r->lines.size(), 2u);
  EXPECT_FALSE(fs::exists(d / segment_name(kT0, 2, true)));
  EXPECT_FALSE(fs::exists(d / segment_name(kT0, 3, true)));
  ASSERT_TRUE(fs::exists(d / segment_name(kT0, 2, false)));
  EXPECT_EQ(fs::file_size(d / segment_name(kT0, 2, false)), good);

  // Repair again: nothing to do, same continuation.
  auto again = repair(d.path());
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(again->repaired, 0u);
  EXPECT_EQ(again->removed, 0u);
  EXPECT_EQ(again->next_seq, 6u);
  EXPECT_EQ(again->next_segment, 3u);
}

TEST(Repair, KeepsOnlyTheGoodRunFromTheStart) {
  TempDir d;
  std::vector<uint8_t> part = segment(0, 3);
  part[8192 + 300] ^= 1;  // chunk 1 corrupt: chunk 2 is not kept even though it is good
  write_file(d / segment_name(kT0, 0, true), part);
  auto r = repair(d.path());
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->repaired, 1u);
  EXPECT_EQ(fs::file_size(d / segment_name(kT0, 0, false)), 8192u);
  EXPECT_EQ(r->next_seq, 1u);
  EXPECT_EQ(r->next_segment, 1u);
}

TEST(Repair, EmptyStoreStartsAtZero) {
  TempDir d;
  auto r = repair(d.path());
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->next_seq, 0u);
  EXPECT_EQ(r->next_segment, 0u);
  EXPECT_FALSE(repair(d / "missing"));
}

TEST(Repair, ClosedSegmentWithDamagedLastChunkStillGivesItsSeq) {
  TempDir d;
  std::vector<uint8_t> seg = segment(10, 3);
  seg[seg.size() - 1000] ^= 4;  // the last chunk's trailer padding
  write_file(d / segment_name(kT0, 5, false), seg);
  auto r = repair(d.path());
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->next_seq, 12u);  // chunk seq 11 is the last good one
  EXPECT_EQ(r->next_segment, 6u);
}

TEST(Retention, DeletesOldestClosedOnly) {
  TempDir d;
  for (uint64_t n = 1; n <= 5; ++n) {
    write_file(d / segment_name(kT0, n, false), std::vector<uint8_t>(1000));
  }
  write_file(d / segment_name(kT0, 6, true), std::vector<uint8_t>(5000));
  // 5000 bytes closed, limit 2500: delete 1, 2, 3 (oldest first).
  auto r = enforce_retention(d.path(), 2500, 100);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, 3000u);
  EXPECT_FALSE(fs::exists(d / segment_name(kT0, 3, false)));
  EXPECT_TRUE(fs::exists(d / segment_name(kT0, 4, false)));
  EXPECT_TRUE(fs::exists(d / segment_name(kT0, 6, true)));
  // keep_from protects 5 and later even over the limit.
  auto k = enforce_retention(d.path(), 0, 5);
  ASSERT_TRUE(k) << k.error();
  EXPECT_EQ(*k, 1000u);
  EXPECT_FALSE(fs::exists(d / segment_name(kT0, 4, false)));
  EXPECT_TRUE(fs::exists(d / segment_name(kT0, 5, false)));
  auto none = enforce_retention(d.path(), 1000, 100);
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, 0u);
}

}  // namespace
}  // namespace sluice::capture
