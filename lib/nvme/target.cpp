// The control-path side of lib/nvme: opening write targets and checking what the kernel and
// the filesystem allow, with errors that say how to fix them.

#include "lib/nvme/queue_pair.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace sluice::nvme {

namespace {

// Regular files: the alignment that is safe on every filesystem and device sluice targets.
constexpr uint32_t kFileBlock = 4096;

std::string errno_text(int err) {
  return std::strerror(err);
}

// First line of a /proc or /sys file, empty when it cannot be read.
std::string read_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string open_error(const std::string& path, int err, int flags) {
  switch (err) {
    case EACCES:
    case EPERM:
      return fmt::format(
          "permission denied: {}: make it (and its directory) writable by the user sluice "
          "runs as",
          path);
    case ENOENT:
      return (flags & O_CREAT)
                 ? fmt::format("{}: its directory does not exist: create it first", path)
                 : fmt::format("{} does not exist: create it or correct the path", path);
    case EISDIR:
      return fmt::format("{} is a directory: name a file or a block device", path);
    case EROFS:
      return fmt::format("{} is on a read-only filesystem: choose a writable one", path);
    case EBUSY:
      return fmt::format("{} is busy (mounted or held exclusively): use an unused device", path);
    default:
      return fmt::format("cannot open {}: {}", path, errno_text(err));
  }
}

// Empty when st is a target (a regular file or a block device), else why not.
std::string type_error(const std::string& path, const struct stat& st) {
  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return {};
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISFIFO(st.st_mode) ? "a pipe"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  std::string fix =
      S_ISCHR(st.st_mode) ? " (an NVMe generic device /dev/ngXnY needs backend: passthru)" : "";
  return fmt::format("{} is {}: name a regular file or a block device{}", path, kind, fix);
}

}  // namespace

Result<Target> open_target(const std::string& path, int flags, mode_t mode, bool allow_buffered) {
  // Checked before open: opening a FIFO for writing would block, and a character device
  // refuses O_DIRECT with the same EINVAL as a filesystem that lacks it.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (auto bad = type_error(path, st); !bad.empty()) return Error{bad};
  }
  Target t;
  int fd = ::open(path.c_str(), flags | O_DIRECT | O_CLOEXEC, mode);
  t.direct = true;
  if (fd < 0 && errno == EINVAL) {
    if (!allow_buffered)
      return Error{fmt::format(
          "the filesystem of {} does not support O_DIRECT: put it on one that does (ext4, "
          "xfs) or a block device, or allow buffered writes",
          path)};
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    t.direct = false;
  }
  if (fd < 0) return Error{open_error(path, errno, flags)};

  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Error{fmt::format("cannot stat {}: {}", path, errno_text(err))};
  }
  if (auto bad = type_error(path, st); !bad.empty()) {
    ::close(fd);
    return Error{bad};
  }
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    int sector = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0 || ::ioctl(fd, BLKSSZGET, &sector) != 0 ||
        sector <= 0) {
      const int err = errno;
      ::close(fd);
      return Error{
          fmt::format("cannot read the size of block device {}: {}", path, errno_text(err))};
    }
    t.block_device = true;
    t.size = bytes;
    t.block = static_cast<uint32_t>(sector);
  } else {
    t.size = static_cast<uint64_t>(st.st_size);
    t.block = kFileBlock;
  }
  t.fd = fd;
  return t;
}

Result<bool> probe_direct(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Error{open_error(dir, errno, 0)};
  if (!S_ISDIR(st.st_mode))
    return Error{fmt::format("{} is not a directory: name the directory to write in", dir)};
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::string probe =
        fmt::format("{}/.sluice-direct-probe-{}-{}", dir, ::getpid(), counter++);
    int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0 && errno == EINVAL) {
      // The file can be created before O_DIRECT is refused: do not leave it behind.
      ::unlink(probe.c_str());
      return false;
    }
    if (fd < 0) return Error{open_error(dir, errno, O_CREAT)};
    // Some filesystems accept the flag at open and refuse the I/O: try one aligned block.
    bool direct = true;
    void* block = std::aligned_alloc(kFileBlock, kFileBlock);
    if (block != nullptr) {
      std::memset(block, 0, kFileBlock);
      if (::pwrite(fd, block, kFileBlock, 0) < 0 && errno == EINVAL) direct = false;
      std::free(block);
    }
    ::close(fd);
    ::unlink(probe.c_str());
    return direct;
  }
  return Error{fmt::format("cannot create a probe file in {}: names keep colliding", dir)};
}

Result<void> uring_available() {
  io_uring ring{};
  const int rc = io_uring_queue_init(2, &ring, 0);
  if (rc == 0) {
    io_uring_queue_exit(&ring);
    return {};
  }
  const int err = -rc;
  if (err == ENOSYS)
    return Error{"io_uring is not in this kernel (CONFIG_IO_URING off): use a kernel with it"};
  if (err == EPERM || err == EACCES) {
    const std::string disabled = read_line("/proc/sys/kernel/io_uring_disabled");
    if (disabled == "2")
      return Error{
          "io_uring is disabled (/proc/sys/kernel/io_uring_disabled = 2): set it to 0 "
          "(sysctl kernel.io_uring_disabled=0)"};
    if (disabled == "1")
      return Error{fmt::format(
          "io_uring is limited to group {} (/proc/sys/kernel/io_uring_disabled = 1): add the "
          "user sluice runs as to it, or set kernel.io_uring_disabled=0",
          read_line("/proc/sys/kernel/io_uring_group"))};
    return Error{
        "io_uring is blocked for this process (EPERM: a seccomp filter, e.g. a container's "
        "default profile): allow io_uring_setup, io_uring_enter and io_uring_register"};
  }
  if (err == ENOMEM)
    return Error{
        "io_uring ring could not be allocated (ENOMEM): raise the locked-memory limit "
        "(ulimit -l, LimitMEMLOCK= in the systemd unit)"};
  return Error{fmt::format("io_uring_queue_init failed: {}", errno_text(err))};
}

}  // namespace sluice::nvme
