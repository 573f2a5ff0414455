// The chunk scanner (chunk.h): scan_chunks, chunk_interfaces, for_each_packet.
//
// The scanner is fuzzed and reads damaged disks, so every read goes through a bounds check.
// It is built so that one damaged byte costs exactly the chunk holding it: the chunk's end is
// found from both directions (forward along the block lengths, and backward from 4096-aligned
// ends through the trailer's repeated length), so a damaged length in one of them still leaves
// the other to find where the next chunk begins.

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "lib/capture/chunk.h"
#include "lib/capture/pcapng_format.h"

namespace sluice::capture {

using namespace format;

namespace {

bool all_zero(const uint8_t* p, size_t n) {
  // Word at a time: the scan runs over whole unwritten gigabytes of a preallocated segment.
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if (ld64(p + i) != 0) return false;
  }
  for (; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

bool is_shb_at(const uint8_t* data, size_t len, size_t at) {
  return at + kShbMinBytes <= len && ld32(data + at) == kShbType &&
         ld32(data + at + 8) == kByteOrderMagic;
}

// What the forward walk along block lengths learnt about a chunk.
struct Walk {
  bool shb_ok = false;
  bool reached_trailer = false;
  size_t trailer_at = 0;
  uint32_t epbs = 0;
  uint64_t first_ns = 0, last_ns = 0;
  std::string problem;  // the first thing wrong on the way (empty when nothing)
};

Walk walk_blocks(const uint8_t* data, size_t len, size_t start) {
  Walk w;
  if (!is_shb_at(data, len, start)) {
    w.problem = "no section header block at the chunk's start";
    return w;
  }
  w.shb_ok = true;
  uint32_t interfaces = 0;
  size_t pos = start;
  while (true) {
    if (pos + 8 > len) {
      w.problem = fmt::format("blocks run past the end of the data at +{}", pos - start);
      return w;
    }
    const uint32_t type = ld32(data + pos);
    const uint32_t total = ld32(data + pos + 4);
    if (type == kTrailerType) {
      w.reached_trailer = true;
      w.trailer_at = pos;
      return w;
    }
    if (type == kShbType && pos != start) {
      w.problem = fmt::format("next section begins at +{} before a trailer", pos - start);
      return w;
    }
    if (total < kBlockMinBytes || total % 4 != 0 || total > len - pos) {
      w.problem = fmt::format("block at +{} has a bad length {}", pos - start, total);
      return w;
    }
    if (ld32(data + pos + total - 4) != total && w.problem.empty()) {
      w.problem = fmt::format("block at +{}: its two length fields differ", pos - start);
    }
    if (type == kIdbType) {
      ++interfaces;
    } else if (type == kEpbType && w.problem.empty()) {
      if (total < kEpbOverhead ||
          static_cast<uint64_t>(ld32(data + pos + 20)) > total - kEpbOverhead) {
        w.problem = fmt::format("packet block at +{}: captured length past its end", pos - start);
      } else if (ld32(data + pos + 8) >= interfaces) {
        w.problem = fmt::format("packet block at +{}: interface {} has no description", pos - start,
                                ld32(data + pos + 8));
      }
    }
    if (type == kEpbType && total >= kEpbHeaderBytes) {
      const uint64_t ts =
          (static_cast<uint64_t>(ld32(data + pos + 12)) << 32) | ld32(data + pos + 16);
      if (w.epbs == 0) w.first_ns = ts;
      w.last_ns = ts;
      ++w.epbs;
    }
    pos += total;
  }
}

// The chunk end after a trailer at trailer_at: a 4096-aligned end whose last 4 bytes give the
// distance back to the trailer. Looks no further than the next section header, so a damaged
// chunk costs time in proportion to its own length.
size_t find_end_for_trailer(const uint8_t* data, size_t len, size_t trailer_at) {
  for (size_t e = round_up(trailer_at + kTrailerMinBytes, kChunkAlign); e <= len;
       e += kChunkAlign) {
    if (ld32(data + e - 4) == e - trailer_at) return e;
    if (is_shb_at(data, len, e)) break;
  }
  return 0;
}

// A chunk whose blocks do not chain to its trailer: finds the trailer backward from each
// 4096-aligned end. The repeated length, the leading length, the magic and the covered offset
// must all point back to start; the type alone may be damaged, since a damaged type is the
// one way a single bad byte in the trailer stops the forward walk.
size_t find_trailer_backward(const uint8_t* data, size_t len, size_t start, size_t* end) {
  for (size_t e = start + kChunkAlign; e <= len; e += kChunkAlign) {
    const uint32_t total = ld32(data + e - 4);
    if (total >= kTrailerMinBytes && total <= e - start) {
      const size_t t = e - total;
      if (ld32(data + t + 4) == total && ld32(data + t + kTrMagic) == kTrailerMagic &&
          ld32(data + t + kTrCovered) == t - start) {
        *end = e;
        return t;
      }
    }
    if (is_shb_at(data, len, e)) break;
  }
  return 0;
}

ChunkInfo from_trailer(const uint8_t* data, size_t start, size_t end, size_t t) {
  ChunkInfo c;
  c.offset = start;
  c.length = end - start;
  c.seq = ld64(data + t + kTrSeq);
  c.first_ns = ld64(data + t + kTrFirst);
  c.last_ns = ld64(data + t + kTrLast);
  c.packets = ld32(data + t + kTrPackets);
  return c;
}

// Checks a chunk whose trailer the forward walk reached; fills c (state good or corrupt).
void check_trailer(const uint8_t* data, size_t start, size_t end, const Walk& w, bool lengths_agree,
                   ChunkInfo& c) {
  const size_t t = w.trailer_at;
  const size_t covered = t - start;
  const uint32_t total = static_cast<uint32_t>(end - t);
  std::string why;
  if (!lengths_agree) {
    why = "trailer length fields disagree";
  } else if (ld32(data + t + kTrMagic) != kTrailerMagic) {
    why = "trailer magic is not SLCK";
  } else if (ld32(data + t + kTrVersion) != kTrailerVersion) {
    why = fmt::format("trailer version {} is not {}", ld32(data + t + kTrVersion), kTrailerVersion);
  } else if (ld32(data + t + kTrCovered) != covered) {
    why = fmt::format("trailer covers {} bytes, it begins at +{}", ld32(data + t + kTrCovered),
                      covered);
  } else if (const uint32_t crc = crc32c(data + start, covered); crc != ld32(data + t + kTrCrc)) {
    why = fmt::format("CRC-32C {:08x} does not match the trailer's {:08x}", crc,
                      ld32(data + t + kTrCrc));
  } else if (!w.problem.empty()) {
    why = w.problem;
  } else if (ld32(data + t + kTrPackets) != w.epbs) {
    why = fmt::format("trailer counts {} packets, the chunk holds {}", ld32(data + t + kTrPackets),
                      w.epbs);
  } else if (ld64(data + t + kTrFirst) != w.first_ns || ld64(data + t + kTrLast) != w.last_ns) {
    why = "trailer timestamps differ from the first and last packets";
  } else if (!all_zero(data + t + kTrPadding, total - kTrPadding - 4)) {
    why = "trailer padding is not zero";
  }
  c.state = why.empty() ? ChunkState::kGood : ChunkState::kCorrupt;
  c.why = std::move(why);
}

// The sequence numbers of a segment's chunks count up by one. A chunk's own bytes cannot
// show that its seq field is damaged, so the chunks vote: each located chunk implies a base
// (seq minus its position among them); the largest group, ties to the earliest, is right and
// an otherwise good chunk outside it is corrupt. One damaged seq in three or more chunks is
// thereby blamed on its own chunk, never on a neighbour.
void check_sequence(std::vector<ChunkInfo>& chunks, const std::vector<bool>& located) {
  std::map<uint64_t, std::pair<unsigned, size_t>> groups;  // base -> (votes, first index)
  uint64_t ordinal = 0;
  std::vector<uint64_t> base(chunks.size(), 0);
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!located[i]) continue;
    base[i] = chunks[i].seq - ordinal++;
    auto [it, fresh] = groups.try_emplace(base[i], 0u, i);
    ++it->second.first;
  }
  if (groups.size() < 2) return;
  uint64_t best = 0;
  unsigned best_votes = 0;
  size_t best_first = std::numeric_limits<size_t>::max();
  for (const auto& [b, g] : groups) {
    if (g.first > best_votes || (g.first == best_votes && g.second < best_first)) {
      best = b;
      best_votes = g.first;
      best_first = g.second;
    }
  }
  ordinal = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!located[i]) continue;
    const uint64_t expect = best + ordinal++;
    if (base[i] != best && chunks[i].state == ChunkState::kGood) {
      chunks[i].state = ChunkState::kCorrupt;
      chunks[i].why = fmt::format(
          "sequence number {} out of line with the segment's other "
          "chunks (expected {})",
          chunks[i].seq, expect);
    }
  }
}

}  // namespace

