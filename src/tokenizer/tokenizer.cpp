// moeq::Tokenizer: loading tokenizer.json (+ tokenizer_config.json), added-token splitting, and
// the encode pipeline normalizer → pre-tokenizer → BPE model, and decoding.
#include "moeq/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode_text.h"

namespace moeq {
namespace tokenizer_internal {
namespace {

using nlohmann::json;

/// The code point that ends just before byte `pos` (text valid UTF-8, pos > 0), and its start.
uint32_t PreviousCodePoint(std::string_view text, size_t pos, size_t* start) {
  size_t b = pos - 1;
  while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  *start = b;
  size_t probe = b;
  return DecodeUtf8(text, &probe);
}

Result<AddedToken> ParseAddedToken(const json& j, const std::string& where) {
  if (!j.is_object()) return Status::Corruption(where + ": expected an object");
  AddedToken t;
  const auto id = j.find("id");
  if (id == j.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
      id->get<int64_t>() >= kMaxVocabSize) {
    return Status::Corruption(where + ".id: expected an integer in [0, " +
                              std::to_string(kMaxVocabSize) + ")");
  }
  t.id = static_cast<int32_t>(id->get<int64_t>());
  MOEQ_ASSIGN_OR_RETURN(t.content, GetString(j, "content", "", where));
  if (t.content.empty()) return Status::Corruption(where + ".content: missing or empty");
  if (FindInvalidUtf8(t.content) != kNoError)
    return Status::Corruption(where + ".content: not valid UTF-8");
  MOEQ_ASSIGN_OR_RETURN(t.special, GetBool(j, "special", false, where));
  MOEQ_ASSIGN_OR_RETURN(t.lstrip, GetBool(j, "lstrip", false, where));
  MOEQ_ASSIGN_OR_RETURN(t.rstrip, GetBool(j, "rstrip", false, where));
  MOEQ_ASSIGN_OR_RETURN(t.single_word, GetBool(j, "single_word", false, where));
  MOEQ_ASSIGN_OR_RETURN(t.normalized, GetBool(j, "normalized", !t.special, where));
  return t;
}

/// A token named in tokenizer_config.json: a string, {"content": ...}, or null.
Result<std::optional<std::string>> ConfigTokenText(const json& config, const char* key,
                                                   const std::string& where) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return std::optional<std::string>((*it)["content"].get<std::string>());
  }
  return Status::Corruption(where + "." + key +
                            ": expected a string, {\"content\": ...} or null, got " +
                            JsonExcerpt(*it));
}

}  // namespace

Status TokenizerImpl::Finish() {
  std::sort(added.begin(), added.end(),
            [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  vocab_size = static_cast<int32_t>(model->tokens().size());
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& t = added[i];
    if (!added_by_id.emplace(t.id, i).second) {
      return Status::Corruption(origin + ": added_tokens: id " + std::to_string(t.id) +
                                " appears twice");
    }
    if (!added_by_text.emplace(t.content, t.id).second) {
      return Status::Corruption(origin + ": added_tokens: \"" + t.content + "\" appears twice");
    }
    added_by_first_byte[static_cast<unsigned char>(t.content[0])].push_back(i);
    has_normalized_added = has_normalized_added || t.normalized;
    vocab_size = std::max(vocab_size, t.id + 1);
  }
  for (auto& list : added_by_first_byte) {
    std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
      return added[a].content.size() > added[b].content.size();
    });
  }
  if (!unk_id) unk_id = model->unk_id();
  return Status::Ok();
}

std::optional<int32_t> TokenizerImpl::TokenId(std::string_view token) const {
  const auto it = added_by_text.find(std::string(token));
  if (it != added_by_text.end()) return it->second;
  return model->Find(token);
}

