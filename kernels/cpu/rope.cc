// Rotary position embedding, computed the way ggml computes it so that greedy tokens match
// llama.cpp's.
//
// Angles: theta_scale = powf(freq_base, -2 / rope_dim); for pair i, theta_i = pos * theta_scale^i
// built by repeated float multiplication from theta_0 = (float)pos (as ggml_rope_cache_init does,
// rather than a pow per pair), and the rotation uses cosf / sinf of freq_scale * theta_i.
// Rounding of the rotation, as GCC compiles ggml's rotate_pairs (it contracts into FMAs;
// checked against llama.cpp's tensors with tests/golden/dump_llama_tensors.cc):
//   x0' = fma(x0, c, -(x1 * s)),  x1' = fma(x0, s, x1 * c)
//
// The sines and cosines are the expensive part (a decode step would spend ~1 µs per call on
// them, twice per layer), and every layer rotates the same positions with the same parameters, so
// the calling thread keeps a memo table per parameter set: position -> cos[half], sin[half].
// Positions are filled the first time they are seen (in parallel for a long prefill) and reused
// by later layers and later steps; positions past kMaxCachedPosition (or negative) are computed
// per call instead. The table holds exactly the values the per-call computation would produce.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/ops_internal.h"

namespace saola::kernels::cpu {
namespace {

constexpr int32_t kMaxCachedPosition = 1 << 15;
constexpr int kMaxTables = 4;
// Rotated floats below which the rotation runs on the caller's thread.
constexpr int64_t kMinParallelElems = 1 << 14;
// Missing positions (each `half` sin/cos pairs) below which the fill runs on the caller's thread.
constexpr int64_t kMinParallelAngles = 1 << 10;

float ThetaScale(const RopeParams& p) {
  return std::pow(p.freq_base, -2.0f / static_cast<float>(p.rope_dim));
}

void ComputeAngles(int32_t pos, int32_t half, float theta_scale, float freq_scale, float* cos,
                   float* sin) {
  float theta = static_cast<float>(pos);
  for (int32_t i = 0; i < half; ++i) {
    const float t = freq_scale * theta;
    cos[i] = std::cos(t);
    sin[i] = std::sin(t);
    theta *= theta_scale;
  }
}

void RopeNormRowScalar(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                       const float* cos, const float* sin) {
  for (int32_t h = 0; h < num_heads; ++h) {
    float* xh = x + static_cast<int64_t>(h) * head_dim;
    for (int32_t i = 0; i < half; ++i) {
      const float x0 = xh[2 * i];
      const float x1 = xh[2 * i + 1];
      xh[2 * i] = std::fma(x0, cos[i], -(x1 * sin[i]));
      xh[2 * i + 1] = std::fma(x0, sin[i], x1 * cos[i]);
    }
  }
}

void RopeNeoxRowScalar(float* x, int32_t num_heads, int32_t head_dim, int32_t half,
                       const float* cos, const float* sin) {
  for (int32_t h = 0; h < num_heads; ++h) {
    float* xh = x + static_cast<int64_t>(h) * head_dim;
    for (int32_t i = 0; i < half; ++i) {
      const float x0 = xh[i];
      const float x1 = xh[i + half];
      xh[i] = std::fma(x0, cos[i], -(x1 * sin[i]));
      xh[i + half] = std::fma(x0, sin[i], x1 * cos[i]);
    }
  }
}

using RopeRowFn = void (*)(float*, int32_t, int32_t, int32_t, const float*, const float*);

RopeRowFn PickRow(RopeMode mode, bool simd) {
  if (mode == RopeMode::kNorm) return simd ? internal::RopeNormRowAvx2 : RopeNormRowScalar;
  return simd ? internal::RopeNeoxRowAvx2 : RopeNeoxRowScalar;
}

// Memo of cos/sin per position for one parameter set, owned by the thread that calls Rope.
struct AngleTable {
  int32_t rope_dim = 0;
  float freq_base = 0.0f;
  float freq_scale = 0.0f;
  uint64_t last_use = 0;
  std::vector<float> angles;  // [position][cos 0..half | sin 0..half]
  std::vector<uint8_t> ready;
};

struct AngleTables {
  AngleTable tables[kMaxTables];
  uint64_t clock = 0;
  std::vector<int32_t> missing;
};

thread_local AngleTables tls_angles;

AngleTable& FindTable(const RopeParams& p) {
  AngleTables& all = tls_angles;
  ++all.clock;
  AngleTable* victim = &all.tables[0];
  for (AngleTable& t : all.tables) {
    if (t.rope_dim == p.rope_dim && t.freq_base == p.freq_base && t.freq_scale == p.freq_scale) {
      t.last_use = all.clock;
      return t;
    }
    if (t.last_use < victim->last_use) victim = &t;
  }
  *victim = AngleTable{};
  victim->rope_dim = p.rope_dim;
  victim->freq_base = p.freq_base;
  victim->freq_scale = p.freq_scale;
  victim->last_use = all.clock;
  return *victim;
}

bool Cacheable(int32_t pos) { return pos >= 0 && pos < kMaxCachedPosition; }

}  // namespace

void RopeReference(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                   int32_t head_dim, const RopeParams& params) {
  const int32_t half = params.rope_dim / 2;
  const float theta_scale = ThetaScale(params);
  const RopeRowFn row = PickRow(params.mode, false);
  std::vector<float> cs(2 * static_cast<size_t>(half));
  const int64_t stride = static_cast<int64_t>(num_heads) * head_dim;
  for (int64_t i = 0; i < n; ++i) {
    ComputeAngles(positions[i], half, theta_scale, params.freq_scale, cs.data(), cs.data() + half);
    row(x + i * stride, num_heads, head_dim, half, cs.data(), cs.data() + half);
  }
}

void Rope(ThreadPool& pool, float* x, const int32_t* positions, int64_t n, int32_t num_heads,
          int32_t head_dim, const RopeParams& params) {
  const int32_t half = params.rope_dim / 2;
  if (half == 0 || n == 0) return;
  const float theta_scale = ThetaScale(params);
  const int64_t row_angles = 2 * static_cast<int64_t>(half);

  // Find the positions this call sees for the first time and fill their angles.
  AngleTable& table = FindTable(params);
  std::vector<int32_t>& missing = tls_angles.missing;
  missing.clear();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t pos = positions[i];
    if (!Cacheable(pos)) continue;
    if (static_cast<size_t>(pos) >= table.ready.size()) {
      table.ready.resize(static_cast<size_t>(pos) + 1, 0);
      table.angles.resize(table.ready.size() * static_cast<size_t>(row_angles));
    }
    if (!table.ready[pos]) {
      table.ready[pos] = 1;
      missing.push_back(pos);
    }
  }
  float* angles = table.angles.data();
  auto fill = [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      float* cs = angles + missing[j] * row_angles;
      ComputeAngles(missing[j], half, theta_scale, params.freq_scale, cs, cs + half);
    }
  };
  const int64_t num_missing = static_cast<int64_t>(missing.size());
  if (num_missing * half < kMinParallelAngles) {
    fill(0, num_missing);
  } else {
    ParallelFor(pool, num_missing, 1, fill);
  }

  // Rotate.
  const RopeRowFn row = PickRow(params.mode, ActiveIsa() >= Isa::kAvx2);
  const int64_t stride = static_cast<int64_t>(num_heads) * head_dim;
  auto rotate = [&](int64_t begin, int64_t end) {
    std::vector<float> local;  // only for positions outside the table
    for (int64_t i = begin; i < end; ++i) {
      const int32_t pos = positions[i];
      const float* cs;
      if (Cacheable(pos)) {
        cs = angles + pos * row_angles;
      } else {
        local.resize(static_cast<size_t>(row_angles));
        ComputeAngles(pos, half, theta_scale, params.freq_scale, local.data(),
                      local.data() + half);
        cs = local.data();
      }
      row(x + i * stride, num_heads, head_dim, half, cs, cs + half);
    }
  };
  if (n * num_heads * params.rope_dim < kMinParallelElems) {
    rotate(0, n);
  } else {
    ParallelFor(pool, n, 1, rotate);
  }
}

}  // namespace saola::kernels::cpu
