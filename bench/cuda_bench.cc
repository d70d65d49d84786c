// saola-cuda-bench: the model and its decode attention kernel on the CUDA backend.
//
//   decode   For each batch size B (--batches, default 1,32,128): B sequences each first hold
//            --decode-context tokens (filled by prefill steps, untimed), then --decode-steps
//            batched decode steps, one new token per sequence per step, sampled with
//            temperature 0.8 and top-p 0.95 two ways: "device" samples next to the logits
//            (LlamaModel::Step with backend_sampling: only B ids come back, as the engine runs
//            requests without penalties or logprobs), "host" copies the B logits rows back and
//            samples them with the engine's CPU sampler (engine::Sampler::SampleRow, as the
//            engine runs the others). tokens/s = B * steps / seconds, after two warm-up steps.
//   prefill  One sequence of --prefill-tokens tokens from an empty cache in steps of
//            --prefill-chunk tokens (logits for the last token of each step, as the engine asks),
//            timed after a warm-up pass. tokens/s = tokens / seconds.
//   attention  The paged-attention decode kernel alone (Backend::Attention, one query per
//            sequence) at long context: --attn-batch sequences of each --attn-contexts length,
//            blocks shuffled over the pool as a long-running cache leaves them. Timed with CUDA
//            events on the backend's stream over --reps calls. Achieved bandwidth = bytes of K and
//            V read (batch * context * kv_heads * head_dim * 2 tensors * 2 bytes) / kernel time,
//            reported as a share of the device's peak: 2 * memory clock * bus width, from
//            cudaDeviceGetAttribute, or --peak-gbps when given. Head shape defaults to the model's
//            (SmolLM2: 9 heads, 3 KV heads, head_dim 64); --attn-heads/--attn-kv-heads/
//            --attn-head-dim set another (e.g. 32/8/128 for Llama-3-8B).
//   gemm     The prefill matmul alone (Backend::MatMul) on SmolLM2's shapes, 576->576 (q/o),
//            576->192 (k/v), 576->1536 (gate/up), 1536->576 (down), with random weights of each
//            --gemm-types type, at each --gemm-tokens n, once through each path: the tiled f32
//            GEMM and cuBLAS TF32 on dequantized tiles (the dequantization is timed with it;
//            kernels/cuda/gemm_options.h). CUDA events over --reps calls after a warm-up call;
//            TFLOP/s = 2 * n * rows * cols / time, and the speed ratio cublas/tiled. A last line
//            per type names the smallest n from which cuBLAS wins on every shape: the value for
//            CudaGemmOptions::cublas_min_tokens (SAOLA_CUDA_GEMM=tiled|cublas forces one path
//            end to end, e.g. to compare prefill tokens/s). Needs no model file.
// --sections picks which of the four run (default all; the model is loaded only for the first
// three).
//
// Usage: saola-cuda-bench [--sections decode,prefill,attention,gemm] [--model PATH]
//        [--batches 1,32,128] [--decode-context 256] [--decode-steps 64]
//        [--prefill-tokens 2048] [--prefill-chunk 512] [--attn-contexts 4096,16384]
//        [--attn-batch 32] [--gemm-tokens 16,64,128,512,2048] [--gemm-types q4_1]
//        [--reps 20] [--peak-gbps G]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cuda/cuda_backend.h"
#include "worker/engine/sampler.h"
#include "worker/model/gguf.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"

namespace saola {
namespace {

using cli::Flags;

constexpr int32_t kBlockSize = 16;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Args {
  std::string model = std::string(SAOLA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::vector<int> batches = {1, 32, 128};
  int decode_context = 256;
  int decode_steps = 64;
  int prefill_tokens = 2048;
  int prefill_chunk = 512;
  std::vector<int> attn_contexts = {4096, 16384};
  int attn_batch = 32;
  int attn_heads = 0, attn_kv_heads = 0, attn_head_dim = 0;  // 0: the model's
  std::vector<int> gemm_tokens = {16, 64, 128, 512, 2048};
  std::vector<kernels::DType> gemm_types = {kernels::DType::kQ4_1};
  bool decode = true, prefill = true, attention = true, gemm = true;  // --sections
  int reps = 20;
  double peak_gbps = 0;  // 0: from the device
};

constexpr kernels::DType kGemmTypes[] = {kernels::DType::kF32,  kernels::DType::kF16,
                                         kernels::DType::kBF16, kernels::DType::kQ8_0,
                                         kernels::DType::kQ4_0, kernels::DType::kQ4_1};

absl::StatusOr<std::vector<int>> IntList(const Flags& flags, const std::string& name,
                                         std::vector<int> fallback) {
  if (!flags.Has(name)) return fallback;
  ASSIGN_OR_RETURN(std::string text, flags.String(name));
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0 || v > (1 << 20)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": bad entry \"", part, "\""));
    }
    out.push_back(v);
  }
  return out;
}

