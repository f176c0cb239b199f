// Tokenizer: byte-level and SentencePiece-style BPE built from small in-test tokenizer.json files
// (expected ids worked out by hand), pre-tokenized id files, errors, and fixture tests against the
// bundled model, the shared models and the llama.cpp tokenizer test vectors.
#include "moeq/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <tuple>

#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "testing/file_testing.h"
#include "tokenizer/unicode_text.h"

namespace moeq {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

// ---- helpers ----------------------------------------------------------------------------------

/// GPT-2 bytes_to_unicode, written independently of the library: the character for byte `b`.
std::string ByteChar(int b) {
  int extra = 0;
  uint32_t cp = 0;
  for (int x = 0; x < 256; ++x) {
    const bool printable =
        (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
    if (x == b) {
      cp = printable ? static_cast<uint32_t>(x) : static_cast<uint32_t>(256 + extra);
      break;
    }
    if (!printable) ++extra;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Byte-level vocabulary: ids 0-255 are the bytes, then these merges in rank order.
const std::vector<std::pair<std::string, std::string>> kByteLevelMerges = {
    {"h", "e"},                // 256 he
    {"l", "l"},                // 257 ll
    {"he", "ll"},              // 258 hell
    {"hell", "o"},             // 259 hello
    {"\xC4\xA0", "w"},         // 260 Ġw
    {"o", "r"},                // 261 or
    {"\xC4\xA0w", "or"},       // 262 Ġwor
    {"l", "d"},                // 263 ld
    {"\xC4\xA0wor", "ld"},     // 264 Ġworld
    {"\xC3\x83", "\xC2\xA9"},  // 265 Ã© (the bytes of "é")
    {"e", "l"},                // 266 el: ranked after "l l", so "ell" is e + ll
};

/// A Qwen2-style tokenizer.json: NFC, Split(Qwen2 regex, Isolated), ByteLevel, BPE.
json ByteLevelTokenizer(bool pair_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  json merges = json::array();
  int id = 256;
  for (const auto& [a, b] : kByteLevelMerges) {
    vocab[a + b] = id++;
    if (pair_merges) {
      merges.push_back(json::array({a, b}));
    } else {
      merges.push_back(a + " " + b);
    }
  }
  auto added = [](int i, const std::string& content, bool special) {
    return json{{"id", i},         {"content", content},  {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", special}};
  };
  return json{
      {"version", "1.0"},
      {"added_tokens", json::array({added(267, "<|endoftext|>", true),
                                    added(268, "<|im_start|>", true), added(269, "[NS]", false)})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({json{{"type", "Split"},
                                            {"pattern", {{"Regex", kQwen2Regex}}},
                                            {"behavior", "Isolated"},
                                            {"invert", false}},
                                       json{{"type", "ByteLevel"},
                                            {"add_prefix_space", false},
                                            {"trim_offsets", false},
                                            {"use_regex", false}}})}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}},
  };
}

std::unique_ptr<Tokenizer> MustParse(const json& j) {
  auto t = Tokenizer::FromJsonText(j.dump(), "test-tokenizer.json");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

Ids MustEncode(const Tokenizer& t, std::string_view text, EncodeOptions options = {}) {
  auto ids = t.Encode(text, options);
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  return ids.ok() ? *ids : Ids{};
}

std::string Nfc(std::string_view s) {
  auto n = tokenizer_internal::Normalize(s, tokenizer_internal::NormalForm::kNfc);
  EXPECT_TRUE(n.ok());
  return n.ok() ? *n : std::string();
}

std::string WriteFile(const std::string& path, std::string_view data) {
  std::ofstream(path, std::ios::binary)
      .write(data.data(), static_cast<std::streamsize>(data.size()));
  return path;
}

// ---- byte-level BPE -----------------------------------------------------------------------------

TEST(ByteLevelBpe, MergesByRankOnPreTokenizedWords) {
  auto t = MustParse(ByteLevelTokenizer(false));
  ASSERT_TRUE(t);
  EXPECT_EQ(MustEncode(*t, "hello world"), (Ids{259, 264}));
  // " " before " world": \s+(?!\S) takes one space, the second space starts " world".
  EXPECT_EQ(MustEncode(*t, "hello  world"), (Ids{259, 32, 264}));
  // Rank order, not left-to-right: "l l" (rank 1) beats "e l" (rank 10).
  EXPECT_EQ(MustEncode(*t, "ell"), (Ids{101, 257}));
  EXPECT_EQ(MustEncode(*t, "el"), (Ids{266}));
  // Equal ranks: leftmost first.
  EXPECT_EQ(MustEncode(*t, "lll"), (Ids{257, 108}));
  EXPECT_EQ(MustEncode(*t, ""), Ids{});
  EXPECT_EQ(MustEncode(*t, "\n"), (Ids{10}));
}

TEST(ByteLevelBpe, StringAndPairMergeFormsAgree) {
  auto s = MustParse(ByteLevelTokenizer(false));
  auto p = MustParse(ByteLevelTokenizer(true));
  ASSERT_TRUE(s && p);
  for (const char* text :
       {"hello world", "hello<|endoftext|>world", "caf\xC3\xA9 ell lll", "  x\n\n y\t"}) {
    EXPECT_EQ(MustEncode(*s, text), MustEncode(*p, text)) << text;
  }
}

TEST(ByteLevelBpe, NfcComposesBeforeSplitting) {
  auto t = MustParse(ByteLevelTokenizer(false));
  ASSERT_TRUE(t);
  // "cafe" + U+0301 → NFC "café"; é = C3 A9 merges to 265.
  EXPECT_EQ(MustEncode(*t, "cafe\xCC\x81"), (Ids{99, 97, 102, 265}));
  EXPECT_EQ(t->Decode(MustEncode(*t, "cafe\xCC\x81")), "caf\xC3\xA9");
  // Without the normalizer the combining accent is its own pre-token (bytes CC 81).
  json j = ByteLevelTokenizer(false);
  j["normalizer"] = nullptr;
  auto raw = MustParse(j);
  ASSERT_TRUE(raw);
  EXPECT_EQ(MustEncode(*raw, "cafe\xCC\x81"), (Ids{99, 97, 102, 101, 0xCC, 0x81}));
}

TEST(ByteLevelBpe, AddedTokensAreSplitOutFirst) {
  auto t = MustParse(ByteLevelTokenizer(false));
  ASSERT_TRUE(t);
  EXPECT_EQ(MustEncode(*t, "hello<|endoftext|>world"), (Ids{259, 267, 119, 261, 263}));
  EXPECT_EQ(MustEncode(*t, "<|im_start|><|endoftext|>"), (Ids{268, 267}));
  // parse_special=false: the special token is text ("<|", "endoftext", "|>")...
  EXPECT_EQ(
      MustEncode(*t, "hello<|endoftext|>world", {.parse_special = false}),
      (Ids{259, 60, 124, 101, 110, 100, 111, 102, 116, 101, 120, 116, 124, 62, 119, 261, 263}));
  // ...but non-special added tokens are still split out.
  EXPECT_EQ(MustEncode(*t, "a[NS]b", {.parse_special = false}), (Ids{97, 269, 98}));
  EXPECT_TRUE(t->IsSpecial(267));
  EXPECT_FALSE(t->IsSpecial(269));
  EXPECT_FALSE(t->IsSpecial(259));
  EXPECT_EQ(t->Decode(Ids{259, 267, 264}), "hello<|endoftext|> world");
  EXPECT_EQ(t->Decode(Ids{259, 267, 264}, {.skip_special = true}), "hello world");
}

TEST(ByteLevelBpe, VocabularyAccessors) {
  auto t = MustParse(ByteLevelTokenizer(false));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->vocab_size(), 270);
  EXPECT_EQ(t->TokenText(264), "\xC4\xA0world");
  EXPECT_EQ(t->TokenText(267), "<|endoftext|>");
  EXPECT_EQ(t->TokenText(5000), "");
  EXPECT_EQ(t->TokenId("\xC4\xA0world"), 264);
  EXPECT_EQ(t->TokenId("[NS]"), 269);
  EXPECT_FALSE(t->TokenId("nope").has_value());
  ASSERT_EQ(t->added_tokens().size(), 3u);
  EXPECT_EQ(t->added_tokens()[0].content, "<|endoftext|>");
  EXPECT_FALSE(t->bos_id().has_value());  // FromJsonText reads no tokenizer_config.json
}

TEST(ByteLevelBpe, RoundTripsArbitraryText) {
  auto t = MustParse(ByteLevelTokenizer(true));
  ASSERT_TRUE(t);
  for (const char* text :
       {"hello world", "  leading\tand trailing  ", "line\r\n\n\nnext", "\xF0\x9F\x99\x82 emoji",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "Cafe\xCC\x81 <|im_start|>x", "I'M it's 12345"}) {
    EXPECT_EQ(t->Decode(MustEncode(*t, text)), Nfc(text)) << text;
  }
}

TEST(ByteLevelBpe, Gpt2StyleByteLevelRegexAndPrefixSpace) {
  json j = ByteLevelTokenizer(false);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  auto t = MustParse(j);
  ASSERT_TRUE(t);
  // add_prefix_space: "hello world" → " hello world" → "Ġhello" (Ġ + hello: no merge "Ġ h") +
  // "Ġworld".
  EXPECT_EQ(MustEncode(*t, "hello world"), (Ids{32, 259, 264}));
  EXPECT_EQ(MustEncode(*t, " world"), (Ids{264}));
}

TEST(ByteLevelBpe, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  json j = ByteLevelTokenizer(false);
  j["model"]["vocab"]["ell"] = 270;  // reachable by no merge
  j["model"]["ignore_merges"] = true;
  auto t = MustParse(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(MustEncode(*t, "ell"), (Ids{270}));
  EXPECT_EQ(MustEncode(*t, "hello"), (Ids{259}));
  j["model"]["ignore_merges"] = false;
  auto merged = MustParse(j);
  ASSERT_TRUE(merged);
  EXPECT_EQ(MustEncode(*merged, "ell"), (Ids{101, 257}));
}

/// A character-level model over a, b, -, with merges "a -" → 3, "- b" → 4, "- -" → 5; the split
/// decides which merges can happen.
json SplitTokenizer(const std::string& behavior, bool invert) {
  return json{
      {"pre_tokenizer",
       {{"type", "Split"},
        {"pattern", {{"String", "-"}}},
        {"behavior", behavior},
        {"invert", invert}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", {{"a", 0}, {"b", 1}, {"-", 2}, {"a-", 3}, {"-b", 4}, {"--", 5}}},
        {"merges", json::array({"a -", "- b", "- -"})}}},
  };
}

TEST(PreTokenizers, SplitBehaviorsAndInvert) {
  const std::vector<std::tuple<std::string, bool, Ids>> cases = {
      {"Isolated", false, {0, 2, 2, 1}},        {"Removed", false, {0, 1}},
      {"MergedWithPrevious", false, {3, 2, 1}}, {"MergedWithNext", false, {0, 2, 4}},
      {"Contiguous", false, {0, 5, 1}},         {"Removed", true, {2, 2}},
  };
  for (const auto& [behavior, invert, expected] : cases) {
    auto t = MustParse(SplitTokenizer(behavior, invert));
    ASSERT_TRUE(t);
    EXPECT_EQ(MustEncode(*t, "a--b"), expected) << behavior << (invert ? " inverted" : "");
  }
}

TEST(PreTokenizers, NfkcLowercaseWhitespaceSplitDigits) {
  json j = {
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({json{{"type", "NFKC"}}, json{{"type", "Lowercase"}}})}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({json{{"type", "WhitespaceSplit"}},
                                       json{{"type", "Digits"}, {"individual_digits", true}}})}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"1", 3}, {"2", 4}, {"ab", 5}, {"12", 6}}},
        {"merges", json::array({"a b", "1 2"})}}},
  };
  auto t = MustParse(j);
  ASSERT_TRUE(t);
  // NFKC maps fullwidth "ｃ" (U+FF43) to "c"; Lowercase "AB" to "ab"; digits are split one by one,
  // so "1 2" never merges.
  const Ids ids = MustEncode(*t,
                             "AB \t\xEF\xBD\x83"
                             "12");
  EXPECT_EQ(ids, (Ids{5, 2, 3, 4}));
  // Without a decoder, tokens are joined with spaces (as Hugging Face does).
  EXPECT_EQ(t->Decode(ids), "ab c 1 2");
}

