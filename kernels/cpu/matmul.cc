// The matmul driver: picks the inner loops for the active instruction set, prepares the
// activations once per call, and splits the weight rows across the thread pool.
//
// Kernel choice: the widest of AVX-512 VNNI / AVX2 / scalar that has the weight type
// (matmul_kernels.h). All of them give the same bits for Q8_0 / Q4_0 / Q4_1 / F16 (llama.cpp's),
// so the choice, like n and the thread split, never changes a result. (An AMX-INT8 GEMM was 2x
// faster for prefill but sums whole 32-element blocks, which cannot reproduce ggml's per-lane
// order; it was dropped for that. It is in the history of matmul_amx.cc.)
//
// Activations: quantized per 32-block exactly as ggml does (or rounded to half / bfloat16), then
// laid out the way each chosen kernel wants (Kernel::pack), all before the row work starts;
// inline for a few tokens, split over tokens across the pool for many. MatMulShared does this
// once for all its weights.
//
// Work split: rows are cut into ranges aligned to kRowAlign so each kernel's row tiles stay whole;
// every thread runs all n tokens for its rows, so each weight byte is read by one thread once per
// call (decode is bound by weight bandwidth). Small calls (decode) give each thread one
// contiguous range; large ones (prefill) hand out several chunks per thread from a shared
// counter, so one delayed thread does not stall the call. Results do not depend on the split
// (every row is computed the same way wherever it lands). MatMulShared lays the rows of all its
// weights end to end and splits that combined range, so Q/K/V or gate/up run as one region.
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "common/check.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quantize.h"

namespace saola::kernels::cpu {
namespace {

using internal::Acts;
using internal::IsaKernels;
using internal::Kernel;
using internal::QuantizedActs;

// Rows per unit of the thread split: a multiple of every kernel's row tile (AVX-512 16, AVX2 8),
// so no tile straddles two threads.
constexpr int64_t kRowAlign = 32;
// Token rows from which activation preparation is split across threads.
constexpr int64_t kParallelPrepTokens = 8;
// Multiply-adds per work chunk (~10-20 us) above which a call is split dynamically.
constexpr int64_t kMacsPerChunk = int64_t{4} << 20;

size_t AlignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

// A vector that stays on the stack up to N elements: decode makes a few hundred matmul calls per
// token, and none of them should allocate.
template <typename T, size_t N>
class SmallVector {
 public:
  void push_back(const T& v) {
    if (size_ < N) {
      inline_[size_] = v;
    } else {
      if (heap_.empty()) heap_.assign(inline_.begin(), inline_.end());
      heap_.push_back(v);
    }
    ++size_;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](size_t i) { return size_ <= N ? inline_[i] : heap_[i]; }
  const T& operator[](size_t i) const { return size_ <= N ? inline_[i] : heap_[i]; }
  T* begin() { return size_ <= N ? inline_.data() : heap_.data(); }
  T* end() { return begin() + size_; }
  const T* begin() const { return size_ <= N ? inline_.data() : heap_.data(); }
  const T* end() const { return begin() + size_; }

 private:
  std::array<T, N> inline_{};
  std::vector<T> heap_;
  size_t size_ = 0;
};

enum class ActKind { kF32, kHalf, kBf16, kQuant };

ActKind ActKindFor(DType type) {
  switch (type) {
    case DType::kF16: return ActKind::kHalf;
    case DType::kBF16: return ActKind::kBf16;
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1: return ActKind::kQuant;
    default: return ActKind::kF32;
  }
}

const IsaKernels& KernelsFor(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return internal::Avx512Kernels();
    case Isa::kAvx2: return internal::Avx2Kernels();
    case Isa::kScalar: break;
  }
  return internal::ScalarKernels();
}

// The widest available kernel for `type`, falling back to narrower paths.
Kernel PickKernel(DType type) {
  const Isa isa = ActiveIsa();
  for (int level = static_cast<int>(isa); level >= 0; --level) {
    if (Kernel k = KernelsFor(static_cast<Isa>(level)).For(type)) return k;
  }
  return Kernel{};
}

// The activations of one call in every form its kernels need, in `scratch`: quantized and/or
// rounded to half / bfloat16 (by weight type), then each kernel's own packed layout.
class PreparedActs {
 public:
  PreparedActs(const float* x, int64_t n, int64_t cols) : x_(x), n_(n), cols_(cols) {}

