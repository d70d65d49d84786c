#include "worker/engine/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/strings/str_format.h"

namespace saola::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kMaxFloat = std::numeric_limits<float>::max();

// Dense weights are summed per block of this many tokens, so that the draw walks block sums first
// and then one block, instead of adding up half the vocab one token at a time.
constexpr size_t kBlock = 64;
// Top-k up to this k keeps a heap of the k best in one pass; a larger k uses nth_element.
constexpr size_t kMaxHeapTopK = 256;
// Top-p without top-k buckets the weights (all in (0, 1]) by their float bits above this shift:
// the exponent and the top 3 mantissa bits, so a bucket spans a factor of 2^(1/8), about 9%.
constexpr int kBucketShift = 20;
constexpr size_t kNumBuckets = (std::bit_cast<uint32_t>(1.0f) >> kBucketShift) + 1;

struct Candidate {
  float value;  // the logit, then the unnormalized probability
  int32_t id;
};

// Larger value first, lower id among equals: the order of top-k, top-p and top logprobs.
template <typename C>
bool Higher(const C& a, const C& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}
constexpr auto kHigher = [](const Candidate& a, const Candidate& b) { return Higher(a, b); };

// Vocab-sized buffers, one set per thread (the engine thread samples every request of a step).
struct Scratch {
  std::vector<float> penalized;    // the row with penalties applied
  std::vector<float> weights;      // dense unnormalized probabilities
  std::vector<double> block_sums;  // weights summed per kBlock
  std::vector<Candidate> candidates;
  std::vector<Candidate> boundary;   // top-p: the tokens of the bucket where the nucleus ends
  std::vector<double> bucket_mass;  // top-p: weight per bucket
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

// A uniform double in [0, 1) from 53 random bits: the same on every standard library, unlike
// std::uniform_real_distribution, so a seed means the same text wherever the worker runs.
double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// +inf as the largest float (it then wins with probability 1 instead of poisoning the softmax
// with inf - inf); NaN as -inf (probability 0).
float Sanitize(float v) { return std::isnan(v) ? -kInf : std::min(v, kMaxFloat); }

// ---- Four lanes at a time with the GCC/Clang vector extensions (SSE2 on x86-64, NEON on Arm):
// under the default -ftrapping-math the auto-vectorizer leaves loops with selects scalar. Every
// lane does the same IEEE operations in the same order, so results never depend on the lane.

using F32x4 = float __attribute__((vector_size(16)));
using I32x4 = int32_t __attribute__((vector_size(16)));

F32x4 Splat(float x) { return F32x4{x, x, x, x}; }

F32x4 Load(const float* p) {
  F32x4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void Store(float* p, F32x4 v) { std::memcpy(p, &v, sizeof(v)); }

// The `count` < 4 floats at p, the other lanes `fill`.
F32x4 LoadPartial(const float* p, size_t count, float fill) {
  F32x4 v = Splat(fill);
  for (size_t i = 0; i < count; ++i) v[i] = p[i];
  return v;
}

void StorePartial(float* p, size_t count, F32x4 v) {
  for (size_t i = 0; i < count; ++i) p[i] = v[i];
}

bool AnyLane(I32x4 mask) { return (mask[0] | mask[1] | mask[2] | mask[3]) != 0; }

F32x4 Select(I32x4 mask, F32x4 a, F32x4 b) {
  return std::bit_cast<F32x4>((mask & std::bit_cast<I32x4>(a)) | (~mask & std::bit_cast<I32x4>(b)));
}

F32x4 Max(F32x4 a, F32x4 b) { return Select(a > b, a, b); }  // NaN in a loses

F32x4 Sanitize(F32x4 v) {
  v = Select(v > Splat(kMaxFloat), Splat(kMaxFloat), v);
  return Select(v == v, v, Splat(-kInf));
}

float LaneMax(F32x4 v) { return std::max(std::max(v[0], v[1]), std::max(v[2], v[3])); }
float LaneSum(F32x4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

// e^x for x <= 0 (0 below -87.3, where float leaves the normal range, and for -inf / NaN), within
// 2 ulp: Cephes' expf (range reduction by ln 2, degree-6 polynomial), without branches.
F32x4 ExpNonPositive(F32x4 x) {
  const I32x4 keep = x >= Splat(-87.3f);
  x = Select(keep, x, Splat(0.0f));
  const F32x4 magic = Splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const F32x4 n = (x * Splat(1.44269504088896341f) + magic) - magic;
  const F32x4 r = (x - n * Splat(0.693359375f)) - n * Splat(-2.12194440e-4f);
  F32x4 p = Splat(1.9875691500e-4f);
  p = p * r + Splat(1.3981999507e-3f);
  p = p * r + Splat(8.3334519073e-3f);
  p = p * r + Splat(4.1665795894e-2f);
  p = p * r + Splat(1.6666665459e-1f);
  p = p * r + Splat(5.0000001201e-1f);
  const F32x4 y = p * r * r + r + Splat(1.0f);
  const I32x4 exponent = (__builtin_convertvector(n, I32x4) + 127) << 23;  // 2^n, n in [-126, 0]
  const F32x4 scaled = y * std::bit_cast<F32x4>(exponent);
  return std::bit_cast<F32x4>(keep & std::bit_cast<I32x4>(scaled));
}

// The largest logit, NaN ignored; with `sanitize`, +inf counts as the largest float.
float RowMax(std::span<const float> logits, bool sanitize) {
  const float* x = logits.data();
  const size_t n = logits.size();
  F32x4 m0 = Splat(-kInf);
  F32x4 m1 = Splat(-kInf);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    m0 = Max(Load(x + i), m0);
    m1 = Max(Load(x + i + 4), m1);
  }
  for (; i < n; i += 4) m0 = Max(LoadPartial(x + i, std::min<size_t>(4, n - i), -kInf), m0);
  const float max = LaneMax(Max(m0, m1));
  return sanitize ? std::min(max, kMaxFloat) : max;
}

// weights[i] = e^((sanitized logit - max) * inv_t), summed per block into block_sums; returns the
// total, added block by block in order (the draw retraces exactly these partial sums).
double ExpWeights(std::span<const float> logits, float max, float inv_t, Scratch& s) {
  const size_t n = logits.size();
  s.weights.resize(n);
  s.block_sums.resize((n + kBlock - 1) / kBlock);
  const float* x = logits.data();
  float* out = s.weights.data();
  const F32x4 shift = Splat(max);
  const F32x4 scale = Splat(inv_t);
  const auto weight = [&](F32x4 l) { return ExpNonPositive((Sanitize(l) - shift) * scale); };
  double total = 0;
  for (size_t b = 0; b < s.block_sums.size(); ++b) {
    const size_t end = std::min(n, (b + 1) * kBlock);
    F32x4 sum = Splat(0.0f);
    size_t i = b * kBlock;
    for (; i + 4 <= end; i += 4) {
      const F32x4 w = weight(Load(x + i));
      Store(out + i, w);
      sum += w;
    }
    if (i < end) {
      const F32x4 w = weight(LoadPartial(x + i, end - i, -kInf));  // e^-inf = 0 lanes
      StorePartial(out + i, end - i, w);
      sum += w;
    }
    s.block_sums[b] = LaneSum(sum);
    total += s.block_sums[b];
  }
  return total;
}

// Zeroes the dense weights below `threshold` and sums again; returns the new total.
double DropWeightsBelow(float threshold, Scratch& s) {
  const size_t n = s.weights.size();
  float* weights = s.weights.data();
  const F32x4 limit = Splat(threshold);
  double total = 0;
  for (size_t b = 0; b < s.block_sums.size(); ++b) {
    const size_t end = std::min(n, (b + 1) * kBlock);
    F32x4 sum = Splat(0.0f);
    size_t i = b * kBlock;
    for (; i + 4 <= end; i += 4) {
      F32x4 w = Load(weights + i);
      w = Select(w >= limit, w, Splat(0.0f));
      Store(weights + i, w);
      sum += w;
    }
    if (i < end) {
      F32x4 w = LoadPartial(weights + i, end - i, 0.0f);
      w = Select(w >= limit, w, Splat(0.0f));
      StorePartial(weights + i, end - i, w);
      sum += w;
    }
    s.block_sums[b] = LaneSum(sum);
    total += s.block_sums[b];
  }
  return total;
}

// A draw from the dense weights: the block first (retracing the total's partial sums, so u < total
// always lands in a block with weight), then the token within it.
int32_t DrawDense(double total, double uniform, const Scratch& s) {
  const double u = uniform * total;
  double before = 0;
  size_t b = 0;
  while (b + 1 < s.block_sums.size() && !(u < before + s.block_sums[b])) {
    before += s.block_sums[b++];
  }
  while (b > 0 && s.block_sums[b] == 0) --b;  // only after rounding: stay on a block with weight
  const size_t begin = b * kBlock;
  const size_t end = std::min(s.weights.size(), begin + kBlock);
  const double r = u - before;
  double cumulative = 0;
  size_t last_positive = begin;
  for (size_t i = begin; i < end; ++i) {
    if (s.weights[i] <= 0) continue;
    cumulative += s.weights[i];
    last_positive = i;
    if (r < cumulative) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(last_positive);
}

// The k best finite logits (k < vocab), as candidates sorted best first (logit desc, id asc): the
// draw walks them in that order, which depends on the values alone, so a backend that samples
// (kernels/row_sampling.h) picks the same token for the same draw.
void SelectTopK(std::span<const float> logits, size_t k, Scratch& s) {
  std::vector<Candidate>& c = s.candidates;
  c.clear();
  if (k <= kMaxHeapTopK) {
    // One pass with a heap whose top is the worst kept candidate; four tokens at a time are
    // skipped when none beats it. Ids arrive in increasing order, so an equal logit never
    // displaces a kept one.
    const float* x = logits.data();
    const size_t n = logits.size();
    const auto consider = [&](size_t i) {
      if (!(x[i] > -kInf)) return;
      const Candidate candidate{std::min(x[i], kMaxFloat), static_cast<int32_t>(i)};
      if (c.size() < k) {
        c.push_back(candidate);
        std::push_heap(c.begin(), c.end(), kHigher);
      } else if (candidate.value > c.front().value) {
        std::pop_heap(c.begin(), c.end(), kHigher);
        c.back() = candidate;
        std::push_heap(c.begin(), c.end(), kHigher);
      }
    };
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
      const float bar = c.size() < k ? -kInf : c.front().value;
      if (!AnyLane(Load(x + i) > Splat(bar))) continue;
      for (size_t j = i; j < i + 4; ++j) consider(j);
    }
    for (; i < n; ++i) consider(i);
    std::sort_heap(c.begin(), c.end(), kHigher);
    return;
  }
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > -kInf) c.push_back({std::min(logits[i], kMaxFloat), static_cast<int32_t>(i)});
  }
  if (k < c.size()) {
    std::nth_element(c.begin(), c.begin() + static_cast<ptrdiff_t>(k), c.end(), kHigher);
    c.resize(k);
  }
  std::sort(c.begin(), c.end(), kHigher);
}

