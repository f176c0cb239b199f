// Tokenizer: Hugging Face tokenizer.json BPE (byte-level GPT-2/Qwen style and SentencePiece-style
// Llama/Mixtral with byte fallback), llama.cpp vocab-only GGUF (SentencePiece, merges by score),
// and readers for pre-tokenized id files (see docs/tokens-format.md).
//
// The regex engine (PCRE2) and Unicode normalization (ICU) are private to src/tokenizer/.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"

namespace moeq {

/// How Tokenizer::Encode treats its input.
struct EncodeOptions {
  /// Split out special added tokens ("<|im_end|>") and emit their ids. When false, special tokens
  /// are encoded as plain text; non-special added tokens are always split out.
  /// Default: true.
  bool parse_special = true;
  /// Put the BOS id in front. Encode fails when the tokenizer has no BOS token. Default: false.
  bool add_bos = false;
};

/// How Tokenizer::Decode treats its input.
struct DecodeOptions {
  /// Leave out special added tokens. Default: false.
  bool skip_special = false;
};

/// A token matched on the input text before the model runs (tokenizer.json "added_tokens").
struct AddedToken {
  int32_t id = -1;
  std::string content;
  /// Special tokens (control tokens) are only split out when EncodeOptions::parse_special is set.
  bool special = false;
  /// Whitespace on the left / right of a match is absorbed into the token.
  bool lstrip = false;
  bool rstrip = false;
  /// Only matched when not inside a word.
  bool single_word = false;
  /// Matched on the normalized text instead of the raw text.
  bool normalized = false;
};

namespace tokenizer_internal {
struct TokenizerImpl;
}  // namespace tokenizer_internal

/// A loaded tokenizer. Immutable after loading; Encode and Decode may be called from several
/// threads at once.
class Tokenizer {
 public:
  /// Loads a Hugging Face tokenizer.json, or a llama.cpp vocab-only GGUF when `path` ends in
  /// ".gguf" (SentencePiece "llama" vocabularies only). For tokenizer.json, a tokenizer_config.json
  /// in the same directory, when present, supplies the BOS/EOS/UNK/PAD tokens and add_bos_token.
  static Result<std::unique_ptr<Tokenizer>> Load(const std::string& path);
  /// Parses tokenizer.json text; `origin` names it in error messages. No tokenizer_config.json is
  /// read.
  static Result<std::unique_ptr<Tokenizer>> FromJsonText(
      std::string_view json_text, std::string_view origin = "tokenizer.json");

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  /// Token ids of `text`. Fails with InvalidArgument when `text` is not valid UTF-8 (the message
  /// gives the byte offset) or when add_bos is asked for and there is no BOS token.
  Result<std::vector<int32_t>> Encode(std::string_view text,
                                      const EncodeOptions& options = {}) const;
  /// Text of `ids` through the tokenizer's decoder. Ids that have no token are skipped. The result
  /// holds the exact decoded bytes: a slice of ids that cuts a multi-byte character yields
  /// incomplete UTF-8 (no U+FFFD replacement is made).
  std::string Decode(std::span<const int32_t> ids, const DecodeOptions& options = {}) const;

  /// One more than the largest id of the model vocabulary and the added tokens.
  int32_t vocab_size() const;
  /// The token string of `id` as stored in the vocabulary (byte-level or "▁" form); empty when
  /// `id` has no token.
  std::string_view TokenText(int32_t id) const;
  /// The id of a token string (model vocabulary or added token).
  std::optional<int32_t> TokenId(std::string_view token) const;
  /// True when `id` is a special added token.
  bool IsSpecial(int32_t id) const;
  /// Added tokens, by increasing id.
  const std::vector<AddedToken>& added_tokens() const;

  /// Ids from tokenizer_config.json (or the GGUF metadata), when known.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> unk_id() const;
  std::optional<int32_t> pad_id() const;
  /// tokenizer_config.json "add_bos_token" (GGUF tokenizer.ggml.add_bos_token); false when absent.
  bool add_bos_token() const;
  /// The file (or origin) this tokenizer was loaded from.
  const std::string& origin() const;

 private:
  explicit Tokenizer(std::unique_ptr<tokenizer_internal::TokenizerImpl> impl);
  std::unique_ptr<tokenizer_internal::TokenizerImpl> impl_;
};

/// Reads pre-tokenized ids (docs/tokens-format.md): a JSON list of ints or {"ids": [...]}, the
/// moeq binary format (magic "MQID"), raw little-endian .u16/.u32 arrays, or a 1-D .npy array of
/// integers. Errors name the file and the position of a bad entry.
Result<std::vector<int32_t>> LoadTokenIds(const std::string& path);

/// Writes `ids` in the moeq binary format (2 bytes per id when all ids fit in uint16, else 4),
/// atomically. Fails on negative ids.
Status WriteTokenIds(const std::string& path, std::span<const int32_t> ids);

}  // namespace moeq