  // Registers a weight type and its kernel; returns the index to pass to For().
  int Add(DType type, const Kernel& kernel) {
    need_[static_cast<int>(ActKindFor(type))] = true;
    int pack_index = -1;
    if (kernel.pack != nullptr) {
      for (size_t i = 0; i < packs_.size(); ++i) {
        if (packs_[i].kernel.pack == kernel.pack) pack_index = static_cast<int>(i);
      }
      if (pack_index < 0) {
        packs_.push_back({kernel, type, 0});
        pack_index = static_cast<int>(packs_.size()) - 1;
      }
    }
    users_.push_back({type, pack_index});
    return static_cast<int>(users_.size()) - 1;
  }

  // Sizes scratch, then fills every needed form (in parallel over tokens when n is large).
  void Prepare(ThreadPool& pool, std::vector<uint8_t>& scratch) {
    const IsaKernels& isa = KernelsFor(ActiveIsa());
    const IsaKernels& scalar = internal::ScalarKernels();
    const auto quantize = isa.quantize ? isa.quantize : scalar.quantize;
    const auto to_f16 = isa.to_f16 ? isa.to_f16 : scalar.to_f16;
    const auto to_bf16 = isa.to_bf16 ? isa.to_bf16 : scalar.to_bf16;
    size_t bytes = 0;
    size_t quant_offset = 0, half_offset = 0, bf16_offset = 0;
    if (need_[static_cast<int>(ActKind::kQuant)]) {
      quant_offset = bytes;
      bytes += AlignUp(internal::LayoutQuantizedActs(n_, cols_, &acts_.q), 64);
    }
    const size_t half_bytes = AlignUp(static_cast<size_t>(n_ * cols_) * sizeof(uint16_t), 64);
    if (need_[static_cast<int>(ActKind::kHalf)]) {
      half_offset = bytes;
      bytes += half_bytes;
    }
    if (need_[static_cast<int>(ActKind::kBf16)]) {
      bf16_offset = bytes;
      bytes += half_bytes;
    }
    acts_.n = n_;
    acts_.f32 = x_;
    acts_.ld_f32 = cols_;
    acts_.ld_h16 = cols_;
    for (Pack& p : packs_) {
      p.offset = bytes;
      bytes += AlignUp(p.kernel.packed_bytes(ViewFor(p.type), cols_), 64);
    }
    if (scratch.size() < bytes + 64) scratch.resize(bytes + 64);
    base_ = reinterpret_cast<uint8_t*>(AlignUp(reinterpret_cast<uintptr_t>(scratch.data()), 64));
    acts_.q.base = base_ + quant_offset;
    half_ = reinterpret_cast<uint16_t*>(base_ + half_offset);
    bf16_ = reinterpret_cast<uint16_t*>(base_ + bf16_offset);

    auto fill = [&](int64_t t0, int64_t t1) {
      if (need_[static_cast<int>(ActKind::kQuant)]) quantize(x_, cols_, t0, t1, acts_.q);
      if (need_[static_cast<int>(ActKind::kHalf)]) {
        to_f16(x_ + t0 * cols_, half_ + t0 * cols_, (t1 - t0) * cols_);
      }
      if (need_[static_cast<int>(ActKind::kBf16)]) {
        to_bf16(x_ + t0 * cols_, bf16_ + t0 * cols_, (t1 - t0) * cols_);
      }
      for (const Pack& p : packs_) p.kernel.pack(ViewFor(p.type), cols_, t0, t1, base_ + p.offset);
    };
    if (n_ >= kParallelPrepTokens) {
      ParallelFor(pool, n_, 1, fill);
    } else {
      fill(0, n_);
    }
  }