// Top-p over candidates sorted best first: keeps the shortest prefix whose mass reaches `target`
// (at least one); returns the kept mass.
double KeepSortedPrefix(double target, std::vector<Candidate>& c) {
  double cumulative = 0;
  size_t kept = 0;
  while (kept < c.size()) {
    cumulative += c[kept++].value;
    if (cumulative >= target) break;
  }
  c.resize(kept);
  return cumulative;
}

size_t BucketOf(float weight) {
  return std::min<size_t>(std::bit_cast<uint32_t>(weight) >> kBucketShift, kNumBuckets - 1);
}

// Top-p without top-k over the dense weights, in linear time and without sorting the vocab: the
// mass per bucket locates the bucket where the nucleus ends; every token of the buckets above is
// kept, and only that bucket's tokens are sorted to find the exact end. Leaves the nucleus in
// s.candidates (the tokens above in id order, then the boundary ones best first) and returns its
// mass.
double GatherTopP(double target, Scratch& s) {
  const float* w = s.weights.data();
  const size_t n = s.weights.size();
  s.bucket_mass.assign(kNumBuckets, 0.0);
  for (size_t i = 0; i < n; ++i) {
    if (w[i] > 0) s.bucket_mass[BucketOf(w[i])] += w[i];
  }
  size_t cut = 0;  // with no bucket reaching the target (rounding), everything is kept
  double above = 0;
  for (size_t b = kNumBuckets; b-- > 0;) {
    if (s.bucket_mass[b] > 0 && above + s.bucket_mass[b] >= target) {
      cut = b;
      break;
    }
    above += s.bucket_mass[b];
  }
  // Tokens below the cut bucket are skipped four at a time.
  const float lowest = std::bit_cast<float>(static_cast<uint32_t>(cut << kBucketShift));
  std::vector<Candidate>& c = s.candidates;
  c.clear();
  s.boundary.clear();
  const auto consider = [&](size_t i) {
    if (!(w[i] > 0)) return;
    const size_t bucket = BucketOf(w[i]);
    if (bucket > cut) {
      c.push_back({w[i], static_cast<int32_t>(i)});
    } else if (bucket == cut) {
      s.boundary.push_back({w[i], static_cast<int32_t>(i)});
    }
  };
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    if (!AnyLane(Load(w + i) >= Splat(lowest))) continue;
    for (size_t j = i; j < i + 4; ++j) consider(j);
  }
  for (; i < n; ++i) consider(i);

  std::sort(s.boundary.begin(), s.boundary.end(), kHigher);
  double cumulative = above;
  for (const Candidate& x : s.boundary) {
    c.push_back(x);
    cumulative += x.value;
    if (cumulative >= target) break;
  }
  double total = 0;  // in the order the draw adds them up
  for (const Candidate& x : c) total += x.value;
  return total;
}

