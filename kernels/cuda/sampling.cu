// Sampling on CUDA. Greedy: the argmax of each logits row, the lowest id on ties (as the engine's
// CPU sampler, worker/engine/sampler.h); one block per row, each thread scans a strided share of
// the vocabulary, then a shared-memory tree picks the best (value, id) pair; NaN never wins.
// Top-k / top-p / min-p with a host-drawn uniform: see sampling.h for the rule, its cost and why
// the draw comes from the host. Building blocks, all block-wide on one row:
//   ScanCrossing  the first token in id order whose running mass crosses a target;
//   FindCrossing  the same in (key desc, id asc) order, by a 4-pass radix select on the key
//                 (mass histograms per 8-bit digit), then ScanCrossing over the tied key;
// with mass 1 per token FindCrossing is a top-k select, with weights a top-p cut or a draw.
#include "kernels/cuda/sampling.h"

#include <cuda_runtime.h>

#include <cfloat>
#include <climits>
#include <cmath>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/launch.h"

namespace saola::kernels::cuda {
namespace {

using internal::kFullMask;

constexpr int kArgmaxThreads = 1024;
constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
// The CPU's top-p buckets: float bits >> 20 (exponent and 3 mantissa bits) of weights in [0, 1].
constexpr int kBucketShift = 20;
constexpr int kNumBuckets = (0x3f800000 >> kBucketShift) + 1;

// True if (v, i) beats (best_v, best_i): larger value, or the same value and a lower id.
__device__ __forceinline__ bool Better(float v, int32_t i, float best_v, int32_t best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

// The argmax of a row with the calling block; valid in thread 0. best_v / best_i hold blockDim.x.
__device__ int32_t BlockArgmax(const float* row, int64_t vocab, float* best_v, int32_t* best_i) {
  float v = -INFINITY;
  int32_t idx = INT32_MAX;
  for (int64_t k = threadIdx.x; k < vocab; k += blockDim.x) {
    const float x = row[k];
    if (Better(x, static_cast<int32_t>(k), v, idx)) {  // false for NaN
      v = x;
      idx = static_cast<int32_t>(k);
    }
  }
  best_v[threadIdx.x] = v;
  best_i[threadIdx.x] = idx;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float ov = best_v[threadIdx.x + half];
      const int32_t oi = best_i[threadIdx.x + half];
      if (Better(ov, oi, best_v[threadIdx.x], best_i[threadIdx.x])) {
        best_v[threadIdx.x] = ov;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  // A row of only NaN / -inf logits yields id 0.
  return best_i[0] == INT32_MAX ? 0 : best_i[0];
}

__global__ void __launch_bounds__(kArgmaxThreads)
    ArgmaxKernel(const float* logits, int64_t vocab, int32_t* out) {
  __shared__ float best_v[kArgmaxThreads];
  __shared__ int32_t best_i[kArgmaxThreads];
  const int32_t id =
      BlockArgmax(logits + static_cast<int64_t>(blockIdx.x) * vocab, vocab, best_v, best_i);
  if (threadIdx.x == 0) out[blockIdx.x] = id;
}

// ---- Sampling ----

struct Shared {
  double hist[256];
  double buckets[kNumBuckets];
  double warp[kWarps];
  double f64[2];
  unsigned long long u64;
  int32_t i32[2];
  uint32_t u32;
  float best_v[kThreads];
  int32_t best_i[kThreads];
};

// A token's place in an ordered selection: mass 0 means "not a candidate".
struct Elem {
  uint32_t key;  // larger first; ties in id order
  double mass;
};

struct Crossing {
  bool found = false;
  uint32_t key = 0;  // FindCrossing only
  int32_t id = -1;
  double end = 0;  // base + the mass of every candidate when not found
};

__device__ __forceinline__ bool Crosses(double cumulative, double target, bool strict) {
  return strict ? cumulative > target : cumulative >= target;
}

// NaN -> -inf, +inf -> the largest float, -0 -> +0 (equal logits must get equal keys).
__device__ __forceinline__ float Sanitize(float v) {
  if (isnan(v)) return -INFINITY;
  v = fminf(v, FLT_MAX);
  return v == 0.0f ? 0.0f : v;
}

// Order-preserving unsigned key of a float that is not NaN.
__device__ __forceinline__ uint32_t OrderedKey(float v) {
  const uint32_t bits = __float_as_uint(v);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

// e^x for x <= 0: the CPU sampler's four-lane Cephes expf, operation for operation, each rounded
// on its own (no FMA), so the dense weights are bit-identical to the CPU's.
__device__ __forceinline__ float CephesExpNonPositive(float x) {
  const bool keep = x >= -87.3f;  // false for NaN
  x = keep ? x : 0.0f;
  const float magic = 12582912.0f;
  const float n = __fsub_rn(__fadd_rn(__fmul_rn(x, 1.44269504088896341f), magic), magic);
  const float r = __fsub_rn(__fsub_rn(x, __fmul_rn(n, 0.693359375f)), __fmul_rn(n, -2.12194440e-4f));
  float p = 1.9875691500e-4f;
  p = __fadd_rn(__fmul_rn(p, r), 1.3981999507e-3f);
  p = __fadd_rn(__fmul_rn(p, r), 8.3334519073e-3f);
  p = __fadd_rn(__fmul_rn(p, r), 4.1665795894e-2f);
  p = __fadd_rn(__fmul_rn(p, r), 1.6666665459e-1f);
  p = __fadd_rn(__fmul_rn(p, r), 5.0000001201e-1f);
  const float y = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(p, r), r), r), 1.0f);
  const float scale = __uint_as_float(static_cast<uint32_t>(static_cast<int>(n) + 127) << 23);
  return keep ? __fmul_rn(y, scale) : 0.0f;
}

__device__ __forceinline__ int BucketOf(float weight) {
  return min(static_cast<int>(__float_as_uint(weight) >> kBucketShift), kNumBuckets - 1);
}

__device__ double BlockSum(double v, Shared& s) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  __syncthreads();  // s.warp may still be read by a previous call
  if ((threadIdx.x & 31) == 0) s.warp[threadIdx.x >> 5] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < kWarps; ++w) total += s.warp[w];
  return total;
}

