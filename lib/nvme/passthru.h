#pragma once
// NVMe passthrough: a namespace's generic char device (/dev/ngXnY, kernel 5.19+) written with
// real NVMe commands through io_uring (IORING_OP_URING_CMD). This header holds the control
// path: opening the device and reading its geometry (Identify). The data path is the queue
// pair (queue_pair.h): QueuePairOptions::passthru, add_namespace, write and flush.
//
// The Identify parsers are plain functions over the 4 KiB Identify data, tested without a
// device.

#include <cstddef>
#include <cstdint>
#include <string>

#include "lib/sys/result.h"

namespace sluice::nvme {

// Opcodes and command fields (NVMe base spec 2.0, NVM command set 1.0).
constexpr uint8_t kNvmeCmdFlush = 0x00;
constexpr uint8_t kNvmeCmdWrite = 0x01;
constexpr uint8_t kNvmeCmdRead = 0x02;
constexpr uint8_t kNvmeCmdWriteZeroes = 0x08;
constexpr uint8_t kNvmeAdminIdentify = 0x06;
constexpr uint32_t kNvmeCnsNamespace = 0;
constexpr uint32_t kNvmeCnsController = 1;
constexpr uint32_t kNvmeFua = 1u << 30;  // CDW12 bit 30: force unit access
constexpr size_t kIdentifySize = 4096;
// MDTS counts in units of the controller's minimum page (CAP.MPSMIN); sluice assumes 4 KiB,
// the minimum every controller supports.
constexpr uint32_t kNvmeMinPage = 4096;
// Number of logical blocks is a 16-bit 0's based field: at most 65536 blocks a command.
constexpr uint32_t kNvmeMaxBlocksPerCommand = 65536;

// What Identify Namespace (CNS 0) says about the format in use.
struct NamespaceFormat {
  uint64_t lbas = 0;      // NSZE: size in logical blocks
  uint32_t lba_size = 0;  // bytes, from the LBA format FLBAS selects
  uint16_t metadata = 0;  // metadata bytes per block of that format (sluice needs 0)
  uint8_t format = 0;     // the selected LBA format index
};

// Parses Identify Namespace data (kIdentifySize bytes).
Result<NamespaceFormat> parse_identify_namespace(const uint8_t* data, size_t len);
// Maximum data transfer per command from Identify Controller (CNS 1) data, in bytes; 0 when
// the controller sets no limit (MDTS 0).
Result<uint64_t> parse_identify_mdts(const uint8_t* data, size_t len);

// An opened NVMe namespace (the generic char device).
struct Namespace {
  int fd = -1;
  std::string path;
  uint32_t nsid = 0;
  uint32_t lba_size = 512;
  uint32_t lba_shift = 9;
  uint64_t lbas = 0;
  uint64_t size = 0;          // bytes: lbas * lba_size
  uint64_t mdts = 0;          // the controller's limit in bytes, 0 for none
  uint32_t max_transfer = 0;  // bytes one command moves: MDTS and the kernel's queue limits
  bool poll_queues = false;   // the nvme driver has poll queues (nvme poll_queues=N)
};

// Opens path (O_RDWR) as an NVMe generic char device and reads its geometry. A regular file,
// a block device, a char device that is not NVMe, or missing permissions are errors that
// say so and how to fix it.
Result<Namespace> open_passthru(const std::string& path);
void close_passthru(Namespace& ns) noexcept;

// Whether [offset, offset + len) is a valid write on ns: LBA-aligned, non-empty, inside the
// namespace. The error says which rule is broken (the queue pair's write() returns -EINVAL
// for the same cases).
Result<void> check_range(const Namespace& ns, uint64_t offset, uint64_t len,
                         const char* op = "write");

// Synchronous I/O through the passthrough ioctl (NVME_IOCTL_IO_CMD), for the control path
// only (opening a store, sluice-capture): each call waits for its commands, split at
// max_transfer. buf must be aligned to the LBA size; offset and len are checked with
// check_range. Errors name the device, the command and the NVMe status or errno.
Result<void> read_sync(const Namespace& ns, void* buf, uint64_t len, uint64_t offset);
// flags: kWriteFua from queue_pair.h (force unit access: durable when this returns).
Result<void> write_sync(const Namespace& ns, const void* buf, uint64_t len, uint64_t offset,
                        bool fua);
// Write Zeroes over [offset, offset + len), in commands within the controller's limit (the
// kernel's write_zeroes_max_bytes); where the controller lacks the command (Invalid Opcode or
// Field, or a limit of 0) the range is written with zero buffers instead. Not durable until a
// flush_sync.
Result<void> zero_sync(const Namespace& ns, uint64_t offset, uint64_t len);
// NVMe Flush: what completed is on the medium (the volatile write cache written back).
Result<void> flush_sync(const Namespace& ns);

// Opens the namespace at path, reads its first len bytes (a multiple of its LBA size) into out
// with NVMe Reads, closes it again; returns the namespace's size in bytes. For a look at a
// device without claiming it (sluice --check, sluice-capture).
Result<uint64_t> read_prefix(const std::string& path, uint8_t* out, size_t len);

// The block device of the same namespace (/dev/ngXnY -> /dev/nvmeXnY, through symlinks), or ""
// when the device's name is not of that form.
std::string block_device_of(const std::string& ng_path);

}  // namespace sluice::nvme
