// The state behind moeq::Tokenizer, shared by the tokenizer.json and GGUF loaders.
#pragma once

#include <array>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/tokenizer/tokenizer.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/pipeline.h"

namespace moeq::tokenizer_internal {

/// A part of the input: either text to run through the pipeline or an added token.
struct Fragment {
  size_t begin = 0;
  size_t end = 0;
  int32_t token_id = -1;  ///< >= 0 for an added token
};

struct TokenizerImpl {
  std::string origin;
  std::unique_ptr<BpeModel> model;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Decoder decoder;
  std::vector<AddedToken> added;  ///< sorted by id
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
  bool add_bos_token = false;

  // Built by Finish().
  int32_t vocab_size = 0;
  std::unordered_map<int32_t, size_t> added_by_id;           ///< id → index into `added`
  std::unordered_map<std::string, int32_t> added_by_text;    ///< content → id
  std::array<std::vector<size_t>, 256> added_by_first_byte;  ///< indices, longest content first
  bool has_normalized_added = false;

  /// Checks the added tokens and builds the lookup tables; call once after filling the fields.
  Status Finish();

  std::optional<int32_t> TokenId(std::string_view token) const;
  /// Splits `text` at added tokens with the given `normalized` flag (special ones only when
  /// `parse_special`), leftmost-longest, honouring lstrip/rstrip/single_word.
  void SplitAddedTokens(std::string_view text, bool normalized, bool parse_special,
                        std::vector<Fragment>* out) const;
  /// Pre-tokenizes one normalized text segment and appends the model's ids.
  Status EncodeSegment(std::string_view text, bool at_start, bool after_added,
                       std::vector<int32_t>* ids) const;
  Result<std::vector<int32_t>> Encode(std::string_view text, const EncodeOptions& options) const;
  std::string Decode(std::span<const int32_t> ids, const DecodeOptions& options) const;
};

/// Builds a tokenizer from parsed tokenizer.json; `origin` names the file in errors.
Result<std::unique_ptr<TokenizerImpl>> BuildFromJson(const nlohmann::json& j,
                                                     const std::string& origin);
/// Reads BOS/EOS/UNK/PAD and add_bos_token from a parsed tokenizer_config.json.
Status ApplyTokenizerConfig(const nlohmann::json& config, const std::string& where,
                            TokenizerImpl* impl);
/// Builds a tokenizer from a llama.cpp vocab-only GGUF (tokenizer.ggml.model "llama").
Result<std::unique_ptr<TokenizerImpl>> LoadGgufVocab(const std::string& path);

}  // namespace moeq::tokenizer_internal