// --gemm-types: names as GGUF spells them, any case (f16, q4_1, ...).
absl::StatusOr<std::vector<kernels::DType>> TypeList(const Flags& flags,
                                                     std::vector<kernels::DType> fallback) {
  if (!flags.Has("gemm-types")) return fallback;
  ASSIGN_OR_RETURN(std::string text, flags.String("gemm-types"));
  std::vector<kernels::DType> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    const auto it = std::find_if(std::begin(kGemmTypes), std::end(kGemmTypes),
                                 [&](kernels::DType t) {
                                   return absl::EqualsIgnoreCase(
                                       std::string(kernels::GetDTypeInfo(t).name), part);
                                 });
    if (it == std::end(kGemmTypes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gemm-types: \"", part, "\" is not f32, f16, bf16, q8_0, q4_0, q4_1"));
    }
    out.push_back(*it);
  }
  return out;
}

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& raw) {
  ASSIGN_OR_RETURN(Flags flags,
                   Flags::Parse(raw,
                                {"model", "batches", "decode-context", "decode-steps",
                                 "prefill-tokens", "prefill-chunk", "attn-contexts", "attn-batch",
                                 "attn-heads", "attn-kv-heads", "attn-head-dim", "reps",
                                 "peak-gbps", "sections", "gemm-tokens", "gemm-types"},
                                {}));
  Args a;
  if (flags.Has("model")) {
    ASSIGN_OR_RETURN(a.model, flags.String("model"));
  }
  ASSIGN_OR_RETURN(a.batches, IntList(flags, "batches", a.batches));
  ASSIGN_OR_RETURN(a.attn_contexts, IntList(flags, "attn-contexts", a.attn_contexts));
  ASSIGN_OR_RETURN(a.gemm_tokens, IntList(flags, "gemm-tokens", a.gemm_tokens));
  ASSIGN_OR_RETURN(a.gemm_types, TypeList(flags, a.gemm_types));
  if (flags.Has("sections")) {
    ASSIGN_OR_RETURN(std::string text, flags.String("sections"));
    a.decode = a.prefill = a.attention = a.gemm = false;
    for (absl::string_view part : absl::StrSplit(text, ',')) {
      bool* section = part == "decode"      ? &a.decode
                      : part == "prefill"   ? &a.prefill
                      : part == "attention" ? &a.attention
                      : part == "gemm"      ? &a.gemm
                                            : nullptr;
      if (section == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--sections: \"", part, "\" is not decode, prefill, attention or gemm"));
      }
      *section = true;
    }
  }
  ASSIGN_OR_RETURN(int64_t v, flags.Int("decode-context", a.decode_context, 1, 1 << 20));
  a.decode_context = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("decode-steps", a.decode_steps, 1, 1 << 20));
  a.decode_steps = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("prefill-tokens", a.prefill_tokens, 1, 1 << 20));
  a.prefill_tokens = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("prefill-chunk", a.prefill_chunk, 1, 8192));
  a.prefill_chunk = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("attn-batch", a.attn_batch, 1, 4096));
  a.attn_batch = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("attn-heads", 0, 0, 1024));
  a.attn_heads = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("attn-kv-heads", 0, 0, 1024));
  a.attn_kv_heads = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("attn-head-dim", 0, 0, kernels::cuda::CudaBackend::kMaxHeadDim));
  a.attn_head_dim = static_cast<int>(v);
  ASSIGN_OR_RETURN(v, flags.Int("reps", a.reps, 1, 100000));
  a.reps = static_cast<int>(v);
  ASSIGN_OR_RETURN(a.peak_gbps, flags.Float("peak-gbps", 0, 0, 1e6));
  return a;
}

std::vector<int32_t> RandomTokens(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = pick(rng);
  return ids;
}

