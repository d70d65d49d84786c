#include "worker/engine/stop_matcher.h"

#include <algorithm>
#include <utility>

namespace saola::engine {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (std::string& stop : stops) {
    if (stop.empty()) continue;
    max_stop_len_ = std::max(max_stop_len_, stop.size());
    stops_.push_back(std::move(stop));
  }
}

StopMatcher::Output StopMatcher::Push(std::string_view piece) {
  Output out;
  if (stopped_) {
    out.stopped = true;
    out.matched = matched_;
    return out;
  }
  if (stops_.empty()) {
    out.text.assign(piece);
    return out;
  }
  buffer_.append(piece);

  // The earliest-ending match, the leftmost among those. No match lies wholly in the held text
  // (it would have been found by the Push that completed it), so every match found here ends in
  // the new piece, and for one stop string the leftmost occurrence is also the earliest-ending.
  const std::string_view text(buffer_);
  const std::string* best = nullptr;
  size_t best_start = 0;
  size_t best_end = std::string_view::npos;
  for (const std::string& stop : stops_) {
    const size_t start = text.find(stop);
    if (start == std::string_view::npos) continue;
    const size_t end = start + stop.size();
    if (end < best_end || (end == best_end && start < best_start)) {
      best = &stop;
      best_start = start;
      best_end = end;
    }
  }
  if (best != nullptr) {
    stopped_ = true;
    matched_ = *best;
    out.text.assign(text.substr(0, best_start));
    out.stopped = true;
    out.matched = matched_;
    buffer_.clear();
    return out;
  }

  const size_t emit = buffer_.size() - HeldBackLength();
  out.text.assign(text.substr(0, emit));
  buffer_.erase(0, emit);
  return out;
}

std::string StopMatcher::Flush() { return std::exchange(buffer_, std::string()); }

size_t StopMatcher::HeldBackLength() const {
  // Longest first: the earliest position where a stop string could still begin. Shorter
  // candidates lie inside it and are held with it.
  const size_t size = buffer_.size();
  for (size_t len = std::min(size, max_stop_len_ - 1); len > 0; --len) {
    const std::string_view tail(buffer_.data() + size - len, len);
    for (const std::string& stop : stops_) {
      if (stop.size() > len && std::string_view(stop).starts_with(tail)) return len;
    }
  }
  return 0;
}

}  // namespace saola::engine
