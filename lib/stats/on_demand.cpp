#include "lib/stats/on_demand.h"

namespace sluice::stats {

void OnDemand::await_fresh(Clock::duration fresh_for, Clock::duration wait_at_most) {
  std::unique_lock lock(mutex_);
  const auto now = Clock::now();
  if (wake_ == nullptr || (generation_ != 0 && now - at_ <= fresh_for)) return;
  const uint64_t seen = generation_;
  if (!wanted_) {
    wanted_ = true;
    wake_();
  }
  cv_.wait_until(lock, now + wait_at_most, [&] { return generation_ != seen || wake_ == nullptr; });
}

void OnDemand::attach(void (*wake)() noexcept) {
  {
    std::lock_guard lock(mutex_);
    wake_ = wake;
  }
  cv_.notify_all();
}

bool OnDemand::wanted() const {
  std::lock_guard lock(mutex_);
  return wanted_;
}

void OnDemand::published(Clock::time_point at) {
  {
    std::lock_guard lock(mutex_);
    wanted_ = false;
    ++generation_;
    at_ = at;
  }
  cv_.notify_all();
}

OnDemand& on_demand() {
  static auto* d = new OnDemand();
  return *d;
}

}  // namespace sluice::stats
