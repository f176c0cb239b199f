// llama.cpp GGUF → tokenizer: SentencePiece (tokenizer.ggml.model "llama": tokens, scores and
// token types) or byte-level BPE ("gpt2": tokens, merges, token types and the pre-tokenizer
// name, rebuilt as the tokenizer.json moeq's GGUF writer read them) from the KV section
// (docs/formats.md §3.1); tensors are not read, and of a model file only the header is.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "moeq/base/file_util.h"
#include "tokenizer/tokenizer_impl.h"

namespace moeq::tokenizer_internal {
namespace {

enum GgufType : int32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

size_t ScalarSize(int32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    default:
      return 0;
  }
}

// GGUF token types.
constexpr int32_t kTokenUnknown = 2;
constexpr int32_t kTokenControl = 3;
constexpr int32_t kTokenUserDefined = 4;

/// Bounds-checked little-endian reader over the file bytes.
class Reader {
 public:
  Reader(const std::string& data, const std::string& path) : data_(data), path_(path) {}

  template <class T>
  Result<T> Read(const std::string& what) {
    if (data_.size() - pos_ < sizeof(T)) return Truncated(what);
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  Result<std::string> ReadString(const std::string& what) {
    MOEQ_ASSIGN_OR_RETURN(const uint64_t len, Read<uint64_t>(what));
    if (data_.size() - pos_ < len) return Truncated(what);
    std::string s = data_.substr(pos_, len);
    pos_ += len;
    return s;
  }
  Status Skip(uint64_t n, const std::string& what) {
    if (data_.size() - pos_ < n) return Truncated(what);
    pos_ += n;
    return Status::Ok();
  }
  /// Array counts larger than the remaining bytes cannot be right (every element takes a byte).
  Status CheckCount(uint64_t count, const std::string& what) const {
    if (count > data_.size() - pos_) {
      return Status::Corruption(path_ + ": " + what + ": array of " + std::to_string(count) +
                                " elements does not fit in the file");
    }
    return Status::Ok();
  }
  size_t pos() const { return pos_; }

 private:
  Status Truncated(const std::string& what) const {
    return Status::Corruption(path_ + ": truncated at byte " + std::to_string(pos_) +
                              " while reading " + what);
  }
  const std::string& data_;
  const std::string& path_;
  size_t pos_ = 0;
};

struct GgufVocab {
  std::string model;
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::optional<int64_t> bos, eos, unk, pad;
  std::optional<bool> add_bos, add_space_prefix;
  std::vector<std::string> merges;  ///< "a b" (gpt2)
  std::string pre;                  ///< tokenizer.ggml.pre (gpt2)
};

Result<int64_t> ReadInteger(Reader* r, int32_t type, const std::string& key) {
  switch (type) {
    case kU8: {
      MOEQ_ASSIGN_OR_RETURN(uint8_t v, r->Read<uint8_t>(key));
      return v;
    }
    case kI8: {
      MOEQ_ASSIGN_OR_RETURN(int8_t v, r->Read<int8_t>(key));
      return v;
    }
    case kU16: {
      MOEQ_ASSIGN_OR_RETURN(uint16_t v, r->Read<uint16_t>(key));
      return v;
    }
    case kI16: {
      MOEQ_ASSIGN_OR_RETURN(int16_t v, r->Read<int16_t>(key));
      return v;
    }
    case kU32: {
      MOEQ_ASSIGN_OR_RETURN(uint32_t v, r->Read<uint32_t>(key));
      return v;
    }
    case kI32: {
      MOEQ_ASSIGN_OR_RETURN(int32_t v, r->Read<int32_t>(key));
      return v;
    }
    case kU64: {
      MOEQ_ASSIGN_OR_RETURN(uint64_t v, r->Read<uint64_t>(key));
      return static_cast<int64_t>(std::min<uint64_t>(v, uint64_t{1} << 62));
    }
    case kI64: {
      MOEQ_ASSIGN_OR_RETURN(int64_t v, r->Read<int64_t>(key));
      return v;
    }
    default:
      return Status::Corruption(key + ": expected an integer, got GGUF type " +
                                std::to_string(type));
  }
}

Status SkipValue(Reader* r, int32_t type, const std::string& key) {
  if (type == kString) return r->ReadString(key).status();
  if (type == kArray) {
    MOEQ_ASSIGN_OR_RETURN(const int32_t elem, r->Read<int32_t>(key));
    MOEQ_ASSIGN_OR_RETURN(const uint64_t count, r->Read<uint64_t>(key));
    MOEQ_RETURN_IF_ERROR(r->CheckCount(count, key));
    if (elem == kString || elem == kArray) {
      for (uint64_t i = 0; i < count; ++i) MOEQ_RETURN_IF_ERROR(SkipValue(r, elem, key));
      return Status::Ok();
    }
    const size_t size = ScalarSize(elem);
    if (size == 0)
      return Status::Corruption(key + ": unknown GGUF array element type " + std::to_string(elem));
    return r->Skip(count * size, key);
  }
  const size_t size = ScalarSize(type);
  if (size == 0)
    return Status::Corruption(key + ": unknown GGUF value type " + std::to_string(type));
  return r->Skip(size, key);
}

Status ReadKv(Reader* r, const std::string& path, GgufVocab* v) {
  MOEQ_ASSIGN_OR_RETURN(const std::string key, r->ReadString("a key"));
  MOEQ_ASSIGN_OR_RETURN(const int32_t type, r->Read<int32_t>(key));
  const std::string where = path + ": " + key;
  auto expect_array_of = [&](int32_t elem_type) -> Result<uint64_t> {
    if (type != kArray) return Status::Corruption(where + ": expected an array");
    MOEQ_ASSIGN_OR_RETURN(const int32_t elem, r->Read<int32_t>(key));
    if (elem != elem_type) {
      return Status::Corruption(where + ": expected array elements of GGUF type " +
                                std::to_string(elem_type) + ", got " + std::to_string(elem));
    }
    MOEQ_ASSIGN_OR_RETURN(const uint64_t count, r->Read<uint64_t>(key));
    MOEQ_RETURN_IF_ERROR(r->CheckCount(count, key));
    return count;
  };
  if (key == "tokenizer.ggml.model") {
    if (type != kString) return Status::Corruption(where + ": expected a string");
    MOEQ_ASSIGN_OR_RETURN(v->model, r->ReadString(key));
  } else if (key == "tokenizer.ggml.tokens") {
    MOEQ_ASSIGN_OR_RETURN(const uint64_t count, expect_array_of(kString));
    v->tokens.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      MOEQ_ASSIGN_OR_RETURN(std::string t, r->ReadString(key + "[" + std::to_string(i) + "]"));
      v->tokens.push_back(std::move(t));
    }
  } else if (key == "tokenizer.ggml.merges") {
    MOEQ_ASSIGN_OR_RETURN(const uint64_t count, expect_array_of(kString));
    v->merges.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      MOEQ_ASSIGN_OR_RETURN(std::string t, r->ReadString(key + "[" + std::to_string(i) + "]"));
      v->merges.push_back(std::move(t));
    }
  } else if (key == "tokenizer.ggml.pre") {
    if (type != kString) return Status::Corruption(where + ": expected a string");
    MOEQ_ASSIGN_OR_RETURN(v->pre, r->ReadString(key));
  } else if (key == "tokenizer.ggml.scores") {
    MOEQ_ASSIGN_OR_RETURN(const uint64_t count, expect_array_of(kF32));
    v->scores.resize(count);
    for (uint64_t i = 0; i < count; ++i) {
      MOEQ_ASSIGN_OR_RETURN(v->scores[i], r->Read<float>(key));
    }
  } else if (key == "tokenizer.ggml.token_type") {
    MOEQ_ASSIGN_OR_RETURN(const uint64_t count, expect_array_of(kI32));
    v->types.resize(count);
    for (uint64_t i = 0; i < count; ++i) {
      MOEQ_ASSIGN_OR_RETURN(v->types[i], r->Read<int32_t>(key));
    }
  } else if (key == "tokenizer.ggml.bos_token_id") {
    MOEQ_ASSIGN_OR_RETURN(v->bos, ReadInteger(r, type, where));
  } else if (key == "tokenizer.ggml.eos_token_id") {
    MOEQ_ASSIGN_OR_RETURN(v->eos, ReadInteger(r, type, where));
  } else if (key == "tokenizer.ggml.unknown_token_id") {
    MOEQ_ASSIGN_OR_RETURN(v->unk, ReadInteger(r, type, where));
  } else if (key == "tokenizer.ggml.padding_token_id") {
    MOEQ_ASSIGN_OR_RETURN(v->pad, ReadInteger(r, type, where));
  } else if (key == "tokenizer.ggml.add_bos_token" || key == "tokenizer.ggml.add_space_prefix") {
    if (type != kBool) return Status::Corruption(where + ": expected a bool");
    MOEQ_ASSIGN_OR_RETURN(const uint8_t b, r->Read<uint8_t>(key));
    (key == "tokenizer.ggml.add_bos_token" ? v->add_bos : v->add_space_prefix) = b != 0;
  } else {
    MOEQ_RETURN_IF_ERROR(SkipValue(r, type, where));
  }
  return Status::Ok();
}

