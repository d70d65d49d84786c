// Where tests find the reference model (installed by scripts/fetch-models), and a skip for
// machines that have not fetched it.
#pragma once

#include <string>

namespace saola::test {

/// ${SAOLA_SOURCE_DIR}/models/SmolLM2-135M-Instruct.Q4_1.gguf
std::string ReferenceModelPath();
/// Whether that file exists.
bool HaveReferenceModel();
/// A file under tests/ of the source tree, e.g. "golden/greedy_cases.json".
std::string TestDataPath(const std::string& relative);

}  // namespace saola::test

#define SAOLA_REQUIRE_REFERENCE_MODEL()                                                  \
  do {                                                                                   \
    if (!::saola::test::HaveReferenceModel()) {                                          \
      GTEST_SKIP() << "reference model missing at " << ::saola::test::ReferenceModelPath() \
                   << " (run scripts/fetch-models)";                                     \
    }                                                                                    \
  } while (0)
