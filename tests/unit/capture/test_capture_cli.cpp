// tools/capture (sluice-capture) run on a generated store: exit codes, what each command
// prints, the export read back with libpcap, and tshark, tcpdump and capinfos reading both a
// segment as it is and the export when they are installed. Also an image file of a raw-device
// store (a wrapped ring), which needs no root.
//   test_capture_cli PATH/TO/sluice-capture

#include <pcap/pcap.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "lib/capture/raw_store.h"
#include "lib/capture/store.h"
#include "tests/unit/capture/segment_builder.h"

namespace sluice::capture {
namespace {

namespace fs = std::filesystem;
using test::add_chunk;
using test::kT0;
using test::packets;

std::string g_exe;

struct Ran {
  int rc = -1;
  std::string out;  // stdout and stderr
};

Ran sh(const std::string& cmd) {
  Ran r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string q(const std::string& s) {
  return "'" + s + "'";
}

Ran tool(const std::string& args) {
  return sh(q(g_exe) + " " + args);
}

bool have(const std::string& program) {
  return sh("command -v " + program + " >/dev/null").rc == 0;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

struct Read {
  std::vector<uint64_t> ts_ns;
  std::vector<int> link;
  std::string error;
};

// Reads a pcap or pcapng file with libpcap at nanosecond precision.
Read read_pcap(const std::string& path) {
  Read r;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (p == nullptr) {
    r.error = err;
    return r;
  }
  pcap_pkthdr* h;
  const u_char* d;
  while (pcap_next_ex(p, &h, &d) == 1) {
    r.ts_ns.push_back(static_cast<uint64_t>(h->ts.tv_sec) * 1000000000ull +
                      static_cast<uint64_t>(h->ts.tv_usec));
    r.link.push_back(pcap_datalink(p));
  }
  pcap_close(p);
  return r;
}

class CaptureCli : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-cli-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    store_ = dir_ + "/store";
    fs::create_directory(store_);
    ChunkWriter w({"eth0", "eth1"}, 256, "sluice 0.1.0");
    // Segment 0, closed: 3 chunks of 40 packets; segment 1, .part: 2 good chunks, a torn one
    // and preallocated zeros.
    std::vector<uint8_t> seg;
    for (int i = 0; i < 3; ++i) add_chunk(seg, w, 8192, i, packets(40, kT0 + i * 100000));
    closed_ = store_ + "/" + segment_name(kT0, 0, false);
    write_file(closed_, seg);
    std::vector<uint8_t> part;
    for (int i = 3; i < 5; ++i) add_chunk(part, w, 8192, i, packets(40, kT0 + i * 100000));
    std::vector<uint8_t> torn;
    add_chunk(torn, w, 8192, 5, packets(40, kT0 + 5 * 100000));
    torn.resize(3000);
    part.insert(part.end(), torn.begin(), torn.end());
    part.resize(part.size() + 8192, 0);
    part_ = store_ + "/" + segment_name(kT0 + 300000, 1, true);
    write_file(part_, part);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_, store_, closed_, part_;
};

TEST_F(CaptureCli, UsageAndHelp) {
  EXPECT_EQ(tool("").rc, 2);
  const Ran h = tool("--help");
  EXPECT_EQ(h.rc, 0);
  EXPECT_NE(h.out.find("usage: sluice-capture list PATH"), std::string::npos) << h.out;
  EXPECT_EQ(tool("frobnicate x").rc, 2);
  EXPECT_EQ(tool("verify").rc, 2);
  EXPECT_EQ(tool("verify --bogus " + q(store_)).rc, 2);
  EXPECT_EQ(tool("export " + q(store_)).rc, 2);  // no -o
  EXPECT_EQ(tool("export " + q(store_) + " -o x --from yesterday").rc, 2);
  EXPECT_EQ(tool("export " + q(store_) + " -o " + q(dir_ + "/x") + " --filter 'udp port'").rc, 2);
}

TEST_F(CaptureCli, VerifyReportsEveryChunk) {
  const Ran all = tool("verify " + q(store_));
  EXPECT_EQ(all.rc, 1) << all.out;
  EXPECT_NE(all.out.find("torn"), std::string::npos) << all.out;
  EXPECT_NE(all.out.find("unwritten"), std::string::npos) << all.out;
  EXPECT_NE(all.out.find("verify: 2 files, 7 chunks: 5 good, 0 corrupt, 1 torn, 1 unwritten"),
            std::string::npos)
      << all.out;
  const Ran one = tool("verify " + q(closed_));
  EXPECT_EQ(one.rc, 0) << one.out;
  EXPECT_NE(one.out.find("offset 16384  length 8192  good       seq 2  packets 40"),
            std::string::npos)
      << one.out;
  EXPECT_NE(one.out.find("all good"), std::string::npos);

  const Ran js = tool("verify --json " + q(store_));
  EXPECT_EQ(js.rc, 1);
  EXPECT_NE(js.out.find("\"totals\":{\"files\":2,\"chunks\":7,\"good\":5,\"corrupt\":0,"
                        "\"torn\":1,\"unwritten\":1,\"packets\":200}"),
            std::string::npos)
      << js.out;
  EXPECT_NE(js.out.find("\"ok\":false"), std::string::npos);
  if (have("jq")) {
    const Ran jq = sh(q(g_exe) + " verify --json " + q(store_) +
                      " | jq -e '.files[1].chunks[2].state == \"torn\"'");
    EXPECT_EQ(jq.rc, 0) << jq.out;
  }
}

TEST_F(CaptureCli, HostileInputs) {
  const std::string text = dir_ + "/notes.txt";
  std::ofstream(text) << "this is not a capture segment\n";
  const Ran t = tool("verify " + q(text));
  EXPECT_EQ(t.rc, 1) << t.out;
  EXPECT_NE(t.out.find("not a sluice capture segment: " + text), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("torn"), std::string::npos);
  const Ran e = tool("list " + q(dir_ + "/empty"));
  EXPECT_EQ(e.rc, 2);
  EXPECT_NE(e.out.find("no such file or directory"), std::string::npos) << e.out;
  fs::create_directory(dir_ + "/empty");
  const Ran n = tool("verify " + q(dir_ + "/empty"));
  EXPECT_EQ(n.rc, 2);
  EXPECT_NE(n.out.find("no segments in " + dir_ + "/empty"), std::string::npos) << n.out;
  // A segment cut at an odd length, and an empty file.
  const std::string cut = dir_ + "/cut.pcapng";
  fs::copy_file(closed_, cut);
  fs::resize_file(cut, 12345);
  const Ran c = tool("verify " + q(cut));
  EXPECT_EQ(c.rc, 1) << c.out;
  EXPECT_NE(c.out.find("offset 8192  length 4153  torn"), std::string::npos) << c.out;
  std::ofstream(dir_ + "/zero.pcapng").close();
  const Ran z = tool("verify " + q(dir_ + "/zero.pcapng"));
  EXPECT_EQ(z.rc, 1) << z.out;
  EXPECT_NE(z.out.find("empty file"), std::string::npos) << z.out;
  const Ran x = tool("export " + q(text) + " " + q(cut) + " -o " + q(dir_ + "/x.pcapng"));
  EXPECT_EQ(x.rc, 1) << x.out;
  EXPECT_EQ(read_pcap(dir_ + "/x.pcapng").ts_ns.size(), 40u);
}

TEST_F(CaptureCli, ListShowsSegments) {
  const Ran l = tool("list " + q(store_));
  EXPECT_EQ(l.rc, 1) << l.out;  // the .part has a torn chunk
  EXPECT_NE(l.out.find(segment_name(kT0, 0, false)), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("2026-12-01T22:00:00.000000000Z"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("closed, all good"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("part, 2 of 4 chunks not good"), std::string::npos) << l.out;
}

TEST_F(CaptureCli, ExportFiltersAndSorts) {
  const std::string out = dir_ + "/out.pcapng";
  const Ran all = tool("export " + q(store_) + " -o " + q(out));
  EXPECT_EQ(all.rc, 1) << all.out;  // the torn chunk was skipped, and said so
  EXPECT_NE(all.out.find("skipped 2 chunks"), std::string::npos) << all.out;
  Read r = read_pcap(out);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.ts_ns.size(), 200u);
  EXPECT_TRUE(std::is_sorted(r.ts_ns.begin(), r.ts_ns.end()));
  EXPECT_EQ(r.ts_ns.front(), kT0);
  EXPECT_EQ(r.link.front(), DLT_EN10MB);

  // Files given newest first: the export is still in time order.
  ASSERT_EQ(tool("export " + q(part_) + " " + q(closed_) + " -o " + q(out)).rc, 1);
  r = read_pcap(out);
  EXPECT_EQ(r.ts_ns.size(), 200u);
  EXPECT_TRUE(std::is_sorted(r.ts_ns.begin(), r.ts_ns.end()));

  const Ran ok = tool("export " + q(closed_) + " -o " + q(out));
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_EQ(read_pcap(out).ts_ns.size(), 120u);

  // Chunk i holds kT0 + i*100us + j*1us: [kT0 + 10us, kT0 + 20us) is packets 10..19 of chunks
  // 0 (chunk 1 starts at +100us).
  EXPECT_EQ(tool("export " + q(store_) + " -o " + q(out) +
                 " --from 2026-12-01T22:00:00.00001Z --to 1796162400.00002")
                .rc,
            1);
  r = read_pcap(out);
  ASSERT_EQ(r.ts_ns.size(), 10u);
  EXPECT_EQ(r.ts_ns.front(), kT0 + 10000);
  EXPECT_EQ(r.ts_ns.back(), kT0 + 19000);

  tool("export " + q(closed_) + " -o " + q(out) + " --port eth1");
  EXPECT_EQ(read_pcap(out).ts_ns.size(), 60u);
  // A port the store has no interface of is a usage error naming the ones it has, and
  // writes nothing.
  const std::string none = dir_ + "/none.pcapng";
  const Ran nosuch = tool("export " + q(closed_) + " -o " + q(none) + " --port nosuch");
  EXPECT_EQ(nosuch.rc, 2) << nosuch.out;
  EXPECT_NE(nosuch.out.find("--port nosuch: no such interface in the input (its interfaces: "
                            "eth0, eth1)"),
            std::string::npos)
      << nosuch.out;
  EXPECT_FALSE(fs::exists(none));
  // A port the store has, with no packet left by the filter: an empty export, exit 0.
  const Ran empty = tool("export " + q(closed_) + " -o " + q(out) + " --port eth0 --filter tcp");
  EXPECT_EQ(empty.rc, 0) << empty.out;
  r = read_pcap(out);
  EXPECT_TRUE(r.error.empty()) << r.error;  // readable though empty: it still has IDBs
  EXPECT_EQ(r.ts_ns.size(), 0u);
  // Packet i of a chunk goes to UDP port 1000 + i.
  const Ran f = tool("export " + q(closed_) + " -o " + q(out) + " --filter 'udp dst port 1003'");
  EXPECT_EQ(f.rc, 0) << f.out;
  EXPECT_EQ(read_pcap(out).ts_ns.size(), 3u);
}

TEST_F(CaptureCli, RepairThenAllGood) {
  const Ran r = tool("repair " + q(store_));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("next seq 5, next segment 2"), std::string::npos) << r.out;
  const Ran v = tool("verify " + q(store_));
  EXPECT_EQ(v.rc, 0) << v.out;
  EXPECT_EQ(tool("repair " + q(closed_)).rc, 2);
}

// Real readers: a segment as it is (each chunk a pcapng section) and the export.
TEST_F(CaptureCli, ReadersReadSegmentsAndExports) {
  const std::string out = dir_ + "/out.pcapng";
  ASSERT_EQ(tool("export " + q(closed_) + " -o " + q(out)).rc, 0);
  const Read seg = read_pcap(closed_);
  EXPECT_TRUE(seg.error.empty()) << seg.error;
  EXPECT_EQ(seg.ts_ns.size(), 120u);  // libpcap reads on through every section
  int ran = 0;
  for (const std::string& f : {closed_, out}) {
    if (have("tshark")) {
      ++ran;
      // (tshark's warning about running as root goes to stderr, dropped here.)
      const Ran t = sh("{ tshark -r " + q(f) +
                       " -T fields -e frame.time_epoch -e udp.dstport 2>/dev/null; }");
      EXPECT_EQ(t.rc, 0) << t.out;
      EXPECT_EQ(std::count(t.out.begin(), t.out.end(), '\n'), 120) << t.out;
      EXPECT_NE(t.out.find("1796162400.000000000\t1000"), std::string::npos) << t.out;
    }
    if (have("tcpdump")) {
      ++ran;
      const Ran t = sh("tcpdump -nn -r " + q(f) + " 2>/dev/null | wc -l");
      EXPECT_EQ(t.rc, 0);
      EXPECT_EQ(std::stoi(t.out), 120) << t.out;
    }
    if (have("capinfos")) {
      ++ran;
      const Ran t = sh("capinfos -c -M " + q(f));
      EXPECT_EQ(t.rc, 0) << t.out;
      EXPECT_NE(t.out.find("120"), std::string::npos) << t.out;
    }
  }
  if (ran == 0) GTEST_SKIP() << "tshark, tcpdump and capinfos not installed";
}

// A raw-device store's image: 4 slots of 8 KiB after the header, seqs 0..5 written (wrapped
// once: slots 0..3 hold 4, 5, 2, 3), 10 packets each.
TEST(CaptureCliRaw, WrappedRingImage) {
  constexpr size_t kChunk = 8192;
  constexpr uint64_t kSlots = 4;
  std::string tmpl = (fs::temp_directory_path() / "sluice-cli-raw-XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  RawHeader h;
  h.chunk_bytes = kChunk;
  h.slots = kSlots;
  std::vector<uint8_t> img(h.bytes());
  encode_raw_header(h, img.data());
  ChunkWriter w({"eth0", "eth1"}, 256, "sluice 0.1.0");
  for (uint64_t seq = 0; seq < 6; ++seq) {
    uint8_t* slot = img.data() + h.slot_offset(seq % kSlots);
    w.begin(slot, kChunk);
    for (const auto& p : packets(10, kT0 + seq * 100000)) {
      const auto len = static_cast<uint32_t>(p.frame.size());
      std::memcpy(w.append(p.port, p.ts_ns, len, len), p.frame.data(), len);
    }
    ASSERT_EQ(w.finish(seq, kChunk), kChunk);
  }
  const std::string image = dir + "/ring.img";
  write_file(image, img);

  const Ran v = tool("verify " + q(image));
  EXPECT_EQ(v.rc, 0) << v.out;
  EXPECT_NE(v.out.find("4 chunks: 4 good"), std::string::npos) << v.out;
  // Ring order, oldest first: seqs 2, 3, 4, 5 (slots 2, 3, 0, 1).
  size_t at = 0;
  for (const char* seq : {"seq 2 ", "seq 3 ", "seq 4 ", "seq 5 "}) {
    const size_t next = v.out.find(seq, at);
    ASSERT_NE(next, std::string::npos) << seq << " in order in\n" << v.out;
    at = next;
  }
  const Ran l = tool("list " + q(image));
  EXPECT_EQ(l.rc, 0) << l.out;
  EXPECT_NE(l.out.find("raw ring, all good"), std::string::npos) << l.out;
  const std::string out = dir + "/out.pcapng";
  const Ran e = tool("export " + q(image) + " -o " + q(out));
  EXPECT_EQ(e.rc, 0) << e.out;
  const Read r = read_pcap(out);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.ts_ns.size(), 40u);
  EXPECT_TRUE(std::is_sorted(r.ts_ns.begin(), r.ts_ns.end()));
  EXPECT_EQ(r.ts_ns.front(), kT0 + 2 * 100000);  // seqs 0 and 1 were overwritten
  const Ran rep = tool("repair " + q(image));
  EXPECT_EQ(rep.rc, 2) << rep.out;
  EXPECT_NE(rep.out.find("needs no repair"), std::string::npos) << rep.out;

  // Slot 1's seq 5 becomes 13 (bit 3): still 1 mod 4 and the largest, so only the other slots'
  // votes show it is wrong.
  uint8_t* slot1 = img.data() + h.slot_offset(1);
  uint32_t total;
  std::memcpy(&total, slot1 + kChunk - 4, 4);
  slot1[kChunk - total + 16] ^= 8;
  write_file(image, img);
  const Ran bad = tool("verify " + q(image));
  EXPECT_EQ(bad.rc, 1) << bad.out;
  EXPECT_NE(bad.out.find("sequence number 13 out of line"), std::string::npos) << bad.out;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace sluice::capture

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: test_capture_cli PATH/TO/sluice-capture\n");
    return 2;
  }
  sluice::capture::g_exe = std::filesystem::absolute(argv[1]).string();
  return RUN_ALL_TESTS();
}
