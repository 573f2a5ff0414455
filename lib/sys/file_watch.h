#pragma once
// Watches one file for changes with inotify, debounced: what an editor does when it saves
// (write in place, or write a temporary file and rename it over the original, or delete and
// recreate) becomes one "changed" after the events stop for the debounce delay.
//
// The watch is on the file's folder, filtered by name, so it survives the file being
// replaced by rename (a watch on the file itself would follow the old inode away). Only events
// that leave new content under the name count: written and closed, modified, created, moved
// into place. A delete or a move away does not: the reload waits for the new file.

#include <chrono>
#include <memory>
#include <string>

#include "lib/sys/result.h"

namespace sluice::sys {

class FileWatch {
 public:
  using Clock = std::chrono::steady_clock;

  static Result<std::unique_ptr<FileWatch>> open(const std::string& path,
                                                 std::chrono::milliseconds debounce);
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  // Readable when events are pending (poll it for POLLIN).
  int fd() const noexcept { return fd_; }

  // Reads every pending event without blocking; a relevant one (re)starts the debounce delay.
  void drain(Clock::time_point now);
  // True once per settled change: a change is pending and no event came for the delay.
  bool due(Clock::time_point now);
  // Milliseconds until a pending change is due (0 if it is), or -1 when none is pending.
  int timeout_ms(Clock::time_point now) const;
  // Forgets a pending change (an explicit reload has just read the file).
  void cancel() noexcept { pending_ = false; }
  // False once the folder itself was deleted or moved: no more events will come.
  bool alive() const noexcept { return alive_; }

 private:
  FileWatch() = default;
  int fd_ = -1;
  int wd_ = -1;
  std::string name_;
  std::chrono::milliseconds debounce_{0};
  bool pending_ = false;
  bool alive_ = true;
  Clock::time_point last_event_{};
};

}  // namespace sluice::sys
