// moeq-allocate on a format × encoder grid: the reader keeps encoder rows apart (and rejects
// unknown encoders and repeated (format, encoder) pairs), the solver picks the lower-error
// encoder of equal-byte options, a pin to a format takes that format's best encoder, and
// allocation.json records the encoder; files without encoders stay without the field.
#include <gtest/gtest.h>

#include <cmath>

#include "moeq/allocate/allocation.h"

namespace moeq::alloc {
namespace {

std::string Header() {
  nlohmann::json h = {{"schema", "moeq.sensitivity"},
                      {"version", 1},
                      {"producer", {{"tool", "test"}}},
                      {"inputs", {{"model", "fake"}, {"model_fingerprint", "abc"}}},
                      {"options", nlohmann::json::object()}};
  return h.dump() + "\n";
}

std::string Row(const std::string& tensor, const std::string& format, int bits, int group,
                const std::string& encoder, double nrmse) {
  const int64_t n = 64 * 64;
  const uint64_t bytes = bits == 16 ? 2 * n : n * bits / 8 + n / group * 4;
  nlohmann::json j = {{"tensor", tensor},
                      {"role", "expert_up"},
                      {"layer", 0},
                      {"expert", 0},
                      {"shape", {64, 64}},
                      {"params", n},
                      {"dtype", "BF16"},
                      {"format", format},
                      {"bits", bits},
                      {"group_size", group},
                      {"bytes", bytes},
                      {"nrmse", nrmse},
                      {"sqnr_db", -20 * std::log10(nrmse)}};
  if (!encoder.empty()) j["encoder"] = encoder;
  return j.dump() + "\n";
}

std::string Tensor(const std::string& name, bool encoders) {
  std::string s;
  s += Row(name, "q3g64", 3, 64, encoders ? "rtn" : "", 0.19);
  if (encoders) s += Row(name, "q3g64", 3, 64, "gptq", 0.07);
  s += Row(name, "q4g64", 4, 64, encoders ? "rtn" : "", 0.089);
  if (encoders) s += Row(name, "q4g64", 4, 64, "weighted", 0.075);
  if (encoders) s += Row(name, "q4g64", 4, 64, "gptq", 0.03);
  s += Row(name, "q8g64", 8, 64, encoders ? "rtn" : "", 0.005);
  return s;
}

TEST(AllocateEncoders, PicksTheBestEncoderAndRecordsIt) {
  auto f =
      ParseSensitivity(Header() + Tensor("a.weight", true) + Tensor("b.weight", true), "s.jsonl");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->tensors[0].configs.size(), 6u);
  EXPECT_EQ(f->tensors[0].configs[1].encoder, "gptq");
  AllocationSettings s;
  s.priors.rules.push_back({});
  AllocRule& pin = s.priors.rules.back();
  pin.name = "b.weight";
  pin.format = "q4g64";
  pin.where = "rules[0]";
  auto m = BuildAllocationModel(*f, s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const uint64_t q4 = 64 * 64 / 2 + 64 * 64 / 64 * 4;
  auto r = SolveAllocation(*f, *m, 2 * q4, SolverKind::kAuto);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& ca = f->tensors[0].configs[static_cast<size_t>(r->decisions[0].config)];
  EXPECT_EQ(ca.format, "q4g64");
  EXPECT_EQ(ca.encoder, "gptq");  // equal bytes: the lowest error
  const auto& cb = f->tensors[1].configs[static_cast<size_t>(r->decisions[1].config)];
  EXPECT_EQ(cb.format, "q4g64");
  EXPECT_EQ(cb.encoder, "gptq");  // the pin takes the format's best encoder
  const auto j = AllocationToJson(*f, *r, *m, Policy::kMckp, std::nullopt);
  EXPECT_EQ(j["tensors"][0]["encoder"], "gptq");
  EXPECT_NE(SummaryTable(*f, *r).find("q4g64+gptq"), std::string::npos);

  // Without encoder fields: no encoder in allocation.json.
  auto plain = ParseSensitivity(Header() + Tensor("a.weight", false), "s.jsonl");
  ASSERT_TRUE(plain.ok());
  auto pm = BuildAllocationModel(*plain, AllocationSettings{});
  auto pr = SolveAllocation(*plain, *pm, q4, SolverKind::kAuto);
  ASSERT_TRUE(pr.ok());
  EXPECT_FALSE(
      AllocationToJson(*plain, *pr, *pm, Policy::kMckp, std::nullopt)["tensors"][0].contains(
          "encoder"));
}

TEST(AllocateEncoders, ReaderRejectsUnknownAndRepeatedEncoders) {
  auto bad = ParseSensitivity(Header() + Row("a.weight", "q4g64", 4, 64, "awq", 0.1), "s.jsonl");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("encoder"), std::string::npos) << bad.status().ToString();
  auto twice = ParseSensitivity(Header() + Row("a.weight", "q4g64", 4, 64, "gptq", 0.1) +
                                    Row("a.weight", "q4g64", 4, 64, "gptq", 0.1),
                                "s.jsonl");
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("already given"), std::string::npos)
      << twice.status().ToString();
}

}  // namespace
}  // namespace moeq::alloc
