// `saola-worker tokenize`: JSON lines {"text": ...} on stdin, {"ids": [...]} per line on stdout,
// with llama.cpp's defaults (special tokens added as the model says, special-token text parsed).
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "worker/cli/commands.h"
#include "common/flags.h"
#include "worker/cli/loaded_model.h"

namespace saola::cli {

int RunTokenize(const std::vector<std::string>& raw_args) {
  auto flags = Flags::Parse(raw_args, {"model"}, {"json"});
  if (!flags.ok()) return Fail(flags.status());
  auto path = flags->String("model");
  if (!path.ok()) return Fail(path.status());
  auto loaded = OpenModel(*path, /*with_weights=*/false, 1, 1);
  if (!loaded.ok()) return Fail(loaded.status());

  std::string line;
  int64_t line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto doc = json::Parse(line);
    const json::Value* text = doc.ok() ? doc->Find("text") : nullptr;
    if (text == nullptr || !text->is_string()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "stdin line ", line_number, ": expected {\"text\": \"...\"}",
          doc.ok() ? "" : absl::StrCat(" (", doc.status().message(), ")"))));
    }
    const std::vector<int32_t> ids = loaded->tokenizer->Encode(text->str(), true, true);
    std::printf("{\"ids\":[%s]}\n", absl::StrJoin(ids, ",").c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace saola::cli
