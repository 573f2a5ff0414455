#pragma once
// The capture store's chunk (CONTRACT "Capture store"): a complete pcapng section in a
// multiple of 4096 bytes. SHB, one IDB per port, EPBs, and the SLCK trailer block that ends
// exactly at the chunk's end and carries the chunk's sequence number and the CRC-32C (ISA-L
// crc32_iscsi) of every byte before it.
//
// Pure functions over buffers, DPDK-free: the capture lcore packs with ChunkWriter, and
// sluice-capture (list, verify, export, repair) reads with scan_chunks / for_each_packet.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::capture {

inline constexpr size_t kChunkAlign = 4096;
inline constexpr uint32_t kTrailerType = 0x80534C43;
inline constexpr uint32_t kTrailerMagic = 0x4B434C53;  // the bytes "SLCK" read little-endian
inline constexpr uint32_t kTrailerVersion = 1;
inline constexpr size_t kTrailerMinBytes = 56;
inline constexpr size_t kEpbOverhead = 32;  // EPB header (28) + trailing length (4), no options

// CRC-32C as CONTRACT defines it (crc32c("123456789") == 0xE3069283).
uint32_t crc32c(const void* data, size_t len) noexcept;

// Bytes an EPB of caplen bytes of packet data takes (padded to 4).
constexpr size_t epb_bytes(uint32_t caplen) noexcept {
  return kEpbOverhead + ((static_cast<size_t>(caplen) + 3) & ~size_t{3});
}

// Packs packets into one chunk at a time. The section header (SHB + IDBs) is built once and
// copied into each chunk. Per packet: a bounds check and a few stores; the caller copies the
// packet bytes to where append() points. No allocation after construction.
class ChunkWriter {
 public:
  // ports[i] is the name of interface i (the port index); userappl is the SHB's shb_userappl
  // ("sluice 0.1.0").
  ChunkWriter(const std::vector<std::string>& ports, uint32_t snaplen, std::string_view userappl);

  // Starts a chunk in buf (capacity: a multiple of 4096, at least min_chunk_bytes()).
  void begin(uint8_t* buf, size_t capacity) noexcept;
  // Appends an EPB header for a packet (interface port, timestamp in ns since the epoch,
  // captured length caplen <= snaplen, original length origlen) and returns where caplen
  // bytes of packet data go; the padding after them is already zero. nullptr when this chunk
  // has no room left for it (finish it and begin another).
  uint8_t* append(uint32_t port, uint64_t ts_ns, uint32_t caplen, uint32_t origlen) noexcept;
  // Closes the chunk: zero padding and the trailer with seq, the packet count, first and last
  // timestamps and the CRC. Returns the chunk's length (a multiple of 4096, <= capacity):
  // the smallest that holds it, or length when that is given (a multiple of 4096 that holds it,
  // <= capacity: the raw store's full slots, the trailer's zero padding filling the rest).
  size_t finish(uint64_t seq, size_t length = 0) noexcept;

  uint32_t packets() const noexcept { return packets_; }
  uint64_t first_ns() const noexcept { return first_ns_; }  // of the chunk's first packet
  bool empty() const noexcept { return packets_ == 0; }
  size_t used() const noexcept { return used_; }  // bytes before the trailer so far
  // How many more packets of caplen bytes this chunk surely holds.
  size_t room_for(uint32_t caplen) const noexcept {
    return (capacity_ - used_ - kTrailerMinBytes) / epb_bytes(caplen);
  }
  size_t header_bytes() const noexcept { return header_.size(); }
  // The section header (SHB + IDBs) every chunk starts with; sluice-capture export starts its
  // plain pcapng file with one.
  const std::vector<uint8_t>& header() const noexcept { return header_; }
  uint32_t snaplen() const noexcept { return snaplen_; }
  // The smallest chunk that holds the header, one snaplen packet and the trailer, rounded up
  // to 4096: the config's lower bound for chunk_bytes.
  size_t min_chunk_bytes() const noexcept;

 private:
  std::vector<uint8_t> header_;
  uint32_t snaplen_;
  uint8_t* buf_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  uint32_t packets_ = 0;
  uint64_t first_ns_ = 0;
  uint64_t last_ns_ = 0;
};

enum class ChunkState : uint8_t { kGood, kCorrupt, kTorn, kUnwritten };
std::string_view chunk_state_name(ChunkState s) noexcept;  // "good", "corrupt", ...

struct ChunkInfo {
  ChunkState state = ChunkState::kTorn;
  uint64_t offset = 0;  // in the segment
  uint64_t length = 0;  // bytes this entry spans
  uint64_t seq = 0;     // from the trailer (good and corrupt chunks)
  uint64_t first_ns = 0, last_ns = 0;
  uint32_t packets = 0;
  std::string why;  // for a chunk that is not good: what is wrong, for people
};

// Every chunk of a segment's bytes, in file order. A chunk is good when its trailer is
// intact and every byte of it checks out (CRC of the covered bytes, both length fields, magic,
// version, covered offset, packet count and first/last timestamps against its EPBs, zero
// padding, and its sequence number continuing the previous good chunk's); corrupt when a
// trailer is found but something does not match; torn when it is cut short or has no
// trailer; unwritten when it is all zeros. After a bad chunk the scan resynchronises on the
// next 4096-aligned section header, so one damaged chunk never hides the ones after it.
std::vector<ChunkInfo> scan_chunks(const uint8_t* data, size_t len);

struct PacketRef {
  uint32_t port = 0;  // interface id
  uint64_t ts_ns = 0;
  uint32_t caplen = 0, origlen = 0;
  const uint8_t* data = nullptr;
};

// The interface names (if_name of each IDB, in order) of the chunk at data, or empty when
// it is not a readable section.
std::vector<std::string> chunk_interfaces(const uint8_t* chunk, size_t len);
// Calls fn for every EPB of a good chunk (as scan_chunks found it), in order.
void for_each_packet(const uint8_t* chunk, size_t len,
                     const std::function<void(const PacketRef&)>& fn);

}  // namespace sluice::capture
