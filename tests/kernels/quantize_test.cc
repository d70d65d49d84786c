#include "kernels/cpu/quantize.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_kernels.h"

namespace saola::kernels::cpu {
namespace {

__attribute__((target("f16c"))) uint16_t HardwareFp32ToFp16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, 0));
}
__attribute__((target("f16c"))) float HardwareFp16ToFp32(uint16_t h) { return _cvtsh_ss(h); }

std::vector<float> SpecialFloats() {
  return {0.0f,      -0.0f,     1.0f,      -1.0f,    65504.0f, 65519.99f, 65520.0f,
          -65520.0f, 1e9f,      6.1035156e-05f,      6.0975552e-05f,     5.9604645e-08f,
          2.9802322e-08f,       2.9802326e-08f,      1e-10f,   0.33333334f,
          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
          std::numeric_limits<float>::denorm_min(), 1.00048828125f /* tie */,
          1.00146484375f /* tie */};
}

TEST(Fp16Test, MatchesF16cOnSpecialAndRandomValues) {
  if (!GetCpuFeatures().f16c) GTEST_SKIP() << "CPU has no F16C to compare with";
  std::vector<float> values = SpecialFloats();
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    float f;
    const uint32_t b = bits(rng);
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    values.push_back(f);
    if (std::isinf(f) || f == 0.0f) continue;
    values.push_back(f * 1e-30f);  // lots of values near the half range
    values.push_back(std::ldexp(f, -std::ilogb(f) + (i % 40) - 25));
  }
  for (float f : values) {
    if (std::isnan(f)) continue;
    ASSERT_EQ(Fp32ToFp16(f), HardwareFp32ToFp16(f)) << "f=" << f;
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = HardwareFp16ToFp32(static_cast<uint16_t>(h));
    const float got = Fp16ToFp32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(std::memcmp(&want, &got, 4), 0) << "h=" << h;
    }
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties go to even (1.0).
  EXPECT_EQ(Fp32ToBf16(1.00390625f), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even).
  EXPECT_EQ(Fp32ToBf16(1.01171875f), 0x3f82);
  EXPECT_EQ(Fp32ToBf16(-2.0f), 0xc000);
  EXPECT_EQ(Bf16ToFp32(0x3f80), 1.0f);
  EXPECT_EQ(Fp32ToBf16(std::numeric_limits<float>::quiet_NaN()) & 0x7fc0, 0x7fc0);
}

// A block whose amax is 254 has d = 2 and id = 0.5 exactly, so x = 1, 3, 5 land on ties.
TEST(QuantizeTest, Q8_1RoundsTiesToEvenLikeGgmlX86) {
  float x[32] = {};
  x[0] = 254.0f;
  x[1] = 1.0f;    // 0.5 -> 0 (roundf would give 1)
  x[2] = 3.0f;    // 1.5 -> 2
  x[3] = 5.0f;    // 2.5 -> 2 (roundf would give 3)
  x[4] = -1.0f;   // -0.5 -> 0
  x[5] = -5.0f;   // -2.5 -> -2
  x[6] = -7.0f;   // -3.5 -> -4
  x[7] = 100.0f;  // 50
  x[31] = -254.0f;
  BlockQ8_1 y;
  QuantizeRowQ8_1(x, &y, 32);
  const int8_t want[32] = {127, 0, 2, 2, 0, -2, -4, 50, 0, 0, 0, 0, 0, 0, 0, 0,
                           0,   0, 0, 0, 0, 0,  0,  0,  0, 0, 0, 0, 0, 0, 0, -127};
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y.qs[j], want[j]) << j;
  EXPECT_EQ(Fp16ToFp32(y.d), 2.0f);
  EXPECT_EQ(Fp16ToFp32(y.s), 2.0f * (127 + 2 + 2 - 2 - 4 + 50 - 127));

  BlockQ8_0 z;
  QuantizeRowQ8_0(x, &z, 32);
  EXPECT_EQ(z.d, y.d);
  EXPECT_EQ(std::memcmp(z.qs, y.qs, 32), 0);
}

TEST(QuantizeTest, ZeroBlockHasZeroScale) {
  float x[64] = {};
  x[40] = 0.5f;
  BlockQ8_1 y[2];
  QuantizeRowQ8_1(x, y, 64);
  EXPECT_EQ(y[0].d, 0);
  EXPECT_EQ(y[0].s, 0);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[0].qs[j], 0);
  EXPECT_EQ(y[1].qs[8], 127);
  EXPECT_EQ(Fp16ToFp32(y[1].d), Fp16ToFp32(Fp32ToFp16(0.5f / 127.0f)));
}

TEST(QuantizeTest, ScaleUsesUnroundedDAndReciprocal127OverAmax) {
  // amax = 1: d = 1/127 (not a half), id = 127. x = 0.5 * (1/127) * 127 ... pick values whose
  // product with id = 127 is just off a tie, so the result depends on using 127/amax exactly.
  float x[32] = {};
  x[0] = 1.0f;
  x[1] = 0.3f;  // 38.1 -> 38
  x[2] = -0.7f; // -88.9 -> -89
  BlockQ8_1 y;
  QuantizeRowQ8_1(x, &y, 32);
  EXPECT_EQ(y.qs[0], 127);
  EXPECT_EQ(y.qs[1], static_cast<int8_t>(std::nearbyint(0.3f * 127.0f)));
  EXPECT_EQ(y.qs[2], static_cast<int8_t>(std::nearbyint(-0.7f * 127.0f)));
  EXPECT_EQ(y.d, Fp32ToFp16(1.0f / 127.0f));
  const int sum = 127 + y.qs[1] + y.qs[2];
  EXPECT_EQ(y.s, Fp32ToFp16((1.0f / 127.0f) * static_cast<float>(sum)));
}

class IsaQuantizeTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (static_cast<int>(GetParam()) > static_cast<int>(DetectedIsa())) {
      GTEST_SKIP() << "CPU lacks " << IsaName(GetParam());
    }
    ASSERT_TRUE(SetIsaForTesting(GetParam()));
  }
  void TearDown() override { SetIsaForTesting(DetectedIsa()); }

  const internal::IsaKernels& Kernels() const {
    switch (GetParam()) {
      case Isa::kAvx512: return internal::Avx512Kernels();
      case Isa::kAvx2: return internal::Avx2Kernels();
      default: return internal::ScalarKernels();
    }
  }
};

// The ISA's activation quantizer must equal QuantizeRowQ8_1 bit for bit.
TEST_P(IsaQuantizeTest, ActivationQuantizationMatchesGgmlBitExactly) {
  const internal::IsaKernels& k = Kernels();
  if (k.quantize == nullptr) GTEST_SKIP() << "no quantizer on this path";
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t cols : {32, 64, 576, 1536}) {
    const int64_t n = 5;
    std::vector<float> x(n * cols);
    for (auto& v : x) v = normal(rng);
    for (int64_t j = 0; j < 32; ++j) x[j] = 0.0f;               // an all-zero block
    for (int64_t j = 32; j < std::min<int64_t>(cols, 64); ++j) {  // ties: amax 254, id 0.5
      x[j] = static_cast<float>((j % 9) - 4);
    }
    if (cols >= 64) x[32] = 254.0f;
    for (int64_t i = 0; i < cols; i += 7) x[n * cols - 1 - i] *= 1e-6f;  // tiny values
    internal::QuantizedActs acts;
    std::vector<uint8_t> buf(internal::LayoutQuantizedActs(n, cols, &acts) + 64);
    acts.base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~63ull);
    k.quantize(x.data(), cols, 0, n, acts);
    std::vector<BlockQ8_1> want(cols / 32);
    for (int64_t t = 0; t < n; ++t) {
      QuantizeRowQ8_1(x.data() + t * cols, want.data(), cols);
      for (int64_t b = 0; b < cols / 32; ++b) {
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
          ASSERT_EQ(acts.qs(t)[b * 32 + j], want[b].qs[j]) << "t=" << t << " b=" << b << " j=" << j;
          sum += want[b].qs[j];
        }
        ASSERT_EQ(acts.d(t)[b], Fp16ToFp32(want[b].d)) << "t=" << t << " b=" << b;
        ASSERT_EQ(acts.s(t)[b], Fp16ToFp32(want[b].s)) << "t=" << t << " b=" << b;
        ASSERT_EQ(acts.sum(t)[b], sum) << "t=" << t << " b=" << b;
      }
    }
  }
}

TEST_P(IsaQuantizeTest, HalfConversionsMatchScalar) {
  const internal::IsaKernels& k = Kernels();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  std::vector<float> x = SpecialFloats();
  for (int i = 0; i < 5000; ++i) x.push_back(normal(rng) * std::ldexp(1.0f, (i % 50) - 30));
  std::vector<uint16_t> h(x.size()), b(x.size());
  if (k.to_f16) {
    k.to_f16(x.data(), h.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(h[i], Fp32ToFp16(x[i])) << x[i];
  }
  if (k.to_bf16) {
    k.to_bf16(x.data(), b.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(b[i], Fp32ToBf16(x[i])) << x[i];
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, IsaQuantizeTest,
                         ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                         [](const auto& info) { return std::string(IsaName(info.param)); });

TEST(DequantizeTest, Q4_1AndQ4_0AndQ8_0FollowGgml) {
  BlockQ4_1 b41;
  b41.d = Fp32ToFp16(0.5f);
  b41.m = Fp32ToFp16(-1.0f);
  for (int j = 0; j < 16; ++j) b41.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float out[32];
  DequantizeRow(DType::kQ4_1, &b41, out, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], j * 0.5f - 1.0f);
    EXPECT_EQ(out[j + 16], (15 - j) * 0.5f - 1.0f);
  }
  BlockQ4_0 b40;
  b40.d = Fp32ToFp16(2.0f);
  std::memcpy(b40.qs, b41.qs, 16);
  DequantizeRow(DType::kQ4_0, &b40, out, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j - 8) * 2.0f);
    EXPECT_EQ(out[j + 16], (7 - j) * 2.0f);
  }
  BlockQ8_0 b80;
  b80.d = Fp32ToFp16(0.25f);
  for (int j = 0; j < 32; ++j) b80.qs[j] = static_cast<int8_t>(j * 8 - 128);
  DequantizeRow(DType::kQ8_0, &b80, out, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], (j * 8 - 128) * 0.25f);
}

}  // namespace
}  // namespace saola::kernels::cpu
