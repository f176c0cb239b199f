// safetensors reader and writer: round trips, determinism, sharding and header validation.
#include "moeq/formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "moeq/base/file_util.h"
#include "moeq/base/half.h"
#include "testing/file_testing.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

using testing_util::WriteRawSafetensors;

std::vector<std::byte> Bytes(const std::vector<float>& v) {
  std::vector<std::byte> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(SafetensorsWriter, RoundTripsTensorsAndMetadata) {
  test::ScopedTempDir dir;
  const std::string path = dir.path() + "/a.safetensors";
  std::vector<TensorInfo> infos = {{"w", DType::kF32, {2, 3}},
                                   {"b", DType::kBF16, {3}},
                                   {"e", DType::kF32, {0, 4}},
                                   {"s", DType::kI64, {}}};
  auto w = SafetensorsWriter::Create(path, infos, {{"format", "pt"}, {"k", "v"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  std::vector<float> wv = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE((*w)->Write("w", Bytes(wv)).ok());
  std::vector<uint16_t> bv = {F32ToBf16(1.5f), F32ToBf16(-2.0f), F32ToBf16(0.25f)};
  ASSERT_TRUE((*w)->Write("b", std::as_bytes(std::span(bv))).ok());
  int64_t sv = 42;
  ASSERT_TRUE((*w)->Write("s", std::as_bytes(std::span(&sv, 1))).ok());
  EXPECT_FALSE(std::filesystem::exists(path)) << "visible before Finish";
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->data_start() % 8, 0u);
  ASSERT_EQ((*f)->tensors().size(), 4u);
  EXPECT_EQ((*f)->metadata().at("k"), "v");
  auto vw = (*f)->View("w");
  ASSERT_TRUE(vw.ok());
  auto fw = ToF32(*vw);
  ASSERT_TRUE(fw.ok());
  EXPECT_EQ(*fw, wv);
  auto fb = ToF32(*(*f)->View("b"));
  EXPECT_EQ((*fb)[1], -2.0f);
  EXPECT_EQ((*f)->Find("e")->numel(), 0);
  EXPECT_EQ((*f)->Find("s")->shape.size(), 0u);
  EXPECT_FALSE((*f)->View("nope").ok());
}

TEST(SafetensorsWriter, OutputIsDeterministicWhateverTheWriteOrder) {
  test::ScopedTempDir dir;
  std::vector<TensorInfo> infos = {
      {"x", DType::kF32, {4}}, {"a", DType::kF16, {2}}, {"m", DType::kF32, {2}}};
  std::vector<float> x = {1, 2, 3, 4}, m = {7, 8};
  std::vector<uint16_t> a = {1, 2};
  for (int order = 0; order < 2; ++order) {
    auto w = SafetensorsWriter::Create(dir.path() + "/" + std::to_string(order), infos);
    ASSERT_TRUE(w.ok());
    if (order == 0) {
      ASSERT_TRUE((*w)->Write("x", Bytes(x)).ok());
      ASSERT_TRUE((*w)->Write("a", std::as_bytes(std::span(a))).ok());
      ASSERT_TRUE((*w)->Write("m", Bytes(m)).ok());
    } else {
      ASSERT_TRUE((*w)->Write("m", Bytes(m)).ok());
      ASSERT_TRUE((*w)->Write("a", std::as_bytes(std::span(a))).ok());
      ASSERT_TRUE((*w)->Write("x", Bytes(x)).ok());
    }
    ASSERT_TRUE((*w)->Finish().ok());
  }
  EXPECT_EQ(*ReadFile(dir.path() + "/0"), *ReadFile(dir.path() + "/1"));
}

TEST(SafetensorsWriter, UnfinishedWriterLeavesNothing) {
  test::ScopedTempDir dir;
  const std::string path = dir.path() + "/x.safetensors";
  {
    auto w = SafetensorsWriter::Create(path, {{"t", DType::kF32, {2}}});
    ASSERT_TRUE(w.ok());
    Status s = (*w)->Finish();
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("'t' was never written"), std::string::npos);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsWriter, RejectsWrongSizeAndUndeclared) {
  test::ScopedTempDir dir;
  auto w = SafetensorsWriter::Create(dir.path() + "/x", {{"t", DType::kF32, {2}}});
  ASSERT_TRUE(w.ok());
  std::vector<float> three = {1, 2, 3};
  EXPECT_FALSE((*w)->Write("t", Bytes(three)).ok());
  EXPECT_FALSE((*w)->Write("u", Bytes(three)).ok());
  EXPECT_FALSE(SafetensorsWriter::Create(dir.path() + "/y",
                                         {{"t", DType::kF32, {1}}, {"t", DType::kF32, {1}}})
                   .ok());
}

TEST(ShardedSafetensorsWriter, SplitsAndWritesIndex) {
  test::ScopedTempDir dir;
  std::vector<TensorInfo> infos;
  for (int i = 0; i < 5; ++i)
    infos.push_back({"t" + std::to_string(i), DType::kF32, {256}});  // 1 KiB each
  ShardingOptions opt;
  opt.max_shard_bytes = 2048;
  auto w = ShardedSafetensorsWriter::Create(dir.path(), infos, opt);
  ASSERT_TRUE(w.ok());
  std::vector<float> v(256, 1.0f);
  for (const auto& t : infos) ASSERT_TRUE((*w)->Write(t.name, Bytes(v)).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  const auto files = (*w)->shard_files();
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0], "model-00001-of-00003.safetensors");
  auto idx = ReadJsonFile(dir.path() + "/model.safetensors.index.json");
  ASSERT_TRUE(idx.ok());
  EXPECT_EQ((*idx)["metadata"]["total_size"], 5 * 1024);
  EXPECT_EQ((*idx)["weight_map"]["t4"], "model-00003-of-00003.safetensors");
  for (const auto& f : files) EXPECT_TRUE(SafetensorsFile::Open(dir.path() + "/" + f).ok());
}

TEST(ShardedSafetensorsWriter, SingleShardHasNoIndex) {
  test::ScopedTempDir dir;
  auto w = ShardedSafetensorsWriter::Create(dir.path(), {{"t", DType::kF32, {1}}});
  ASSERT_TRUE(w.ok());
  float one = 1;
  ASSERT_TRUE((*w)->Write("t", std::as_bytes(std::span(&one, 1))).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/model.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/model.safetensors.index.json"));
}

// --- Header validation: each broken file gets one precise message. -------------------------

struct BadCase {
  const char* label;
  std::string header;  // JSON header text
  size_t data_bytes;   // bytes after the header
  const char* expect;  // substring of the error message
};

/// Printed in test names (gtest_discover_tests shows parameter values): a readable label.
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.label; }

class SafetensorsBadHeader : public ::testing::TestWithParam<BadCase> {};

TEST_P(SafetensorsBadHeader, IsRejectedWithAPreciseMessage) {
  const BadCase& c = GetParam();
  test::ScopedTempDir dir;
  const std::string path = dir.path() + "/bad.safetensors";
  WriteRawSafetensors(path, c.header, c.data_bytes);
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok()) << c.label;
  EXPECT_NE(f.status().message().find("bad.safetensors"), std::string::npos)
      << f.status().message();
  EXPECT_NE(f.status().message().find(c.expect), std::string::npos) << f.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsBadHeader,
    ::testing::Values(
        BadCase{"invalid json", R"({"a": {"dtype": "F32", )", 0, "invalid JSON"},
        BadCase{"not an object", R"([1,2])", 0, "does not start with '{'"},
        BadCase{"unknown dtype", R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", 4,
                "tensor 'a': unsupported dtype 'Q9'"},
        BadCase{"size mismatch", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12,
                "tensor 'a': dtype F32 × shape [2, 2] is 16 bytes but data_offsets span 12"},
        BadCase{"out of range", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8,
                "tensor 'a': data_offsets [0, 16) exceed the data buffer of 8 bytes"},
        BadCase{
            "overlap",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12, "tensor 'b': data_offsets [4, 12) overlap tensor 'a'"},
        BadCase{"reversed", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8,
                "end before they begin"},
        BadCase{"negative dim", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4,
                "'shape' has an entry"},
        BadCase{"missing offsets", R"({"a":{"dtype":"F32","shape":[1]}})", 4,
                "'data_offsets' must be"},
        BadCase{
            "duplicate",
            R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
            4, "tensor 'a' appears twice"},
        BadCase{"bad metadata", R"({"__metadata__":{"k":1}})", 0, "'__metadata__' value for 'k'"},
        BadCase{"huge shape",
                R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4,
                "overflows"}),
    [](const auto& param_info) {
      std::string n = param_info.param.label;
      for (char& ch : n)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

TEST(SafetensorsFile, RejectsTruncatedAndTinyFiles) {
  test::ScopedTempDir dir;
  const std::string path = dir.path() + "/t.safetensors";
  {
    std::ofstream o(path, std::ios::binary);
    o.write("\x10\x00\x00", 3);
  }
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("too short"), std::string::npos);

  // Header length says 1000 but the file ends sooner.
  {
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    uint64_t n = 1000;
    o.write(reinterpret_cast<const char*>(&n), 8);
    o << "{}";
  }
  f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("runs past the end"), std::string::npos)
      << f.status().message();

  // Header length above the 100 MB cap.
  {
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    uint64_t n = kMaxSafetensorsHeaderBytes + 1;
    o.write(reinterpret_cast<const char*>(&n), 8);
  }
  f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("exceeds the limit"), std::string::npos);

  f = SafetensorsFile::Open(dir.path() + "/missing.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
}

TEST(SafetensorsFile, AcceptsUnalignedDataAsMlxWritesIt) {
  test::ScopedTempDir dir;
  const std::string path = dir.path() + "/u.safetensors";
  // 3-byte header padding makes the F32 data start at an odd offset.
  WriteRawSafetensors(path, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto v = ToF32(*(*f)->View("a"));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->size(), 1u);
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(std::string_view("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex(std::string_view("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string million(1000000, 'a');
  EXPECT_EQ(Sha256Hex(std::string_view(million)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace moeq