  // The view the kernel registered as `user` reads.
  Acts For(int user) const {
    Acts a = ViewFor(users_[user].type);
    if (users_[user].pack_index >= 0) a.packed = base_ + packs_[users_[user].pack_index].offset;
    return a;
  }

 private:
  struct Pack {
    Kernel kernel;
    DType type;
    size_t offset;
  };
  struct User {
    DType type;
    int pack_index;
  };

  Acts ViewFor(DType type) const {
    Acts a = acts_;
    if (type == DType::kF16) a.h16 = half_;
    if (type == DType::kBF16) a.h16 = bf16_;
    return a;
  }

  const float* x_;
  int64_t n_;
  int64_t cols_;
  bool need_[4] = {false, false, false, false};
  SmallVector<Pack, 4> packs_;
  SmallVector<User, 4> users_;
  Acts acts_;
  uint8_t* base_ = nullptr;
  uint16_t* half_ = nullptr;
  uint16_t* bf16_ = nullptr;
};

void CheckWeight(const Weight& w) {
  SAOLA_CHECK(MatMulSupports(w.type));
  SAOLA_CHECK(w.cols % GetDTypeInfo(w.type).block_elems == 0);
  SAOLA_CHECK(w.row_stride_bytes >= RowBytes(w.type, w.cols) || w.rows <= 1);
  if (w.type == DType::kQ8_0 || w.type == DType::kQ4_0 || w.type == DType::kQ4_1) {
    SAOLA_CHECK(w.cols % 32 == 0);
  }
}

}  // namespace

namespace internal {

size_t LayoutQuantizedActs(int64_t n, int64_t cols, QuantizedActs* acts) {
  const int64_t nb = cols / 32;
  const size_t qs_bytes = AlignUp(static_cast<size_t>(cols), 64);
  const size_t arr_bytes = AlignUp(static_cast<size_t>(nb) * 4, 64);
  acts->n = n;
  acts->cols = cols;
  acts->nb = nb;
  acts->d_offset = qs_bytes;
  acts->s_offset = qs_bytes + arr_bytes;
  acts->sum_offset = qs_bytes + 2 * arr_bytes;
  acts->stride = qs_bytes + 3 * arr_bytes;
  acts->base = nullptr;
  return acts->stride * static_cast<size_t>(n);
}

size_t WidenedBytes(const Acts& a, int64_t cols) {
  return static_cast<size_t>(a.n * cols) * sizeof(float);
}

namespace {
template <float (*kToFloat)(uint16_t)>
void PackWidened(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  float* out = static_cast<float*>(packed);
  for (int64_t t = t0; t < t1; ++t) {
    const uint16_t* h = a.h16 + t * a.ld_h16;
    for (int64_t k = 0; k < cols; ++k) out[t * cols + k] = kToFloat(h[k]);
  }
}
}  // namespace

void PackWidenedF16(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  PackWidened<Fp16ToFp32>(a, cols, t0, t1, packed);
}

void PackWidenedBf16(const Acts& a, int64_t cols, int64_t t0, int64_t t1, void* packed) {
  PackWidened<Bf16ToFp32>(a, cols, t0, t1, packed);
}

}  // namespace internal

bool MatMulSupports(DType type) {
  switch (type) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
      return true;
    default:
      return false;
  }
}

void MatMul(ThreadPool& pool, const Weight& w, const float* x, int64_t n, float* y,
            std::vector<uint8_t>& scratch) {
  MatMulShared(pool, std::span<const Weight>(&w, 1), x, n, std::span<float* const>(&y, 1),
               scratch);
}