void TokenizerImpl::SplitAddedTokens(std::string_view text, bool normalized, bool parse_special,
                                     std::vector<Fragment>* out) const {
  const size_t n = text.size();
  size_t segment = 0;
  size_t pos = 0;
  while (pos < n) {
    const AddedToken* found = nullptr;
    for (size_t index : added_by_first_byte[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& t = added[index];
      if (t.normalized != normalized || (t.special && !parse_special)) continue;
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        size_t unused = 0;
        const size_t end = pos + t.content.size();
        size_t probe = end;
        if (pos > 0 && IsWordChar(PreviousCodePoint(text, pos, &unused))) continue;
        if (end < n && IsWordChar(DecodeUtf8(text, &probe))) continue;
      }
      found = &t;
      break;
    }
    if (found == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    size_t end = pos + found->content.size();
    if (found->lstrip) {
      size_t start = 0;
      while (begin > segment && IsWhitespace(PreviousCodePoint(text, begin, &start))) begin = start;
    }
    if (found->rstrip) {
      while (end < n) {
        size_t next = end;
        if (!IsWhitespace(DecodeUtf8(text, &next))) break;
        end = next;
      }
    }
    if (begin > segment) out->push_back({segment, begin, -1});
    out->push_back({begin, end, found->id});
    segment = pos = end;
  }
  if (segment < n) out->push_back({segment, n, -1});
}

Status TokenizerImpl::EncodeSegment(std::string_view text, bool at_start, bool after_added,
                                    std::vector<int32_t>* ids) const {
  return pre_tokenizer.Apply(Piece{text, at_start, after_added},
                             [&](std::string_view piece) { model->Tokenize(piece, ids); });
}

Result<std::vector<int32_t>> TokenizerImpl::Encode(std::string_view text,
                                                   const EncodeOptions& options) const {
  if (const size_t bad = FindInvalidUtf8(text); bad != kNoError) {
    return Status::InvalidArgument("input text is not valid UTF-8 at byte " + std::to_string(bad) +
                                   " (tokenizer " + origin + ")");
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  if (options.add_bos) {
    if (!bos_id)
      return Status::InvalidArgument(origin +
                                     ": add_bos was asked for but the tokenizer has no BOS token");
    ids.push_back(*bos_id);
  }
  std::vector<Fragment> fragments;
  SplitAddedTokens(text, /*normalized=*/false, options.parse_special, &fragments);
  bool after_added = false;
  std::vector<Fragment> inner;
  for (const Fragment& f : fragments) {
    if (f.token_id >= 0) {
      ids.push_back(f.token_id);
      after_added = true;
      continue;
    }
    const std::string_view raw = text.substr(f.begin, f.end - f.begin);
    std::string normalized_storage;
    std::string_view normalized = raw;
    if (!normalizer.empty()) {
      auto n = normalizer.Apply(raw);
      if (!n.ok()) return n.status().WithContext(origin + ": normalizer");
      normalized_storage = std::move(n).value();
      normalized = normalized_storage;
    }
    const bool at_start = f.begin == 0;
    if (!has_normalized_added) {
      MOEQ_RETURN_IF_ERROR(EncodeSegment(normalized, at_start, after_added, &ids));
    } else {
      inner.clear();
      SplitAddedTokens(normalized, /*normalized=*/true, options.parse_special, &inner);
      bool inner_after_added = after_added;
      for (const Fragment& g : inner) {
        if (g.token_id >= 0) {
          ids.push_back(g.token_id);
          inner_after_added = true;
          continue;
        }
        MOEQ_RETURN_IF_ERROR(EncodeSegment(normalized.substr(g.begin, g.end - g.begin),
                                           at_start && g.begin == 0, inner_after_added, &ids));
        inner_after_added = false;
      }
    }
    after_added = false;
  }
  return ids;
}

std::string TokenizerImpl::Decode(std::span<const int32_t> ids,
                                  const DecodeOptions& options) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  const auto& model_tokens = model->tokens();
  for (const int32_t id : ids) {
    const auto it = added_by_id.find(id);
    if (it != added_by_id.end()) {
      const AddedToken& t = added[it->second];
      if (!(options.skip_special && t.special)) tokens.push_back(t.content);
    } else if (id >= 0 && static_cast<size_t>(id) < model_tokens.size() &&
               !model_tokens[static_cast<size_t>(id)].empty()) {
      tokens.push_back(model_tokens[static_cast<size_t>(id)]);
    }
  }
  return decoder.Apply(std::move(tokens));
}

Result<std::unique_ptr<TokenizerImpl>> BuildFromJson(const json& j, const std::string& origin) {
  if (!j.is_object())
    return Status::Corruption(origin + ": expected a JSON object at the top level");
  auto impl = std::make_unique<TokenizerImpl>();
  impl->origin = origin;
  const auto model = j.find("model");
  if (model == j.end()) return Status::Corruption(origin + ": model: missing");
  MOEQ_ASSIGN_OR_RETURN(impl->model, BpeModel::FromJson(*model, origin + ": model"));
  const json null_json;
  auto member = [&](const char* key) -> const json& {
    const auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };
  MOEQ_ASSIGN_OR_RETURN(impl->normalizer,
                        Normalizer::FromJson(member("normalizer"), origin + ": normalizer"));
  MOEQ_ASSIGN_OR_RETURN(impl->pre_tokenizer, PreTokenizer::FromJson(member("pre_tokenizer"),
                                                                    origin + ": pre_tokenizer"));
  MOEQ_ASSIGN_OR_RETURN(impl->decoder, Decoder::FromJson(member("decoder"), origin + ": decoder"));
  const json& added = member("added_tokens");
  if (!added.is_null()) {
    if (!added.is_array()) return Status::Corruption(origin + ": added_tokens: expected an array");
    for (size_t i = 0; i < added.size(); ++i) {
      MOEQ_ASSIGN_OR_RETURN(AddedToken t, ParseAddedToken(added[i], origin + ": added_tokens[" +
                                                                        std::to_string(i) + "]"));
      impl->added.push_back(std::move(t));
    }
  }
  MOEQ_RETURN_IF_ERROR(impl->Finish());
  return impl;
}

Status ApplyTokenizerConfig(const json& config, const std::string& where, TokenizerImpl* impl) {
  if (!config.is_object()) return Status::Corruption(where + ": expected a JSON object");
  struct Field {
    const char* key;
    std::optional<int32_t>* id;
  };
  for (const Field& f : {Field{"bos_token", &impl->bos_id}, Field{"eos_token", &impl->eos_id},
                         Field{"unk_token", &impl->unk_id}, Field{"pad_token", &impl->pad_id}}) {
    MOEQ_ASSIGN_OR_RETURN(const std::optional<std::string> text,
                          ConfigTokenText(config, f.key, where));
    if (!text) continue;
    const auto id = impl->TokenId(*text);
    if (!id)
      return Status::Corruption(where + "." + f.key + ": \"" + *text +
                                "\" is not a token of the tokenizer");
    *f.id = *id;
  }
  MOEQ_ASSIGN_OR_RETURN(impl->add_bos_token, GetBool(config, "add_bos_token", false, where));
  return Status::Ok();
}

}  // namespace tokenizer_internal