// Milliseconds per call of `op` (which queues work on the backend's stream): CUDA events around
// `reps` calls, so host overheads between launches count only where they stall the device.
absl::StatusOr<double> MillisecondsPerCall(kernels::cuda::CudaBackend& backend, int reps,
                                           const std::function<void()>& op) {
  cudaEvent_t start = nullptr, stop = nullptr;
  if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) {
    return absl::InternalError("cudaEventCreate failed");
  }
  cudaEventRecord(start, backend.stream());
  for (int r = 0; r < reps; ++r) op();
  cudaEventRecord(stop, backend.stream());
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  RETURN_IF_ERROR(backend.Synchronize());
  return double(ms) / reps;
}

// Decode tokens/s with `batch` sequences; see the file comment.
absl::StatusOr<double> DecodeRate(model::LlamaModel& model, kernels::Backend& backend,
                                  const Args& args, int batch, bool sample_on_device) {
  constexpr int kWarmup = 2;
  const int final_len = args.decode_context + kWarmup + args.decode_steps;
  const int blocks_per_seq = (final_len + kBlockSize - 1) / kBlockSize;
  ASSIGN_OR_RETURN(auto kv, model::KvCacheStorage::Create(
                                backend, model.KvShape(batch * blocks_per_seq, kBlockSize)));
  std::vector<std::vector<int32_t>> tables(batch);
  for (int s = 0; s < batch; ++s) {
    tables[s].resize(blocks_per_seq);
    std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
  }
  const int32_t vocab = model.config().vocab_size;
  // Fill every sequence's context, max_batch_tokens tokens per step (untimed).
  for (int s = 0; s < batch; ++s) {
    const std::vector<int32_t> prompt = RandomTokens(args.decode_context, vocab, 1000 + s);
    for (int begin = 0; begin < args.decode_context; begin += model.max_batch_tokens()) {
      const int end = std::min(args.decode_context, begin + model.max_batch_tokens());
      model::StepBatch step;
      step.token_ids.assign(prompt.begin() + begin, prompt.begin() + end);
      step.seqs.push_back({end - begin, end, tables[s], end == args.decode_context ? 1 : 0});
      RETURN_IF_ERROR(model.Forward(step, *kv).status());
    }
  }
  // Each step feeds back the tokens the previous one sampled, as generation does.
  engine::SamplingParams params;
  params.temperature = 0.8f;
  params.top_p = 0.95f;
  std::vector<engine::Sampler> samplers;
  for (int s = 0; s < batch; ++s) {
    params.seed = 500 + s;
    samplers.emplace_back(params);
  }
  std::vector<int32_t> next = RandomTokens(batch, vocab, 7);
  double start = 0;
  for (int i = 0; i < kWarmup + args.decode_steps; ++i) {
    if (i == kWarmup) start = Now();
    model::StepBatch step;
    for (int s = 0; s < batch; ++s) {
      step.token_ids.push_back(next[s]);
      step.seqs.push_back({.num_tokens = 1, .context_len = args.decode_context + i + 1,
                           .block_table = tables[s], .num_logits = 1});
      if (sample_on_device) step.seqs.back().backend_sampling = samplers[s].NextRowSampling();
    }
    ASSIGN_OR_RETURN(const model::StepOutput out, model.Step(step, *kv));  // waits for results
    for (int s = 0; s < batch; ++s) {
      next[s] = sample_on_device
                    ? out.sampled[s]
                    : engine::Sampler::SampleRow(samplers[s].NextRowSampling(),
                                                 out.logits.subspan(size_t(s) * vocab, vocab));
    }
  }
  return double(batch) * args.decode_steps / (Now() - start);
}

// Prefill tokens/s of one sequence; see the file comment.
absl::StatusOr<double> PrefillRate(model::LlamaModel& model, kernels::Backend& backend,
                                   const Args& args) {
  const int blocks = (args.prefill_tokens + kBlockSize - 1) / kBlockSize;
  ASSIGN_OR_RETURN(auto kv,
                   model::KvCacheStorage::Create(backend, model.KvShape(blocks, kBlockSize)));
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  const std::vector<int32_t> prompt =
      RandomTokens(args.prefill_tokens, model.config().vocab_size, 42);
  const int chunk = std::min(args.prefill_chunk, model.max_batch_tokens());
  double seconds = 0;
  for (int pass = 0; pass < 2; ++pass) {  // the first pass warms up
    const double start = Now();
    for (int begin = 0; begin < args.prefill_tokens; begin += chunk) {
      const int end = std::min(args.prefill_tokens, begin + chunk);
      model::StepBatch step;
      step.token_ids.assign(prompt.begin() + begin, prompt.begin() + end);
      step.seqs.push_back({end - begin, end, table, 1});
      RETURN_IF_ERROR(model.Forward(step, *kv).status());
    }
    seconds = Now() - start;
  }
  return args.prefill_tokens / seconds;
}

