// Loading the token stream a command runs on (text + the model's tokenizer, or token ids).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moeq/base/status.h"

namespace moeq {

/// Token input shared by the tools that run the model.
struct TextInput {
  /// A UTF-8 text file, tokenized whole with MODEL_DIR/tokenizer.json.
  std::string text_file;
  /// Or pre-tokenized ids (docs/tokens-format.md).
  std::string tokens_file;
};

struct LoadedTokens {
  std::vector<int32_t> ids;
  std::string source;  ///< the file read
  std::string sha256;  ///< of that file's bytes
  std::optional<int32_t> bos_id;
};

/// Tokenizes `input.text_file` with `model_dir`/tokenizer.json, or reads `input.tokens_file`.
Result<LoadedTokens> LoadTokens(const TextInput& input, const std::string& model_dir);

}  // namespace moeq
