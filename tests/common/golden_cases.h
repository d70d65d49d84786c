// The golden greedy cases (tests/golden/greedy_cases.json, made by llama.cpp on the reference
// model): prompts, their ids, llama.cpp's greedy continuation and its top-5 logits per step.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace saola::test {

struct GoldenCase {
  std::string name;
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> ids;                                     // the greedy continuation
  std::vector<std::vector<std::pair<int32_t, double>>> top5;    // per step: (id, logit)
};

/// Every case in the fixture; a failed test expectation (and no cases) when it cannot be read.
std::vector<GoldenCase> LoadGoldenCases();

}  // namespace saola::test