struct AttentionResult {
  double ms_per_call = 0;
  double gbps = 0;
};

// The decode attention kernel alone at `context` tokens per sequence; see the file comment.
absl::StatusOr<AttentionResult> AttentionBandwidth(kernels::cuda::CudaBackend& backend, int batch,
                                                   int context, int heads, int kv_heads,
                                                   int head_dim, int reps) {
  const int blocks_per_seq = (context + kBlockSize - 1) / kBlockSize;
  const int num_blocks = batch * blocks_per_seq;
  const size_t kv_elems = size_t(num_blocks) * kBlockSize * kv_heads * head_dim;
  kernels::Buffer k = backend.Allocate(kv_elems * sizeof(uint16_t));
  kernels::Buffer v = backend.Allocate(kv_elems * sizeof(uint16_t));
  kernels::Buffer q = backend.Allocate(size_t(batch) * heads * head_dim * sizeof(float));
  kernels::Buffer out = backend.Allocate(size_t(batch) * heads * head_dim * sizeof(float));
  if (!k || !v || !q || !out) return absl::ResourceExhaustedError("attention: out of memory");
  kernels::KvLayer layer;
  layer.k = static_cast<uint16_t*>(k.get());
  layer.v = static_cast<uint16_t*>(v.get());
  layer.num_blocks = num_blocks;
  layer.block_size = kBlockSize;
  layer.num_kv_heads = kv_heads;
  layer.head_dim = head_dim;
  // Blocks scattered over the pool, as a long-running cache leaves them.
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(3));
  std::vector<kernels::AttentionSeq> seqs(batch);
  for (int s = 0; s < batch; ++s) {
    seqs[s].q_begin = s;
    seqs[s].num_q = 1;
    seqs[s].context_len = context;
    seqs[s].block_table = pool.data() + size_t(s) * blocks_per_seq;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  auto* qp = static_cast<float*>(q.get());
  auto* op = static_cast<float*>(out.get());
  backend.Attention(qp, layer, seqs, heads, scale, op);  // warm-up (and the mirrors' copies)
  RETURN_IF_ERROR(backend.Synchronize());

  ASSIGN_OR_RETURN(const double ms, MillisecondsPerCall(backend, reps, [&] {
    backend.Attention(qp, layer, seqs, heads, scale, op);
  }));
  const double bytes = 2.0 * 2.0 * double(batch) * context * kv_heads * head_dim;
  AttentionResult r;
  r.ms_per_call = ms;
  r.gbps = bytes / (r.ms_per_call * 1e-3) / 1e9;
  return r;
}

// ---- gemm ----

struct GemmShape {
  int64_t rows, cols;
  const char* name;
};

// SmolLM2-135M's matmuls: y[n, rows] = x[n, cols] · wᵀ.
constexpr GemmShape kGemmShapes[] = {
    {576, 576, "q/o"}, {192, 576, "k/v"}, {1536, 576, "gate/up"}, {576, 1536, "down"}};

// Random host bytes of a `type` weight with valid scales (no NaN or Inf to slow anything).
std::vector<uint8_t> RandomWeightBytes(kernels::DType type, int64_t rows, int64_t cols,
                                       uint32_t seed) {
  using kernels::DType;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> bytes(kernels::RowBytes(type, cols) * rows);
  if (type == DType::kF32) {
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4) {
      const float v = normal(rng);
      std::memcpy(&bytes[i], &v, 4);
    }
    return bytes;
  }
  if (type == DType::kF16 || type == DType::kBF16) {
    for (size_t i = 0; i + 2 <= bytes.size(); i += 2) {
      const float v = normal(rng);
      const uint16_t h =
          type == DType::kF16 ? kernels::cpu::Fp32ToFp16(v) : kernels::cpu::Fp32ToBf16(v);
      std::memcpy(&bytes[i], &h, 2);
    }
    return bytes;
  }
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  const size_t block = kernels::GetDTypeInfo(type).block_bytes;
  for (size_t i = 0; i + block <= bytes.size(); i += block) {
    const uint16_t d = kernels::cpu::Fp32ToFp16(0.01f), m = kernels::cpu::Fp32ToFp16(-0.05f);
    std::memcpy(&bytes[i], &d, 2);
    if (type == DType::kQ4_1) std::memcpy(&bytes[i + 2], &m, 2);
  }
  return bytes;
}

