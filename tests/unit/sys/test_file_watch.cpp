// lib/sys/file_watch: what editors do when they save becomes exactly one change.

#include "lib/sys/file_watch.h"

#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

namespace sluice::sys {
namespace {

using namespace std::chrono_literals;
using Clock = FileWatch::Clock;
namespace fs = std::filesystem;

constexpr auto kDebounce = 50ms;

class FileWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("sluice-watch-" + std::to_string(getpid()) + "-" + std::to_string(++n));
    fs::create_directories(dir_);
    path_ = dir_ / "flows.yaml";
    put(path_, "version: 1\n");
    auto w = FileWatch::open(path_.string(), kDebounce);
    ASSERT_TRUE(w.ok()) << w.error();
    watch_ = std::move(*w);
  }
  void TearDown() override {
    watch_.reset();
    fs::remove_all(dir_);
  }

  static void put(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

  // Runs the watch as the control loop does for `span`; returns how many changes came due.
  int changes(std::chrono::milliseconds span = 200ms) {
    int due = 0;
    const auto end = Clock::now() + span;
    while (Clock::now() < end) {
      pollfd p{watch_->fd(), POLLIN, 0};
      const int t = watch_->timeout_ms(Clock::now());
      poll(&p, 1, t < 0 || t > 10 ? 10 : t);
      watch_->drain(Clock::now());
      due += watch_->due(Clock::now()) ? 1 : 0;
    }
    return due;
  }

  fs::path dir_;
  fs::path path_;
  std::unique_ptr<FileWatch> watch_;
};

TEST_F(FileWatchTest, RenameReplaceIsOneChange) {
  put(dir_ / ".flows.yaml.swp", "version: 1\nrules: []\n");
  fs::rename(dir_ / ".flows.yaml.swp", path_);
  EXPECT_EQ(changes(), 1);
  EXPECT_EQ(changes(), 0);
  // The watch survives the replacement (it is on the folder, not the old inode).
  put(dir_ / "tmp", "version: 1\n");
  fs::rename(dir_ / "tmp", path_);
  EXPECT_EQ(changes(), 1);
}

TEST_F(FileWatchTest, InPlaceWriteIsOneChange) {
  {
    std::ofstream f(path_, std::ios::trunc);
    f << "version: 1\n";
    f.flush();
    f << "rules: []\n";
  }
  EXPECT_EQ(changes(), 1);
}

TEST_F(FileWatchTest, VimStyleBackupWriteAndDeleteIsOneChange) {
  // Rename the original to a backup, write a new file, delete the backup.
  fs::rename(path_, dir_ / "flows.yaml~");
  put(path_, "version: 1\nrules: []\n");
  fs::remove(dir_ / "flows.yaml~");
  EXPECT_EQ(changes(), 1);
}

TEST_F(FileWatchTest, ABurstOfSavesSettlesIntoOneChangeAfterTheDebounce) {
  const auto start = Clock::now();
  for (int i = 0; i < 5; ++i) {
    put(path_, "version: 1\n# " + std::to_string(i) + "\n");
    std::this_thread::sleep_for(10ms);
  }
  int due = 0;
  Clock::time_point when{};
  while (Clock::now() - start < 400ms) {
    watch_->drain(Clock::now());
    if (watch_->due(Clock::now())) {
      ++due;
      when = Clock::now();
    }
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(due, 1);
  EXPECT_GE(when - start, 40ms + kDebounce) << "came due before the saves stopped";
}

TEST_F(FileWatchTest, OtherFilesDeletesAndMovesAwayAreNotChanges) {
  put(dir_ / "sluice.yaml", "x");
  put(dir_ / "flows.yaml.bak", "x");
  fs::rename(dir_ / "flows.yaml.bak", dir_ / "other");
  EXPECT_EQ(changes(), 0);
  fs::rename(path_, dir_ / "moved-away");
  EXPECT_EQ(changes(), 0);
  put(path_, "version: 1\n");  // ... until the file comes back
  EXPECT_EQ(changes(), 1);
  fs::remove(path_);
  EXPECT_EQ(changes(), 0);
}

TEST_F(FileWatchTest, CancelForgetsAPendingChange) {
  put(path_, "version: 1\n# edited\n");
  watch_->drain(Clock::now() + 1ms);
  std::this_thread::sleep_for(5ms);
  watch_->drain(Clock::now());
  EXPECT_GE(watch_->timeout_ms(Clock::now()), 0);
  watch_->cancel();
  EXPECT_EQ(watch_->timeout_ms(Clock::now()), -1);
  EXPECT_EQ(changes(), 0);
}

TEST_F(FileWatchTest, RemovedFolderEndsTheWatch) {
  EXPECT_TRUE(watch_->alive());
  fs::remove_all(dir_);
  changes(50ms);
  EXPECT_FALSE(watch_->alive());
}

// Symlinks: the watch follows the chain from the configured name to the file it reaches, and
// re-resolves it when a link on the way is replaced.
class FileWatchLinkTest : public FileWatchTest {
 protected:
  void watch(const fs::path& p) {
    auto w = FileWatch::open(p.string(), kDebounce);
    ASSERT_TRUE(w.ok()) << w.error();
    watch_ = std::move(*w);
  }
  static void append(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::app) << text;
  }
  // <dir>/etc/flows.yaml -> ../data/flows.yaml, watched.
  void link_elsewhere() {
    fs::create_directories(dir_ / "etc");
    fs::create_directories(dir_ / "data");
    put(dir_ / "data" / "flows.yaml", "version: 1\n");
    fs::create_symlink("../data/flows.yaml", dir_ / "etc" / "flows.yaml");
    watch(dir_ / "etc" / "flows.yaml");
  }
  // flows: <dir>/current/flows.yaml with current -> v1, and a v2 beside it, watched.
  void linked_folder() {
    fs::create_directories(dir_ / "v1");
    fs::create_directories(dir_ / "v2");
    put(dir_ / "v1" / "flows.yaml", "version: 1\n");
    put(dir_ / "v2" / "flows.yaml", "version: 1\nrules: []\n");
    fs::create_directory_symlink("v1", dir_ / "current");
    watch(dir_ / "current" / "flows.yaml");
  }
  // What ln -sfn does: a new link renamed over the old one.
  static void repoint(const fs::path& link, const fs::path& target) {
    const fs::path tmp = link.string() + ".new";
    fs::create_symlink(target, tmp);
    fs::rename(tmp, link);
  }
  // The watch moved from the old file to the new one: only the new one counts.
  void expect_moved(const fs::path& from, const fs::path& to) {
    append(from, "# old\n");
    EXPECT_EQ(changes(), 0) << from;
    append(to, "# new\n");
    EXPECT_EQ(changes(), 1) << to;
  }
  // A ConfigMap volume as the kubelet writes it: <d>/flows.yaml -> ..data/flows.yaml,
  // ..data -> ..<version>, the file in ..<version>/ beside another key.
  static void configmap(const fs::path& d, const std::string& version, const std::string& text) {
    fs::create_directories(d / version);
    put(d / version / "flows.yaml", text);
    put(d / version / "sluice.yaml", "x");
    fs::create_directory_symlink(version, d / "..data");
    fs::create_symlink("..data/flows.yaml", d / "flows.yaml");
  }
  // The kubelet's update: a new folder, a new link ..tmp to it renamed over ..data, the old
  // folder removed.
  static void swap(const fs::path& d, const std::string& from, const std::string& to,
                   const std::string& text) {
    fs::create_directories(d / to);
    put(d / to / "flows.yaml", text);
    put(d / to / "sluice.yaml", "x");
    fs::create_directory_symlink(to, d / "..tmp");
    fs::rename(d / "..tmp", d / "..data");
    fs::remove_all(d / from);
  }
};

TEST_F(FileWatchLinkTest, ChangeToTheFileALinkNamesInAnotherFolderIsOneChange) {
  link_elsewhere();
  append(dir_ / "data" / "flows.yaml", "rules: []\n");
  EXPECT_EQ(changes(), 1);
  EXPECT_EQ(changes(), 0);
  // An editor's rename-replace of the target counts too, and the watch survives it.
  put(dir_ / "data" / ".flows.yaml.swp", "version: 1\n");
  fs::rename(dir_ / "data" / ".flows.yaml.swp", dir_ / "data" / "flows.yaml");
  EXPECT_EQ(changes(), 1);
  append(dir_ / "data" / "flows.yaml", "# again\n");
  EXPECT_EQ(changes(), 1);
}

TEST_F(FileWatchLinkTest, AChainOfLinksIsFollowedToTheEnd) {
  // etc/flows.yaml -> /abs/current.yaml (absolute) -> store/v1/flows.yaml (relative).
  fs::create_directories(dir_ / "etc");
  fs::create_directories(dir_ / "store" / "v1");
  put(dir_ / "store" / "v1" / "flows.yaml", "version: 1\n");
  fs::create_symlink("store/v1/flows.yaml", dir_ / "current.yaml");
  fs::create_symlink(dir_ / "current.yaml", dir_ / "etc" / "flows.yaml");
  watch(dir_ / "etc" / "flows.yaml");
  append(dir_ / "store" / "v1" / "flows.yaml", "rules: []\n");
  EXPECT_EQ(changes(), 1);
  // Re-pointing the middle link (ln -sfn: a new link renamed over it) is one change, and the
  // watch moves to the new file: the old one no longer counts.
  fs::create_directories(dir_ / "store" / "v2");
  put(dir_ / "store" / "v2" / "flows.yaml", "version: 1\n");
  repoint(dir_ / "current.yaml", "store/v2/flows.yaml");
  EXPECT_EQ(changes(), 1);
  expect_moved(dir_ / "store" / "v1" / "flows.yaml", dir_ / "store" / "v2" / "flows.yaml");
}

TEST_F(FileWatchLinkTest, AConfigMapDataSwapIsOneChange) {
  const fs::path cm = dir_ / "cm";
  configmap(cm, "..2026_12_07_01_00_00.1", "version: 1\n");
  watch(cm / "flows.yaml");
  swap(cm, "..2026_12_07_01_00_00.1", "..2026_12_07_02_00_00.2", "version: 1\nrules: []\n");
  EXPECT_EQ(changes(), 1);
  EXPECT_EQ(changes(), 0);
  // The watch re-armed on the new folder: the next update counts too.
  swap(cm, "..2026_12_07_02_00_00.2", "..2026_12_07_03_00_00.3", "version: 1\n");
  EXPECT_EQ(changes(), 1);
  EXPECT_TRUE(watch_->alive());
}

TEST_F(FileWatchLinkTest, APlainFileStillWorks) {
  // The fixture's plain flows.yaml, through the same open as a link: written in place, replaced
  // by rename, replaced by a link to a file elsewhere, then that file written.
  append(path_, "rules: []\n");
  EXPECT_EQ(changes(), 1);
  put(dir_ / "tmp", "version: 1\n");
  fs::rename(dir_ / "tmp", path_);
  EXPECT_EQ(changes(), 1);
  fs::create_directories(dir_ / "data");
  put(dir_ / "data" / "flows.yaml", "version: 1\n");
  repoint(path_, "data/flows.yaml");
  EXPECT_EQ(changes(), 1);
  append(dir_ / "data" / "flows.yaml", "rules: []\n");
  EXPECT_EQ(changes(), 1);
}

TEST_F(FileWatchLinkTest, APlainFileInALinkedFolderFollowsTheFolderLinkSwap) {
  // current re-pointed from v1 to v2.
  linked_folder();
  repoint(dir_ / "current", "v2");
  EXPECT_EQ(changes(), 1);
  expect_moved(dir_ / "v1" / "flows.yaml", dir_ / "v2" / "flows.yaml");
}

TEST_F(FileWatchLinkTest, AFolderLinkReplacedInTwoStepsIsAGapNotTheEnd) {
  // current -> v1 removed, then current -> v2 made (rm; ln -s, or busybox ln -sfn): between the
  // two the configured name's folder is unreachable, and the watch must wait, not end.
  linked_folder();
  fs::remove(dir_ / "current");
  EXPECT_EQ(changes(), 0);
  EXPECT_TRUE(watch_->alive());
  fs::create_directory_symlink("v2", dir_ / "current");
  EXPECT_EQ(changes(), 1);
  expect_moved(dir_ / "v1" / "flows.yaml", dir_ / "v2" / "flows.yaml");
  EXPECT_TRUE(watch_->alive());
}

TEST_F(FileWatchLinkTest, OtherFilesInTheLinksFolderOrTheTargetsAreNotChanges) {
  link_elsewhere();
  for (const fs::path& d : {dir_ / "etc", dir_ / "data"}) {
    put(d / "sluice.yaml", "x");
    append(d / "sluice.yaml", "y");
    fs::rename(d / "sluice.yaml", d / "other.yaml");
    fs::create_symlink("other.yaml", d / "other-link");
    fs::remove(d / "other-link");
    fs::remove(d / "other.yaml");
  }
  EXPECT_EQ(changes(), 0);
  // ... while the watch is live: the file itself still counts.
  append(dir_ / "data" / "flows.yaml", "rules: []\n");
  EXPECT_EQ(changes(), 1);
}

TEST_F(FileWatchLinkTest, OtherKeysOfAConfigMapAreNotChanges) {
  const fs::path cm = dir_ / "cm";
  configmap(cm, "..v1", "version: 1\n");
  watch(cm / "flows.yaml");
  append(cm / "..v1" / "sluice.yaml", "y");
  put(cm / "sluice.yaml.tmp", "x");
  fs::remove(cm / "sluice.yaml.tmp");
  EXPECT_EQ(changes(), 0);
  append(cm / "..v1" / "flows.yaml", "rules: []\n");
  EXPECT_EQ(changes(), 1);
}

TEST_F(FileWatchLinkTest, ALinkRemovedWaitsForTheNewOneAndADanglingLinkForItsFile) {
  fs::create_symlink("data/flows.yaml", dir_ / "link.yaml");  // dangling, data/ missing too
  watch(dir_ / "link.yaml");
  fs::create_directories(dir_ / "data");  // a folder on the way is not the file
  EXPECT_EQ(changes(), 0);
  put(dir_ / "data" / "flows.yaml", "version: 1\n");
  EXPECT_EQ(changes(), 1);
  fs::remove(dir_ / "link.yaml");
  EXPECT_EQ(changes(), 0);
  fs::create_symlink("data/flows.yaml", dir_ / "link.yaml");
  EXPECT_EQ(changes(), 1);
  EXPECT_TRUE(watch_->alive());
}

TEST_F(FileWatchLinkTest, ALinkLoopIsNoChangeAndNoHang) {
  fs::create_symlink("b.yaml", dir_ / "a.yaml");
  fs::create_symlink("a.yaml", dir_ / "b.yaml");
  watch(dir_ / "a.yaml");
  EXPECT_EQ(changes(50ms), 0);
  // Breaking the loop into a file is a change.
  put(dir_ / "c.yaml", "version: 1\n");
  fs::rename(dir_ / "c.yaml", dir_ / "b.yaml");
  EXPECT_EQ(changes(), 1);
}

TEST(FileWatch, MissingFolderIsAnError) {
  auto w = FileWatch::open("/nonexistent-sluice-dir/flows.yaml", 10ms);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().find("/nonexistent-sluice-dir"), std::string::npos) << w.error();
}

}  // namespace
}  // namespace sluice::sys