__device__ float BlockMax(float v, Shared& s) {
  v = internal::WarpMax(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s.warp[threadIdx.x >> 5] = v;
  __syncthreads();
  float best = -INFINITY;
  for (int w = 0; w < kWarps; ++w) best = fmaxf(best, static_cast<float>(s.warp[w]));
  return best;
}

// Inclusive prefix sum of v over the block; *total gets the block's sum.
__device__ double BlockScan(double v, Shared& s, double* total) {
  const int lane = threadIdx.x & 31;
  for (int offset = 1; offset < 32; offset <<= 1) {
    const double other = __shfl_up_sync(kFullMask, v, offset);
    if (lane >= offset) v += other;
  }
  __syncthreads();
  if (lane == 31) s.warp[threadIdx.x >> 5] = v;
  __syncthreads();
  double before = 0;
  double sum = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w == static_cast<int>(threadIdx.x >> 5)) before = sum;
    sum += s.warp[w];
  }
  *total = sum;
  return before + v;
}

// The first token in id order (mass(i) > 0) at which base + running mass crosses target.
template <typename Mass>
__device__ Crossing ScanCrossing(int64_t vocab, Mass mass, double base, double target, bool strict,
                                 Shared& s) {
  Crossing result;
  double run = base;
  for (int64_t start = 0; start < vocab; start += kThreads) {
    const int64_t i = start + threadIdx.x;
    const double m = i < vocab ? mass(i) : 0.0;
    if (!__syncthreads_or(m > 0)) continue;
    double chunk = 0;
    const double inclusive = BlockScan(m, s, &chunk);
    if (threadIdx.x == 0) s.i32[0] = INT32_MAX;
    __syncthreads();
    if (m > 0 && Crosses(run + inclusive, target, strict)) atomicMin(&s.i32[0], threadIdx.x);
    __syncthreads();
    const int first = s.i32[0];
    if (first != INT32_MAX) {
      result.found = true;
      result.id = static_cast<int32_t>(start + first);
      return result;
    }
    run += chunk;
  }
  result.end = run;
  return result;
}

// The first candidate in (key desc, id asc) order at which base + running mass crosses target.
template <typename ElemOf>
__device__ Crossing FindCrossing(int64_t vocab, ElemOf elem, double base, double target,
                                 bool strict, Shared& s) {
  uint32_t prefix = 0;
  uint32_t mask = 0;
  double run = base;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += kThreads) s.hist[d] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const Elem e = elem(i);
      if (e.mass > 0 && (e.key & mask) == prefix) atomicAdd(&s.hist[(e.key >> shift) & 255], e.mass);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int chosen = -1;
      for (int d = 255; d >= 0; --d) {
        if (s.hist[d] > 0 && Crosses(run + s.hist[d], target, strict)) {
          chosen = d;
          break;
        }
        run += s.hist[d];
      }
      s.i32[1] = chosen;
      s.f64[0] = run;
    }
    __syncthreads();
    const int chosen = s.i32[1];
    run = s.f64[0];
    __syncthreads();
    if (chosen < 0) {
      Crossing none;
      none.end = run;
      return none;
    }
    prefix |= static_cast<uint32_t>(chosen) << shift;
    mask |= 255u << shift;
  }
  // The tokens with exactly this key come in id order.
  Crossing result = ScanCrossing(
      vocab,
      [&](int64_t i) {
        const Elem e = elem(i);
        return e.key == prefix ? e.mass : 0.0;
      },
      run, target, strict, s);
  result.key = prefix;
  return result;
}

