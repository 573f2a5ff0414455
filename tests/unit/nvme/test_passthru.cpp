// lib/nvme passthrough on the host, without an NVMe device: opening what is not one fails
// clearly, the Identify parsers, range checks, and the queue pair's namespace path up to
// the kernel (a namespace slot backed by a regular file: bad ranges are refused at write(),
// a command the file cannot take fails in its callback). The real device is tested in a VM
// (tests/nvme).

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "lib/nvme/passthru.h"
#include "lib/nvme/queue_pair.h"

namespace sluice::nvme {
namespace {

// Empty when io_uring works here, else why not: the tests that need it skip.
std::string no_uring() {
  auto ok = uring_available();
  if (ok) return {};
  std::printf("SKIPPED: io_uring unavailable: %s\n", ok.error().c_str());
  return ok.error();
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string temp_file() {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("sluice-passthru-" + std::to_string(getpid())))
          .string();
  FILE* f = std::fopen(path.c_str(), "w");
  if (f != nullptr) {
    std::fputs("not a namespace\n", f);
    std::fclose(f);
  }
  return path;
}

TEST(OpenPassthru, RegularFileIsNotAnNvmeDevice) {
  const std::string path = temp_file();
  auto ns = open_passthru(path);
  std::remove(path.c_str());
  ASSERT_FALSE(ns.ok());
  EXPECT_TRUE(contains(ns.error(), "a regular file, not an NVMe device")) << ns.error();
  EXPECT_TRUE(contains(ns.error(), "/dev/ngXnY")) << ns.error();
}

TEST(OpenPassthru, DevNullIsNotAnNvmeDevice) {
  auto ns = open_passthru("/dev/null");
  ASSERT_FALSE(ns.ok());
  EXPECT_TRUE(contains(ns.error(), "/dev/null is not an NVMe device")) << ns.error();
  EXPECT_TRUE(contains(ns.error(), "NVME_IOCTL_ID")) << ns.error();
}

TEST(OpenPassthru, DirectoryAndMissingPath) {
  auto dir = open_passthru("/");
  ASSERT_FALSE(dir.ok());
  EXPECT_TRUE(contains(dir.error(), "a directory, not an NVMe device")) << dir.error();
  auto missing = open_passthru("/dev/ng-sluice-no-such-device");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.error(), "does not exist")) << missing.error();
}

// Identify Namespace data with NSZE lbas, format `format` selected, LBADS per format.
std::vector<uint8_t> identify_ns(uint64_t lbas, uint8_t format, std::vector<uint8_t> lbads) {
  std::vector<uint8_t> d(kIdentifySize, 0);
  for (int i = 0; i < 8; ++i) d[i] = static_cast<uint8_t>(lbas >> (8 * i));
  d[25] = static_cast<uint8_t>(lbads.size() - 1);
  d[26] = static_cast<uint8_t>((format & 0x0f) | ((format >> 4) << 5));
  for (size_t i = 0; i < lbads.size(); ++i) d[128 + 4 * i + 2] = lbads[i];
  return d;
}

TEST(IdentifyParse, NamespaceFormatFromFlbas) {
  auto d = identify_ns(1000, 1, {9, 12});
  auto f = parse_identify_namespace(d.data(), d.size());
  ASSERT_TRUE(f.ok()) << f.error();
  EXPECT_EQ(f->lbas, 1000u);
  EXPECT_EQ(f->lba_size, 4096u);
  EXPECT_EQ(f->format, 1u);
  EXPECT_EQ(f->metadata, 0u);

  auto d0 = identify_ns(1u << 20, 0, {9, 12});
  auto f0 = parse_identify_namespace(d0.data(), d0.size());
  ASSERT_TRUE(f0.ok()) << f0.error();
  EXPECT_EQ(f0->lba_size, 512u);

  // FLBAS bits 6:5 are the high bits of the index (format 17 of 18).
  std::vector<uint8_t> many(18, 9);
  many[17] = 12;
  auto d17 = identify_ns(8, 17, many);
  auto f17 = parse_identify_namespace(d17.data(), d17.size());
  ASSERT_TRUE(f17.ok()) << f17.error();
  EXPECT_EQ(f17->format, 17u);
  EXPECT_EQ(f17->lba_size, 4096u);

  d[128 + 4 * 1] = 8;  // 8 metadata bytes a block
  auto fm = parse_identify_namespace(d.data(), d.size());
  ASSERT_TRUE(fm.ok());
  EXPECT_EQ(fm->metadata, 8u);
}

