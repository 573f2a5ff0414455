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

TEST(FileWatch, MissingFolderIsAnError) {
  auto w = FileWatch::open("/nonexistent-sluice-dir/flows.yaml", 10ms);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().find("/nonexistent-sluice-dir"), std::string::npos) << w.error();
}

}  // namespace
}  // namespace sluice::sys