void MatMulShared(ThreadPool& pool, std::span<const Weight> ws, const float* x, int64_t n,
                  std::span<float* const> ys, std::vector<uint8_t>& scratch) {
  SAOLA_CHECK(ws.size() == ys.size());
  if (n <= 0 || ws.empty()) return;
  PreparedActs prepared(x, n, ws[0].cols);
  struct Segment {
    const Weight* w;
    float* y;
    Kernel kernel;
    int user;
    int64_t units;
  };
  SmallVector<Segment, 4> segments;
  int64_t total_units = 0;
  int64_t total_rows = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const Weight& w = ws[i];
    CheckWeight(w);
    SAOLA_CHECK(w.cols == ws[0].cols);
    if (w.rows <= 0) continue;
    const Kernel kernel = PickKernel(w.type);
    const int64_t units = (w.rows + kRowAlign - 1) / kRowAlign;
    segments.push_back({&w, ys[i], kernel, prepared.Add(w.type, kernel), units});
    total_units += units;
    total_rows += w.rows;
  }
  if (segments.empty()) return;
  prepared.Prepare(pool, scratch);

  // Each weight's rows occupy ceil(rows / kRowAlign) units of one combined range; a thread takes
  // a contiguous run of units and runs the pieces of every weight that fall inside it.
  auto run_units = [&](int64_t u0, int64_t u1) {
    int64_t unit_base = 0;
    for (const Segment& seg : segments) {
      if (unit_base >= u1) break;
      const int64_t lo = std::max(u0, unit_base) - unit_base;
      const int64_t hi = std::min(u1, unit_base + seg.units) - unit_base;
      if (lo < hi) {
        const int64_t r0 = lo * kRowAlign;
        const int64_t r1 = std::min(seg.w->rows, hi * kRowAlign);
        seg.kernel.run(*seg.w, prepared.For(seg.user), r0, r1, seg.y, seg.w->rows);
      }
      unit_base += seg.units;
    }
  };
  const int threads = pool.size();
  if (threads == 1 || total_units == 1) {
    run_units(0, total_units);
    return;
  }
  // Small products (decode) take one contiguous range per thread: one weight stream each, no
  // shared counter. Large ones (prefill) are cut into several chunks per thread, handed out from
  // a shared counter, so a thread that is delayed (preempted on a busy machine, or slower) does
  // not hold the others up for a whole share.
  const int64_t macs = total_rows * ws[0].cols * n;
  const int64_t chunks_per_thread = std::clamp<int64_t>(macs / kMacsPerChunk, 1, 8);
  if (chunks_per_thread == 1) {
    pool.Run([&](int tid) {
      const int64_t u0 = total_units * tid / threads;
      const int64_t u1 = total_units * (tid + 1) / threads;
      if (u0 < u1) run_units(u0, u1);
    });
    return;
  }
  const int64_t chunk = std::max<int64_t>(1, total_units / (threads * chunks_per_thread));
  std::atomic<int64_t> next{0};
  pool.Run([&](int) {
    for (;;) {
      const int64_t u0 = next.fetch_add(chunk, std::memory_order_relaxed);
      if (u0 >= total_units) break;
      run_units(u0, std::min(total_units, u0 + chunk));
    }
  });
}

void Embed(ThreadPool& pool, const Weight& table, const int32_t* ids, int64_t n, float* out) {
  SAOLA_CHECK(DequantizeSupports(table.type));
  const IsaKernels& k = KernelsFor(ActiveIsa());
  auto dequantize_row = k.dequantize_row ? k.dequantize_row : DequantizeRow;
  auto rows = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      SAOLA_CHECK(ids[i] >= 0 && ids[i] < table.rows);
      const uint8_t* row = static_cast<const uint8_t*>(table.data) +
                           static_cast<size_t>(ids[i]) * table.row_stride_bytes;
      dequantize_row(table.type, row, out + i * table.cols, table.cols);
    }
  };
  if (n >= 64) {
    ParallelFor(pool, n, 1, rows);
  } else {
    rows(0, n);
  }
}

}  // namespace saola::kernels::cpu
