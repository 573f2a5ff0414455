#pragma once
// The frames sluice-gen sends: valid IPv4/IPv6 UDP/TCP templates (one per flow and size), one
// malformed template per CONTRACT validation reason, frames read from a pcap file, and the
// trailer (stream id, sequence number, TSC) stamped into the last bytes of every frame that
// has room for it. Built with the one frame builder (lib/packet, DPDK's headers only, no
// EAL), so tests/unit/gen checks every template against the scalar validator, and sluice-gen
// does the same at start.

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lib/sys/result.h"
#include "simd/validate.h"

namespace sluice::gen {

// ---- the trailer -----------------------------------------------------------------------

// The last kTrailerLen bytes of a stamped frame: magic, stream id, sequence number (48 bits)
// and TSC at send time (48 bits), little-endian. A 64-byte IPv4/UDP frame has exactly this
// much payload. The receiver reads it at a fixed place (the frame's end), parsing nothing.
inline constexpr uint32_t kTrailerLen = 18;
inline constexpr uint32_t kTrailerMagic = 0x314E4753;  // "SGN1"
inline constexpr uint64_t kMask48 = (uint64_t{1} << 48) - 1;
// Templates that are not stamped (malformed frames, pcap frames without room).
inline constexpr uint16_t kNoStream = 0xFFFF;
inline constexpr unsigned kMaxStreams = 0xFFFF;

struct Trailer {
  uint16_t stream;
  uint64_t seq;
  uint64_t tsc;
};

inline void write_trailer(uint8_t* p, uint16_t stream, uint64_t seq, uint64_t tsc) noexcept {
  const uint64_t s = seq & kMask48, t = tsc & kMask48;
  std::memcpy(p, &kTrailerMagic, 4);
  std::memcpy(p + 4, &stream, 2);
  std::memcpy(p + 6, &s, 6);   // little-endian host: the low 6 bytes
  std::memcpy(p + 12, &t, 6);  // (x86-64 only, as is DPDK's TSC)
}

inline bool read_trailer(const uint8_t* p, Trailer& out) noexcept {
  uint32_t magic;
  std::memcpy(&magic, p, 4);
  if (magic != kTrailerMagic) return false;
  uint64_t s = 0, t = 0;
  std::memcpy(&out.stream, p + 4, 2);
  std::memcpy(&s, p + 6, 6);
  std::memcpy(&t, p + 12, 6);
  out.seq = s;
  out.tsc = t;
  return true;
}

// ---- templates -------------------------------------------------------------------------

struct Template {
  std::vector<uint8_t> frame;                 // Ethernet frame without FCS
  uint16_t stream = kNoStream;                // stamped when != kNoStream
  simd::Verdict expect = simd::Verdict::kOk;  // what sluice's validator says of it
  // L4 checksum kept valid after stamping: the field's offset (0: none), where the L4 header
  // starts, and the raw sum of its coverage with the trailer zeroed (packet::cksum_extend).
  uint16_t cksum_off = 0;
  uint16_t l4_off = 0;
  uint32_t cksum_base = 0;
  bool udp = false;  // a UDP checksum that computes to 0 is sent as 0xFFFF
};

// Writes the trailer at the frame's end and refreshes its L4 checksum. frame points at a
// copy of t.frame. No allocation; a few ns.
void stamp(const Template& t, uint8_t* frame, uint64_t seq, uint64_t tsc) noexcept;

enum class Proto : uint8_t { kUdp = 17, kTcp = 6 };

struct FlowSpec {
  unsigned flows = 1;
  bool ipv6 = false;
  Proto proto = Proto::kUdp;
  // Flow i: source address src + i (added to the last 32 bits), source port sport + i
  // (wrapping), destination port dport + i % dport_count; destination address dst.
  std::array<uint8_t, 16> src{};  // IPv4 in the first 4 bytes
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 1024;
  uint16_t dport = 5001;
  unsigned dport_count = 1;
  std::array<uint8_t, 6> mac_src{0x02, 0, 0, 0, 0, 0x01};
  std::array<uint8_t, 6> mac_dst{0x02, 0, 0, 0, 0, 0x02};
  // Wire sizes including the 4-byte FCS (RFC 2544: 64 is the smallest Ethernet frame), sent
  // in this order per flow; sizes too small for the headers and trailer are raised.
  std::vector<uint16_t> sizes{64};
};

// IMIX (simple, 7:4:1 of 64, 594 and 1518 bytes), interleaved.
std::vector<uint16_t> imix_sizes();

// Smallest wire size that holds the headers and the trailer.
uint16_t min_wire_size(const FlowSpec& spec);

// What to send and in which order.
struct TrafficPlan {
  std::vector<Template> templates;
  std::vector<uint32_t> schedule;   // valid templates, cycled
  std::vector<uint32_t> malformed;  // malformed templates, cycled at `share`
  unsigned streams = 0;             // stream ids in use: 0..streams-1
  std::string summary;
};

// One template per flow and size. Flow i is stream i.
Result<TrafficPlan> flow_plan(const FlowSpec& spec);
// One malformed template per CONTRACT validation reason, built around flow 0 of spec,
// appended to plan.templates and listed in plan.malformed.
void add_malformed(TrafficPlan& plan, const FlowSpec& spec);
// Frames of a classic pcap file (either byte order, us or ns). Frames with room for the
// trailer after their headers (valid IPv4/IPv6 TCP or UDP) are stamped as stream 0; the rest
// go out as they are.
Result<TrafficPlan> pcap_plan(const std::string& path, uint32_t max_frame);

// Checks every template against the scalar validator: valid ones must pass, malformed ones
// must get exactly their reason. An error names the first template that does not.
Result<void> verify_plan(const TrafficPlan& plan);

// Parses "10.0.0.1" or "2001:db8::1" into 16 bytes; sets ipv6.
bool parse_ip(const std::string& text, std::array<uint8_t, 16>& out, bool& ipv6);
bool parse_mac(const std::string& text, std::array<uint8_t, 6>& out);

}  // namespace sluice::gen
