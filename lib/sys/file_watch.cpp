#include "lib/sys/file_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace sluice::sys {

namespace {

constexpr uint32_t kContentEvents = IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_MOVED_TO;
constexpr uint32_t kFolderGone = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED;

}  // namespace

Result<std::unique_ptr<FileWatch>> FileWatch::open(const std::string& path,
                                                   std::chrono::milliseconds debounce) {
  const std::filesystem::path p(path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  std::unique_ptr<FileWatch> w(new FileWatch());
  w->name_ = p.filename().string();
  w->debounce_ = debounce;
  w->fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd_ < 0) {
    return Error{"inotify: " + std::string(std::strerror(errno)) +
                 " (fs.inotify.max_user_instances?)"};
  }
  w->wd_ = inotify_add_watch(w->fd_, dir.c_str(), kContentEvents | kFolderGone | IN_ONLYDIR);
  if (w->wd_ < 0) {
    return Error{"inotify: cannot watch " + dir + ": " + std::strerror(errno)};
  }
  return w;
}

FileWatch::~FileWatch() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWatch::drain(Clock::time_point now) {
  alignas(inotify_event) std::array<char, 16384> buf;
  for (;;) {
    const ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n <= 0) return;  // EAGAIN: drained
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf.data() + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & kFolderGone) {
        alive_ = false;
        continue;
      }
      if (ev->len == 0 || name_ != ev->name) continue;
      if (ev->mask & kContentEvents) {
        pending_ = true;
        last_event_ = now;
      }
    }
  }
}

bool FileWatch::due(Clock::time_point now) {
  if (!pending_ || now - last_event_ < debounce_) return false;
  pending_ = false;
  return true;
}

int FileWatch::timeout_ms(Clock::time_point now) const {
  if (!pending_) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(last_event_ + debounce_ - now);
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace sluice::sys
