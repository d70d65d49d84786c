// The one interface through which the model runs every op.
//
// A backend owns its threads (or streams) and its memory. The model calls one entry point per op
// from a single thread; the backend parallelises inside the call. All float pointers given to a
// backend point at memory that backend can address (host memory for the CPU backend; device memory
// for a GPU backend, obtained from Allocate). A CUDA backend implements the same interface, so the
// model and the scheduler never change when it is added.
//
// Placement: the model's weights start as views into the mmap'd GGUF (host memory). Before the
// first step the model hands each weight and norm to PlaceWeight / PlaceFloats once; a backend
// whose ops read host memory (the CPU) returns the same view, a device backend returns a device
// copy. Results the caller reads on the host (logits) go through CopyToHost, which is a plain
// read of host memory on the CPU; HostAddressable() says whether that copy can be skipped.
//
// Sampling next to the logits: a device backend may also pick tokens itself (SampleRows, by the
// rule of kernels/row_sampling.h), so a decode step copies back token ids instead of
// [rows, vocab] logits. Backends whose logits are host memory anyway (the CPU) leave it out.
//
// Shapes are row-major; "n" is the number of token rows in the step's batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <cstring>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/row_sampling.h"

namespace saola::kernels {

/// A 2-D weight in ggml layout: `rows` output features, each row `cols` input elements stored as
/// consecutive blocks of `type`; row r starts at data + r * row_stride_bytes.
struct Weight {
  DType type = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_stride_bytes = 0;
};

/// The paged KV cache of one layer. Keys and values are stored as IEEE half floats in blocks of
/// `block_size` token slots: k[((block * block_size + slot) * num_kv_heads + head) * head_dim + d].
/// A token's "slot id" is block * block_size + offset.
struct KvLayer {
  uint16_t* k = nullptr;
  uint16_t* v = nullptr;
  int32_t num_blocks = 0;
  int32_t block_size = 16;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

/// One sequence's share of an attention call. Its queries are rows [q_begin, q_begin + num_q) of
/// q/out and sit at positions [context_len - num_q, context_len): query i attends causally to KV
/// positions [0, context_len - num_q + i]. The KV of all context_len positions (the new ones
/// included) is already stored; block_table[p / block_size] holds position p's block.
struct AttentionSeq {
  int32_t q_begin = 0;
  int32_t num_q = 0;
  int32_t context_len = 0;
  const int32_t* block_table = nullptr;
};

/// How RoPE pairs dimensions: kNorm rotates (x[2i], x[2i+1]) (GGUF llama), kNeox rotates
/// (x[i], x[i + rope_dim/2]).
enum class RopeMode { kNorm, kNeox };

struct RopeParams {
  RopeMode mode = RopeMode::kNorm;
  int32_t rope_dim = 0;    // leading dims of each head that rotate; the rest pass through
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;  // linear position scaling (1 = none)
};

/// Memory owned by a backend; freed when the last reference goes.
using Buffer = std::shared_ptr<void>;

/// A weight the backend's ops can read, and the memory that holds it (null when the weight still
/// points into the caller's memory, as on the CPU). Keep `memory` alive while `weight` is used.
struct PlacedWeight {
  Weight weight;
  Buffer memory;
};

class Backend {
 public:
  virtual ~Backend() = default;

  /// Memory the backend's ops can address, zero-filled, aligned to at least 64 bytes; null when
  /// the memory is not available.
  virtual Buffer Allocate(size_t bytes) = 0;

  /// y[n, w.rows] = x[n, w.cols] · wᵀ. Activations may be quantized internally (as llama.cpp
  /// does: Q8_1 for Q4_1 weights, Q8_0 for Q4_0/Q8_0) before integer dot products.
  virtual void MatMul(const Weight& w, const float* x, int64_t n, float* y) = 0;

  /// Several weights that read the same input (Q/K/V, gate/up) in one call: x is prepared once
  /// and all products run in one parallel region. ys[i] is [n, ws[i].rows].
  virtual void MatMulShared(std::span<const Weight> ws, const float* x, int64_t n,
                            std::span<float* const> ys) = 0;

  /// out[i, :] = embedding row ids[i], dequantized to float. Precondition: ids in [0, table.rows).
  virtual void Embed(const Weight& table, const int32_t* ids, int64_t n, float* out) = 0;

  /// out[i] = x[i] / sqrt(mean(x[i]^2) + eps) * weight, for n rows of dim. out may alias x.
  virtual void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                       float* out) = 0;

  /// Fused residual + norm: residual += delta; out = RmsNorm(residual). Saves one pass.
  virtual void AddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n,
                          int64_t dim, float eps, float* out) = 0;

  /// x[n, dim] += delta[n, dim].
  virtual void Add(float* x, const float* delta, int64_t n, int64_t dim) = 0;

  /// In-place rotary embedding of x[n, num_heads, head_dim] at positions[n].
  virtual void Rope(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                    int32_t head_dim, const RopeParams& params) = 0;

  /// out[n, dim] = silu(gate) * up.
  virtual void SiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out) = 0;

  /// Writes k, v ([n, num_kv_heads, head_dim] floats) into the cache at slot ids slots[n].
  virtual void StoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
                       const KvLayer& kv) = 0;

  /// Causal grouped-query attention over the paged cache, online softmax (flash-style tiles).
  /// q and out are [total queries, num_heads, head_dim]; num_heads is a multiple of
  /// kv.num_kv_heads; scores are scaled by `scale`.
  virtual void Attention(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                         int32_t num_heads, float scale, float* out) = 0;

  // ---- Placement and transfers (see the file comment). The defaults are for a backend whose
  // ops address host memory; a device backend overrides all four. ----

  /// True when the caller may read the backend's memory directly (no CopyToHost needed).
  virtual bool HostAddressable() const { return true; }

  /// `host` (a view into host memory, possibly strided: a tensor-parallel column slice) as the
  /// ops want it. Default: the same view, nothing copied.
  virtual absl::StatusOr<PlacedWeight> PlaceWeight(const Weight& host) {
    return PlacedWeight{host, nullptr};
  }

  /// `count` host floats (a norm weight) as the ops want them. Default: a non-owning Buffer
  /// pointing at `host`, which must outlive it.
  virtual absl::StatusOr<Buffer> PlaceFloats(const float* host, size_t /*count*/) {
    return Buffer(Buffer(), const_cast<float*>(host));
  }

  /// Copies `bytes` of backend memory to host memory once all queued work is done; a device
  /// backend returns the first error its asynchronous work met.
  virtual absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) {
    if (bytes > 0) std::memcpy(host_dst, src, bytes);
    return absl::OkStatus();
  }

  // ---- Sampling (see the file comment); a backend overrides both or neither. ----

  /// True when SampleRows is implemented.
  virtual bool SamplesRows() const { return false; }

  /// out[i] (host memory) = the token that params[i] picks from row i of `logits` (backend memory,
  /// [params.size(), vocab]), once all queued work is done; returns the first error that work
  /// met, as CopyToHost.
  virtual absl::Status SampleRows(const float* /*logits*/, int64_t /*vocab*/,
                                  std::span<const RowSampling> /*params*/, int32_t* /*out*/) {
    return absl::UnimplementedError("this backend does not sample");
  }
};

}  // namespace saola::kernels
