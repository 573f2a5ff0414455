// NVMe passthrough control path: Identify parsing, opening /dev/ngXnY, the queue limits the
// kernel puts on one passthrough command.

#include "lib/nvme/passthru.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nvme_ioctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>

namespace sluice::nvme {

namespace {

uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A number from the first line of a sysfs file, or 0.
uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  if (!(in >> v)) return 0;
  return v;
}

struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};

// Identify through the admin passthrough ioctl (needs CAP_SYS_ADMIN on most kernels).
Result<void> identify(int fd, uint32_t nsid, uint32_t cns, uint8_t* data) {
  nvme_admin_cmd cmd{};
  cmd.opcode = kNvmeAdminIdentify;
  cmd.nsid = nsid;
  cmd.addr = reinterpret_cast<uintptr_t>(data);
  cmd.data_len = kIdentifySize;
  cmd.cdw10 = cns;
  const int rc = ::ioctl(fd, NVME_IOCTL_ADMIN_CMD, &cmd);
  if (rc < 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM)
      return Error{fmt::format(
          "Identify (CNS {}) was refused: {}: the admin command needs CAP_SYS_ADMIN (run as "
          "root or grant the capability)",
          cns, std::strerror(err))};
    return Error{fmt::format("Identify (CNS {}) failed: {}", cns, std::strerror(err))};
  }
  if (rc > 0) return Error{fmt::format("Identify (CNS {}) failed: NVMe status {:#x}", cns, rc)};
  return {};
}

// The sysfs queue directory of the namespace's block device (/dev/ngXnY shares its queue
// limits with /dev/nvmeXnY), or "".
std::string queue_dir(const std::string& ng_path) {
  const std::string blk = block_device_of(ng_path);
  if (blk.empty()) return "";
  return "/sys/block/" + blk.substr(blk.rfind('/') + 1) + "/queue/";
}

// The kernel maps a user buffer page by page: a command may not need more segments than the
// queue allows (worst case one 4 KiB page each) nor more than max_hw_sectors.
uint64_t queue_limit(const std::string& ng_path) {
  const std::string queue = queue_dir(ng_path);
  if (queue.empty()) return 0;
  uint64_t limit = 0;
  if (const uint64_t kb = read_number(queue + "max_hw_sectors_kb"); kb > 0) limit = kb * 1024;
  if (const uint64_t segs = read_number(queue + "max_segments"); segs > 0) {
    const uint64_t by_segs = segs * kNvmeMinPage;
    limit = limit == 0 ? by_segs : std::min(limit, by_segs);
  }
  return limit;
}

}  // namespace

Result<NamespaceFormat> parse_identify_namespace(const uint8_t* data, size_t len) {
  if (len < kIdentifySize)
    return Error{
        fmt::format("Identify Namespace data is {} bytes, expected {}", len, kIdentifySize)};
  NamespaceFormat f;
  f.lbas = le64(data + 0);
  const uint8_t nlbaf = data[25];  // 0's based number of LBA formats
  const uint8_t flbas = data[26];
  // FLBAS bits 3:0 are the low bits of the index, bits 6:5 the high bits (more than 16).
  f.format = static_cast<uint8_t>((flbas & 0x0f) | (((flbas >> 5) & 0x03) << 4));
  if (f.format > nlbaf || f.format >= 64)
    return Error{
        fmt::format("Identify Namespace: FLBAS selects LBA format {} of {}", f.format, nlbaf + 1)};
  const uint8_t* lbaf = data + 128 + 4 * f.format;
  f.metadata = static_cast<uint16_t>(lbaf[0] | (lbaf[1] << 8));
  const uint8_t lbads = lbaf[2];
  if (lbads < 9 || lbads > 24)
    return Error{fmt::format("Identify Namespace: LBA data size 2^{} is not supported", lbads)};
  f.lba_size = 1u << lbads;
  if (f.lbas == 0) return Error{"Identify Namespace: the namespace has no blocks (NSZE 0)"};
  return f;
}

