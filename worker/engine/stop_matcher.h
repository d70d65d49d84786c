// Stop strings, matched across token boundaries and never emitted.
//
// The decoded text arrives in pieces (one per token, from model::StreamDecoder). A stop string can
// straddle pieces, so text that might be the start of one is held back until the next piece
// decides: either the stop completes (generation ends, the held text and the stop are dropped) or
// it cannot anymore (the held text is released).
//
//   emitted so far        held        new piece
//   "... the answer is"   " 4"    +   "2\n\nUser"      stop "\n\nUser"
//                                      ^ match: emit " 42", stopped
//
// Only a tail shorter than the longest stop string is ever kept: the held text is the longest
// suffix of the text that is a proper prefix of some stop string, so the cost of a Push depends on
// the piece and the stop strings, never on the length of the output so far.
//
// Among several matches the one that ends first wins, and among those the one that starts first
// (the longest), exactly as if the text had arrived one byte at a time, so the result does not
// depend on how the text was split into pieces.
//
// UTF-8: pieces are complete UTF-8 and stop strings are valid UTF-8, so every cut falls either at
// the end of a piece or at the first byte of a stop-string prefix (a lead byte): emitted text is
// never split inside a character.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace saola::engine {

class StopMatcher {
 public:
  /// Empty strings are ignored; with no stop string left every piece passes straight through.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Output {
    std::string text;     // safe to emit now
    bool stopped = false;  // a stop string completed; `text` is everything before it
    std::string matched;  // the stop string that matched, when stopped
  };

  /// Feeds the next decoded text piece and returns the text that is now safe to emit: everything
  /// except a suffix that could still be the start of a stop string. On a match, returns the text
  /// before the earliest-ending match (the leftmost among those) with stopped = true and `matched`
  /// set. After a stop, further pushes return nothing (stopped stays true).
  Output Push(std::string_view piece);

  /// At the end of generation (EOS / length): the held-back text, which is then emitted as is.
  /// Empty after a stop.
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  /// Bytes at the end of buffer_ that are a proper prefix of some stop string (longest such).
  size_t HeldBackLength() const;

  std::vector<std::string> stops_;
  size_t max_stop_len_ = 0;
  bool stopped_ = false;
  std::string matched_;
  /// Held-back text, then (during Push) held-back text + the new piece.
  std::string buffer_;
};

}  // namespace saola::engine
