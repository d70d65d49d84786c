// Running `saola-worker generate --tp-size N` as a real process and comparing its greedy ids and
// top logits with another run, for the tensor-parallel tests (CPU and CUDA).
//
// Rule: greedy ids must be equal. A divergence is allowed only at a near tie (the base run's
// logits for its token and for the other run's within `near_tie`); the runs are compared no
// further. Before that, every logit the base run recorded (its top 5 per step) must be within
// `tolerance` of the other's.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace saola::test {

struct Generation {
  int exit_code = -1;   // -2: exit 0 but no JSON result
  std::string err;      // its stderr
  std::vector<int> ids;
  std::vector<std::vector<std::pair<int, double>>> top;  // per step: (id, logit), best first
};

/// build/bin/saola-worker generate --model MODEL --prompt PROMPT --max-tokens N --ignore-eos
/// --json --top-logits 5 --threads 2 --tp-size TP --device DEVICE.
Generation Generate(const std::string& model, const std::string& prompt, int tp_size,
                    int max_tokens, const std::string& device = "cpu");

struct Comparison {
  double max_logit_diff = 0;
  int near_ties = 0;
};

/// Compares `other` with `base` under the rule above, accumulating into *c.
void Compare(const Generation& base, const Generation& other, double tolerance, double near_tie,
             Comparison* c);

}  // namespace saola::test