Result<uint64_t> parse_identify_mdts(const uint8_t* data, size_t len) {
  if (len < kIdentifySize)
    return Error{
        fmt::format("Identify Controller data is {} bytes, expected {}", len, kIdentifySize)};
  const uint8_t mdts = data[77];
  if (mdts == 0) return uint64_t{0};
  if (mdts > 20) return Error{fmt::format("Identify Controller: MDTS {} is out of range", mdts)};
  return uint64_t{kNvmeMinPage} << mdts;
}

Result<Namespace> open_passthru(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT)
      return Error{
          fmt::format("{} does not exist: name an NVMe generic device /dev/ngXnY (kernel 5.19+; "
                      "ls /dev/ng*)",
                      path)};
    return Error{fmt::format("cannot stat {}: {}", path, std::strerror(err))};
  }
  if (!S_ISCHR(st.st_mode)) {
    const char* kind = S_ISREG(st.st_mode)   ? "a regular file"
                       : S_ISBLK(st.st_mode) ? "a block device"
                       : S_ISDIR(st.st_mode) ? "a directory"
                                             : "not a character device";
    return Error{fmt::format(
        "{} is {}, not an NVMe device: passthrough needs a namespace's generic char device "
        "/dev/ngXnY (use the file or block backend for this path)",
        path, kind)};
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM)
      return Error{fmt::format(
          "permission denied: {}: give the user sluice runs as read-write access (a udev "
          "rule, or run as root)",
          path)};
    return Error{fmt::format("cannot open {}: {}", path, std::strerror(err))};
  }
  Namespace ns;
  ns.fd = fd;
  ns.path = path;
  auto fail = [&](std::string why) -> Result<Namespace> {
    ::close(fd);
    return Error{std::move(why)};
  };

  const int id = ::ioctl(fd, NVME_IOCTL_ID);
  if (id <= 0)
    return fail(
        fmt::format("{} is not an NVMe device (NVME_IOCTL_ID: {}): name a namespace's generic char "
                    "device /dev/ngXnY",
                    path, id < 0 ? std::strerror(errno) : "no namespace id"));
  ns.nsid = static_cast<uint32_t>(id);

  std::unique_ptr<uint8_t, FreeDeleter> data(
      static_cast<uint8_t*>(std::aligned_alloc(kNvmeMinPage, kIdentifySize)));
  if (!data) return fail("out of memory for the Identify buffer");

  std::memset(data.get(), 0, kIdentifySize);
  if (auto r = identify(fd, 0, kNvmeCnsController, data.get()); !r)
    return fail(fmt::format("{}: {}", path, r.error()));
  auto mdts = parse_identify_mdts(data.get(), kIdentifySize);
  if (!mdts) return fail(fmt::format("{}: {}", path, mdts.error()));
  ns.mdts = *mdts;

  std::memset(data.get(), 0, kIdentifySize);
  if (auto r = identify(fd, ns.nsid, kNvmeCnsNamespace, data.get()); !r)
    return fail(fmt::format("{}: {}", path, r.error()));
  auto format = parse_identify_namespace(data.get(), kIdentifySize);
  if (!format) return fail(fmt::format("{}: {}", path, format.error()));
  if (format->metadata != 0)
    return fail(
        fmt::format("{}: LBA format {} carries {} metadata bytes per block: format the namespace "
                    "without metadata (nvme format --lbaf=N)",
                    path, format->format, format->metadata));
  ns.lba_size = format->lba_size;
  ns.lba_shift = static_cast<uint32_t>(__builtin_ctz(ns.lba_size));
  ns.lbas = format->lbas;
  ns.size = ns.lbas << ns.lba_shift;

  uint64_t max = uint64_t{kNvmeMaxBlocksPerCommand} << ns.lba_shift;
  if (ns.mdts != 0) max = std::min(max, ns.mdts);
  if (const uint64_t q = queue_limit(path); q != 0) max = std::min(max, q);
  max = std::min<uint64_t>(max, 1u << 30);
  max &= ~uint64_t{ns.lba_size - 1};
  if (max < ns.lba_size) return fail(fmt::format("{}: transfer limit below one block", path));
  ns.max_transfer = static_cast<uint32_t>(max);
  ns.poll_queues = read_number("/sys/module/nvme/parameters/poll_queues") > 0;
  return ns;
}

