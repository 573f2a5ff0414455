#pragma once
// What the receiver knows of each stream: how many of its packets arrived, how many were
// duplicates, how many came after a later one (reordered), and the highest sequence number
// seen. A sliding bitmap of the last kWindow sequence numbers tells a duplicate from a late
// packet; older than that, a packet counts as reordered. Preallocated for every stream at
// start; update() is a few branches and a bit operation, no allocation.

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sluice::gen {

struct StreamCounts {
  uint64_t received = 0;  // every packet of the stream, duplicates included
  uint64_t unique = 0;
  uint64_t duplicated = 0;
  uint64_t reordered = 0;
  uint64_t next = 0;  // highest sequence number seen + 1 (0: none yet)
};

class StreamTracker {
 public:
  static constexpr uint64_t kWindow = 2048;

  explicit StreamTracker(unsigned streams) : state_(streams) {}

  unsigned streams() const noexcept { return static_cast<unsigned>(state_.size()); }

  enum class Seen : uint8_t { kNew, kDuplicate, kReordered };

  Seen update(uint16_t stream, uint64_t seq) noexcept {
    State& s = state_[stream];
    s.c.received++;
    if (seq >= s.c.next) {
      // New highest: forget the window positions between the old highest and seq.
      const uint64_t gap = seq - s.c.next;
      if (gap >= kWindow) {
        s.bits.fill(0);
      } else {
        for (uint64_t q = s.c.next; q < seq; ++q) clear(s, q);
      }
      set(s, seq);
      s.c.next = seq + 1;
      s.c.unique++;
      return Seen::kNew;
    }
    if (s.c.next - seq > kWindow) {  // too old to tell: assume not seen before
      s.c.unique++;
      s.c.reordered++;
      return Seen::kReordered;
    }
    if (test(s, seq)) {
      s.c.duplicated++;
      return Seen::kDuplicate;
    }
    set(s, seq);
    s.c.unique++;
    s.c.reordered++;
    return Seen::kReordered;
  }

  // Read by the main lcore only after the receiving lcore has returned.
  const StreamCounts& counts(unsigned stream) const noexcept { return state_[stream].c; }

 private:
  struct State {
    StreamCounts c;
    std::array<uint64_t, kWindow / 64> bits{};
  };
  static void set(State& s, uint64_t q) noexcept {
    s.bits[(q % kWindow) / 64] |= uint64_t{1} << (q % 64);
  }
  static void clear(State& s, uint64_t q) noexcept {
    s.bits[(q % kWindow) / 64] &= ~(uint64_t{1} << (q % 64));
  }
  static bool test(const State& s, uint64_t q) noexcept {
    return (s.bits[(q % kWindow) / 64] >> (q % 64)) & 1;
  }
  std::vector<State> state_;
};

}  // namespace sluice::gen
