// libFuzzer target for the semantic cache's embedder inputs: prompt text, which any client
// controls, through the BERT normalizer and WordPiece tokenizer; and safetensors bytes through
// the header parser. The first input byte picks the target (even: text, odd: safetensors).
//
// Text: any bytes must give [CLS] ... [SEP] within the window, ids inside the vocabulary, and
// words that are non-empty valid UTF-8; the window (2 to 257 ids) comes from the second byte.
// Safetensors: any bytes must parse or fail with a Status; on success the first and last byte
// of every tensor are read (ASan checks the parser's pointers) and every F32 lookup is tried.
//
// The vocabulary is the reference model's (SAOLA_FUZZ_VOCAB, or
// models/all-MiniLM-L6-v2/vocab.txt from the repository root).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "cache/semantic/bert_normalizer.h"
#include "cache/semantic/safetensors.h"
#include "cache/semantic/wordpiece_tokenizer.h"

namespace {

std::unique_ptr<saola::cache::WordpieceTokenizer> g_tokenizer;
volatile uint64_t g_sink = 0;

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    const int n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 :
                  (b & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (int k = 1; k < n; ++k) {
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

void FuzzText(std::string_view text, int max_tokens) {
  const std::vector<int32_t> ids = g_tokenizer->Encode(text, max_tokens);
  if (ids.size() < 2 || ids.size() > static_cast<size_t>(max_tokens)) __builtin_trap();
  if (ids.front() != g_tokenizer->cls_id() || ids.back() != g_tokenizer->sep_id()) {
    __builtin_trap();
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= g_tokenizer->vocab_size()) __builtin_trap();
  }
  saola::cache::ForEachBertWord(text, [](std::string_view word) {
    if (word.empty() || !ValidUtf8(word)) __builtin_trap();
    return true;
  });
}

void FuzzSafetensors(std::string_view bytes) {
  auto file = saola::cache::SafetensorsFile::FromBytes(std::string(bytes));
  if (!file.ok()) return;
  for (const saola::cache::SafetensorsTensor& t : (*file)->tensors()) {
    if ((*file)->Find(t.name) != &t) __builtin_trap();
    if (t.num_bytes > 0) g_sink = g_sink + t.data[0] + t.data[t.num_bytes - 1];
    auto f32 = (*file)->GetF32(t.name, t.shape);
    if (f32.ok()) g_sink = g_sink + (t.num_bytes > 0 ? static_cast<uint64_t>((*f32)[0] != 0) : 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("SAOLA_FUZZ_VOCAB");
  const std::string path = env ? env : "models/all-MiniLM-L6-v2/vocab.txt";
  auto tokenizer = saola::cache::WordpieceTokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "wordpiece_fuzzer: %s (set SAOLA_FUZZ_VOCAB)\n",
                 std::string(tokenizer.status().message()).c_str());
    std::abort();
  }
  g_tokenizer = *std::move(tokenizer);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (data[0] & 1) {
    FuzzSafetensors(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  } else {
    FuzzText(rest, 2 + data[1]);
  }
  return 0;
}
