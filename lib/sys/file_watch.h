#pragma once
// Watches one file for changes with inotify, debounced: what an editor does when it saves
// (write in place, or write a temporary file and rename it over the original, or delete and
// recreate) becomes one "changed" after the events stop for the debounce delay.
//
// The watch is on the file's folder, filtered by name, so it survives the file being
// replaced by rename (a watch on the file itself would follow the old inode away). Only events
// that leave new content under the name count: written and closed, modified, created, moved
// into place. A delete or a move away does not: the reload waits for the new file.
//
// Symlinks are followed, in the configured name, in its folders and in each link's target: the
// folder of every link on the way is watched for that link's name, and the folder the chain ends
// in for the file's name. A link that is replaced, removed or created on the way (ln -sfn; a
// Kubernetes ConfigMap volume, where flows.yaml -> ..data/flows.yaml and the kubelet renames a
// new ..data link over the old one) re-resolves the chain and moves the watches; a change of the
// file the chain ends at (another file, or one that appears) counts as a change.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

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
  // False once the folder of the configured name was deleted or moved (or can no longer be
  // reached through its links): no more events will come.
  bool alive() const noexcept { return alive_; }

 private:
  // A name looked up on the way from the configured path to the file, in its real folder: a
  // link, the file itself (present or not), or the first name on the way that is missing.
  struct Point {
    std::string dir;
    std::string name;
    bool file = false;  // the chain's end: its content events are changes
    bool operator==(const Point&) const = default;
  };
  // Where the configured path leads now.
  struct Chain {
    std::vector<Point> points;
    std::string folder;   // the real folder of the configured name; empty: unreachable
    int error = 0;        // errno when the folder is unreachable
    bool exists = false;  // the chain ends at an existing file, this one:
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const Chain&) const = default;
  };
  struct Watch {
    int wd;
    std::vector<Point> names;  // the points in this folder
  };

  FileWatch() = default;
  static Chain resolve(const std::string& path);
  // Resolves the chain and moves the watches to it (until it holds still); returns errno when
  // the configured name's folder cannot be watched, else 0. A chain that now ends at another
  // file, or at one where there was none, is a change.
  int arm(Clock::time_point now);

  int fd_ = -1;
  std::string path_;  // absolute, as configured (links unresolved)
  Chain chain_;
  std::vector<Watch> watches_;
  std::chrono::milliseconds debounce_{0};
  bool pending_ = false;
  bool alive_ = true;
  Clock::time_point last_event_{};
};

}  // namespace sluice::sys
