#pragma once
// The raw-device store (issue 12): a block device (or an image of one) holding a 4096-byte
// header block at offset 0 and, after it, a ring of slots of chunk_bytes each. Slot i holds the
// chunk whose sequence number s has s % slots == i, always a full slot (the trailer's zero
// padding fills what the packets leave), so every trailer ends where its slot ends and a
// slot's chunk is found without a scan. The oldest chunk is overwritten when the ring wraps.
//
// Header layout (little-endian; README "Capture" repeats it):
//   0  8  magic: the bytes "SLCKRING"
//   8  4  version: 1
//  12  4  header bytes: 4096
//  16  8  store id (random, chosen when the store was formatted)
//  24  8  chunk bytes
//  32  8  slots in the ring
//  40  8  data offset: 4096 (slot i starts at data offset + i * chunk bytes)
//  48  8  creation time, ns since the epoch
//  56  .. zero
//  4092 4 CRC-32C (as the chunks') of bytes 0..4091
//
// Pure functions over buffers, DPDK-free: sluice (at start) and sluice-capture use them.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace sluice::capture {

inline constexpr size_t kRawHeaderBytes = 4096;
inline constexpr uint32_t kRawVersion = 1;

struct RawHeader {
  uint64_t store_id = 0;
  uint64_t chunk_bytes = 0;
  uint64_t slots = 0;
  uint64_t created_ns = 0;
  uint64_t data_offset = kRawHeaderBytes;

  uint64_t slot_offset(uint64_t slot) const noexcept { return data_offset + slot * chunk_bytes; }
  uint64_t bytes() const noexcept { return data_offset + slots * chunk_bytes; }
};

// Writes the header block (kRawHeaderBytes) into out.
void encode_raw_header(const RawHeader& h, uint8_t* out) noexcept;

enum class RawHeaderState : uint8_t {
  kValid,
  kForeign,  // no raw-store magic: not a sluice store (foreign data, or nothing yet)
  kDamaged,  // the magic, but a bad CRC or field
  kVersion,  // a version this build does not know
};

struct RawHeaderRead {
  RawHeaderState state = RawHeaderState::kForeign;
  RawHeader header;
  std::string why;  // for anything but kValid
};
RawHeaderRead decode_raw_header(const uint8_t* block, size_t len);

// Slots a device of `bytes` holds after the header (0 when not even one).
uint64_t raw_slots(uint64_t bytes, uint64_t chunk_bytes) noexcept;

// The seq of the chunk in a slot's bytes (chunk_bytes of them): one good chunk filling the
// slot whose seq belongs to the slot (seq % slots == index); nullopt for anything else (unwritten,
// torn, corrupt, out of place).
std::optional<uint64_t> slot_seq(const uint8_t* slot, size_t chunk_bytes, uint64_t slots,
                                 uint64_t index);

struct RingPosition {
  bool empty = true;        // no chunk found: the ring starts at seq 0, slot 0
  uint64_t newest_seq = 0;  // the last chunk written (when not empty)
  uint64_t next_seq = 0;    // where writing continues
  uint64_t probes = 0;      // slots read to find it
  // Slots holding the store's chunks, oldest first: first_slot, then count - 1 more around the
  // ring.
  uint64_t first_slot = 0;
  uint64_t count = 0;
};

// Where the ring left off, by a binary search over slot sequence numbers: seqs increase around
// the ring from slot 0 while they stay in slot 0's lap (seq / slots), so the newest chunk is the
// last slot of slot 0's lap; then up to `window` slots after it are read too, since a crash with
// writes in flight may leave a hole before chunks that did complete. probe(i) is the seq of the
// chunk in slot i, or nullopt (slot_seq on its bytes).
RingPosition find_ring_position(uint64_t slots, uint64_t window,
                                const std::function<std::optional<uint64_t>(uint64_t)>& probe);

}  // namespace sluice::capture
