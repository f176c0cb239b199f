// The one CPU probe and instruction set selection: names, ordering, MOEQ_ISA and the deprecated
// per-module variables. (Bit-identity of the kernels across instruction sets is checked by the
// engine's and the quantizer's kernel tests, which run every available set.)
#include "moeq/base/cpu_features.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace moeq {
namespace {

/// Sets (or unsets, nullopt) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

Isa Best() {
  ScopedEnv isa("MOEQ_ISA", std::nullopt);
  return SelectIsa();
}

TEST(CpuFeatures, NamesRoundTripAndPortableIsAlwaysSupported) {
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    EXPECT_EQ(ParseIsa(IsaName(isa)), isa);
  }
  EXPECT_EQ(ParseIsa("sse2"), std::nullopt);
  EXPECT_TRUE(CpuSupports(Isa::kPortable));
  const CpuFeatures& f = DetectCpuFeatures();
  EXPECT_EQ(CpuSupports(Isa::kAvx2), f.avx2 && f.fma);
  // The selection without overrides is the best supported set.
  const Isa best = Best();
  EXPECT_TRUE(CpuSupports(best));
  if (best != Isa::kAvx512) {
    EXPECT_FALSE(CpuSupports(Isa::kAvx512));
  }
}

TEST(CpuFeatures, MoeqIsaLowersButNeverRaises) {
  const Isa best = Best();
  {
    ScopedEnv isa("MOEQ_ISA", "portable");
    EXPECT_EQ(SelectIsa(), Isa::kPortable);
    EXPECT_EQ(SelectIsa("MOEQ_ENGINE_KERNELS"), Isa::kPortable);
  }
  {
    ScopedEnv isa("MOEQ_ISA", "avx512");
    EXPECT_EQ(SelectIsa(), best);
  }
  {
    ScopedEnv isa("MOEQ_ISA", "avx2");
    EXPECT_EQ(SelectIsa(), best == Isa::kPortable ? Isa::kPortable : Isa::kAvx2);
  }
  {
    ScopedEnv isa("MOEQ_ISA", "nonsense");
    EXPECT_EQ(SelectIsa(), best);
  }
}

TEST(CpuFeatures, DeprecatedModuleVariablesApplyOnlyWithoutMoeqIsa) {
  const Isa best = Best();
  ScopedEnv isa("MOEQ_ISA", std::nullopt);
  {
    ScopedEnv legacy("MOEQ_QUANT_KERNELS", "portable");
    EXPECT_EQ(SelectIsa("MOEQ_QUANT_KERNELS"), Isa::kPortable);
    EXPECT_EQ(SelectIsa("MOEQ_ENGINE_KERNELS"), best);  // another module's variable
    ScopedEnv wins("MOEQ_ISA", "avx512");
    EXPECT_EQ(SelectIsa("MOEQ_QUANT_KERNELS"), best);
  }
}

}  // namespace
}  // namespace moeq
