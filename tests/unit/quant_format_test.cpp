// The format table: lookups, spec parsing, storage sizes, bits per weight, the MINT grid file.
#include "moeq/quant/quant_format.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"

namespace moeq::quant {
namespace {

TEST(QuantFormat, TableHasEveryAffineCombinationAndThreeFloats) {
  auto all = AllFormats();
  ASSERT_EQ(all.size(), 6u * 3u + 3u);
  std::set<std::string_view> names;
  for (const auto& f : all) {
    EXPECT_TRUE(names.insert(f.name).second) << "duplicate name " << f.name;
    EXPECT_EQ(FindFormat(f.name), &f);
    EXPECT_GE(f.nrmse_tolerance, 0.0) << f.name;
  }
  for (int b : kAffineBits) {
    for (int g : kAffineGroupSizes) {
      const FormatTraits* f = FindAffineFormat(b, g);
      ASSERT_NE(f, nullptr) << b << "," << g;
      EXPECT_TRUE(f->is_affine());
      EXPECT_EQ(f->name, "q" + std::to_string(b) + "g" + std::to_string(g));
      EXPECT_EQ(f->bits, b);
      EXPECT_EQ(f->group_size, g);
      EXPECT_GT(f->nrmse_tolerance, 0.0);
    }
  }
  EXPECT_EQ(FindAffineFormat(7, 64), nullptr);
  EXPECT_EQ(FindAffineFormat(4, 16), nullptr);
  EXPECT_EQ(FindFormat("q7g64"), nullptr);
  const FormatTraits* bf16 = FindFormat("bf16");
  ASSERT_NE(bf16, nullptr);
  EXPECT_FALSE(bf16->is_affine());
  EXPECT_EQ(bf16->bits, 16);
  EXPECT_EQ(bf16->group_size, 0);
  EXPECT_EQ(bf16->float_dtype, DType::kBF16);
  EXPECT_EQ(FindFormat("f16")->float_dtype, DType::kF16);
  EXPECT_EQ(FindFormat("f32")->float_dtype, DType::kF32);
  EXPECT_EQ(FindFormat("f32")->bits, 32);
}

TEST(QuantFormat, TolerancesShrinkWithMoreBitsAndSmallerGroups) {
  for (int gi = 0; gi < 3; ++gi) {
    for (int bi = 1; bi < 6; ++bi) {
      EXPECT_LT(FindAffineFormat(kAffineBits[bi], kAffineGroupSizes[gi])->nrmse_tolerance,
                FindAffineFormat(kAffineBits[bi - 1], kAffineGroupSizes[gi])->nrmse_tolerance);
    }
  }
  for (int b : kAffineBits) {
    EXPECT_LT(FindAffineFormat(b, 32)->nrmse_tolerance, FindAffineFormat(b, 64)->nrmse_tolerance);
    EXPECT_LT(FindAffineFormat(b, 64)->nrmse_tolerance, FindAffineFormat(b, 128)->nrmse_tolerance);
  }
}

TEST(QuantFormat, ScaleDtypeFollowsTheSourceLikeMlx) {
  const FormatTraits& q = *FindFormat("q4g64");
  EXPECT_EQ(q.ScaleDType(DType::kBF16), DType::kBF16);
  EXPECT_EQ(q.ScaleDType(DType::kF16), DType::kF16);
  EXPECT_EQ(q.ScaleDType(DType::kF32), DType::kF32);
  EXPECT_EQ(q.ScaleDType(DType::kF8E4M3), DType::kBF16);
  EXPECT_EQ(FindFormat("f16")->ScaleDType(DType::kBF16), DType::kF16);
}

TEST(QuantFormat, PackedWordsAndStorageBytes) {
  const FormatTraits& q4 = *FindFormat("q4g64");
  EXPECT_EQ(q4.PackedWordsPerRow(768), 96);
  EXPECT_EQ(FindFormat("q3g32")->PackedWordsPerRow(64), 6);
  EXPECT_EQ(FindFormat("q5g32")->PackedWordsPerRow(32), 5);
  EXPECT_EQ(FindFormat("q6g128")->PackedWordsPerRow(128), 24);
  EXPECT_EQ(FindFormat("bf16")->PackedWordsPerRow(128), 0);

  // [2048, 768] bf16 at q4g64: 2048*768*4/8 code bytes + 2 * 2048*(768/64) groups * 2 bytes.
  auto bytes = q4.StorageBytes(2048, 768, DType::kBF16);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, 786432u + 98304u);
  // f32 source: f32 scales and biases.
  EXPECT_EQ(*q4.StorageBytes(2048, 768, DType::kF32), 786432u + 2u * 2048u * 12u * 4u);
  // 3-D fused experts count E*out rows.
  const int64_t shape3[] = {4, 512, 768};
  EXPECT_EQ(*q4.StorageBytes(shape3, DType::kBF16), *q4.StorageBytes(4 * 512, 768, DType::kBF16));
  // Float formats: elements × element size, whatever the source.
  EXPECT_EQ(*FindFormat("bf16")->StorageBytes(shape3, DType::kF32), 4u * 512u * 768u * 2u);
  EXPECT_EQ(*FindFormat("f32")->StorageBytes(10, 3, DType::kBF16), 120u);
  const int64_t shape1[] = {100};
  EXPECT_EQ(*FindFormat("bf16")->StorageBytes(shape1, DType::kBF16), 200u);
}

TEST(QuantFormat, StorageBytesErrorsNameShapeAndGroup) {
  auto bad = FindFormat("q4g64")->StorageBytes(4, 100, DType::kBF16);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("[4, 100]"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("group size 64"), std::string::npos);
  const int64_t shape3[] = {2, 3, 100};
  auto bad3 = FindFormat("q4g64")->StorageBytes(shape3, DType::kBF16);
  ASSERT_FALSE(bad3.ok());
  EXPECT_NE(bad3.status().message().find("[2, 3, 100]"), std::string::npos);
  const int64_t shape1[] = {128};
  EXPECT_FALSE(FindFormat("q4g64")->StorageBytes(shape1, DType::kBF16).ok());
  EXPECT_FALSE(FindFormat("q4g64")->StorageBytes(-1, 64, DType::kBF16).ok());
}

TEST(QuantFormat, BitsPerWeight) {
  EXPECT_DOUBLE_EQ(FindFormat("q4g64")->BitsPerWeight(DType::kBF16), 4.5);
  EXPECT_DOUBLE_EQ(FindFormat("q4g64")->BitsPerWeight(DType::kF16), 4.5);
  EXPECT_DOUBLE_EQ(FindFormat("q4g64")->BitsPerWeight(DType::kF32), 5.0);
  EXPECT_DOUBLE_EQ(FindFormat("q2g32")->BitsPerWeight(DType::kBF16), 3.0);
  EXPECT_DOUBLE_EQ(FindFormat("q3g64")->BitsPerWeight(DType::kBF16), 3.5);
  EXPECT_DOUBLE_EQ(FindFormat("q4g32")->BitsPerWeight(DType::kBF16), 5.0);
  EXPECT_DOUBLE_EQ(FindFormat("q4g128")->BitsPerWeight(DType::kBF16), 4.25);
  EXPECT_DOUBLE_EQ(FindFormat("q8g64")->BitsPerWeight(DType::kBF16), 8.5);
  EXPECT_DOUBLE_EQ(FindFormat("q8g128")->BitsPerWeight(DType::kBF16), 8.25);
  EXPECT_DOUBLE_EQ(FindFormat("bf16")->BitsPerWeight(DType::kBF16), 16.0);
  EXPECT_DOUBLE_EQ(FindFormat("f32")->BitsPerWeight(DType::kBF16), 32.0);
  // bpw agrees with StorageBytes.
  for (const auto& f : AllFormats()) {
    auto bytes = f.StorageBytes(16, 128, DType::kBF16);
    ASSERT_TRUE(bytes.ok()) << f.name;
    EXPECT_DOUBLE_EQ(static_cast<double>(*bytes) * 8.0 / (16 * 128), f.BitsPerWeight(DType::kBF16))
        << f.name;
  }
}

TEST(QuantFormat, ParsesSpecs) {
  auto expect = [](std::string_view spec, std::string_view name, DType src = DType::kBF16) {
    auto f = ParseFormatSpec(spec, src);
    ASSERT_TRUE(f.ok()) << spec << ": " << f.status().ToString();
    EXPECT_EQ((*f)->name, name) << spec;
  };
  expect("q4g64", "q4g64");
  expect("4,64", "q4g64");
  expect("4, 64", "q4g64");
  expect("2,32", "q2g32");
  expect("3,64", "q3g64");
  expect("8,128", "q8g128");
  expect("bf16", "bf16");
  expect("f16", "f16");
  expect("f32", "f32");
  expect("16", "bf16");
  expect("16,0", "bf16");
  expect("16", "f16", DType::kF16);
  expect("16", "bf16", DType::kF32);
  expect("32", "f32");
  expect("32,0", "f32");
  for (const auto& f : AllFormats()) {
    if (f.is_affine()) {
      EXPECT_EQ(FormatSpec(f), std::to_string(f.bits) + "," + std::to_string(f.group_size));
      auto back = ParseFormatSpec(FormatSpec(f));
      ASSERT_TRUE(back.ok());
      EXPECT_EQ(*back, &f);
    }
  }
  EXPECT_EQ(FormatSpec(*FindFormat("bf16")), "16,0");
}

TEST(QuantFormat, SpecErrorsNameTheProblem) {
  auto err = [](std::string_view spec) {
    auto f = ParseFormatSpec(spec);
    EXPECT_FALSE(f.ok()) << spec;
    EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument) << spec;
    return f.status().message();
  };
  EXPECT_NE(err("7,64").find("bits 7"), std::string::npos);
  EXPECT_NE(err("q7g64").find("bits 7"), std::string::npos);
  EXPECT_NE(err("4,48").find("group size 48"), std::string::npos);
  EXPECT_NE(err("16,64").find("group 0"), std::string::npos);
  EXPECT_NE(err("abc").find("'abc'"), std::string::npos);
  err("");
  err("4");
  err("4,");
  err(",64");
  err("q4g");
  err("-4,64");
}

TEST(QuantFormat, MintGridConfigFileResolves) {
  auto j = ReadJsonFile(std::string(kSourceDir) + "/configs/mint_grid.json");
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["schema"], "moeq.mint_grid");
  EXPECT_EQ((*j)["version"], 1);
  const auto& configs = (*j)["configs"];
  ASSERT_EQ(configs.size(), 8u);
  const char* expected[] = {"q2g32",  "q3g64", "q4g32",  "q4g64",
                            "q4g128", "q8g64", "q8g128", "bf16"};
  for (size_t i = 0; i < configs.size(); ++i) {
    auto f = ParseFormatSpec(configs[i]["format"].get<std::string>());
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ((*f)->name, expected[i]);
    EXPECT_EQ((*f)->bits, configs[i]["bits"].get<int>());
    EXPECT_EQ((*f)->group_size, configs[i]["group_size"].get<int>());
  }
}

}  // namespace
}  // namespace moeq::quant