// Min-p over the candidates, then the draw; `total` is their mass.
int32_t DrawCandidates(const SamplingParams& params, double total, double uniform,
                       std::vector<Candidate>& c) {
  if (params.min_p > 0) {
    float max_weight = 0;
    for (const Candidate& x : c) max_weight = std::max(max_weight, x.value);
    const float threshold = params.min_p * max_weight;
    std::erase_if(c, [threshold](const Candidate& x) { return x.value < threshold; });
    total = 0;
    for (const Candidate& x : c) total += x.value;
  }
  if (c.empty()) return 0;  // not reached: the largest weight, 1, always survives
  // Summing in the same order as `total`, so that u < total is always reached but for rounding.
  const double u = uniform * total;
  double cumulative = 0;
  for (const Candidate& x : c) {
    cumulative += x.value;
    if (u < cumulative) return x.id;
  }
  for (auto it = c.rbegin(); it != c.rend(); ++it) {
    if (it->value > 0) return it->id;
  }
  return c.front().id;
}

// Temperature, top-k, top-p, min-p and the draw (temperature > 0 with a finite 1 / temperature).
int32_t Draw(const SamplingParams& params, float inv_t, std::span<const float> logits,
             double uniform, Scratch& s) {
  const bool top_p = params.top_p < 1.0f;
  const double top_p_fraction = std::max(params.top_p, 0.0f);
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < logits.size()) {
    // Top-k on the logits (temperature does not change the order), then weights for the k.
    SelectTopK(logits, static_cast<size_t>(params.top_k), s);
    if (s.candidates.empty()) return Sampler::Argmax(logits);
    float max = -kInf;
    for (const Candidate& c : s.candidates) max = std::max(max, c.value);
    double total = 0;
    for (Candidate& c : s.candidates) {
      const float w = std::exp((c.value - max) * inv_t);
      c.value = w >= 0 ? w : 0.0f;
      total += c.value;
    }
    if (top_p) total = KeepSortedPrefix(total * top_p_fraction, s.candidates);
    return DrawCandidates(params, total, uniform, s.candidates);
  }

  // Dense: weights for the whole vocab, four lanes at a time; the largest weight is exactly 1.
  const float max = RowMax(logits, /*sanitize=*/true);
  if (!(max > -kInf)) return 0;  // no finite logit
  double total = ExpWeights(logits, max, inv_t, s);
  if (top_p) {
    total = GatherTopP(total * top_p_fraction, s);
    return DrawCandidates(params, total, uniform, s.candidates);
  }
  if (params.min_p > 0) total = DropWeightsBelow(params.min_p, s);
  return DrawDense(total, uniform, s);
}

