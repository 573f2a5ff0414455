#pragma once
// The directory store (CONTRACT "Capture store"): segment files
// <path>/sluice-<YYYYMMDDTHHMMSSZ>-<NNNNNN>.pcapng, the one being written ending in .part.
// Naming, listing, repair after a crash and retention. DPDK-free; the capture lcore calls
// these once per segment (never per packet), sluice-capture calls them on demand.

#include <cstdint>
#include <string>
#include <vector>

#include "lib/capture/chunk.h"
#include "lib/sys/result.h"

namespace sluice::capture {

// "sluice-20261201T220000Z-000042.pcapng" (+ ".part"): UTC time of first_ns, number.
std::string segment_name(uint64_t first_ns, uint64_t number, bool part);

struct SegmentFile {
  std::string path;
  std::string name;
  uint64_t number = 0;
  uint64_t first_s = 0;  // from the name (seconds since the epoch)
  bool part = false;
  uint64_t size = 0;
};

// The segment files in dir by segment number (other files are ignored). An error when dir
// cannot be read.
Result<std::vector<SegmentFile>> list_segments(const std::string& dir);

struct RepairReport {
  unsigned repaired = 0;           // .part files cut and renamed
  unsigned removed = 0;            // .part files with no good chunk, deleted
  uint64_t bytes_cut = 0;          // bytes dropped from their ends
  uint64_t next_seq = 0;           // chunk sequence number to continue with
  uint64_t next_segment = 0;       // segment number to continue with
  uint64_t store_bytes = 0;        // bytes of the closed segments after repair
  std::vector<std::string> lines;  // one line per file touched, for the log
};

// What a crash left: each .part file is cut after its last good chunk of the contiguous run
// from its start (fdatasync) and renamed without .part; one with no good chunk is deleted.
// Also finds where numbering continues (the last good chunk's seq + 1, the highest segment
// number + 1).
Result<RepairReport> repair(const std::string& dir);

// Deletes the oldest closed segments (never keep_from or later) while the closed segments
// in dir take more than limit bytes. Returns the bytes freed.
Result<uint64_t> enforce_retention(const std::string& dir, uint64_t limit, uint64_t keep_from);

}  // namespace sluice::capture
