#pragma once
// The pcapng and trailer constants and the little-endian loads and stores that the chunk
// writer (chunk_writer.cpp) and the scanner (chunk_scan.cpp) share. Private to lib/capture.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sluice::capture::format {

constexpr uint32_t kShbType = 0x0A0D0D0A;
constexpr uint32_t kIdbType = 0x00000001;
constexpr uint32_t kEpbType = 0x00000006;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint16_t kOptEnd = 0;
constexpr uint16_t kOptShbUserappl = 4;
constexpr uint16_t kOptIfName = 2;
constexpr uint16_t kOptIfTsresol = 9;
constexpr uint16_t kLinkTypeEthernet = 1;
constexpr uint8_t kTsresolNanoseconds = 9;
constexpr size_t kBlockMinBytes = 12;  // type, length, length again
constexpr size_t kShbMinBytes = 28;
constexpr size_t kIdbMinBytes = 20;
constexpr size_t kEpbHeaderBytes = 28;

// Trailer field offsets (CONTRACT "Capture store").
constexpr size_t kTrMagic = 8;
constexpr size_t kTrVersion = 12;
constexpr size_t kTrSeq = 16;
constexpr size_t kTrFirst = 24;
constexpr size_t kTrLast = 32;
constexpr size_t kTrPackets = 40;
constexpr size_t kTrCovered = 44;
constexpr size_t kTrCrc = 48;
constexpr size_t kTrPadding = 52;

constexpr size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}
constexpr size_t pad4(size_t n) {
  return (n + 3) & ~size_t{3};
}

// The host is x86-64 (little-endian like the format), so memcpy is the whole conversion.
inline uint32_t ld32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline uint64_t ld64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void st16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, sizeof v);
}
inline void st32(uint8_t* p, uint32_t v) {
  std::memcpy(p, &v, sizeof v);
}
inline void st64(uint8_t* p, uint64_t v) {
  std::memcpy(p, &v, sizeof v);
}

}  // namespace sluice::capture::format
