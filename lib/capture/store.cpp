// The directory store (store.h): segment names, listing, repair after a crash, retention.

#include "lib/capture/store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

namespace sluice::capture {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "sluice-";
constexpr std::string_view kSuffix = ".pcapng";
constexpr std::string_view kPartSuffix = ".part";
constexpr uint64_t kNsPerSecond = 1000000000;

std::string errno_text(int err) {
  return std::strerror(err);
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

uint64_t to_u64(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) v = v * 10 + static_cast<uint64_t>(c - '0');
  return v;
}

// "sluice-YYYYMMDDTHHMMSSZ-NNNNNN.pcapng[.part]" -> SegmentFile (path and size left empty).
std::optional<SegmentFile> parse_name(std::string_view name) {
  SegmentFile f;
  f.name = std::string(name);
  if (name.size() > kPartSuffix.size() &&
      name.substr(name.size() - kPartSuffix.size()) == kPartSuffix) {
    f.part = true;
    name.remove_suffix(kPartSuffix.size());
  }
  if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix) {
    return std::nullopt;
  }
  name.remove_suffix(kSuffix.size());
  if (name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  // YYYYMMDD T HHMMSS Z - N...
  constexpr size_t kStampBytes = 16;
  if (name.size() < kStampBytes + 2 || name[8] != 'T' || name[15] != 'Z' || name[16] != '-') {
    return std::nullopt;
  }
  const std::string_view date = name.substr(0, 8), time = name.substr(9, 6);
  const std::string_view number = name.substr(kStampBytes + 1);
  // Up to 19 digits so the number fits in 64 bits.
  if (!all_digits(date) || !all_digits(time) || !all_digits(number) || number.size() > 19) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = static_cast<int>(to_u64(date.substr(0, 4))) - 1900;
  tm.tm_mon = static_cast<int>(to_u64(date.substr(4, 2))) - 1;
  tm.tm_mday = static_cast<int>(to_u64(date.substr(6, 2)));
  tm.tm_hour = static_cast<int>(to_u64(time.substr(0, 2)));
  tm.tm_min = static_cast<int>(to_u64(time.substr(2, 2)));
  tm.tm_sec = static_cast<int>(to_u64(time.substr(4, 2)));
  const time_t t = timegm(&tm);
  f.first_s = t < 0 ? 0 : static_cast<uint64_t>(t);
  f.number = to_u64(number);
  return f;
}

// A read-only view of a whole file (mmap: segments can be a gigabyte).
class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  // An error message, or empty on success.
  std::string map(int fd, const std::string& path) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return fmt::format("{}: cannot stat: {}", path, errno_text(errno));
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) return {};
    void* p = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      size_ = 0;
      return fmt::format("{}: cannot map: {}", path, errno_text(err));
    }
    madvise(p, size_, MADV_SEQUENTIAL);
    data_ = p;
    return {};
  }
  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// The highest good seq of a closed segment. The last chunk ends at the file's end and its
// trailer says where it starts, so only that chunk is read; the whole file only when the last
// chunk is not good.
std::optional<uint64_t> closed_segment_last_seq(const SegmentFile& f, std::string* error) {
  Fd fd(open(f.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    *error = fmt::format("{}: cannot open: {}", f.path, errno_text(errno));
    return std::nullopt;
  }
  MappedFile m;
  if (std::string e = m.map(fd.get(), f.path); !e.empty()) {
    *error = e;
    return std::nullopt;
  }
  const uint8_t* d = m.data();
  const size_t n = m.size();
  if (n >= kTrailerMinBytes && n % kChunkAlign == 0) {
    uint32_t total = 0, covered = 0;
    std::memcpy(&total, d + n - 4, 4);
    if (total >= kTrailerMinBytes && total <= n) {
      const size_t t = n - total;
      std::memcpy(&covered, d + t + 44, 4);
      if (covered <= t) {
        const size_t start = t - covered;
        const auto last = scan_chunks(d + start, n - start);
        if (last.size() == 1 && last[0].state == ChunkState::kGood) return last[0].seq;
      }
    }
  }
  std::optional<uint64_t> best;
  for (const ChunkInfo& c : scan_chunks(d, n)) {
    if (c.state == ChunkState::kGood) best = std::max(best.value_or(0), c.seq);
  }
  return best;
}

Result<void> sync_dir(const std::string& dir) {
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || fsync(fd.get()) != 0) {
    return Error{
        fmt::format("capture store {}: cannot sync the directory: {} (check that the "
                    "file system is mounted read-write)",
                    dir, errno_text(errno))};
  }
  return {};
}

}  // namespace

std::string segment_name(uint64_t first_ns, uint64_t number, bool part) {
  const auto secs = static_cast<time_t>(first_ns / kNsPerSecond);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  return fmt::format("{}{}-{:06}{}{}", kPrefix, stamp, number, kSuffix,
                     part ? kPartSuffix : std::string_view{});
}

