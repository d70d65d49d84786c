#include "router/circuit_breaker.h"

#include <algorithm>

namespace saola::router {

CircuitBreaker::State CircuitBreaker::state(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  if (!opened_) return State::kClosed;
  return now < open_until_ ? State::kOpen : State::kHalfOpen;
}

bool CircuitBreaker::WouldAllow(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  if (!opened_) return true;
  return now >= open_until_ && !trial_in_flight_;
}

bool CircuitBreaker::Allow(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (!opened_) return true;
  if (now < open_until_ || trial_in_flight_) return false;
  trial_in_flight_ = true;
  return true;
}

void CircuitBreaker::RecordSuccess() {
  absl::MutexLock lock(&mu_);
  consecutive_failures_ = 0;
  opened_ = false;
  trial_in_flight_ = false;
  current_open_for_ = absl::ZeroDuration();
}

void CircuitBreaker::RecordFailure(absl::Time now) {
  absl::MutexLock lock(&mu_);
  ++consecutive_failures_;
  const bool trial_failed = opened_ && trial_in_flight_;
  trial_in_flight_ = false;
  if (trial_failed) {
    current_open_for_ = std::min(current_open_for_ * 2, options_.max_open_for);
  } else if (!opened_ && consecutive_failures_ >= options_.failure_threshold) {
    current_open_for_ = options_.open_for;
  } else {
    return;
  }
  opened_ = true;
  open_until_ = now + current_open_for_;
}

}  // namespace saola::router
