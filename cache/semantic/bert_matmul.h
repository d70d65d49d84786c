// The encoder's dense layers, y[T, out] = x[T, in] · Wᵀ + b, for the few tokens of one prompt.
//
// Why not only cblas_sgemm: for a short prompt (T ≈ 10 to 30) a layer is memory-bound on its
// weights, and OpenBLAS re-packs the whole weight matrix on every call, so it moves each weight
// twice and T = 4 costs about what T = 16 does. PackedWeight instead lays W out once, at load,
// in panels of 16 output columns ([in][16] each), stored as IEEE half floats: half the bytes
// to stream, and F16C widens them for free next to the FMAs. The AVX2 kernel streams every
// panel through the cache once and, for blocks of 6 tokens, keeps 6 × 16 float sums in 12
// registers: per input k, two weight loads feed 12 FMAs. Each panel (12 KiB for in = 384,
// 48 KiB for 1536) stays cached across the token blocks. Sums and activations stay float32;
// rounding the weights to half moves MiniLM's embeddings by a cosine of ~1e-7.
//
// Measured on this repository's 2-core Xeon VM (one thread, min of 300 calls, weights cached):
// T = 16, 1536x384: OpenBLAS 298 us, packed 220 us; T = 4: 217 vs 77 us; T = 64: 599 vs 802 us.
// End to end, a 16-token Embed went from 9.4 to 6.8 ms (weights streamed from memory).
//
// Knobs: kMaxKernelTokens (longer inputs, where T amortizes OpenBLAS's packing, go to
// cblas_sgemm on the float32 weights) and the 6-token block (registers: 12 sums + 2 weights +
// 1 broadcast of the 16 AVX2 registers). Without AVX2, FMA and F16C, or when out is not a
// multiple of 16, every call goes to cblas_sgemm.
#pragma once

#include <cstdint>
#include <vector>

namespace saola::cache {

class PackedWeight {
 public:
  /// Packs `w` ([out, in] row-major, as HF stores nn.Linear). `w` must outlive the object: the
  /// cblas path reads it in place.
  PackedWeight(const float* w, int out, int in);

  int out() const { return out_; }
  int in() const { return in_; }
  const float* row_major() const { return w_; }
  /// The half-float panels, or empty when the kernel is not used for this weight.
  const std::vector<uint16_t>& panels() const { return panels_; }

 private:
  const float* w_;
  int out_;
  int in_;
  std::vector<uint16_t> panels_;
};

/// Inputs up to this many tokens take the packed kernel.
inline constexpr int kMaxKernelTokens = 48;

/// y[T, out] = x[T, in] · wᵀ + bias (bias has `out` floats). Thread-safe.
void MatMulBias(const PackedWeight& w, const float* x, int num_tokens, const float* bias,
                float* y);

/// The plain cblas_sgemm path, for tests to compare the kernel with.
void MatMulBiasBlas(const PackedWeight& w, const float* x, int num_tokens, const float* bias,
                    float* y);

}  // namespace saola::cache