std::string_view chunk_state_name(ChunkState s) noexcept {
  switch (s) {
    case ChunkState::kGood:
      return "good";
    case ChunkState::kCorrupt:
      return "corrupt";
    case ChunkState::kTorn:
      return "torn";
    case ChunkState::kUnwritten:
      return "unwritten";
  }
  return "unknown";
}

std::vector<ChunkInfo> scan_chunks(const uint8_t* data, size_t len) {
  std::vector<ChunkInfo> out;
  std::vector<bool> located;  // a trailer was found, so its seq takes part in the vote
  size_t pos = 0;
  while (pos < len) {
    const size_t block = std::min(kChunkAlign, len - pos);
    if (all_zero(data + pos, block)) {
      size_t end = pos + block;
      while (end < len && all_zero(data + end, std::min(kChunkAlign, len - end))) {
        end += std::min(kChunkAlign, len - end);
      }
      ChunkInfo c;
      c.state = ChunkState::kUnwritten;
      c.offset = pos;
      c.length = end - pos;
      c.why = "all zeros";
      out.push_back(std::move(c));
      located.push_back(false);
      pos = end;
      continue;
    }

    const Walk w = walk_blocks(data, len, pos);
    size_t end = 0;
    bool agree = false;
    if (w.reached_trailer && w.trailer_at + kTrailerMinBytes <= len) {
      const size_t t = w.trailer_at;
      const uint32_t total = ld32(data + t + 4);
      const bool total_fits =
          total >= kTrailerMinBytes && total <= len - t && (t + total) % kChunkAlign == 0;
      if (total_fits && ld32(data + t + total - 4) == total) {
        end = t + total;
        agree = true;
      } else {
        end = find_end_for_trailer(data, len, t);
        // Only the repeated length is damaged: the leading one still ends at a section.
        if (end == 0 && total_fits && (t + total == len || is_shb_at(data, len, t + total))) {
          end = t + total;
        }
      }
    }
    // A damaged length can send the walk through packet bytes into a later chunk's trailer;
    // that trailer's covered offset does not point back here, and the backward search finds
    // this chunk's own end. A damaged covered field alone leaves the backward search empty.
    size_t back_end = 0;
    size_t back_t = 0;
    if (end != 0 && ld32(data + w.trailer_at + kTrCovered) != w.trailer_at - pos) {
      back_t = find_trailer_backward(data, len, pos, &back_end);
    }
    if (end != 0 && back_end == 0) {
      ChunkInfo c = from_trailer(data, pos, end, w.trailer_at);
      check_trailer(data, pos, end, w, agree, c);
      out.push_back(std::move(c));
      located.push_back(true);
      pos = end;
      continue;
    }
    // The blocks do not chain to a trailer (a damaged length or section header, or a
    // damaged trailer type): look for the trailer from the aligned ends instead.
    if (back_end == 0) back_t = find_trailer_backward(data, len, pos, &back_end);
    if (back_end != 0) {
      const size_t t = back_t;
      end = back_end;
      ChunkInfo c = from_trailer(data, pos, end, t);
      c.state = ChunkState::kCorrupt;
      c.why = ld32(data + t) != kTrailerType
                  ? std::string("trailer block type damaged")
                  : (w.problem.empty() ? std::string("blocks do not chain to the trailer")
                                       : w.problem) +
                        " (trailer found from the chunk's end)";
      out.push_back(std::move(c));
      located.push_back(true);
      pos = end;
      continue;
    }

    // Torn: no trailer ends this chunk. What follows starts at the next aligned section
    // header (or the next aligned zero block, which the loop reports as unwritten).
    size_t next = pos + kChunkAlign;
    while (next < len && !is_shb_at(data, len, next) &&
           !all_zero(data + next, std::min(kChunkAlign, len - next))) {
      next += kChunkAlign;
    }
    next = std::min(next, len);
    ChunkInfo c;
    c.state = ChunkState::kTorn;
    c.offset = pos;
    c.length = next - pos;
    if (!w.shb_ok) {
      c.why = "no section header block and no trailer";
    } else if (w.reached_trailer) {
      c.why = "cut short: the trailer runs past the end";
    } else {
      c.why = "no trailer: " + w.problem;
    }
    out.push_back(std::move(c));
    located.push_back(false);
    pos = next;
  }
  check_sequence(out, located);
  return out;
}

