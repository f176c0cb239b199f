// The text stages of a tokenizer.json around the model: normalizer, pre-tokenizer, decoder.
// Sequences are flattened into step lists at load time.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/status.h"
#include "tokenizer/regex.h"

namespace moeq::tokenizer_internal {

/// Deepest nesting of Sequence normalizers / pre-tokenizers / decoders accepted (real
/// tokenizers use 1-2 levels); deeper input fails fast with an error naming the JSON path.
inline constexpr int kMaxSequenceDepth = 16;

/// A piece of text flowing through the pre-tokenizer (a view into the caller's buffer).
struct Piece {
  std::string_view text;
  bool at_start = false;     ///< begins at offset 0 of the original input
  bool after_added = false;  ///< directly follows an added token
};

/// Receives the final pieces of the pre-tokenizer, in order.
using PieceSink = std::function<void(std::string_view)>;

/// A literal or regex pattern (tokenizer.json {"String": ...} / {"Regex": ...}).
struct Pattern {
  std::shared_ptr<const Regex> regex;
  /// Parses {"String": s} or {"Regex": r}.
  static Result<Pattern> FromJson(const nlohmann::json& j, const std::string& where);
  /// Replaces every match in `text` with `content`.
  Result<std::string> ReplaceAll(std::string_view text, std::string_view content) const;
};

class Normalizer {
 public:
  /// Parses tokenizer.json "normalizer" (null gives the identity). Supported: NFC, NFD, NFKC, NFKD,
  /// Lowercase, Prepend, Replace, Strip, Sequence.
  static Result<Normalizer> FromJson(const nlohmann::json& j, const std::string& where);
  /// Normalizes valid UTF-8 text.
  Result<std::string> Apply(std::string_view text) const;
  bool empty() const { return steps_.empty(); }

 private:
  struct Step {
    enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kPrepend, kReplace, kStrip };
    Kind kind;
    std::string text;  // kPrepend: prefix; kReplace: replacement
    Pattern pattern;   // kReplace
    bool left = false;
    bool right = false;  // kStrip
  };
  /// `depth`: Sequence nesting so far (at most kMaxSequenceDepth).
  Status Parse(const nlohmann::json& j, const std::string& where, int depth = 0);
  std::vector<Step> steps_;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class PrependScheme { kAlways, kFirst, kNever };

class PreTokenizer {
 public:
  /// Parses tokenizer.json "pre_tokenizer" (null gives one piece per segment). Supported: Split,
  /// ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Digits, CharDelimiterSplit, Sequence.
  static Result<PreTokenizer> FromJson(const nlohmann::json& j, const std::string& where);
  /// llama.cpp SentencePiece: spaces become "▁"; with `add_space_prefix`, "▁" is put in front of
  /// the text and after every added token.
  static Result<PreTokenizer> LlamaSpm(bool add_space_prefix);
  /// Splits and rewrites `piece`, passing every resulting non-empty piece to `sink` in order.
  Status Apply(const Piece& piece, const PieceSink& sink) const { return Run(0, piece, sink); }

 private:
  struct Step {
    enum class Kind { kSplit, kByteLevel, kMetaspace };
    Kind kind = Kind::kSplit;
    std::shared_ptr<const Regex> regex;  // kSplit; kByteLevel when use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;  // kByteLevel
    std::string replacement;        // kMetaspace
    PrependScheme prepend_scheme = PrependScheme::kAlways;
    bool split = true;
    bool prepend_after_added = false;      // llama.cpp: also after every added token
    bool prepend_even_if_present = false;  // llama.cpp: even when the text starts with a space
  };
  /// `depth`: Sequence nesting so far (at most kMaxSequenceDepth).
  Status Parse(const nlohmann::json& j, const std::string& where, int depth = 0);
  /// Applies steps_[step...] to `piece`.
  Status Run(size_t step, const Piece& piece, const PieceSink& sink) const;
  Status AddRegexSplit(std::string_view pattern, bool literal, SplitBehavior behavior, bool invert,
                       const std::string& where);
  std::vector<Step> steps_;
};

class Decoder {
 public:
  /// Parses tokenizer.json "decoder" (null concatenates tokens). Supported: ByteLevel, Metaspace,
  /// Replace, ByteFallback, Fuse, Strip, Sequence.
  static Result<Decoder> FromJson(const nlohmann::json& j, const std::string& where);
  /// The decoder of a llama.cpp SentencePiece vocabulary: "▁" → " ", byte tokens → bytes, and the
  /// first leading space removed when `strip_leading_space`.
  static Result<Decoder> LlamaSpm(bool strip_leading_space);
  /// Decoded bytes of the token strings.
  std::string Apply(std::vector<std::string> tokens) const;

 private:
  struct Step {
    enum class Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip };
    Kind kind;
    std::string text;          // kMetaspace: replacement; kReplace: content; kStrip: content
    Pattern pattern;           // kReplace
    bool strip_first = false;  // kMetaspace
    size_t start = 0;
    size_t stop = 0;  // kStrip
  };
  /// `depth`: Sequence nesting so far (at most kMaxSequenceDepth).
  Status Parse(const nlohmann::json& j, const std::string& where, int depth = 0);
  std::vector<Step> steps_;
};

}  // namespace moeq::tokenizer_internal