// Milliseconds per MatMul on the backend's current GEMM path: one warm-up call (the cuBLAS
// handle, its heuristics and the scratch), then CUDA events around `reps` calls.
absl::StatusOr<double> MatMulMs(kernels::cuda::CudaBackend& backend, const kernels::Weight& w,
                                const float* x, int64_t n, float* y, int reps) {
  backend.MatMul(w, x, n, y);
  RETURN_IF_ERROR(backend.Synchronize());
  return MillisecondsPerCall(backend, reps, [&] { backend.MatMul(w, x, n, y); });
}

// Both prefill GEMM paths on every shape and n; see the file comment.
absl::Status RunGemm(kernels::cuda::CudaBackend& backend, const Args& args) {
  using kernels::cuda::CudaGemmOptions;
  using kernels::cuda::CudaGemmPath;
  const CudaGemmOptions saved = backend.gemm_options();
  const int max_n = *std::max_element(args.gemm_tokens.begin(), args.gemm_tokens.end());
  int64_t max_cols = 0, max_rows = 0;
  for (const GemmShape& s : kGemmShapes) {
    max_cols = std::max(max_cols, s.cols);
    max_rows = std::max(max_rows, s.rows);
  }
  kernels::Buffer x = backend.Allocate(size_t(max_n) * max_cols * sizeof(float));
  kernels::Buffer y = backend.Allocate(size_t(max_n) * max_rows * sizeof(float));
  if (!x || !y) return absl::ResourceExhaustedError("gemm: out of memory");
  {
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> host(size_t(max_n) * max_cols);
    for (float& v : host) v = normal(rng);
    RETURN_IF_ERROR(backend.CopyToDevice(x.get(), host.data(), host.size() * sizeof(float)));
  }
  const auto* xp = static_cast<const float*>(x.get());
  auto* yp = static_cast<float*>(y.get());
  std::vector<int> tokens = args.gemm_tokens;
  std::sort(tokens.begin(), tokens.end());
  for (kernels::DType type : args.gemm_types) {
    const std::string type_name(kernels::GetDTypeInfo(type).name);
    // cublas_wins[i]: cuBLAS faster on every shape at tokens[i].
    std::vector<bool> cublas_wins(tokens.size(), true);
    for (const GemmShape& s : kGemmShapes) {
      const std::vector<uint8_t> bytes = RandomWeightBytes(type, s.rows, s.cols, 5);
      kernels::Weight host;
      host.type = type;
      host.data = bytes.data();
      host.rows = s.rows;
      host.cols = s.cols;
      host.row_stride_bytes = kernels::RowBytes(type, s.cols);
      ASSIGN_OR_RETURN(kernels::cuda::DeviceWeight w, backend.UploadWeight(host));
      for (size_t i = 0; i < tokens.size(); ++i) {
        const int n = tokens[i];
        double ms[2] = {0, 0};
        const CudaGemmPath paths[2] = {CudaGemmPath::kTiled, CudaGemmPath::kCublas};
        for (int p = 0; p < 2; ++p) {
          CudaGemmOptions forced = saved;
          forced.path = paths[p];
          backend.set_gemm_options(forced);
          ASSIGN_OR_RETURN(ms[p], MatMulMs(backend, w.weight, xp, n, yp, args.reps));
        }
        const double flop = 2.0 * n * s.rows * s.cols;
        std::printf("gemm %-4s %4lld->%-4lld %-7s n %5d: tiled %8.4f ms %7.2f TFLOP/s | "
                    "cublas %8.4f ms %7.2f TFLOP/s | cublas/tiled %5.2fx\n",
                    type_name.c_str(), static_cast<long long>(s.cols),
                    static_cast<long long>(s.rows), s.name, n, ms[0], flop / (ms[0] * 1e9),
                    ms[1], flop / (ms[1] * 1e9), ms[0] / ms[1]);
        if (ms[1] >= ms[0]) cublas_wins[i] = false;
      }
    }
    // The smallest n from which cuBLAS wins on every shape at every larger measured n too.
    size_t first = tokens.size();
    while (first > 0 && cublas_wins[first - 1]) --first;
    if (first < tokens.size()) {
      std::printf("gemm %s: cuBLAS faster on every shape from n = %d of those measured "
                  "(cublas_min_tokens, now %lld)\n",
                  type_name.c_str(), tokens[first],
                  static_cast<long long>(saved.cublas_min_tokens));
    } else {
      std::printf("gemm %s: the tiled GEMM is as fast on some shape at n = %d; keep tiled\n",
                  type_name.c_str(), tokens.back());
    }
  }
  backend.set_gemm_options(saved);
  return absl::OkStatus();
}

