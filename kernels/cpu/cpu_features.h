// Run-time detection of the x86 instruction sets the CPU kernels use, and the choice of path.
//
// Kernels are compiled per instruction set (files ending in _avx2.cc / _avx512.cc get the matching
// -m flags) and entered through ActiveIsa(), so one binary runs on any x86-64 machine. Detection
// reads cpuid and xgetbv once (the OS must also save the wide registers, or the instructions
// fault). The environment variable SAOLA_CPU_ISA=scalar|avx2|avx512 caps the path at a lower level,
// for tests and benchmarks; tests may also switch paths in-process with SetIsaForTesting.
#pragma once

#include <string_view>

namespace saola::kernels::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx_vnni = false;     // VEX-encoded vpdpbusd on 256-bit registers
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx512vbmi = false;   // vpermb, vpmultishiftqb
  bool avx512bf16 = false;
};

/// What this CPU and OS support (cached after the first call; thread-safe).
const CpuFeatures& GetCpuFeatures();

/// Kernel paths, from the most portable to the widest. Each level implies the ones below it.
///   kAvx2:   AVX2 + FMA + F16C (integer dots with maddubs/madd).
///   kAvx512: AVX-512 F/BW/VL/DQ + VNNI (integer dots with vpdpbusd).
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

std::string_view IsaName(Isa isa);

/// The widest path this machine supports.
Isa DetectedIsa();

/// The path kernels take now: DetectedIsa() capped by SAOLA_CPU_ISA and SetIsaForTesting.
Isa ActiveIsa();

/// Forces the path (capped at DetectedIsa()); returns false and changes nothing if `isa` is not
/// supported here. Not for use while kernels run on other threads.
bool SetIsaForTesting(Isa isa);


}  // namespace saola::kernels::cpu
