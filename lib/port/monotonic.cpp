#include "lib/port/monotonic.h"

namespace sluice::port {

bool MonotonicCounters::lower(const PortCounterValues& raw) const noexcept {
  for (size_t i = 0; i < kPortCounters; ++i) {
    if (raw[i] < last_[i]) return true;
  }
  return false;
}

MonotonicCounters::Reading MonotonicCounters::update(const PortCounterValues& raw,
                                                     bool link_up) noexcept {
  if (!lower(raw)) {
    last_ = raw;
    return Reading::kGrew;
  }
  if (!link_up) return Reading::kIgnored;
  for (size_t i = 0; i < kPortCounters; ++i) offset_[i] += last_[i];
  last_ = raw;
  ++resets_;
  return Reading::kReset;
}

PortCounterValues MonotonicCounters::totals() const noexcept {
  PortCounterValues t{};
  for (size_t i = 0; i < kPortCounters; ++i) t[i] = offset_[i] + last_[i];
  return t;
}

}  // namespace sluice::port