TEST(IdentifyParse, BadNamespaceData) {
  auto beyond = identify_ns(1000, 2, {9, 12});  // selects format 2 of 2
  auto f = parse_identify_namespace(beyond.data(), beyond.size());
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(contains(f.error(), "LBA format 2 of 2")) << f.error();
  auto empty = identify_ns(0, 0, {9});
  EXPECT_FALSE(parse_identify_namespace(empty.data(), empty.size()).ok());
  auto tiny = identify_ns(10, 0, {8});
  EXPECT_FALSE(parse_identify_namespace(tiny.data(), tiny.size()).ok());
  EXPECT_FALSE(parse_identify_namespace(beyond.data(), 100).ok());
}

TEST(IdentifyParse, Mdts) {
  std::vector<uint8_t> d(kIdentifySize, 0);
  auto none = parse_identify_mdts(d.data(), d.size());
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);
  d[77] = 7;
  auto m = parse_identify_mdts(d.data(), d.size());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, 512u * 1024);
  d[77] = 5;
  EXPECT_EQ(*parse_identify_mdts(d.data(), d.size()), 128u * 1024);
  EXPECT_FALSE(parse_identify_mdts(d.data(), 10).ok());
}

Namespace fake_namespace(int fd) {
  Namespace ns;
  ns.fd = fd;
  ns.path = "fake";
  ns.nsid = 1;
  ns.lba_size = 4096;
  ns.lba_shift = 12;
  ns.lbas = 256;
  ns.size = 256 * 4096;
  ns.max_transfer = 64 * 1024;
  return ns;
}

TEST(CheckRange, AlignmentAndBounds) {
  const Namespace ns = fake_namespace(-1);
  EXPECT_TRUE(check_range(ns, 0, 4096).ok());
  EXPECT_TRUE(check_range(ns, ns.size - 8192, 8192).ok());
  auto odd = check_range(ns, 512, 4096);
  ASSERT_FALSE(odd.ok());
  EXPECT_TRUE(contains(odd.error(), "not aligned to the 4096-byte LBA size")) << odd.error();
  EXPECT_FALSE(check_range(ns, 0, 100).ok());
  EXPECT_FALSE(check_range(ns, 0, 0).ok());
  auto past = check_range(ns, ns.size - 4096, 8192);
  ASSERT_FALSE(past.ok());
  EXPECT_TRUE(contains(past.error(), "past the namespace")) << past.error();
}

TEST(CheckRange, NamesTheOperation) {
  const Namespace ns = fake_namespace(-1);
  auto r = check_range(ns, 512, 4096, "read");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error(), "read of 4096 bytes at offset 512")) << r.error();
}

TEST(BlockDeviceOf, GenericNameAndSymlink) {
  EXPECT_EQ(block_device_of("/dev/ng0n1"), "/dev/nvme0n1");
  EXPECT_EQ(block_device_of("/dev/ng12n3"), "/dev/nvme12n3");
  EXPECT_EQ(block_device_of("/dev/nvme0n1"), "");
  EXPECT_EQ(block_device_of("/dev/null"), "");
  // A udev alias: the real device's name counts, not the link's.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("sluice-ng-" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    FILE* f = std::fopen((dir / "ng3n2").c_str(), "w");
    if (f) std::fclose(f);
  }
  fs::create_symlink(dir / "ng3n2", dir / "capture-disk");
  EXPECT_EQ(block_device_of((dir / "capture-disk").string()), (dir / "nvme3n2").string());
  fs::remove_all(dir);
}

TEST(SyncIo, ErrorsNameTheCommandAndRange) {
  // A namespace whose fd is a regular file: the passthrough ioctl is refused (ENOTTY), and
  // each call says which command failed where; bad ranges are refused before any ioctl.
  const std::string path = temp_file();
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  Namespace ns = fake_namespace(fd);
  std::vector<uint8_t> buf(8192);
  auto r = read_sync(ns, buf.data(), 4096, 4096);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error(), "Read at offset 4096 failed")) << r.error();
  auto w = write_sync(ns, buf.data(), 4096, 0, true);
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(contains(w.error(), "Write (FUA) at offset 0 failed")) << w.error();
  auto z = zero_sync(ns, 0, 8192);
  ASSERT_FALSE(z.ok());
  EXPECT_TRUE(contains(z.error(), "Write Zeroes at offset 0 failed")) << z.error();
  auto f = flush_sync(ns);
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(contains(f.error(), "Flush")) << f.error();
  auto bad = read_sync(ns, buf.data(), 100, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.error(), "read of 100 bytes")) << bad.error();
  ::close(fd);
  std::remove(path.c_str());
}

