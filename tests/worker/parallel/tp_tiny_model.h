// A small random Llama model for the tensor-parallel tests, written as a GGUF file with a
// byte-level BPE tokenizer, so `saola-worker generate` and `serve` run it like any model.
//
// 2 layers, hidden 128, 8 query heads and 4 KV heads of 16 dims (so 1, 2 and 4 ranks each get
// whole heads), FFN 256, vocabulary 300 (256 byte tokens, <|endoftext|>, 43 merges), F32 weights
// uniform in [-1, 1) from a fixed seed, context 2048.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace saola::test {

absl::Status WriteTinyTensorParallelModel(const std::string& path);

}  // namespace saola::test