Result<std::vector<SegmentFile>> list_segments(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    return Error{
        fmt::format("capture store {}: cannot read the directory: {} (check "
                    "capture.path and that sluice may read it)",
                    dir, ec.message())};
  }
  std::vector<SegmentFile> out;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) {
      return Error{
          fmt::format("capture store {}: cannot read the directory: {}", dir, ec.message())};
    }
    std::optional<SegmentFile> f = parse_name(it->path().filename().string());
    if (!f) continue;
    std::error_code fe;
    if (!it->is_regular_file(fe)) continue;
    f->path = it->path().string();
    const uintmax_t size = it->file_size(fe);
    f->size = fe ? 0 : static_cast<uint64_t>(size);
    out.push_back(std::move(*f));
  }
  std::sort(out.begin(), out.end(), [](const SegmentFile& a, const SegmentFile& b) {
    return a.number != b.number ? a.number < b.number : a.name < b.name;
  });
  return out;
}

Result<RepairReport> repair(const std::string& dir) {
  auto listed = list_segments(dir);
  if (!listed) return Error{listed.error()};
  RepairReport report;
  std::optional<uint64_t> last_seq;
  std::vector<SegmentFile> closed;
  bool renamed = false;
  for (SegmentFile& f : *listed) {
    report.next_segment = std::max(report.next_segment, f.number + 1);
    if (!f.part) {
      closed.push_back(f);
      continue;
    }
    Fd fd(open(f.path.c_str(), O_RDWR | O_CLOEXEC));
    if (fd.get() < 0) {
      return Error{
          fmt::format("capture store {}: cannot open for repair: {} (check that "
                      "sluice may write the store)",
                      f.path, errno_text(errno))};
    }
    size_t keep = 0;
    uint64_t cut = 0;
    {
      MappedFile m;
      if (std::string e = m.map(fd.get(), f.path); !e.empty()) {
        return Error{"capture store " + e};
      }
      for (const ChunkInfo& c : scan_chunks(m.data(), m.size())) {
        if (c.state != ChunkState::kGood) break;
        keep = c.offset + c.length;
        last_seq = std::max(last_seq.value_or(0), c.seq);
      }
      if (keep == 0) {
        if (unlink(f.path.c_str()) != 0) {
          return Error{
              fmt::format("capture store {}: cannot delete: {} (check that sluice "
                          "may write the store)",
                          f.path, errno_text(errno))};
        }
        ++report.removed;
        report.bytes_cut += m.size();
        report.lines.push_back(
            fmt::format("{}: no good chunk in {} bytes, deleted", f.name, m.size()));
        renamed = true;
        continue;
      }
      cut = m.size() - keep;
      if (cut != 0 && ftruncate(fd.get(), static_cast<off_t>(keep)) != 0) {
        return Error{fmt::format("capture store {}: cannot truncate to {} bytes: {}", f.path, keep,
                                 errno_text(errno))};
      }
      report.bytes_cut += cut;
      f.size = keep;
    }
    if (fdatasync(fd.get()) != 0) {
      return Error{fmt::format("capture store {}: cannot sync: {} (check the disk)", f.path,
                               errno_text(errno))};
    }
    std::string closed_name = f.name.substr(0, f.name.size() - kPartSuffix.size());
    const std::string closed_path = (fs::path(dir) / closed_name).string();
    if (rename(f.path.c_str(), closed_path.c_str()) != 0) {
      return Error{fmt::format("capture store {}: cannot rename to {}: {}", f.path, closed_path,
                               errno_text(errno))};
    }
    ++report.repaired;
    renamed = true;
    report.lines.push_back(fmt::format("{}: kept {} bytes of good chunks, cut {}, renamed {}",
                                       f.name, keep, cut, closed_name));
    f.part = false;
    f.path = closed_path;
    f.name = std::move(closed_name);
    closed.push_back(f);
  }
  if (renamed) {
    if (auto r = sync_dir(dir); !r) return Error{r.error()};
  }
  std::sort(closed.begin(), closed.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.number < b.number; });
  for (const SegmentFile& f : closed) report.store_bytes += f.size;
  // Sequence numbers grow with segment numbers: the newest segment with a good chunk decides,
  // so a start reads one chunk, not the whole store.
  for (auto it = closed.rbegin(); it != closed.rend(); ++it) {
    std::string error;
    const std::optional<uint64_t> s = closed_segment_last_seq(*it, &error);
    if (!error.empty()) return Error{"capture store " + error};
    if (s) {
      last_seq = std::max(last_seq.value_or(0), *s);
      break;
    }
  }
  report.next_seq = last_seq ? *last_seq + 1 : 0;
  return report;
}

Result<uint64_t> enforce_retention(const std::string& dir, uint64_t limit, uint64_t keep_from) {
  auto listed = list_segments(dir);
  if (!listed) return Error{listed.error()};
  uint64_t total = 0;
  for (const SegmentFile& f : *listed) {
    if (!f.part) total += f.size;
  }
  uint64_t freed = 0;
  for (const SegmentFile& f : *listed) {
    if (total <= limit) break;
    if (f.part || f.number >= keep_from) continue;
    if (unlink(f.path.c_str()) != 0 && errno != ENOENT) {
      return Error{
          fmt::format("capture store {}: cannot delete for retention: {} (check that "
                      "sluice may write the store)",
                      f.path, errno_text(errno))};
    }
    total -= f.size;
    freed += f.size;
  }
  return freed;
}

}  // namespace sluice::capture
