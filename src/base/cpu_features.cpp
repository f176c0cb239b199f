// The CPU feature probe and instruction set selection (include/moeq/base/cpu_features.h).
#include "moeq/base/cpu_features.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace moeq {
namespace {

CpuFeatures Probe() {
  CpuFeatures f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
#endif
  return f;
}

Isa BestSupported() {
  if (CpuSupports(Isa::kAvx512)) return Isa::kAvx512;
  if (CpuSupports(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kPortable;
}

/// The cap MOEQ_ISA (or the legacy variable) asks for; nullopt when neither is set or valid.
std::optional<Isa> RequestedCap(std::string_view legacy_env) {
  if (const char* env = std::getenv("MOEQ_ISA"); env != nullptr && *env != '\0') {
    auto isa = ParseIsa(env);
    if (!isa) spdlog::warn("MOEQ_ISA='{}' is not portable, avx2 or avx512; ignored", env);
    return isa;
  }
  if (legacy_env.empty()) return std::nullopt;
  const std::string name(legacy_env);
  const char* env = std::getenv(name.c_str());
  if (env == nullptr || *env == '\0') return std::nullopt;
  auto isa = ParseIsa(env);
  if (isa) spdlog::warn("{} is deprecated; use MOEQ_ISA={}", name, env);
  return isa;
}

}  // namespace

const CpuFeatures& DetectCpuFeatures() {
  static const CpuFeatures features = Probe();
  return features;
}

bool CpuSupports(Isa isa) {
  const CpuFeatures& f = DetectCpuFeatures();
  switch (isa) {
    case Isa::kPortable:
      return true;
    case Isa::kAvx2:
      return f.avx2 && f.fma;
    case Isa::kAvx512:
      return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  }
  return false;
}

std::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return "portable";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

std::optional<Isa> ParseIsa(std::string_view name) {
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    if (IsaName(isa) == name) return isa;
  }
  return std::nullopt;
}

Isa SelectIsa(std::string_view legacy_env) {
  const Isa best = BestSupported();
  const std::optional<Isa> cap = RequestedCap(legacy_env);
  return cap ? std::min(best, *cap) : best;
}

}  // namespace moeq
