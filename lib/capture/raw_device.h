#pragma once
// Opening the raw-device store (raw_store.h) for the capture lcore: the block device opened
// exclusively with O_DIRECT, or the NVMe namespace's generic char device /dev/ngXnY (real NVMe
// commands through passthrough, lib/nvme/passthru.h); its header read (or written with FUA,
// when capture.format allows), and the place the ring left off found by a binary search over
// slot trailers. Control plane, at start.

#include <cstdint>
#include <string>
#include <vector>

#include "lib/capture/raw_store.h"
#include "lib/config/config.h"
#include "lib/nvme/passthru.h"
#include "lib/sys/result.h"

namespace sluice::capture {

// How the store's device is written, from capture.backend and what capture.path is.
enum class RawKind : uint8_t {
  kDirectory,  // not a raw store: the directory store
  kBlock,      // a block device (or its image), io_uring reads and writes, O_DIRECT
  kPassthru,   // an NVMe namespace's generic char device, NVMe commands (IORING_OP_URING_CMD)
};
// The kind for cfg, or the error that names the fix: backend passthru on anything but an NVMe
// char device, backend uring on a char device, a path that is neither.
Result<RawKind> raw_kind(const config::CaptureConfig& cfg);

struct RawDevice {
  // kBlock: the block device, O_RDWR | O_DIRECT | O_EXCL. kPassthru: ns.fd. close_raw_device
  // closes what is open.
  int fd = -1;
  RawKind kind = RawKind::kBlock;
  nvme::Namespace ns;  // kPassthru: the namespace and its geometry
  int claim_fd = -1;   // kPassthru: the namespace's block device held O_EXCL (none: -1)
  RawHeader header;
  RingPosition position;
  bool formatted = false;          // a new store was written at this start
  std::vector<std::string> lines;  // for the log
};

// Errors name the fix: foreign data without capture.format: true, another chunk size, a
// device too small for the header and two chunks, a device smaller than its store.
Result<RawDevice> open_raw_device(const config::CaptureConfig& cfg, RawKind kind);
void close_raw_device(RawDevice& dev) noexcept;
// At stop, after the last write completed: the device's volatile write cache written back
// (fdatasync on a block device, an NVMe Flush on a namespace).
Result<void> sync_raw_device(const RawDevice& dev);

// What sluice would find on the device at cfg.path (a block device, or an NVMe char device read
// through passthrough), read-only and without claiming it
// (sluice --check and --doctor, also while sluice runs): its size, the slots it holds, and
// whether it holds this store, another or foreign data. ok false: sluice would not start.
struct RawDeviceState {
  bool ok = false;
  std::string text;
};
RawDeviceState describe_raw_device(const config::CaptureConfig& cfg);

}  // namespace sluice::capture