using tokenizer_internal::TokenizerImpl;

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  std::unique_ptr<TokenizerImpl> impl;
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) {
    MOEQ_ASSIGN_OR_RETURN(impl, tokenizer_internal::LoadGgufVocab(path));
  } else {
    MOEQ_ASSIGN_OR_RETURN(const nlohmann::json j, ReadJsonFile(path));
    MOEQ_ASSIGN_OR_RETURN(impl, tokenizer_internal::BuildFromJson(j, path));
    const std::string config_path =
        (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
    std::error_code ec;
    if (std::filesystem::exists(config_path, ec)) {
      MOEQ_ASSIGN_OR_RETURN(const nlohmann::json config, ReadJsonFile(config_path));
      MOEQ_RETURN_IF_ERROR(
          tokenizer_internal::ApplyTokenizerConfig(config, config_path, impl.get()));
    }
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromJsonText(std::string_view json_text,
                                                           std::string_view origin) {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(json_text, origin));
  MOEQ_ASSIGN_OR_RETURN(auto impl, CatchJsonErrors(origin, [&] {
                          return tokenizer_internal::BuildFromJson(j, std::string(origin));
                        }));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Result<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                               const EncodeOptions& options) const {
  return impl_->Encode(text, options);
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, const DecodeOptions& options) const {
  return impl_->Decode(ids, options);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::string_view Tokenizer::TokenText(int32_t id) const {
  const auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
  const auto& tokens = impl_->model->tokens();
  if (id < 0 || static_cast<size_t>(id) >= tokens.size()) return {};
  return tokens[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  return impl_->TokenId(token);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
std::optional<int32_t> Tokenizer::unk_id() const { return impl_->unk_id; }
std::optional<int32_t> Tokenizer::pad_id() const { return impl_->pad_id; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos_token; }
const std::string& Tokenizer::origin() const { return impl_->origin; }

}  // namespace moeq