struct Result1 {
  int calls = 0;
  Completion c;
};

void record(void* arg, const Completion& c) noexcept {
  auto* r = static_cast<Result1*>(arg);
  ++r->calls;
  r->c = c;
}

TEST(PassthruQueuePair, NamespaceNeedsPassthruRing) {
  if (auto why = no_uring(); !why.empty()) GTEST_SKIP() << why;
  auto qp = QueuePair::create(QueuePairOptions{});
  ASSERT_TRUE(qp.ok()) << qp.error();
  const int fd = ::open("/dev/null", O_RDWR);
  ASSERT_GE(fd, 0);
  auto slot = (*qp)->add_namespace(fake_namespace(fd));
  ::close(fd);
  ASSERT_FALSE(slot.ok());
  EXPECT_TRUE(contains(slot.error(), "passthru")) << slot.error();
}

TEST(PassthruQueuePair, RangesRefusedAndDeviceErrorsReachTheCallback) {
  if (auto why = no_uring(); !why.empty()) GTEST_SKIP() << why;
  QueuePairOptions qo;
  qo.passthru = true;
  qo.depth = 4;
  auto qp = QueuePair::create(qo);
  ASSERT_TRUE(qp.ok()) << qp.error();
  EXPECT_FALSE((*qp)->polled());
  EXPECT_EQ((*qp)->completions(), "interrupts");
  const std::string path = temp_file();
  const int fd = ::open(path.c_str(), O_RDWR);
  std::remove(path.c_str());
  ASSERT_GE(fd, 0);
  auto slot = (*qp)->add_namespace(fake_namespace(fd));
  ASSERT_TRUE(slot.ok()) << slot.error();

  alignas(4096) static uint8_t buf[256 * 1024];
  Result1 r;
  EXPECT_EQ((*qp)->write(*slot, buf, 4096, 512, record, &r), -EINVAL);
  EXPECT_EQ((*qp)->write(*slot, buf, 1000, 0, record, &r), -EINVAL);
  EXPECT_EQ((*qp)->write(*slot, buf, 0, 0, record, &r), -EINVAL);
  EXPECT_EQ((*qp)->write(*slot, buf, 8192, 255 * 4096, record, &r), -EINVAL);
  EXPECT_EQ((*qp)->queued() + (*qp)->in_flight(), 0u);

  // A regular file takes no NVMe command: a write split into 4 (256 KiB at a 64 KiB maximum
  // transfer) fails once, in its callback, after all 4 parts complete.
  ASSERT_EQ((*qp)->write(*slot, buf, sizeof buf, 0, record, &r, kWriteFua), 0);
  (*qp)->drain();
  EXPECT_EQ(r.calls, 1);
  EXPECT_LT(r.c.status, 0);
  EXPECT_EQ(r.c.bytes, 0u);
  EXPECT_EQ((*qp)->stats().submitted, 4u);
  EXPECT_EQ((*qp)->stats().split_writes, 1u);
  EXPECT_EQ((*qp)->stats().completed, 1u);
  EXPECT_EQ((*qp)->stats().errors, 1u);

  Result1 f;
  ASSERT_EQ((*qp)->flush(*slot, record, &f), 0);
  (*qp)->drain();
  EXPECT_EQ(f.calls, 1);
  EXPECT_LT(f.c.status, 0);
  EXPECT_EQ((*qp)->stats().submitted, 5u);
  (*qp)->remove_file(*slot);
  ::close(fd);
}

TEST(FileQueuePair, FuaWriteCompletes) {
  if (auto why = no_uring(); !why.empty()) GTEST_SKIP() << why;
  auto qp = QueuePair::create(QueuePairOptions{});
  ASSERT_TRUE(qp.ok()) << qp.error();
  const std::string path = temp_file();
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  auto slot = (*qp)->add_file(fd);
  ASSERT_TRUE(slot.ok()) << slot.error();
  static uint8_t buf[4096];
  std::memset(buf, 'f', sizeof buf);
  Result1 r;
  ASSERT_EQ((*qp)->write(*slot, buf, sizeof buf, 0, record, &r, kWriteFua), 0);
  (*qp)->drain();
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.c.status, 0);
  EXPECT_EQ(r.c.bytes, sizeof buf);
  char back[4] = {};
  EXPECT_EQ(::pread(fd, back, sizeof back, 0), 4);
  EXPECT_EQ(std::memcmp(back, "ffff", 4), 0);
  (*qp)->remove_file(*slot);
  ::close(fd);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace sluice::nvme
