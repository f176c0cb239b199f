// A compiled PCRE2 pattern (UTF + UCP, JIT when available) for pre-tokenizer and normalizer splits.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moeq/base/status.h"

struct pcre2_real_code_8;

namespace moeq::tokenizer_internal {

/// A byte range [begin, end) of a subject string.
using Span = std::pair<size_t, size_t>;

class Regex {
 public:
  /// Compiles `pattern` (PCRE2 syntax, which accepts the Oniguruma-style patterns of
  /// tokenizer.json: \p{L}, (?i:...), (?!\S)); `literal` matches the text verbatim.
  static Result<std::unique_ptr<Regex>> Compile(std::string_view pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  /// Appends the spans of the successive non-overlapping, non-empty matches in `text` (valid
  /// UTF-8).
  Status FindAll(std::string_view text, std::vector<Span>* out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  Regex(pcre2_real_code_8* code, std::string pattern) : code_(code), pattern_(std::move(pattern)) {}
  pcre2_real_code_8* code_;
  std::string pattern_;
};

}  // namespace moeq::tokenizer_internal
