#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace saola::kernels::cpu {
namespace {

uint64_t ReadXcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1;
  const bool avx = (ecx >> 28) & 1;
  const bool fma = (ecx >> 12) & 1;
  const bool f16c = (ecx >> 29) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = ReadXcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;            // SSE and AVX state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;          // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_tile = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG, XTILEDATA
  if (!os_ymm) return f;

  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, b7, c7, d7);
    unsigned dummy_b = 0, dummy_c = 0, dummy_d = 0;
    __cpuid_count(7, 1, a71, dummy_b, dummy_c, dummy_d);
  }
  f.fma = fma;
  f.f16c = f16c;
  f.avx2 = (b7 >> 5) & 1;
  f.avx_vnni = (a71 >> 4) & 1;
  if (os_zmm) {
    f.avx512f = (b7 >> 16) & 1;
    f.avx512dq = (b7 >> 17) & 1;
    f.avx512bw = (b7 >> 30) & 1;
    f.avx512vl = (b7 >> 31) & 1;
    f.avx512vbmi = (c7 >> 1) & 1;
    f.avx512vnni = (c7 >> 11) & 1;
    f.avx512bf16 = (a71 >> 5) & 1;
  }
  if (os_tile) {
  }
  return f;
}

Isa ComputeDetectedIsa(const CpuFeatures& f) {
  if (!(f.avx2 && f.fma && f.f16c)) return Isa::kScalar;
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni) return Isa::kAvx512;
  return Isa::kAvx2;
}

Isa IsaFromEnv(Isa detected) {
  const char* env = std::getenv("SAOLA_CPU_ISA");
  if (env == nullptr) return detected;
  Isa want = detected;
  if (std::strcmp(env, "scalar") == 0) want = Isa::kScalar;
  if (std::strcmp(env, "avx2") == 0) want = Isa::kAvx2;
  if (std::strcmp(env, "avx512") == 0) want = Isa::kAvx512;
  return static_cast<int>(want) < static_cast<int>(detected) ? want : detected;
}

std::atomic<int> g_active_isa{-1};


}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

std::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

Isa DetectedIsa() {
  static const Isa detected = ComputeDetectedIsa(GetCpuFeatures());
  return detected;
}

Isa ActiveIsa() {
  int isa = g_active_isa.load(std::memory_order_relaxed);
  if (isa < 0) {
    isa = static_cast<int>(IsaFromEnv(DetectedIsa()));
    g_active_isa.store(isa, std::memory_order_relaxed);
  }
  return static_cast<Isa>(isa);
}

bool SetIsaForTesting(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(DetectedIsa())) return false;
  g_active_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}


}  // namespace saola::kernels::cpu
