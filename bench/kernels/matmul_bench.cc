// Matmul kernel benchmarks on the shapes of SmolLM2-135M (hidden 576, FFN 1536, 3 KV heads of 64,
// vocabulary 49152; Q4_1 layers, Q8_0 tied output), with random weights of the real types.
//
//   BM_MatMul/<type>/<rows>/<cols>/<n>/<threads>   one product; counters: weight GB/s, GFLOP/s
//   BM_ModelMatmuls/<n>/<threads>                  every matmul of one forward step of the
//                                                  30-layer model (+ the output logits for one
//                                                  token), on 30 distinct copies of the layer
//                                                  weights so caches see the real 96 MB stream;
//                                                  counter: ms per token, tokens/s
//
// SAOLA_CPU_ISA=scalar|avx2|avx512 caps the kernels' instruction set.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {
namespace {

constexpr int64_t kHidden = 576;
constexpr int64_t kFfn = 1536;
constexpr int64_t kKvDim = 192;
constexpr int64_t kVocab = 49152;
constexpr int kLayers = 30;

struct OwnedWeight {
  std::vector<uint8_t> bytes;
  Weight w;
};

OwnedWeight MakeWeight(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  OwnedWeight o;
  o.w.type = type;
  o.w.rows = rows;
  o.w.cols = cols;
  o.w.row_stride_bytes = RowBytes(type, cols);
  o.bytes.resize(o.w.row_stride_bytes * rows);
  for (auto& b : o.bytes) b = static_cast<uint8_t>(rng());
  const DTypeInfo info = GetDTypeInfo(type);
  if (info.block_elems == 32) {
    // Sane fp16 scales (random bytes could be inf / nan).
    for (size_t off = 0; off < o.bytes.size(); off += info.block_bytes) {
      const uint16_t d = Fp32ToFp16(0.01f + 0.001f * static_cast<float>(rng() % 16));
      std::memcpy(&o.bytes[off], &d, 2);
      if (type == DType::kQ4_1) std::memcpy(&o.bytes[off + 2], &d, 2);
    }
  } else if (type == DType::kF16 || type == DType::kBF16) {
    for (size_t off = 0; off < o.bytes.size(); off += 2) {
      const float v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) * 1e-3f;
      const uint16_t h = type == DType::kF16 ? Fp32ToFp16(v) : Fp32ToBf16(v);
      std::memcpy(&o.bytes[off], &h, 2);
    }
  } else if (type == DType::kF32) {
    for (size_t off = 0; off < o.bytes.size(); off += 4) {
      const float v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) * 1e-3f;
      std::memcpy(&o.bytes[off], &v, 4);
    }
  }
  o.w.data = o.bytes.data();
  return o;
}

std::vector<float> RandomActivations(int64_t count) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(count);
  for (auto& v : x) v = normal(rng);
  return x;
}

void BM_MatMul(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n = state.range(3);
  ThreadPool pool(static_cast<int>(state.range(4)));
  const OwnedWeight w = MakeWeight(type, rows, cols, 1);
  const std::vector<float> x = RandomActivations(n * cols);
  std::vector<float> y(n * rows);
  std::vector<uint8_t> scratch;
  for (auto _ : state) {
    MatMul(pool, w.w, x.data(), n, y.data(), scratch);
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w.bytes.size()) * iters / 1e9,
                                              benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * cols * n * iters / 1e9,
                                                 benchmark::Counter::kIsRate);
  state.SetLabel(std::string(GetDTypeInfo(type).name));
}

void MatMulArgs(benchmark::internal::Benchmark* b) {
  const auto q41 = static_cast<int64_t>(DType::kQ4_1);
  const auto q80 = static_cast<int64_t>(DType::kQ8_0);
  for (int64_t n : {1, 512}) {
    for (int64_t threads : {1, 2}) {
      b->Args({q41, kHidden, kHidden, n, threads});
      b->Args({q41, kKvDim, kHidden, n, threads});
      b->Args({q41, kFfn, kHidden, n, threads});
      b->Args({q41, kHidden, kFfn, n, threads});
      if (n == 1) b->Args({q80, kVocab, kHidden, n, threads});
    }
  }
  for (DType t : {DType::kQ4_0, DType::kQ8_0, DType::kF16, DType::kF32}) {
    b->Args({static_cast<int64_t>(t), kFfn, kHidden, 1, 2});
  }
}

BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// All matmuls of one forward step over n tokens (logits for the last token only, as decode and
// prefill need), on distinct per-layer weights.
void BM_ModelMatmuls(benchmark::State& state) {
  const int64_t n = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  struct Layer {
    OwnedWeight q, k, v, o, gate, up, down;
  };
  std::vector<std::unique_ptr<Layer>> layers;
  for (int l = 0; l < kLayers; ++l) {
    auto layer = std::make_unique<Layer>();
    const uint32_t s = 100 * l;
    layer->q = MakeWeight(DType::kQ4_1, kHidden, kHidden, s + 1);
    layer->k = MakeWeight(DType::kQ4_1, kKvDim, kHidden, s + 2);
    layer->v = MakeWeight(DType::kQ4_1, kKvDim, kHidden, s + 3);
    layer->o = MakeWeight(DType::kQ4_1, kHidden, kHidden, s + 4);
    layer->gate = MakeWeight(DType::kQ4_1, kFfn, kHidden, s + 5);
    layer->up = MakeWeight(DType::kQ4_1, kFfn, kHidden, s + 6);
    layer->down = MakeWeight(DType::kQ4_1, kHidden, kFfn, s + 7);
    layers.push_back(std::move(layer));
  }
  const OwnedWeight output = MakeWeight(DType::kQ8_0, kVocab, kHidden, 7);
  const std::vector<float> x = RandomActivations(n * kFfn);
  std::vector<float> q(n * kHidden), k(n * kKvDim), v(n * kKvDim), o(n * kHidden);
  std::vector<float> gate(n * kFfn), up(n * kFfn), logits(kVocab);
  std::vector<uint8_t> scratch;
  for (auto _ : state) {
    for (const auto& layer : layers) {
      const Weight qkv[] = {layer->q.w, layer->k.w, layer->v.w};
      float* const qkv_out[] = {q.data(), k.data(), v.data()};
      MatMulShared(pool, qkv, x.data(), n, qkv_out, scratch);
      MatMul(pool, layer->o.w, x.data(), n, o.data(), scratch);
      const Weight gate_up[] = {layer->gate.w, layer->up.w};
      float* const gate_up_out[] = {gate.data(), up.data()};
      MatMulShared(pool, gate_up, x.data(), n, gate_up_out, scratch);
      MatMul(pool, layer->down.w, x.data(), n, o.data(), scratch);
    }
    MatMul(pool, output.w, x.data(), 1, logits.data(), scratch);
    benchmark::DoNotOptimize(logits.data());
  }
  const double tokens = static_cast<double>(state.iterations()) * static_cast<double>(n);
  state.counters["tok/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["ms/tok"] =
      benchmark::Counter(tokens / 1e3, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(BM_ModelMatmuls)
    ->Args({1, 1})
    ->Args({1, 2})
    ->Args({512, 1})
    ->Args({512, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace saola::kernels::cpu

BENCHMARK_MAIN();