void close_passthru(Namespace& ns) noexcept {
  if (ns.fd >= 0) ::close(ns.fd);
  ns.fd = -1;
}

Result<void> check_range(const Namespace& ns, uint64_t offset, uint64_t len, const char* op) {
  if (len == 0) return Error{fmt::format("{}: a {} of 0 bytes", ns.path, op)};
  if ((offset | len) & (ns.lba_size - 1))
    return Error{fmt::format(
        "{}: {} of {} bytes at offset {} is not aligned to the {}-byte LBA size: offsets "
        "and lengths must be multiples of it",
        ns.path, op, len, offset, ns.lba_size)};
  if (offset > ns.size || len > ns.size - offset)
    return Error{
        fmt::format("{}: {} of {} bytes at offset {} ends past the namespace ({} "
                    "bytes)",
                    ns.path, op, len, offset, ns.size)};
  return {};
}

namespace {

// One I/O command; returns 0, -errno, or the NVMe status (> 0).
int io_command(const Namespace& ns, uint8_t opcode, void* buf, uint32_t bytes, uint64_t offset,
               uint32_t blocks, uint32_t cdw12_flags) {
  nvme_passthru_cmd cmd{};
  cmd.opcode = opcode;
  cmd.nsid = ns.nsid;
  cmd.addr = reinterpret_cast<uintptr_t>(buf);
  cmd.data_len = bytes;
  const uint64_t lba = offset >> ns.lba_shift;
  cmd.cdw10 = static_cast<uint32_t>(lba);
  cmd.cdw11 = static_cast<uint32_t>(lba >> 32);
  cmd.cdw12 = blocks == 0 ? 0 : ((blocks - 1) | cdw12_flags);
  const int rc = ::ioctl(ns.fd, NVME_IOCTL_IO_CMD, &cmd);
  return rc < 0 ? -errno : rc;
}

std::string command_error(const Namespace& ns, const char* what, uint64_t offset, int rc) {
  if (rc < 0)
    return fmt::format("{}: {} at offset {} failed: {}", ns.path, what, offset, std::strerror(-rc));
  return fmt::format("{}: {} at offset {} failed: NVMe status {:#x}", ns.path, what, offset, rc);
}

Result<void> transfer(const Namespace& ns, uint8_t opcode, const char* what, void* buf,
                      uint64_t len, uint64_t offset, uint32_t flags) {
  if (auto r = check_range(ns, offset, len, opcode == kNvmeCmdRead ? "read" : "write"); !r)
    return r;
  auto* p = static_cast<uint8_t*>(buf);
  for (uint64_t done = 0; done < len;) {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(len - done, ns.max_transfer));
    const int rc = io_command(ns, opcode, p + done, n, offset + done, n >> ns.lba_shift, flags);
    if (rc != 0) return Error{command_error(ns, what, offset + done, rc)};
    done += n;
  }
  return {};
}

// The status code type and code of a completion's status field (the ioctl returns it without
// the phase bit: bits 10:8 SCT, 7:0 SC; CRD, More and DNR above them are dropped here).
constexpr int status_code(int rc) {
  return rc & 0x7ff;
}
// Generic command status: Invalid Command Opcode, Invalid Field in Command.
constexpr int kNvmeInvalidOpcode = 0x1;
constexpr int kNvmeInvalidField = 0x2;

