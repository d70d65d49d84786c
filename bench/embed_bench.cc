// Latency of the semantic cache's embedder (all-MiniLM-L6-v2, one sentence per call, one BLAS
// thread): tokenization alone, and Embed end to end at a few prompt lengths.
//
//   build/bin/saola-embed-bench [--benchmark_filter=...]    (run from the repository root;
//   SAOLA_EMBED_MODEL overrides models/all-MiniLM-L6-v2)
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "cache/semantic/minilm_embedder.h"

namespace {

const saola::cache::MiniLmEmbedder& Embedder() {
  static const saola::cache::MiniLmEmbedder* embedder = [] {
    const char* env = std::getenv("SAOLA_EMBED_MODEL");
    auto loaded = saola::cache::MiniLmEmbedder::Load(env ? env : "models/all-MiniLM-L6-v2");
    if (!loaded.ok()) {
      std::fprintf(stderr, "saola-embed-bench: %s\n", std::string(loaded.status().message()).c_str());
      std::exit(1);
    }
    return loaded->release();
  }();
  return *embedder;
}

// The 12-word sentence of the task, then longer prompts made of it.
std::string Prompt(int repeats) {
  std::string s;
  for (int i = 0; i < repeats; ++i) {
    s += "What is the fastest way to learn to play the guitar really well? ";
  }
  return s;
}

void BM_Tokenize(benchmark::State& state) {
  const std::string text = Prompt(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(Embedder().Tokenize(text));
  state.counters["tokens"] = static_cast<double>(Embedder().Tokenize(text).size());
}
BENCHMARK(BM_Tokenize)->Arg(1)->Arg(20)->Unit(benchmark::kMicrosecond);

void BM_Embed(benchmark::State& state) {
  const std::string text = Prompt(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(Embedder().Embed(text));
  state.counters["tokens"] = static_cast<double>(Embedder().Tokenize(text).size());
}
BENCHMARK(BM_Embed)->Arg(1)->Arg(2)->Arg(20)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