// ---- SentencePiece-style BPE (Metaspace, byte fallback, unk) ------------------------------------

constexpr const char* kSp = "\xE2\x96\x81";  // ▁

/// Llama/Mistral-style tokenizer.json: <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF>=3..258, then pieces.
json SentencePieceTokenizer(const std::string& prepend_scheme, bool byte_fallback, bool fuse_unk) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  const std::string sp = kSp;
  vocab[sp] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab["c"] = 262;
  vocab[sp + "a"] = 263;
  vocab["ab"] = 264;
  vocab[sp + "ab"] = 265;
  auto added = [](int i, const std::string& content) {
    return json{{"id", i},         {"content", content},  {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  return json{
      {"added_tokens", json::array({added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")})},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Metaspace"},
        {"replacement", sp},
        {"prepend_scheme", prepend_scheme},
        {"split", false}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array({json{{"type", "Replace"}, {"pattern", {{"String", sp}}}, {"content", " "}},
                      json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}},
                      json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", fuse_unk},
        {"byte_fallback", byte_fallback},
        {"vocab", vocab},
        {"merges", json::array({sp + " a", "a b", sp + "a b"})}}},
  };
}

TEST(SentencePieceBpe, MetaspaceMergesAndDecode) {
  auto t = MustParse(SentencePieceTokenizer("first", true, true));
  ASSERT_TRUE(t);
  // "ab" → "▁ab": (▁,a) rank 0 → ▁a, then (▁a,b) rank 2 → ▁ab.
  EXPECT_EQ(MustEncode(*t, "ab"), (Ids{265}));
  // split=false: "▁ab▁c" is one word; the second ▁ and c have no merges.
  EXPECT_EQ(MustEncode(*t, "ab c"), (Ids{265, 259, 262}));
  EXPECT_EQ(t->Decode(Ids{265, 259, 262}), "ab c");
  EXPECT_EQ(t->unk_id(), 0);
}

TEST(SentencePieceBpe, ByteFallbackForUnknownCharacters) {
  auto t = MustParse(SentencePieceTokenizer("first", true, true));
  ASSERT_TRUE(t);
  // "é" = C3 A9 is not a piece: <0xC3> = 3 + 0xC3, <0xA9> = 3 + 0xA9.
  EXPECT_EQ(MustEncode(*t, "\xC3\xA9"), (Ids{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(t->Decode(MustEncode(*t, "\xC3\xA9 ab")), "\xC3\xA9 ab");
  EXPECT_EQ(t->TokenText(3 + 0x41), "<0x41>");
}

TEST(SentencePieceBpe, UnknownTokenFusedOrNot) {
  auto fused = MustParse(SentencePieceTokenizer("first", false, true));
  auto unfused = MustParse(SentencePieceTokenizer("first", false, false));
  ASSERT_TRUE(fused && unfused);
  EXPECT_EQ(MustEncode(*fused,
                       "\xC3\xA9\xC3\xA9"
                       "a"),
            (Ids{259, 0, 260}));
  EXPECT_EQ(MustEncode(*unfused,
                       "\xC3\xA9\xC3\xA9"
                       "a"),
            (Ids{259, 0, 0, 260}));
}

TEST(SentencePieceBpe, PrependSchemes) {
  auto first = MustParse(SentencePieceTokenizer("first", true, true));
  auto always = MustParse(SentencePieceTokenizer("always", true, true));
  auto never = MustParse(SentencePieceTokenizer("never", true, true));
  ASSERT_TRUE(first && always && never);
  // "first": only at the start of the input, not after an added token.
  EXPECT_EQ(MustEncode(*first, "<s>ab"), (Ids{1, 264}));
  EXPECT_EQ(MustEncode(*always, "<s>ab"), (Ids{1, 265}));
  EXPECT_EQ(MustEncode(*never, "ab"), (Ids{264}));
  EXPECT_EQ(MustEncode(*first, "<s>ab", {.parse_special = false}),
            (Ids{259, 3 + '<', 3 + 's', 3 + '>', 264}));
}

TEST(SentencePieceBpe, LegacyPrependReplaceNormalizer) {
  json j = SentencePieceTokenizer("first", true, true);
  j["pre_tokenizer"] = nullptr;
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       json::array({json{{"type", "Prepend"}, {"prepend", kSp}},
                    json{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSp}}})}};
  auto t = MustParse(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(MustEncode(*t, "ab c"), (Ids{265, 259, 262}));
}

// ---- loading and errors -------------------------------------------------------------------------

TEST(TokenizerLoad, ReadsTokenizerConfigBesideIt) {
  testing_util::TempDir dir;
  WriteFile(dir.path() + "/tokenizer.json", SentencePieceTokenizer("first", true, true).dump());
  WriteFile(
      dir.path() + "/tokenizer_config.json",
      R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": null, "add_bos_token": true})");
  auto t = Tokenizer::Load(dir.path() + "/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->bos_id(), 1);
  EXPECT_EQ((*t)->eos_id(), 2);
  EXPECT_FALSE((*t)->pad_id().has_value());
  EXPECT_TRUE((*t)->add_bos_token());
  EXPECT_EQ(MustEncode(**t, "ab", {.add_bos = true}), (Ids{1, 265}));

  WriteFile(dir.path() + "/tokenizer_config.json", R"({"bos_token": "<nope>"})");
  auto bad = Tokenizer::Load(dir.path() + "/tokenizer.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tokenizer_config.json.bos_token"), std::string::npos)
      << bad.status().message();
}

TEST(TokenizerLoad, ErrorsNameFileAndField) {
  auto missing = Tokenizer::Load("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  json j = ByteLevelTokenizer(false);
  j["model"]["merges"][1] = "l zz";
  auto bad_merge = Tokenizer::FromJsonText(j.dump(), "x.json");
  ASSERT_FALSE(bad_merge.ok());
  EXPECT_NE(bad_merge.status().message().find("x.json: model.merges[1]"), std::string::npos)
      << bad_merge.status().message();

  j = ByteLevelTokenizer(false);
  j["model"]["type"] = "WordPiece";
  EXPECT_EQ(Tokenizer::FromJsonText(j.dump(), "x.json").status().code(), StatusCode::kUnsupported);

  j = ByteLevelTokenizer(false);
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  auto bad_behavior = Tokenizer::FromJsonText(j.dump(), "x.json");
  ASSERT_FALSE(bad_behavior.ok());
  EXPECT_NE(bad_behavior.status().message().find("pre_tokenizer.pretokenizers[0].behavior"),
            std::string::npos)
      << bad_behavior.status().message();

  j = ByteLevelTokenizer(false);
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  EXPECT_FALSE(Tokenizer::FromJsonText(j.dump(), "x.json").ok());

  EXPECT_EQ(Tokenizer::FromJsonText("{not json", "x.json").status().code(),
            StatusCode::kCorruption);
}

TEST(TokenizerEncode, RejectsInvalidUtf8AndMissingBos) {
  auto t = MustParse(ByteLevelTokenizer(false));
  ASSERT_TRUE(t);
  auto bad = t->Encode("abc\xC3(", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("byte 3"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(t->Encode("\xED\xA0\x80", {}).ok());  // a surrogate
  EXPECT_FALSE(t->Encode("hello", {.add_bos = true}).ok());
}

TEST(TokenizerEncode, LongWhitespaceRunsAndConcurrentUse) {
  auto t = MustParse(ByteLevelTokenizer(false));
  ASSERT_TRUE(t);
  const std::string text = "a" + std::string(100000, ' ') + "b\n" + std::string(50000, '\n');
  const Ids ids = MustEncode(*t, text);
  EXPECT_EQ(t->Decode(ids), text);
  std::vector<std::thread> threads;
  std::vector<Ids> results(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back(
        [&, i] { results[static_cast<size_t>(i)] = MustEncode(*t, "hello world ell lll cafe"); });
  }
  for (auto& th : threads) th.join();
  for (const Ids& r : results) EXPECT_EQ(r, results[0]);
}

// ---- token-id files -----------------------------------------------------------------------------

TEST(TokenIds, JsonListAndObject) {
  testing_util::TempDir dir;
  auto list = LoadTokenIds(WriteFile(dir.path() + "/a.json", "[1, 2, 65536]"));
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ(*list, (Ids{1, 2, 65536}));
  auto obj = LoadTokenIds(WriteFile(dir.path() + "/b.json", R"({"ids": [7, 0]})"));
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ(*obj, (Ids{7, 0}));
  auto sniffed = LoadTokenIds(WriteFile(dir.path() + "/c.ids", " [3]"));
  ASSERT_TRUE(sniffed.ok());
  EXPECT_EQ(*sniffed, (Ids{3}));

  auto bad = LoadTokenIds(WriteFile(dir.path() + "/d.json", R"({"ids": [1, 2, -3]})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("d.json: ids[2]"), std::string::npos)
      << bad.status().message();
  auto not_int = LoadTokenIds(WriteFile(dir.path() + "/e.json", "[1, \"x\"]"));
  ASSERT_FALSE(not_int.ok());
  EXPECT_NE(not_int.status().message().find("[1]"), std::string::npos)
      << not_int.status().message();
}

TEST(TokenIds, BinaryRoundTripBothWidths) {
  testing_util::TempDir dir;
  for (const Ids& ids : {Ids{0, 1, 65535}, Ids{5, 151668, 7}, Ids{}}) {
    const std::string path = dir.path() + "/x.ids";
    ASSERT_TRUE(WriteTokenIds(path, ids).ok());
    auto back = LoadTokenIds(path);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, ids);
  }
  EXPECT_EQ(std::filesystem::file_size(dir.path() + "/x.ids"), 16u);
  ASSERT_TRUE(WriteTokenIds(dir.path() + "/y.ids", Ids{1, 2, 3}).ok());
  EXPECT_EQ(std::filesystem::file_size(dir.path() + "/y.ids"), 16u + 3 * 2);
  EXPECT_FALSE(WriteTokenIds(dir.path() + "/z.ids", Ids{1, -2}).ok());

  // A header that promises more ids than follow.
  std::string data = *ReadFile(dir.path() + "/y.ids");
  data[8] = 4;
  auto bad = LoadTokenIds(WriteFile(dir.path() + "/bad.ids", data));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_NE(bad.status().message().find("bad.ids"), std::string::npos);
}

TEST(TokenIds, RawAndNpy) {
  testing_util::TempDir dir;
  const uint16_t u16[] = {1, 2, 65535};
  auto a = LoadTokenIds(
      WriteFile(dir.path() + "/a.u16", std::string_view(reinterpret_cast<const char*>(u16), 6)));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (Ids{1, 2, 65535}));
  const uint32_t u32[] = {70000, 0x80000000u};
  auto b = LoadTokenIds(
      WriteFile(dir.path() + "/b.u32", std::string_view(reinterpret_cast<const char*>(u32), 8)));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("id #1"), std::string::npos) << b.status().message();
  EXPECT_FALSE(LoadTokenIds(WriteFile(dir.path() + "/c.u32", "abcde")).ok());

  // .npy version 1.0, '<i8', shape (2,), header padded to a multiple of 64 bytes as numpy does.
  std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string npy = std::string("\x93NUMPY\x01\x00", 8);
  npy.push_back(static_cast<char>(header.size()));
  npy.push_back(0);
  npy += header;
  const int64_t values[] = {42, 151000};
  npy.append(reinterpret_cast<const char*>(values), sizeof(values));
  auto c = LoadTokenIds(WriteFile(dir.path() + "/c.npy", npy));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, (Ids{42, 151000}));

  EXPECT_EQ(LoadTokenIds(WriteFile(dir.path() + "/d.bin", "hello")).status().code(),
            StatusCode::kUnsupported);
}

// ---- fixtures -----------------------------------------------------------------------------------

std::string SharedDir() { return std::string(kSourceDir) + "/../shared"; }

/// The first of `files` (relative to the shared directory) that is missing, or "" when all exist.
std::string MissingSharedFile(std::initializer_list<const char*> files) {
  for (const char* f : files) {
    if (!std::filesystem::exists(SharedDir() + "/" + f)) return SharedDir() + "/" + f;
  }
  return "";
}

/// Skips the test unless every listed shared file exists.
#define SKIP_UNLESS_SHARED(...)                                                          \
  if (const std::string missing = MissingSharedFile({__VA_ARGS__}); !missing.empty()) {  \
    GTEST_SKIP() << "shared fixture " << missing << " not found (fixture test skipped)"; \
  }

/// Checks every entry of a model's tokenizer_tests.json; returns the number checked.
int CheckTokenizerTests(const Tokenizer& t, const std::string& tests_path) {
  auto tests = ReadJsonFile(tests_path);
  EXPECT_TRUE(tests.ok()) << tests.status().ToString();
  if (!tests.ok()) return 0;
  int n = 0;
  for (const json& test : (*tests)["tests"]) {
    const std::string text = test["text"].get<std::string>();
    const Ids expected = test["ids"].get<Ids>();
    const Ids ids = MustEncode(t, text);
    EXPECT_EQ(ids, expected) << tests_path << ": \"" << text << "\"";
    EXPECT_EQ(t.Decode(ids), Nfc(text)) << tests_path << ": \"" << text << "\"";
    ++n;
  }
  return n;
}

/// Runs a llama.cpp .inp/.out vector pair; returns {passed, total}.
std::pair<int, int> CheckLlamaCppVectors(const Tokenizer& t, const std::string& base) {
  auto inp = ReadFile(base + ".inp");
  auto out = ReadFile(base + ".out");
  EXPECT_TRUE(inp.ok() && out.ok()) << base;
  if (!inp.ok() || !out.ok()) return {0, 0};
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::istringstream lines(*out);
  int passed = 0;
  int total = 0;
  for (size_t p = 0, q; (q = inp->find(sep, p)) != std::string::npos; p = q + sep.size()) {
    const std::string text = inp->substr(p, q - p);
    std::string line;
    std::getline(lines, line);
    std::istringstream ls(line);
    Ids expected;
    for (int v; ls >> v;) expected.push_back(v);
    const Ids ids = MustEncode(t, text, {.parse_special = false});
    EXPECT_EQ(ids, expected) << base << " #" << total << ": \"" << text << "\"";
    passed += ids == expected;
    ++total;
  }
  return {passed, total};
}

TEST(TokenizerFixtures, BundledTinyQwen3MoeTokenizer) {
  const std::string dir = std::string(kSourceDir) + "/models/tiny-qwen3moe";
  auto t = Tokenizer::Load(dir + "/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->vocab_size(), 2048);
  EXPECT_EQ((*t)->eos_id(), 2045);
  EXPECT_FALSE((*t)->bos_id().has_value());
  EXPECT_EQ(CheckTokenizerTests(**t, dir + "/tokenizer_tests.json"), 20);
}

TEST(TokenizerFixtures, BundledWikiText2TokenCount) {
  // The model card: wiki.test.raw is 533,132 tokens with this tokenizer (no BOS).
  auto t = Tokenizer::Load(std::string(kSourceDir) + "/models/tiny-qwen3moe/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto text = ReadFile(std::string(kSourceDir) + "/data/wikitext-2-raw/wiki.test.raw");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  const Ids ids = MustEncode(**t, *text);
  EXPECT_EQ(ids.size(), 533132u);
  EXPECT_EQ((*t)->Decode(ids), *text);
}

TEST(TokenizerFixtures, SharedModelTokenizerTests) {
  SKIP_UNLESS_SHARED(
      "models/tiny-qwen3moe/tokenizer.json", "models/tiny-qwen3moe/tokenizer_tests.json",
      "models/tiny-mixtral/tokenizer.json", "models/tiny-mixtral/tokenizer_tests.json");
  for (const char* model : {"tiny-qwen3moe", "tiny-mixtral"}) {
    const std::string dir = SharedDir() + "/models/" + model;
    auto t = Tokenizer::Load(dir + "/tokenizer.json");
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(CheckTokenizerTests(**t, dir + "/tokenizer_tests.json"), 20) << model;
  }
}

TEST(TokenizerFixtures, SharedMoeCorpusValidIdsMatchReference) {
  SKIP_UNLESS_SHARED("models/tiny-mixtral/tokenizer.json", "data/moe-corpus/valid.txt",
                     "data/moe-corpus/valid.ids.npy");
  auto t = Tokenizer::Load(SharedDir() + "/models/tiny-mixtral/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto text = ReadFile(SharedDir() + "/data/moe-corpus/valid.txt");
  auto reference = LoadTokenIds(SharedDir() + "/data/moe-corpus/valid.ids.npy");
  ASSERT_TRUE(text.ok() && reference.ok()) << reference.status().ToString();
  EXPECT_EQ(reference->size(), 311070u);
  EXPECT_TRUE(MustEncode(**t, *text) == *reference);
}

TEST(TokenizerFixtures, LlamaCppVectorsGpt2) {
  SKIP_UNLESS_SHARED("data/tokenizers/gpt2-from-gguf/tokenizer.json",
                     "data/llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp",
                     "data/llamacpp-vocab/ggml-vocab-gpt-2.gguf.out");
  auto t = Tokenizer::Load(SharedDir() + "/data/tokenizers/gpt2-from-gguf/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->bos_id(), 50256);
  EXPECT_EQ(CheckLlamaCppVectors(**t, SharedDir() + "/data/llamacpp-vocab/ggml-vocab-gpt-2.gguf"),
            std::make_pair(46, 46));
}

TEST(TokenizerFixtures, LlamaCppVectorsQwen2AndDeepSeekR1Qwen) {
  SKIP_UNLESS_SHARED("data/tokenizers/qwen3/tokenizer.json",
                     "data/llamacpp-vocab/ggml-vocab-qwen2.gguf.inp",
                     "data/llamacpp-vocab/ggml-vocab-qwen2.gguf.out",
                     "data/llamacpp-vocab/ggml-vocab-deepseek-r1-qwen.gguf.inp",
                     "data/llamacpp-vocab/ggml-vocab-deepseek-r1-qwen.gguf.out");
  auto t = Tokenizer::Load(SharedDir() + "/data/tokenizers/qwen3/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  for (const char* name : {"qwen2", "deepseek-r1-qwen"}) {
    EXPECT_EQ(CheckLlamaCppVectors(
                  **t, SharedDir() + "/data/llamacpp-vocab/ggml-vocab-" + name + ".gguf"),
              std::make_pair(46, 46))
        << name;
  }
}

TEST(TokenizerFixtures, LlamaCppVectorsSentencePieceGguf) {
  SKIP_UNLESS_SHARED("data/llamacpp-vocab/ggml-vocab-llama-spm.gguf",
                     "data/llamacpp-vocab/ggml-vocab-llama-spm.gguf.inp",
                     "data/llamacpp-vocab/ggml-vocab-llama-spm.gguf.out",
                     "data/llamacpp-vocab/ggml-vocab-phi-3.gguf",
                     "data/llamacpp-vocab/ggml-vocab-phi-3.gguf.inp",
                     "data/llamacpp-vocab/ggml-vocab-phi-3.gguf.out");
  for (const char* name : {"llama-spm", "phi-3"}) {
    const std::string base = SharedDir() + "/data/llamacpp-vocab/ggml-vocab-" + name + ".gguf";
    auto t = Tokenizer::Load(base);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(CheckLlamaCppVectors(**t, base), std::make_pair(46, 46)) << name;
    EXPECT_EQ((*t)->bos_id(), 1) << name;
    const std::string text = "Hello world, caf\xC3\xA9 \xF0\x9F\x99\x82!";
    EXPECT_EQ((*t)->Decode(MustEncode(**t, text)), text) << name;
  }
}

}  // namespace
}  // namespace moeq