// Writes [offset, offset + len) with zero buffers.
Result<void> zero_by_writes(const Namespace& ns, uint64_t offset, uint64_t len) {
  std::unique_ptr<uint8_t, FreeDeleter> zeros(
      static_cast<uint8_t*>(std::aligned_alloc(kNvmeMinPage, ns.max_transfer)));
  if (!zeros) return Error{"out of memory for a zero buffer"};
  std::memset(zeros.get(), 0, ns.max_transfer);
  for (uint64_t at = 0; at < len;) {
    const uint64_t m = std::min<uint64_t>(len - at, ns.max_transfer);
    if (auto r = write_sync(ns, zeros.get(), m, offset + at, false); !r) return r;
    at += m;
  }
  return {};
}

}  // namespace

Result<void> read_sync(const Namespace& ns, void* buf, uint64_t len, uint64_t offset) {
  return transfer(ns, kNvmeCmdRead, "Read", buf, len, offset, 0);
}

Result<void> write_sync(const Namespace& ns, const void* buf, uint64_t len, uint64_t offset,
                        bool fua) {
  return transfer(ns, kNvmeCmdWrite, fua ? "Write (FUA)" : "Write", const_cast<void*>(buf), len,
                  offset, fua ? kNvmeFua : 0);
}

Result<void> zero_sync(const Namespace& ns, uint64_t offset, uint64_t len) {
  if (auto r = check_range(ns, offset, len, "Write Zeroes"); !r) return r;
  // The controller's own limit as the kernel read it (WZSL; 0: the kernel does not send Write
  // Zeroes to this device, a quirk or no support), else the 16-bit block count's.
  uint64_t step = uint64_t{kNvmeMaxBlocksPerCommand} << ns.lba_shift;
  if (const std::string q = queue_dir(ns.path); !q.empty()) {
    std::ifstream in(q + "write_zeroes_max_bytes");
    uint64_t limit = 0;
    if (in >> limit) {
      if (limit < ns.lba_size) return zero_by_writes(ns, offset, len);
      step = std::min(step, limit & ~uint64_t{ns.lba_size - 1});
    }
  }
  for (uint64_t done = 0; done < len;) {
    const uint64_t n = std::min(len - done, step);
    const int rc = io_command(ns, kNvmeCmdWriteZeroes, nullptr, 0, offset + done,
                              static_cast<uint32_t>(n >> ns.lba_shift), 0);
    if (rc > 0 && done == 0 &&
        (status_code(rc) == kNvmeInvalidOpcode || status_code(rc) == kNvmeInvalidField)) {
      return zero_by_writes(ns, offset, len);  // no (usable) Write Zeroes on this controller
    }
    if (rc != 0) return Error{command_error(ns, "Write Zeroes", offset + done, rc)};
    done += n;
  }
  return {};
}

Result<void> flush_sync(const Namespace& ns) {
  const int rc = io_command(ns, kNvmeCmdFlush, nullptr, 0, 0, 0, 0);
  if (rc != 0) return Error{command_error(ns, "Flush", 0, rc)};
  return {};
}

Result<uint64_t> read_prefix(const std::string& path, uint8_t* out, size_t len) {
  auto ns = open_passthru(path);
  if (!ns) return Error{ns.error()};
  std::unique_ptr<uint8_t, FreeDeleter> buf(static_cast<uint8_t*>(
      std::aligned_alloc(kNvmeMinPage, (len + kNvmeMinPage - 1) & ~size_t{kNvmeMinPage - 1})));
  auto r = buf ? read_sync(*ns, buf.get(), len, 0) : Result<void>(Error{"out of memory"});
  const uint64_t size = ns->size;
  close_passthru(*ns);
  if (!r) return Error{r.error()};
  std::memcpy(out, buf.get(), len);
  return size;
}

std::string block_device_of(const std::string& ng_path) {
  // Through symlinks (a udev alias) to the device's own name.
  char real[PATH_MAX];
  const std::string path = ::realpath(ng_path.c_str(), real) != nullptr ? real : ng_path;
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  if (name.rfind("ng", 0) != 0 || name.size() < 5) return "";
  return dir + "nvme" + name.substr(2);
}

}  // namespace sluice::nvme
