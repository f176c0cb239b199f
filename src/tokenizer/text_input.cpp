// Token streams for commands: tokenize a text file or read pre-tokenized ids.
#include "moeq/tokenizer/text_input.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "moeq/base/file_util.h"
#include "moeq/tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace moeq {

Result<LoadedTokens> LoadTokens(const TextInput& input, const std::string& model_dir) {
  LoadedTokens out;
  if (input.text_file.empty() == input.tokens_file.empty()) {
    return Status::InvalidArgument("give exactly one of --text FILE and --tokens FILE");
  }
  // A GGUF model carries its tokenizer in its metadata (tokenizer.ggml.*).
  const bool gguf = model_dir.size() > 5 &&
                    model_dir.compare(model_dir.size() - 5, 5, ".gguf") == 0 &&
                    std::filesystem::is_regular_file(model_dir);
  const std::string tok_path = gguf ? model_dir : model_dir + "/tokenizer.json";
  if (std::filesystem::exists(tok_path)) {
    auto tok = Tokenizer::Load(tok_path);
    if (tok.ok()) out.bos_id = (*tok)->bos_id();
    if (!input.text_file.empty()) {
      if (!tok.ok()) return tok.status();
      MOEQ_ASSIGN_OR_RETURN(std::string text, ReadFile(input.text_file));
      // The text's fault, not the tokenizer's: name the text file.
      if (const size_t bad = tokenizer_internal::FindInvalidUtf8(text);
          bad != tokenizer_internal::kNoError) {
        return Status::Corruption(input.text_file + ": not valid UTF-8 at byte " +
                                  std::to_string(bad) + " (--text takes UTF-8 text)");
      }
      const auto t0 = std::chrono::steady_clock::now();
      MOEQ_ASSIGN_OR_RETURN(out.ids, (*tok)->Encode(text));
      spdlog::info("tokenized {} ({} bytes) into {} tokens in {:.2f} s", input.text_file,
                   text.size(), out.ids.size(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      out.source = input.text_file;
      out.sha256 = Sha256Hex(std::string_view(text));
      return out;
    }
  } else if (!input.text_file.empty()) {
    return Status::NotFound(model_dir + ": no tokenizer.json to tokenize " + input.text_file +
                            " (use --tokens)");
  }
  MOEQ_ASSIGN_OR_RETURN(out.ids, LoadTokenIds(input.tokens_file));
  out.source = input.tokens_file;
  MOEQ_ASSIGN_OR_RETURN(out.sha256, Sha256File(input.tokens_file));
  return out;
}

}  // namespace moeq