/// The first `limit` bytes of a file (all of it when shorter).
Result<std::string> ReadPrefix(const std::string& path, uint64_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Io(path + ": cannot open");
  std::string data(static_cast<size_t>(limit), '\0');
  in.read(data.data(), static_cast<std::streamsize>(limit));
  data.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return Status::Io(path + ": read failed");
  return data;
}

/// The pre-tokenizer split regex llama.cpp uses for a "gpt2" vocabulary's pre name (the names
/// moeq's GGUF writer emits); "" = GPT-2's own ByteLevel regex.
std::string PreRegex(const std::string& pre) {
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
    return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
           "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
           "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  }
  if (pre == "llama-bpe" || pre == "llama3") {
    return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
           "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
           "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  }
  return "";
}

/// A byte-level BPE ("gpt2") vocabulary as tokenizer.json: CONTROL tokens become special
/// added tokens, USER_DEFINED ones plain added tokens, UNUSED ([PAD<i>]) ones are dropped.
Result<std::unique_ptr<TokenizerImpl>> BuildGpt2(GgufVocab& v, const std::string& path) {
  using nlohmann::json;
  json vocab = json::object();
  json added = json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t type = v.types.empty() ? 1 : v.types[i];
    if (type == 5) continue;  // UNUSED
    if (type == kTokenControl || type == kTokenUserDefined) {
      added.push_back({{"id", i},
                       {"content", v.tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == kTokenControl}});
      continue;
    }
    vocab[v.tokens[i]] = i;
  }
  const std::string regex = PreRegex(v.pre);
  json pre;
  if (regex.empty()) {
    pre = {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", true}};
  } else {
    pre = {{"type", "Sequence"},
           {"pretokenizers", json::array({{{"type", "Split"},
                                           {"pattern", {{"Regex", regex}}},
                                           {"behavior", "Isolated"},
                                           {"invert", false}},
                                          {{"type", "ByteLevel"},
                                           {"add_prefix_space", false},
                                           {"trim_offsets", false},
                                           {"use_regex", false}}})}};
  }
  json tok = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", v.pre == "qwen2" ? json{{"type", "NFC"}} : json(nullptr)},
      {"pre_tokenizer", pre},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", false},
        {"use_regex", false}}},
      {"model",
       {{"type", "BPE"}, {"byte_fallback", false}, {"vocab", vocab}, {"merges", v.merges}}}};
  return BuildFromJson(tok, path + " (tokenizer.ggml.*)");
}

}  // namespace

