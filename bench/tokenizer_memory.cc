// saola-tokmem: resident memory added by each step of loading the tokenizer from a GGUF file
// (GgufFile::Open, LoadTokenizerSpec, Tokenizer::Create), and encode speed.
//
//   saola-tokmem [--trim] [model.gguf]   (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)
//
// RSS is VmRSS from /proc/self/status. Pages of the mapped file that the parser touches count
// as well (file-backed and shared, but resident); "mapped file pages" is that part (VmRSS minus
// RssAnon). "peak" is VmHWM over the whole load, less the RSS at the start. glibc keeps freed
// memory in its heap, and that counts as the worker would see it; with --trim each step is
// measured after malloc_trim(0) instead, which shows what is live.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "worker/model/gguf.h"
#include "worker/model/tokenizer.h"

namespace {

// A field of a /proc status-like file in KiB, or -1.
long ReadKib(const char* path, std::string_view field) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, field.size(), field) == 0 && line.size() > field.size() &&
        line[field.size()] == ':') {
      return std::stol(line.substr(field.size() + 1));
    }
  }
  return -1;
}

struct Rss {
  long total_kib;
  long anon_kib;
};

bool g_trim = false;

Rss Measure() {
  if (g_trim) malloc_trim(0);
  return Rss{ReadKib("/proc/self/status", "VmRSS"), ReadKib("/proc/self/status", "RssAnon")};
}

void Report(const char* step, const Rss& before, const Rss& after) {
  std::printf("%-20s +%7.2f MiB RSS (+%7.2f MiB anonymous, +%6.2f MiB mapped file pages)\n",
              step, (after.total_kib - before.total_kib) / 1024.0,
              (after.anon_kib - before.anon_kib) / 1024.0,
              ((after.total_kib - after.anon_kib) - (before.total_kib - before.anon_kib)) / 1024.0);
}

}  // namespace

int main(int argc, char** argv) {
  using saola::model::GgufFile;
  using saola::model::Tokenizer;
  std::string path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--trim") {
      g_trim = true;
    } else {
      path = argv[i];
    }
  }

  const Rss start = Measure();
  auto file = GgufFile::Open(path);
  if (!file.ok()) {
    std::fprintf(stderr, "%s\n", std::string(file.status().message()).c_str());
    return 1;
  }
  const Rss opened = Measure();
  auto spec = saola::model::LoadTokenizerSpec(**file);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str());
    return 1;
  }
  const Rss loaded = Measure();
  auto tokenizer = Tokenizer::Create(*std::move(spec));
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  const Rss created = Measure();
  Report("GgufFile::Open", start, opened);
  Report("LoadTokenizerSpec", opened, loaded);
  Report("Tokenizer::Create", loaded, created);
  Report("total", start, created);
  std::printf("%-20s +%7.2f MiB RSS\n", "peak",
              (ReadKib("/proc/self/status", "VmHWM") - start.total_kib) / 1024.0);

  // Encode speed on mixed text (ASCII prose, digits, accents, CJK, emoji, chat markup).
  std::string text;
  while (text.size() < 256 * 1024) {
    text += "<|im_start|>user\nThe quick brown fox jumps over the lazy dog 1234567890. "
            "Ünïcödé 日本語 😀 def f(x):\n    return x ** 2  # square<|im_end|>\n";
  }
  const Tokenizer& tok = **tokenizer;
  tok.Encode(text, true, true);  // warm up
  double best = 0;
  size_t num_tokens = 0;
  for (int rep = 0; rep < 10; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    num_tokens = tok.Encode(text, true, true).size();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (best == 0 || num_tokens / s > best) best = num_tokens / s;
  }
  std::printf("encode: %.2f M tokens/s (best of 10, %zu bytes -> %zu tokens)\n", best / 1e6,
              text.size(), num_tokens);
  return 0;
}
