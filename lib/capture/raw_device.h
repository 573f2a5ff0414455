#pragma once
// Opening the raw-device store (raw_store.h) for the capture lcore: the block device opened
// exclusively with O_DIRECT, its header read (or written, when capture.format allows), and the
// place the ring left off found by a binary search over slot trailers. Control plane, at start.

#include <cstdint>
#include <string>
#include <vector>

#include "lib/capture/raw_store.h"
#include "lib/config/config.h"
#include "lib/sys/result.h"

namespace sluice::capture {

struct RawDevice {
  int fd = -1;  // O_RDWR | O_DIRECT | O_EXCL; the caller closes it
  RawHeader header;
  RingPosition position;
  bool formatted = false;          // a new store was written at this start
  std::vector<std::string> lines;  // for the log
};

// Errors name the fix: foreign data without capture.format: true, another chunk size, a
// device too small for the header and two chunks, a device smaller than its store.
Result<RawDevice> open_raw_device(const config::CaptureConfig& cfg);

// What sluice would find on the block device at cfg.path, read-only and without claiming it
// (sluice --check and --doctor, also while sluice runs): its size, the slots it holds, and
// whether it holds this store, another or foreign data. ok false: sluice would not start.
struct RawDeviceState {
  bool ok = false;
  std::string text;
};
RawDeviceState describe_raw_device(const config::CaptureConfig& cfg);

}  // namespace sluice::capture