// The last candidate in (key desc, id asc) order: the smallest key, the largest id among it.
template <typename ElemOf>
__device__ int32_t LastInOrder(int64_t vocab, ElemOf elem, Shared& s) {
  if (threadIdx.x == 0) s.u64 = 0;
  __syncthreads();
  unsigned long long best = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const Elem e = elem(i);
    if (e.mass > 0) {
      best = max(best, (static_cast<unsigned long long>(~e.key) << 32) |
                           static_cast<unsigned long long>(i + 1));
    }
  }
  atomicMax(&s.u64, best);
  __syncthreads();
  const unsigned long long last = s.u64;
  __syncthreads();
  return last == 0 ? 0 : static_cast<int32_t>((last & 0xffffffffu) - 1);
}

// (key, id) comes no later than (k, id_k) in (key desc, id asc) order.
__device__ __forceinline__ bool NotAfter(uint32_t key, int64_t i, const Crossing& c) {
  return key > c.key || (key == c.key && i <= c.id);
}

// Top-k (0 < k < vocab), then top-p, min-p and the draw, in (logit desc, id asc) order.
__device__ int32_t SampleTopK(const float* row, int64_t vocab, const RowSampling& p, float max,
                              float inv_t, Shared& s) {
  const Crossing kth = FindCrossing(
      vocab,
      [&](int64_t i) {
        const float v = Sanitize(row[i]);
        return Elem{OrderedKey(v), v > -INFINITY ? 1.0 : 0.0};
      },
      0.0, static_cast<double>(p.top_k), /*strict=*/false, s);
  Crossing top_p;  // not found: no top-p cut
  float threshold = 0.0f;
  const auto candidate = [&](int64_t i) {
    const float v = Sanitize(row[i]);
    const uint32_t key = OrderedKey(v);
    if (!(v > -INFINITY) || (kth.found && !NotAfter(key, i, kth))) return Elem{key, 0.0};
    if (top_p.found && !NotAfter(key, i, top_p)) return Elem{key, 0.0};
    // As the CPU: std::exp of the float (l - max) / T, correctly rounded to float.
    const float w = static_cast<float>(exp(static_cast<double>(__fmul_rn(__fsub_rn(v, max), inv_t))));
    return Elem{key, w >= threshold ? static_cast<double>(w) : 0.0};
  };
  const auto mass_sum = [&] {
    double m = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) m += candidate(i).mass;
    return BlockSum(m, s);
  };
  if (p.top_p < 1.0f) {
    const double target = mass_sum() * static_cast<double>(fmaxf(p.top_p, 0.0f));
    top_p = FindCrossing(vocab, candidate, 0.0, target, /*strict=*/false, s);
  }
  if (p.min_p > 0) {
    float largest = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      largest = fmaxf(largest, static_cast<float>(candidate(i).mass));
    }
    threshold = fminf(p.min_p, 1.0f) * BlockMax(largest, s);
  }
  const double target = p.uniform * mass_sum();
  const Crossing drawn = FindCrossing(vocab, candidate, 0.0, target, /*strict=*/true, s);
  return drawn.found ? drawn.id : LastInOrder(vocab, candidate, s);
}