namespace {

// Calls fn(type, offset, total) for every whole block of the section at chunk, from its SHB
// up to the trailer or the next section; stops at the first block whose length is not sound.
template <class Fn>
void for_each_block(const uint8_t* chunk, size_t len, Fn&& fn) {
  if (!is_shb_at(chunk, len, 0)) return;
  size_t pos = 0;
  while (pos + 8 <= len) {
    const uint32_t type = ld32(chunk + pos);
    const uint32_t total = ld32(chunk + pos + 4);
    if (type == kTrailerType || (type == kShbType && pos != 0)) break;
    if (total < kBlockMinBytes || total % 4 != 0 || total > len - pos) break;
    fn(type, pos, total);
    pos += total;
  }
}

}  // namespace

std::vector<std::string> chunk_interfaces(const uint8_t* chunk, size_t len) {
  std::vector<std::string> names;
  for_each_block(chunk, len, [&](uint32_t type, size_t pos, uint32_t total) {
    if (type != kIdbType || total < kIdbMinBytes) return;
    std::string name;
    size_t o = pos + 16;
    const size_t body_end = pos + total - 4;
    while (o + 4 <= body_end) {
      const uint16_t code = static_cast<uint16_t>(ld32(chunk + o));
      const uint16_t olen = static_cast<uint16_t>(ld32(chunk + o) >> 16);
      if (code == kOptEnd || o + 4 + olen > body_end) break;
      if (code == kOptIfName) name.assign(reinterpret_cast<const char*>(chunk + o + 4), olen);
      o += 4 + pad4(olen);
    }
    names.push_back(std::move(name));
  });
  return names;
}

void for_each_packet(const uint8_t* chunk, size_t len,
                     const std::function<void(const PacketRef&)>& fn) {
  for_each_block(chunk, len, [&](uint32_t type, size_t pos, uint32_t total) {
    if (type != kEpbType || total < kEpbOverhead) return;
    PacketRef p;
    p.port = ld32(chunk + pos + 8);
    p.ts_ns = (static_cast<uint64_t>(ld32(chunk + pos + 12)) << 32) | ld32(chunk + pos + 16);
    p.caplen = ld32(chunk + pos + 20);
    p.origlen = ld32(chunk + pos + 24);
    p.data = chunk + pos + kEpbHeaderBytes;
    if (p.caplen <= total - kEpbOverhead) fn(p);
  });
}

}  // namespace sluice::capture