Result<std::unique_ptr<TokenizerImpl>> LoadGgufVocab(const std::string& path) {
  // The KV section is at the front; a model file's tensors are not needed. Read a prefix and
  // fall back to the whole file only when the metadata is longer than that.
  constexpr uint64_t kPrefix = uint64_t{64} << 20;
  MOEQ_ASSIGN_OR_RETURN(std::string data, ReadPrefix(path, kPrefix));
  if (data.size() == kPrefix) {
    GgufVocab probe;
    Reader pr(data, path);
    bool fits = true;
    auto header = [&]() -> Status {
      MOEQ_RETURN_IF_ERROR(pr.Skip(16, "the header").WithContext(path));
      MOEQ_ASSIGN_OR_RETURN(const uint64_t n_kv, pr.Read<uint64_t>("n_kv"));
      for (uint64_t i = 0; i < n_kv; ++i) MOEQ_RETURN_IF_ERROR(ReadKv(&pr, path, &probe));
      return Status::Ok();
    };
    if (!header().ok()) fits = false;
    if (!fits) {
      MOEQ_ASSIGN_OR_RETURN(data, ReadFile(path));
    }
  }
  Reader r(data, path);
  MOEQ_ASSIGN_OR_RETURN(const uint32_t magic, r.Read<uint32_t>("the magic"));
  if (magic != 0x46554747u) return Status::Corruption(path + ": not a GGUF file (bad magic)");
  MOEQ_ASSIGN_OR_RETURN(const uint32_t version, r.Read<uint32_t>("the version"));
  if (version < 2 || version > 3) {
    return Status::Unsupported(path + ": GGUF version " + std::to_string(version) +
                               " (2 or 3 expected)");
  }
  MOEQ_ASSIGN_OR_RETURN(const uint64_t n_tensors, r.Read<uint64_t>("n_tensors"));
  MOEQ_ASSIGN_OR_RETURN(const uint64_t n_kv, r.Read<uint64_t>("n_kv"));
  (void)n_tensors;
  MOEQ_RETURN_IF_ERROR(r.CheckCount(n_kv, "n_kv"));
  GgufVocab v;
  for (uint64_t i = 0; i < n_kv; ++i) MOEQ_RETURN_IF_ERROR(ReadKv(&r, path, &v));

  if (v.model != "llama" && v.model != "gpt2") {
    return Status::Unsupported(path + ": tokenizer.ggml.model \"" + v.model +
                               "\" is not supported (only the SentencePiece \"llama\" and "
                               "byte-level BPE \"gpt2\" vocabularies)");
  }
  const size_t n = v.tokens.size();
  if (n == 0) return Status::Corruption(path + ": tokenizer.ggml.tokens: missing or empty");
  if (v.scores.empty()) v.scores.assign(n, 0.0f);
  if (v.scores.size() != n)
    return Status::Corruption(path + ": tokenizer.ggml.scores: length differs from tokens");
  if (!v.types.empty() && v.types.size() != n) {
    return Status::Corruption(path + ": tokenizer.ggml.token_type: length differs from tokens");
  }
  auto id_of = [&](const std::optional<int64_t>& id,
                   const char* key) -> Result<std::optional<int32_t>> {
    if (!id) return std::optional<int32_t>();
    if (*id < 0 || static_cast<uint64_t>(*id) >= n) {
      return Status::Corruption(path + ": tokenizer.ggml." + key + ": id " + std::to_string(*id) +
                                " is outside the vocabulary");
    }
    return std::optional<int32_t>(static_cast<int32_t>(*id));
  };

  if (v.model == "gpt2") {
    MOEQ_ASSIGN_OR_RETURN(auto impl, BuildGpt2(v, path));
    impl->origin = path;
    MOEQ_ASSIGN_OR_RETURN(impl->bos_id, id_of(v.bos, "bos_token_id"));
    MOEQ_ASSIGN_OR_RETURN(impl->eos_id, id_of(v.eos, "eos_token_id"));
    MOEQ_ASSIGN_OR_RETURN(impl->unk_id, id_of(v.unk, "unknown_token_id"));
    MOEQ_ASSIGN_OR_RETURN(impl->pad_id, id_of(v.pad, "padding_token_id"));
    impl->add_bos_token = v.add_bos.value_or(false);
    return impl;
  }
  auto impl = std::make_unique<TokenizerImpl>();
  impl->origin = path;
  MOEQ_ASSIGN_OR_RETURN(impl->bos_id, id_of(v.bos, "bos_token_id"));
  MOEQ_ASSIGN_OR_RETURN(impl->eos_id, id_of(v.eos, "eos_token_id"));
  MOEQ_ASSIGN_OR_RETURN(impl->unk_id, id_of(v.unk, "unknown_token_id"));
  MOEQ_ASSIGN_OR_RETURN(impl->pad_id, id_of(v.pad, "padding_token_id"));
  impl->add_bos_token = v.add_bos.value_or(true);
  const bool add_space_prefix = v.add_space_prefix.value_or(true);
  for (size_t i = 0; i < v.types.size(); ++i) {
    const int32_t t = v.types[i];
    if (t != kTokenControl && t != kTokenUnknown && t != kTokenUserDefined) continue;
    if (v.tokens[i].empty()) continue;
    AddedToken a;
    a.id = static_cast<int32_t>(i);
    a.content = v.tokens[i];
    a.special = t != kTokenUserDefined;
    impl->added.push_back(std::move(a));
  }
  MOEQ_ASSIGN_OR_RETURN(impl->model, BpeModel::FromScores(std::move(v.tokens), std::move(v.scores),
                                                          impl->unk_id, path + ": tokenizer.ggml"));
  MOEQ_ASSIGN_OR_RETURN(impl->pre_tokenizer, PreTokenizer::LlamaSpm(add_space_prefix));
  MOEQ_ASSIGN_OR_RETURN(impl->decoder, Decoder::LlamaSpm(add_space_prefix));
  MOEQ_RETURN_IF_ERROR(impl->Finish());
  return impl;
}

}  // namespace moeq::tokenizer_internal