// No top-k: dense weights, then the bucketed top-p, min-p and the draw.
__device__ int32_t SampleDense(const float* row, int64_t vocab, const RowSampling& p, float max,
                               float inv_t, Shared& s) {
  const auto weight = [&](int64_t i) {
    return CephesExpNonPositive(__fmul_rn(__fsub_rn(Sanitize(row[i]), max), inv_t));
  };
  float threshold = 0.0f;
  if (p.top_p >= 1.0f) {
    if (p.min_p > 0) threshold = fminf(p.min_p, 1.0f);  // the largest weight is exactly 1
    const auto mass = [&](int64_t i) {
      const float w = weight(i);
      return w >= threshold ? static_cast<double>(w) : 0.0;
    };
    double total = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) total += mass(i);
    total = BlockSum(total, s);
    const Crossing drawn = ScanCrossing(vocab, mass, 0.0, p.uniform * total, /*strict=*/true, s);
    if (drawn.found) return drawn.id;
    return LastInOrder(vocab, [&](int64_t i) { return Elem{0, mass(i)}; }, s);
  }

  // Top-p: mass per bucket, then the bucket where the nucleus ends.
  for (int b = threadIdx.x; b < kNumBuckets; b += kThreads) s.buckets[b] = 0;
  __syncthreads();
  double total = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float w = weight(i);
    if (w > 0) atomicAdd(&s.buckets[BucketOf(w)], static_cast<double>(w));
    total += w;
  }
  const double target = BlockSum(total, s) * static_cast<double>(fmaxf(p.top_p, 0.0f));
  if (threadIdx.x == 0) {
    int cut = 0;  // with no bucket reaching the target (rounding), everything is kept
    double above = 0;
    for (int b = kNumBuckets - 1; b >= 0; --b) {
      if (s.buckets[b] > 0 && above + s.buckets[b] >= target) {
        cut = b;
        break;
      }
      above += s.buckets[b];
    }
    s.i32[1] = cut;
    s.f64[1] = above;
  }
  __syncthreads();
  const int cut = s.i32[1];
  const double above = s.f64[1];
  __syncthreads();
  Crossing boundary_end;  // not found: the whole boundary bucket is kept
  const auto boundary = [&](int64_t i) {
    const float w = weight(i);
    const uint32_t key = __float_as_uint(w);
    const bool kept = w > 0 && BucketOf(w) == cut && w >= threshold &&
                      (!boundary_end.found || NotAfter(key, i, boundary_end));
    return Elem{key, kept ? static_cast<double>(w) : 0.0};
  };
  boundary_end = FindCrossing(vocab, boundary, above, target, /*strict=*/false, s);
  const auto upper = [&](int64_t i) {
    const float w = weight(i);
    return w > 0 && BucketOf(w) > cut && w >= threshold ? static_cast<double>(w) : 0.0;
  };
  if (p.min_p > 0) {
    float largest = 0;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      largest = fmaxf(largest, fmaxf(static_cast<float>(upper(i)),
                                     static_cast<float>(boundary(i).mass)));
    }
    threshold = fminf(p.min_p, 1.0f) * BlockMax(largest, s);
  }
  // The nucleus in the CPU's order: the buckets above the cut in id order, then the boundary.
  double kept = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) kept += upper(i) + boundary(i).mass;
  const double draw = p.uniform * BlockSum(kept, s);
  const Crossing in_upper = ScanCrossing(vocab, upper, 0.0, draw, /*strict=*/true, s);
  if (in_upper.found) return in_upper.id;
  const Crossing in_boundary =
      FindCrossing(vocab, boundary, in_upper.end, draw, /*strict=*/true, s);
  if (in_boundary.found) return in_boundary.id;
  const int32_t last = LastInOrder(vocab, boundary, s);
  const bool any_boundary = __syncthreads_or(boundary(last).mass > 0);
  return any_boundary ? last : LastInOrder(vocab, [&](int64_t i) { return Elem{0, upper(i)}; }, s);
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* logits, int64_t vocab, const RowSampling* params, int32_t* out) {
  __shared__ Shared s;
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  const RowSampling p = params[blockIdx.x];
  int32_t token = 0;
  if (IsGreedy(p)) {
    token = BlockArgmax(row, vocab, s.best_v, s.best_i);
  } else {
    float max = -INFINITY;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) max = fmaxf(max, Sanitize(row[i]));
    max = BlockMax(max, s);
    if (max > -INFINITY) {  // else no finite logit: token 0
      const float inv_t = 1.0f / p.temperature;
      token = p.top_k > 0 && p.top_k < vocab ? SampleTopK(row, vocab, p, max, inv_t, s)
                                             : SampleDense(row, vocab, p, max, inv_t, s);
    }
  }
  if (threadIdx.x == 0) out[blockIdx.x] = token;
}

}  // namespace

cudaError_t LaunchSample(const float* logits, int64_t rows, int64_t vocab,
                         const RowSampling* params, int32_t* out, cudaStream_t stream) {
  if (rows <= 0 || vocab <= 0) return cudaSuccess;
  SampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, params, out);
  return cudaGetLastError();
}

namespace internal {

void LaunchArgmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out, Stream stream) {
  if (rows <= 0 || vocab <= 0) return;
  ArgmaxKernel<<<static_cast<unsigned>(rows), kArgmaxThreads, 0, stream>>>(logits, vocab, out);
}

}  // namespace internal
}  // namespace saola::kernels::cuda