// The logits with the penalties applied (a copy in the scratch), or `logits` itself when off.
std::span<const float> ApplyPenalties(const SamplingParams& params,
                                      const absl::flat_hash_map<int32_t, int32_t>& counts,
                                      std::span<const float> logits, Scratch& s) {
  if (counts.empty()) return logits;
  s.penalized.assign(logits.begin(), logits.end());
  const float repetition = params.repetition_penalty;
  const int64_t vocab = static_cast<int64_t>(s.penalized.size());
  for (const auto& [token, count] : counts) {
    if (token < 0 || token >= vocab) continue;
    float& logit = s.penalized[token];
    if (repetition != 1.0f) logit = logit > 0 ? logit / repetition : logit * repetition;
    if (count > 0) {
      logit -= params.frequency_penalty * static_cast<float>(count) + params.presence_penalty;
    }
  }
  return s.penalized;
}

// Fills logprob and top of `out` from the raw logits: log p_i = (l_i - max) - log sum_j
// e^(l_j - max), in that order, so that two +inf logits (taken as the largest float) still
// report log 1/2.
void FillLogprobs(int32_t top_logprobs, std::span<const float> logits, SampledToken& out,
                  Scratch& s) {
  const float max = RowMax(logits, /*sanitize=*/true);
  // With no finite logit every token reports -inf.
  const double log_sum = max > -kInf ? std::log(ExpWeights(logits, max, 1.0f, s)) : 0.0;
  const auto logprob = [&](int32_t id) -> float {
    const float v = Sanitize(logits[id]);
    if (!(v > -kInf)) return -kInf;
    return static_cast<float>(static_cast<double>(v) - static_cast<double>(max) - log_sum);
  };
  out.logprob = static_cast<size_t>(out.id) < logits.size() ? logprob(out.id) : -kInf;

  // The k most likely, k <= 20: one pass with a small sorted array; most tokens lose a single
  // comparison against the current k-th.
  const size_t k = std::min(static_cast<size_t>(top_logprobs), logits.size());
  out.top.clear();
  if (k == 0) return;
  Candidate best[SamplingParams::kMaxTopLogprobs];
  size_t size = 0;
  const auto consider = [&](size_t i) {
    const Candidate c{Sanitize(logits[i]), static_cast<int32_t>(i)};
    if (size == k && !Higher(c, best[k - 1])) return;
    size_t pos = size < k ? size++ : k - 1;
    while (pos > 0 && Higher(c, best[pos - 1])) {
      best[pos] = best[pos - 1];
      --pos;
    }
    best[pos] = c;
  };
  const float* x = logits.data();
  const size_t n = logits.size();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {  // four at a time are skipped when none beats the k-th
    if (size == k && !AnyLane(Load(x + i) > Splat(best[k - 1].value))) continue;
    for (size_t j = i; j < i + 4; ++j) consider(j);
  }
  for (; i < n; ++i) consider(i);
  out.top.reserve(k);
  for (size_t j = 0; j < size; ++j) out.top.emplace_back(best[j].id, logprob(best[j].id));
}

