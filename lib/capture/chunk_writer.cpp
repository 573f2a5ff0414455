// The chunk writer (chunk.h): the section header built once, EPBs packed with a bounds check
// and a few stores, the trailer with the CRC-32C (ISA-L).

#include <isa-l/crc.h>

#include <algorithm>
#include <cstring>

#include "lib/capture/chunk.h"
#include "lib/capture/pcapng_format.h"

namespace sluice::capture {

using namespace format;

namespace {

// Writes the section header into a buffer sized beforehand (growing a vector by small
// inserts trips GCC 12's false -Wstringop-overflow).
class HeaderBuilder {
 public:
  explicit HeaderBuilder(std::vector<uint8_t>& out) : out_(out) {}
  static size_t option_bytes(std::string_view value) { return 4 + pad4(value.size()); }
  void u16(uint16_t v) { st16(at(2), v); }
  void u32(uint32_t v) { st32(at(4), v); }
  void u64(uint64_t v) { st64(at(8), v); }
  void option(uint16_t code, std::string_view value) {
    u16(code);
    u16(static_cast<uint16_t>(value.size()));
    std::memcpy(at(pad4(value.size())), value.data(), value.size());
  }
  void begin_block(uint32_t type) {
    block_ = pos_;
    u32(type);
    u32(0);
  }
  // Sets both total-length fields once the block's body is in place.
  void end_block() {
    const auto total = static_cast<uint32_t>(pos_ + 4 - block_);
    u32(total);
    st32(out_.data() + block_ + 4, total);
  }

 private:
  uint8_t* at(size_t n) {
    uint8_t* p = out_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::vector<uint8_t>& out_;
  size_t pos_ = 0;
  size_t block_ = 0;
};

// Option values longer than an option can say are cut; names and the userappl are short.
std::string_view option_value(std::string_view s) {
  return s.substr(0, std::min<size_t>(s.size(), 0xFFFF - 3));
}

}  // namespace

uint32_t crc32c(const void* data, size_t len) noexcept {
  // ISA-L's crc32_iscsi neither inverts on entry nor on exit: the iSCSI convention (init and
  // final XOR 0xFFFFFFFF) is ours to apply. Its length is an int, so feed big buffers in parts.
  constexpr size_t kPiece = size_t{1} << 30;
  auto* p = static_cast<unsigned char*>(const_cast<void*>(data));
  uint32_t crc = 0xFFFFFFFF;
  while (len > 0) {
    const size_t n = std::min(len, kPiece);
    crc = crc32_iscsi(p, static_cast<int>(n), crc);
    p += n;
    len -= n;
  }
  return crc ^ 0xFFFFFFFF;
}

ChunkWriter::ChunkWriter(const std::vector<std::string>& ports, uint32_t snaplen,
                         std::string_view userappl)
    : snaplen_(snaplen) {
  const std::string_view appl = option_value(userappl);
  const std::string_view tsresol(reinterpret_cast<const char*>(&kTsresolNanoseconds), 1);
  size_t bytes = kShbMinBytes + HeaderBuilder::option_bytes(appl) + 4;
  for (const std::string& name : ports) {
    bytes += kIdbMinBytes + HeaderBuilder::option_bytes(option_value(name)) +
             HeaderBuilder::option_bytes(tsresol) + 4;
  }
  header_.assign(bytes, 0);
  HeaderBuilder h(header_);
  h.begin_block(kShbType);
  h.u32(kByteOrderMagic);
  h.u16(1);  // version 1.0
  h.u16(0);
  h.u64(~uint64_t{0});  // section length unknown
  h.option(kOptShbUserappl, appl);
  h.u32(kOptEnd);
  h.end_block();
  for (const std::string& name : ports) {
    h.begin_block(kIdbType);
    h.u16(kLinkTypeEthernet);
    h.u16(0);
    h.u32(snaplen);
    h.option(kOptIfName, option_value(name));
    h.option(kOptIfTsresol, tsresol);
    h.u32(kOptEnd);
    h.end_block();
  }
}

size_t ChunkWriter::min_chunk_bytes() const noexcept {
  return round_up(header_.size() + epb_bytes(snaplen_) + kTrailerMinBytes, kChunkAlign);
}

void ChunkWriter::begin(uint8_t* buf, size_t capacity) noexcept {
  buf_ = buf;
  capacity_ = capacity;
  std::memcpy(buf_, header_.data(), header_.size());
  used_ = header_.size();
  packets_ = 0;
  first_ns_ = 0;
  last_ns_ = 0;
}

uint8_t* ChunkWriter::append(uint32_t port, uint64_t ts_ns, uint32_t caplen,
                             uint32_t origlen) noexcept {
  const size_t bytes = epb_bytes(caplen);
  if (used_ + bytes + kTrailerMinBytes > capacity_) return nullptr;
  uint8_t* b = buf_ + used_;
  st32(b, kEpbType);
  st32(b + 4, static_cast<uint32_t>(bytes));
  st32(b + 8, port);
  st32(b + 12, static_cast<uint32_t>(ts_ns >> 32));
  st32(b + 16, static_cast<uint32_t>(ts_ns));
  st32(b + 20, caplen);
  st32(b + 24, origlen);
  uint8_t* payload = b + kEpbHeaderBytes;
  // The padding after the packet is zeroed now; the caller writes only caplen bytes.
  std::memset(payload + caplen, 0, pad4(caplen) - caplen);
  st32(b + bytes - 4, static_cast<uint32_t>(bytes));
  if (packets_ == 0) first_ns_ = ts_ns;
  last_ns_ = ts_ns;
  ++packets_;
  used_ += bytes;
  return payload;
}

size_t ChunkWriter::finish(uint64_t seq, size_t length) noexcept {
  const size_t end = std::max(round_up(used_ + kTrailerMinBytes, kChunkAlign), length);
  uint8_t* t = buf_ + used_;
  const auto total = static_cast<uint32_t>(end - used_);
  std::memset(t + kTrPadding, 0, total - kTrPadding - 4);
  st32(t, kTrailerType);
  st32(t + 4, total);
  st32(t + kTrMagic, kTrailerMagic);
  st32(t + kTrVersion, kTrailerVersion);
  st64(t + kTrSeq, seq);
  st64(t + kTrFirst, first_ns_);
  st64(t + kTrLast, last_ns_);
  st32(t + kTrPackets, packets_);
  st32(t + kTrCovered, static_cast<uint32_t>(used_));
  st32(t + kTrCrc, crc32c(buf_, used_));
  st32(t + total - 4, total);
  return end;
}

}  // namespace sluice::capture
