#pragma once
// Builds capture segments in memory with ChunkWriter, the way the capture lcore does, for the
// chunk, store and sluice-capture tests.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lib/capture/chunk.h"

namespace sluice::capture::test {

inline constexpr uint64_t kT0 = 1796162400ull * 1000000000ull;  // 2026-12-01T22:00:00Z

// A frame of len bytes: Ethernet/IPv4/UDP headers from 10.0.0.<src> to 10.0.0.2, port dport,
// then a payload that never holds the bytes of a block type.
inline std::vector<uint8_t> udp_frame(uint32_t len, uint8_t src, uint16_t dport) {
  std::vector<uint8_t> f(len < 42 ? 42 : len, 0);
  const uint8_t hdr[] = {0x02,
                         0,
                         0,
                         0,
                         0,
                         0x02,
                         0x02,
                         0,
                         0,
                         0,
                         0,
                         src,  // dst, src MAC
                         0x08,
                         0x00,  // IPv4
                         0x45,
                         0,
                         0,
                         0,
                         0,
                         0,
                         0,
                         0,
                         64,
                         17,
                         0,
                         0,  // v4, ttl, UDP
                         10,
                         0,
                         0,
                         src,
                         10,
                         0,
                         0,
                         2,  // addresses
                         0x30,
                         0x39,
                         static_cast<uint8_t>(dport >> 8),
                         static_cast<uint8_t>(dport),
                         0,
                         0,
                         0,
                         0};
  std::memcpy(f.data(), hdr, sizeof hdr);
  const uint16_t ip_len = static_cast<uint16_t>(f.size() - 14);
  f[16] = static_cast<uint8_t>(ip_len >> 8);
  f[17] = static_cast<uint8_t>(ip_len);
  const uint16_t udp_len = static_cast<uint16_t>(f.size() - 34);
  f[38] = static_cast<uint8_t>(udp_len >> 8);
  f[39] = static_cast<uint8_t>(udp_len);
  for (size_t i = 42; i < f.size(); ++i) f[i] = static_cast<uint8_t>('a' + i % 26);
  return f;
}

struct TestPacket {
  uint32_t port = 0;
  uint64_t ts_ns = 0;
  std::vector<uint8_t> frame;
};

// Appends one chunk of capacity bytes holding the packets (all must fit) to seg; returns its
// length.
inline size_t add_chunk(std::vector<uint8_t>& seg, ChunkWriter& w, size_t capacity, uint64_t seq,
                        const std::vector<TestPacket>& packets) {
  std::vector<uint8_t> buf(capacity, 0xEE);  // garbage: the writer must zero what it leaves
  w.begin(buf.data(), buf.size());
  for (const TestPacket& p : packets) {
    const auto caplen =
        static_cast<uint32_t>(p.frame.size() < w.snaplen() ? p.frame.size() : w.snaplen());
    uint8_t* at = w.append(p.port, p.ts_ns, caplen, static_cast<uint32_t>(p.frame.size()));
    if (at == nullptr) return 0;
    std::memcpy(at, p.frame.data(), caplen);
  }
  const size_t n = w.finish(seq);
  seg.insert(seg.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
  return n;
}

// count packets from ts0 one microsecond apart, alternating ports, lengths varying.
inline std::vector<TestPacket> packets(size_t count, uint64_t ts0, uint32_t ports = 2,
                                       uint32_t len0 = 60) {
  std::vector<TestPacket> out;
  for (size_t i = 0; i < count; ++i) {
    TestPacket p;
    p.port = static_cast<uint32_t>(i % ports);
    p.ts_ns = ts0 + i * 1000;
    p.frame = udp_frame(len0 + static_cast<uint32_t>(i * 37 % 200),
                        static_cast<uint8_t>(1 + p.port), static_cast<uint16_t>(1000 + i));
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace sluice::capture::test
