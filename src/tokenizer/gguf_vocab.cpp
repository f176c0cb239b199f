// llama.cpp GGUF → tokenizer: SentencePiece (tokenizer.ggml.model "llama": tokens, scores and
// token types) or byte-level BPE ("gpt2": tokens, merges, token types and the pre-tokenizer
// name, rebuilt as the tokenizer.json moeq's GGUF writer read them) from the KV section
// (docs/formats.md §3.1), read with the formats module's GGUF reader (metadata only: of a model
// file only the header is read).
#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "moeq/formats/gguf.h"
#include "tokenizer/tokenizer_impl.h"

namespace moeq::tokenizer_internal {
namespace {

using TT = GgufTokenType;
using VT = GgufValueType;

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

bool IsInteger(VT t) {
  switch (t) {
    case VT::kU8:
    case VT::kI8:
    case VT::kU16:
    case VT::kI16:
    case VT::kU32:
    case VT::kI32:
    case VT::kU64:
    case VT::kI64:
      return true;
    default:
      return false;
  }
}

/// Typed access to the tokenizer.ggml.* metadata of an opened GGUF file, with messages naming
/// the file and the key.
class VocabMeta {
 public:
  explicit VocabMeta(const GgufFile& f) : f_(f) {}

  std::string Where(std::string_view key) const { return f_.path() + ": " + std::string(key); }

  Result<std::optional<std::string>> String(std::string_view key) const {
    const GgufValue* v = f_.Find(key);
    if (v == nullptr) return std::optional<std::string>();
    if (v->type != VT::kString) return Status::Corruption(Where(key) + ": expected a string");
    return std::optional<std::string>(v->value.get<std::string>());
  }
  Result<std::optional<bool>> Bool(std::string_view key) const {
    const GgufValue* v = f_.Find(key);
    if (v == nullptr) return std::optional<bool>();
    if (v->type != VT::kBool) return Status::Corruption(Where(key) + ": expected a bool");
    return std::optional<bool>(v->value.get<bool>());
  }
  Result<std::optional<int64_t>> Integer(std::string_view key) const {
    const GgufValue* v = f_.Find(key);
    if (v == nullptr) return std::optional<int64_t>();
    if (!IsInteger(v->type)) {
      return Status::Corruption(Where(key) + ": expected an integer, got GGUF type " +
                                std::to_string(static_cast<int32_t>(v->type)));
    }
    if (v->type == VT::kU64) {
      // Ids beyond any vocabulary are reported by the caller; keep them positive.
      return std::optional<int64_t>(
          static_cast<int64_t>(std::min<uint64_t>(v->value.get<uint64_t>(), uint64_t{1} << 62)));
    }
    return std::optional<int64_t>(v->value.get<int64_t>());
  }
  /// Appends the elements of the array `key` of `elem` values (nothing when absent).
  template <class T>
  Status ArrayInto(std::string_view key, VT elem, std::vector<T>* out) const {
    const GgufValue* v = f_.Find(key);
    if (v == nullptr) return Status::Ok();
    if (v->type != VT::kArray) return Status::Corruption(Where(key) + ": expected an array");
    if (v->elem_type != elem) {
      return Status::Corruption(Where(key) + ": expected array elements of GGUF type " +
                                std::to_string(static_cast<int32_t>(elem)) + ", got " +
                                std::to_string(static_cast<int32_t>(v->elem_type)));
    }
    out->reserve(v->value.size());
    for (const auto& e : v->value) out->push_back(e.get<T>());
    return Status::Ok();
  }

 private:
  const GgufFile& f_;
};

/// The tokenizer.ggml.* keys of `f`; other keys are ignored.
Result<GgufVocab> ReadVocab(const GgufFile& f) {
  const VocabMeta m(f);
  GgufVocab v;
  MOEQ_ASSIGN_OR_RETURN(auto model, m.String("tokenizer.ggml.model"));
  v.model = model.value_or("");
  MOEQ_ASSIGN_OR_RETURN(auto pre, m.String("tokenizer.ggml.pre"));
  v.pre = pre.value_or("");
  MOEQ_RETURN_IF_ERROR(m.ArrayInto("tokenizer.ggml.tokens", VT::kString, &v.tokens));
  MOEQ_RETURN_IF_ERROR(m.ArrayInto("tokenizer.ggml.merges", VT::kString, &v.merges));
  MOEQ_RETURN_IF_ERROR(m.ArrayInto("tokenizer.ggml.scores", VT::kF32, &v.scores));
  MOEQ_RETURN_IF_ERROR(m.ArrayInto("tokenizer.ggml.token_type", VT::kI32, &v.types));
  MOEQ_ASSIGN_OR_RETURN(v.bos, m.Integer("tokenizer.ggml.bos_token_id"));
  MOEQ_ASSIGN_OR_RETURN(v.eos, m.Integer("tokenizer.ggml.eos_token_id"));
  MOEQ_ASSIGN_OR_RETURN(v.unk, m.Integer("tokenizer.ggml.unknown_token_id"));
  MOEQ_ASSIGN_OR_RETURN(v.pad, m.Integer("tokenizer.ggml.padding_token_id"));
  MOEQ_ASSIGN_OR_RETURN(v.add_bos, m.Bool("tokenizer.ggml.add_bos_token"));
  MOEQ_ASSIGN_OR_RETURN(v.add_space_prefix, m.Bool("tokenizer.ggml.add_space_prefix"));
  return v;
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
    if (type == static_cast<int32_t>(TT::kUnused)) continue;  // [PAD<i>]
    if (type == static_cast<int32_t>(TT::kControl) ||
        type == static_cast<int32_t>(TT::kUserDefined)) {
      added.push_back({{"id", i},
                       {"content", v.tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == static_cast<int32_t>(TT::kControl)}});
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
  // The KV section is at the front; a model file's tensor table and data are never read.
  MOEQ_ASSIGN_OR_RETURN(auto file, GgufFile::Open(path, {.metadata_only = true, .min_version = 2}));
  MOEQ_ASSIGN_OR_RETURN(GgufVocab v, ReadVocab(*file));
  file.reset();

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
    const auto t = static_cast<TT>(v.types[i]);
    if (t != TT::kControl && t != TT::kUnknown && t != TT::kUserDefined) continue;
    if (v.tokens[i].empty()) continue;
    AddedToken a;
    a.id = static_cast<int32_t>(i);
    a.content = v.tokens[i];
    a.special = t != TT::kUserDefined;
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
