// A per-worker circuit breaker. Requests that fail at the transport level (the worker could not
// be reached, or dropped the call before answering) count as failures; `failure_threshold` in a
// row open the breaker and the worker gets no requests for `open_for`. Then one trial request
// is let through (half-open): success closes the breaker, failure opens it again for twice as
// long (capped at `max_open_for`). Health-check ejection is separate: a worker must be healthy
// AND its breaker must allow a request to be routable.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace saola::router {

struct CircuitBreakerOptions {
  int32_t failure_threshold = 3;
  absl::Duration open_for = absl::Seconds(2);
  absl::Duration max_open_for = absl::Seconds(30);
};

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  explicit CircuitBreaker(CircuitBreakerOptions options = {}) : options_(options) {}

  /// Whether a request may go to the worker now. In the half-open state this admits exactly one
  /// trial request (and claims it).
  bool Allow(absl::Time now);
  /// Whether Allow would admit a request now, without claiming the half-open trial.
  bool WouldAllow(absl::Time now) const;
  void RecordSuccess();
  void RecordFailure(absl::Time now);
  State state(absl::Time now) const;

 private:
  const CircuitBreakerOptions options_;
  mutable absl::Mutex mu_;
  int32_t consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time open_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration current_open_for_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  bool trial_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool opened_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace saola::router
