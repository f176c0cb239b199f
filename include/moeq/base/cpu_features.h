// The one CPU feature probe and the one way kernels are chosen.
//
// Every module with SIMD kernels compiles one kernel set per instruction set (each a table of
// function pointers, or nullptr where not compiled in) and picks with SelectIsa(): the best
// instruction set the CPU supports, lowered by the environment variable MOEQ_ISA
// (portable | avx2 | avx512). Kernels of every instruction set give bit-identical results, so
// the choice only affects speed.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace moeq {

/// Instruction sets kernels are compiled for, in increasing order.
enum class Isa : uint8_t { kPortable, kAvx2, kAvx512 };

/// What the CPU supports, probed once.
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;  ///< vpdpbusd (the int8-activation kernels)
};
const CpuFeatures& DetectCpuFeatures();

/// Whether the CPU runs kernels of `isa` (avx2: AVX2 + FMA; avx512: F, BW, VL, DQ).
bool CpuSupports(Isa isa);

/// "portable", "avx2", "avx512".
std::string_view IsaName(Isa isa);
std::optional<Isa> ParseIsa(std::string_view name);

/// The instruction set kernels should use: the best the CPU supports, lowered (never raised) by
/// MOEQ_ISA. `legacy_env` names a module's older variable (MOEQ_ENGINE_KERNELS,
/// MOEQ_QUANT_KERNELS), still read when MOEQ_ISA is unset; deprecated.
Isa SelectIsa(std::string_view legacy_env = {});

}  // namespace moeq