// ---- the model's sections ----

absl::Status RunModelSections(kernels::cuda::CudaBackend& backend, const Args& args,
                              double peak) {
  ASSIGN_OR_RETURN(auto file, model::GgufFile::Open(args.model));
  model::LlamaModel::Options options;
  options.max_batch_tokens =
      std::max({args.prefill_chunk, *std::max_element(args.batches.begin(), args.batches.end())});
  ASSIGN_OR_RETURN(auto model, model::LlamaModel::Load(*file, backend, options));
  const model::ModelConfig& c = model->config();
  std::printf("model: %s (%d layers, hidden %d, %d heads, %d KV heads, head_dim %d)\n",
              args.model.c_str(), c.num_layers, c.hidden_dim, c.num_heads, c.num_kv_heads,
              c.head_dim);

  if (args.decode) {
    for (int batch : args.batches) {
      ASSIGN_OR_RETURN(const double device, DecodeRate(*model, backend, args, batch, true));
      ASSIGN_OR_RETURN(const double host, DecodeRate(*model, backend, args, batch, false));
      std::printf("decode   batch %4d, context %d: %10.1f tokens/s (%.3f ms/step) sampled on "
                  "the device; %10.1f tokens/s (%.3f ms/step) logits to the host; ratio %.2f\n",
                  batch, args.decode_context, device, 1e3 * batch / device, host,
                  1e3 * batch / host, device / host);
    }
  }
  if (args.prefill) {
    ASSIGN_OR_RETURN(double prefill, PrefillRate(*model, backend, args));
    std::printf("prefill  %d tokens in steps of %d (gemm path %s): %10.1f tokens/s\n",
                args.prefill_tokens, std::min(args.prefill_chunk, model->max_batch_tokens()),
                std::string(kernels::cuda::CudaGemmPathName(backend.gemm_options().path)).c_str(),
                prefill);
  }
  if (!args.attention) return absl::OkStatus();

  const int heads = args.attn_heads > 0 ? args.attn_heads : c.num_heads;
  const int kv_heads = args.attn_kv_heads > 0 ? args.attn_kv_heads : c.num_kv_heads;
  const int head_dim = args.attn_head_dim > 0 ? args.attn_head_dim : c.head_dim;
  if (heads % kv_heads != 0) {
    return absl::InvalidArgumentError("attention: heads must be a multiple of KV heads");
  }
  for (int context : args.attn_contexts) {
    ASSIGN_OR_RETURN(AttentionResult r, AttentionBandwidth(backend, args.attn_batch, context,
                                                           heads, kv_heads, head_dim, args.reps));
    std::printf("attention decode batch %d, context %d (%d heads, %d KV heads, head_dim %d): "
                "%.3f ms/call, %.0f GB/s = %.1f%% of peak\n",
                args.attn_batch, context, heads, kv_heads, head_dim, r.ms_per_call, r.gbps,
                peak > 0 ? 100.0 * r.gbps / peak : 0.0);
  }
  return absl::OkStatus();
}

absl::Status Run(const Args& args) {
  ASSIGN_OR_RETURN(auto backend, kernels::cuda::CudaBackend::Create(0));
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, backend->device());
  int clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, backend->device());
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, backend->device());
  const double device_peak = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  const double peak = args.peak_gbps > 0 ? args.peak_gbps : device_peak;
  std::printf("device: %s (sm_%d%d), peak memory bandwidth %.0f GB/s (%s)\n", prop.name,
              prop.major, prop.minor, peak, args.peak_gbps > 0 ? "--peak-gbps" : "from the device");
  if (args.decode || args.prefill || args.attention) {
    RETURN_IF_ERROR(RunModelSections(*backend, args, peak));
  }
  if (args.gemm) RETURN_IF_ERROR(RunGemm(*backend, args));
  return absl::OkStatus();
}

}  // namespace
}  // namespace saola

int main(int argc, char** argv) {
  auto args = saola::ParseArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.ok()) {
    std::fprintf(stderr, "saola-cuda-bench: %s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  const absl::Status status = saola::Run(*args);
  if (!status.ok()) {
    std::fprintf(stderr, "saola-cuda-bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
