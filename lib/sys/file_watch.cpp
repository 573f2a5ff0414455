#include "lib/sys/file_watch.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>

namespace sluice::sys {

namespace {

constexpr uint32_t kContentEvents = IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_MOVED_TO;
// A name on the way created, replaced or removed: the chain may lead elsewhere now.
constexpr uint32_t kNameEvents = IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM;
constexpr uint32_t kFolderGone = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED;
constexpr uint32_t kWatchMask = kContentEvents | kNameEvents | kFolderGone | IN_ONLYDIR;
constexpr int kMaxLinks = 40;  // the kernel's limit before ELOOP
// Rounds of look, watch, look again before the chain is taken as armed (one that changes under
// every look is re-armed at its next event).
constexpr int kMaxArmRounds = 4;

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

}  // namespace

// Walks the path name by name as the kernel does, recording the names to watch.
FileWatch::Chain FileWatch::resolve(const std::string& path) {
  namespace fs = std::filesystem;
  Chain c;
  struct Part {
    std::string name;
    bool configured;  // the configured file's own name
  };
  std::vector<Part> todo;  // names still to look up, the next one last
  auto push = [&](const fs::path& p, bool configured) {
    const size_t at = todo.size();
    for (const auto& e : p.relative_path()) {
      if (!e.empty()) todo.push_back(Part{e.string(), false});
    }
    if (configured && todo.size() > at) todo.back().configured = true;
    std::reverse(todo.begin() + static_cast<ptrdiff_t>(at), todo.end());
  };
  auto record = [&](const std::string& dir, const std::string& name, bool file) {
    const Point p{dir, name, file};
    if (std::find(c.points.begin(), c.points.end(), p) == c.points.end()) c.points.push_back(p);
  };
  push(fs::path(path), true);
  std::string dir = "/";
  int links = 0;
  c.error = ENOENT;
  while (!todo.empty()) {
    const Part part = std::move(todo.back());
    todo.pop_back();
    if (part.configured) {
      c.folder = dir;
      c.error = 0;
    }
    if (part.name == ".") continue;
    if (part.name == "..") {
      dir = fs::path(dir).parent_path().string();
      continue;
    }
    const bool last = todo.empty();
    const std::string full = join(dir, part.name);
    struct stat st {};
    if (::lstat(full.c_str(), &st) != 0) {
      if (c.folder.empty()) c.error = errno;
      record(dir, part.name, last);  // missing: watch for it to appear
      break;
    }
    if (S_ISLNK(st.st_mode)) {
      record(dir, part.name, false);
      std::array<char, PATH_MAX> target;
      const ssize_t n = ::readlink(full.c_str(), target.data(), target.size() - 1);
      if (n <= 0 || ++links > kMaxLinks) {
        if (c.folder.empty()) c.error = n <= 0 ? errno : ELOOP;
        break;
      }
      const fs::path t(std::string(target.data(), static_cast<size_t>(n)));
      if (t.is_absolute()) dir.assign(1, '/');
      push(t, false);
      continue;
    }
    if (last) {
      record(dir, part.name, true);
      c.exists = true;
      c.dev = st.st_dev;
      c.ino = st.st_ino;
      break;
    }
    if (!S_ISDIR(st.st_mode)) {
      record(dir, part.name, false);  // a file where a folder should be: watch it go
      if (c.folder.empty()) c.error = ENOTDIR;
      break;
    }
    dir = full;
  }
  return c;
}

int FileWatch::arm(Clock::time_point now) {
  const Chain before = chain_;
  Chain c = resolve(path_);
  int error = 0;
  for (int round = 1;; ++round) {
    std::vector<Watch> next;
    error = c.folder.empty() ? c.error : 0;
    for (const Point& p : c.points) {
      const int wd = inotify_add_watch(fd_, p.dir.c_str(), kWatchMask);
      if (wd < 0) {
        if (p.dir == c.folder) error = errno;
        continue;
      }
      auto w = std::find_if(next.begin(), next.end(), [&](const Watch& x) { return x.wd == wd; });
      if (w == next.end()) w = next.insert(next.end(), Watch{wd, {}});
      w->names.push_back(p);
    }
    for (const Watch& old : watches_) {
      const bool kept =
          std::any_of(next.begin(), next.end(), [&](const Watch& x) { return x.wd == old.wd; });
      if (!kept) inotify_rm_watch(fd_, old.wd);  // its IN_IGNORED finds no watch: skipped
    }
    watches_ = std::move(next);
    // What changed between the look and the watches being in place would be missed: look again.
    if (round == kMaxArmRounds) break;
    Chain again = resolve(path_);
    if (again == c) break;
    c = std::move(again);
  }
  // A folder link on the way to the configured name that is gone for a moment (rm then ln -s,
  // busybox ln -sfn) is a gap, not the end: its folder is still watched for the new one.
  bool gap = false;
  if (error != 0 && !c.points.empty() && !watches_.empty()) {
    const Point& missing = c.points.back();
    gap = std::any_of(before.points.begin(), before.points.end(), [&](const Point& p) {
      return !p.file && p.dir == missing.dir && p.name == missing.name;
    });
  }
  chain_ = std::move(c);
  alive_ = error == 0 || gap;
  if (chain_.exists && (!before.exists || chain_.dev != before.dev || chain_.ino != before.ino)) {
    pending_ = true;
    last_event_ = now;
  }
  return error;
}

Result<std::unique_ptr<FileWatch>> FileWatch::open(const std::string& path,
                                                   std::chrono::milliseconds debounce) {
  const std::filesystem::path p(path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  std::unique_ptr<FileWatch> w(new FileWatch());
  std::error_code ec;
  w->path_ = std::filesystem::absolute(p, ec).string();
  if (ec) return Error{"inotify: cannot watch " + dir + ": " + ec.message()};
  w->debounce_ = debounce;
  w->fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd_ < 0) {
    return Error{"inotify: " + std::string(std::strerror(errno)) +
                 " (fs.inotify.max_user_instances?)"};
  }
  if (const int e = w->arm(Clock::now()); e != 0) {
    return Error{"inotify: cannot watch " + dir + ": " + std::strerror(e)};
  }
  w->pending_ = false;  // the file as it is at the start is no change
  return w;
}

FileWatch::~FileWatch() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWatch::drain(Clock::time_point now) {
  alignas(inotify_event) std::array<char, 16384> buf;
  bool rearm = false;
  for (;;) {
    const ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n <= 0) break;  // EAGAIN: drained
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf.data() + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {  // events were lost: look again, and read the file
        pending_ = true;
        last_event_ = now;
        rearm = true;
        continue;
      }
      auto w = std::find_if(watches_.begin(), watches_.end(),
                            [&](const Watch& x) { return x.wd == ev->wd; });
      if (w == watches_.end()) continue;  // a folder no longer on the way
      if (ev->mask & kFolderGone) {
        if (ev->mask & IN_IGNORED) watches_.erase(w);  // the kernel dropped the watch
        rearm = true;
        continue;
      }
      if (ev->len == 0) continue;
      const auto p = std::find_if(w->names.begin(), w->names.end(),
                                  [&](const Point& x) { return x.name == ev->name; });
      if (p == w->names.end()) continue;
      if (p->file && (ev->mask & kContentEvents)) {
        pending_ = true;
        last_event_ = now;
      }
      if (ev->mask & kNameEvents) rearm = true;
    }
  }
  if (rearm) arm(now);
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
