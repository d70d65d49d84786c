#include "tests/common/reference_model.h"

#include <sys/stat.h>

#include <cstdlib>

namespace saola::test {
namespace {

std::string SourceDir() {
  if (const char* env = std::getenv("SAOLA_SOURCE_DIR"); env != nullptr && *env != '\0') return env;
  return SAOLA_SOURCE_DIR;
}

}  // namespace

std::string ReferenceModelPath() { return SourceDir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"; }

bool HaveReferenceModel() {
  struct stat st;
  return stat(ReferenceModelPath().c_str(), &st) == 0;
}

std::string TestDataPath(const std::string& relative) { return SourceDir() + "/tests/" + relative; }

}  // namespace saola::test