absl::Status OutOfRange(const char* field, double value, const char* range) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %g is outside %s", field, value, range));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!(p.temperature >= 0 && std::isfinite(p.temperature))) {
    return OutOfRange("temperature", p.temperature, "[0, inf)");
  }
  if (p.top_k < 0) return OutOfRange("top_k", p.top_k, "[0, inf)");
  if (!(p.top_p > 0 && p.top_p <= 1)) return OutOfRange("top_p", p.top_p, "(0, 1]");
  if (!(p.min_p >= 0 && p.min_p <= 1)) return OutOfRange("min_p", p.min_p, "[0, 1]");
  if (!(p.repetition_penalty > 0 && std::isfinite(p.repetition_penalty))) {
    return OutOfRange("repetition_penalty", p.repetition_penalty, "(0, inf)");
  }
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) {
    return OutOfRange("presence_penalty", p.presence_penalty, "[-2, 2]");
  }
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2)) {
    return OutOfRange("frequency_penalty", p.frequency_penalty, "[-2, 2]");
  }
  if (p.top_logprobs < 0 || p.top_logprobs > SamplingParams::kMaxTopLogprobs) {
    return OutOfRange("top_logprobs", p.top_logprobs, "[0, 20]");
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt)
    : params_(params), rng_(params.seed) {
  // Values the API edge should have rejected fall to "off" rather than into NaN arithmetic.
  if (!(params_.repetition_penalty > 0 && std::isfinite(params_.repetition_penalty))) {
    params_.repetition_penalty = 1.0f;
  }
  if (!std::isfinite(params_.presence_penalty)) params_.presence_penalty = 0.0f;
  if (!std::isfinite(params_.frequency_penalty)) params_.frequency_penalty = 0.0f;
  params_.min_p = std::min(params_.min_p, 1.0f);  // above 1 nothing, not even the max, would stay
  params_.top_logprobs = std::clamp(params_.top_logprobs, 0, SamplingParams::kMaxTopLogprobs);

  const bool repetition = params_.repetition_penalty != 1.0f;
  penalize_ = repetition || params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
  if (repetition) {
    for (const int32_t token : prompt) counts_.try_emplace(token, 0);
  }
}

