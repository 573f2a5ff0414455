#include "lib/pipeline/liveness.h"

#include <algorithm>

#include "lib/stats/snapshot.h"

namespace sluice::pipeline {

Liveness::Liveness(size_t workers, Clock::time_point now) : state_(workers), last_(now) {
  for (auto& s : state_) s.moved = now;
}

std::vector<Liveness::Change> Liveness::update(const std::vector<uint64_t>& beats,
                                               Clock::time_point now) {
  std::vector<Change> changes;
  last_ = now;
  for (size_t w = 0; w < state_.size() && w < beats.size(); ++w) {
    State& s = state_[w];
    if (beats[w] != s.beat) {
      s.beat = beats[w];
      if (s.stalled) changes.push_back({w, false, idle_ms(w)});
      s.moved = now;
      s.stalled = false;
      continue;
    }
    if (!s.stalled && idle_ms(w) > stats::kStallMs) {
      s.stalled = true;
      changes.push_back({w, true, idle_ms(w)});
    }
  }
  return changes;
}

uint64_t Liveness::idle_ms(size_t w) const noexcept {
  const auto d = last_ - state_[w].moved;
  return static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
}

bool Liveness::any_stalled() const noexcept {
  return std::any_of(state_.begin(), state_.end(), [](const State& s) { return s.stalled; });
}

}  // namespace sluice::pipeline