void Sampler::Accept(int32_t token) {
  if (penalize_) ++counts_[token];
}

kernels::RowSampling Sampler::NextRowSampling() {
  kernels::RowSampling row{.temperature = params_.temperature,
                           .top_k = params_.top_k,
                           .top_p = params_.top_p,
                           .min_p = params_.min_p};
  // Exactly one draw per non-greedy step, whoever samples and whatever the row holds, so the
  // generator stays in step across devices.
  if (!kernels::IsGreedy(row)) row.uniform = Uniform(rng_);
  return row;
}

int32_t Sampler::SampleRow(const kernels::RowSampling& row, std::span<const float> logits) {
  if (kernels::IsGreedy(row)) return Argmax(logits);
  SamplingParams params;
  params.temperature = row.temperature;
  params.top_k = row.top_k;
  params.top_p = row.top_p;
  params.min_p = std::min(row.min_p, 1.0f);
  return Draw(params, 1.0f / row.temperature, logits, row.uniform, ThreadScratch());
}

int32_t Sampler::Argmax(std::span<const float> logits) {
  // The largest value four lanes at a time, then the first index holding it (-0.0 == 0.0).
  const float best = RowMax(logits, /*sanitize=*/false);
  if (!(best > -kInf)) return 0;
  return static_cast<int32_t>(std::find(logits.begin(), logits.end(), best) - logits.begin());
}

SampledToken Sampler::Sample(std::span<const float> logits) {
  SampledToken out;
  Scratch& scratch = ThreadScratch();
  const std::span<const float> penalized =
      penalize_ ? ApplyPenalties(params_, counts_, logits, scratch) : logits;
  out.id = SampleRow(NextRowSampling(), penalized);
  if (params_.logprobs || params_.top_logprobs > 0) {
    FillLogprobs(params_.top_logprobs, logits, out, scratch);
  }
  return out;
}

}  // namespace saola::engine
