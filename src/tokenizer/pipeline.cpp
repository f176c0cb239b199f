// Patterns, normalizers and pre-tokenizers of tokenizer.json, with Hugging Face tokenizers'
// semantics (split behaviors, invert, ByteLevel prefix space, Metaspace prepend schemes).
#include "tokenizer/pipeline.h"

#include <algorithm>

#include "moeq/base/json_reader.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/unicode_text.h"

namespace moeq::tokenizer_internal {
namespace {

using nlohmann::json;

/// The GPT-2 pre-tokenizer regex (ByteLevel with use_regex).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

Result<SplitBehavior> ParseBehavior(const json& j, const std::string& where) {
  if (!j.is_string())
    return Status::Corruption(where + ": expected a string, got " + JsonExcerpt(j));
  const std::string& s = j.get_ref<const std::string&>();
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  return Status::Corruption(where + ": unknown split behavior \"" + s + "\"");
}

/// Splits a text of `n` bytes at `matches` (sorted, non-overlapping) the way Hugging Face's
/// NormalizedString::split does, appending the non-empty parts to `out`.
void SplitSpans(size_t n, const std::vector<Span>& matches, SplitBehavior behavior, bool invert,
                std::vector<Span>* out) {
  struct Part {
    size_t begin;
    size_t end;
    bool is_match;
  };
  std::vector<Part> parts;
  parts.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev < b) parts.push_back({prev, b, invert});
    parts.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < n) parts.push_back({prev, n, invert});

  const size_t first = out->size();
  out->reserve(first + parts.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.is_match) out->emplace_back(p.begin, p.end);
      }
      break;
    case SplitBehavior::kIsolated:
      for (const Part& p : parts) out->emplace_back(p.begin, p.end);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Part& p : parts) {
        if (p.is_match && !previous_match && out->size() > first) {
          out->back().second = p.end;
        } else {
          out->emplace_back(p.begin, p.end);
        }
        previous_match = p.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && out->size() > first) {
          out->back().first = it->begin;
        } else {
          out->emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(out->begin() + static_cast<std::ptrdiff_t>(first), out->end());
      break;
    case SplitBehavior::kContiguous:
      for (const Part& p : parts) {
        if (p.is_match == previous_match && out->size() > first) {
          out->back().second = p.end;
        } else {
          out->emplace_back(p.begin, p.end);
        }
        previous_match = p.is_match;
      }
      break;
  }
}

/// Spans of the literal `needle` in `text`.
std::vector<Span> FindLiteral(std::string_view text, std::string_view needle) {
  std::vector<Span> spans;
  if (needle.empty()) return spans;
  for (size_t pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + needle.size())) {
    spans.emplace_back(pos, pos + needle.size());
  }
  return spans;
}

std::string ReplaceLiteral(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  size_t prev = 0;
  for (const auto& [b, e] : FindLiteral(text, from)) {
    out.append(text.substr(prev, b - prev));
    out.append(to);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

}  // namespace

// ---- Pattern ----------------------------------------------------------------------------------

Result<Pattern> Pattern::FromJson(const json& j, const std::string& where) {
  if (!j.is_object() || j.size() != 1) {
    return Status::Corruption(where + ": expected {\"String\": ...} or {\"Regex\": ...}, got " +
                              JsonExcerpt(j));
  }
  const bool literal = j.contains("String");
  if (!literal && !j.contains("Regex")) {
    return Status::Corruption(where + ": expected {\"String\": ...} or {\"Regex\": ...}, got " +
                              JsonExcerpt(j));
  }
  const json& p = literal ? j["String"] : j["Regex"];
  if (!p.is_string())
    return Status::Corruption(where + ": pattern must be a string, got " + JsonExcerpt(p));
  auto regex = Regex::Compile(p.get<std::string>(), literal);
  if (!regex.ok()) return regex.status().WithContext(where);
  Pattern out;
  out.regex = std::shared_ptr<const Regex>(std::move(regex).value());
  return out;
}

Result<std::string> Pattern::ReplaceAll(std::string_view text, std::string_view content) const {
  std::vector<Span> spans;
  MOEQ_RETURN_IF_ERROR(regex->FindAll(text, &spans));
  if (spans.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t prev = 0;
  for (const auto& [b, e] : spans) {
    out.append(text.substr(prev, b - prev));
    out.append(content);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

// ---- Normalizer -------------------------------------------------------------------------------

Result<Normalizer> Normalizer::FromJson(const json& j, const std::string& where) {
  Normalizer n;
  if (!j.is_null()) MOEQ_RETURN_IF_ERROR(n.Parse(j, where));
  return n;
}

Status Normalizer::Parse(const json& j, const std::string& where, int depth) {
  MOEQ_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  Step step{};
  if (type == "Sequence") {
    const auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array())
      return Status::Corruption(where + ".normalizers: expected an array");
    if (depth >= kMaxSequenceDepth) {
      return Status::Corruption(where + ": Sequence nested deeper than " +
                                std::to_string(kMaxSequenceDepth) + " levels");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      MOEQ_RETURN_IF_ERROR(
          Parse((*it)[i], where + ".normalizers[" + std::to_string(i) + "]", depth + 1));
    }
    return Status::Ok();
  } else if (type == "NFC") {
    step.kind = Step::Kind::kNfc;
  } else if (type == "NFD") {
    step.kind = Step::Kind::kNfd;
  } else if (type == "NFKC") {
    step.kind = Step::Kind::kNfkc;
  } else if (type == "NFKD") {
    step.kind = Step::Kind::kNfkd;
  } else if (type == "Lowercase") {
    step.kind = Step::Kind::kLowercase;
  } else if (type == "Prepend") {
    step.kind = Step::Kind::kPrepend;
    MOEQ_ASSIGN_OR_RETURN(step.text, GetString(j, "prepend", "", where));
  } else if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    if (!j.contains("pattern")) return Status::Corruption(where + ".pattern: missing");
    MOEQ_ASSIGN_OR_RETURN(step.pattern, Pattern::FromJson(j["pattern"], where + ".pattern"));
    MOEQ_ASSIGN_OR_RETURN(step.text, GetString(j, "content", "", where));
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    MOEQ_ASSIGN_OR_RETURN(step.left, GetBool(j, "strip_left", true, where));
    MOEQ_ASSIGN_OR_RETURN(step.right, GetBool(j, "strip_right", true, where));
  } else {
    return Status::Unsupported(where + ".type: normalizer \"" + type + "\" is not supported");
  }
  steps_.push_back(std::move(step));
  return Status::Ok();
}

Result<std::string> Normalizer::Apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kNfc: {
        MOEQ_ASSIGN_OR_RETURN(s, Normalize(s, NormalForm::kNfc));
        break;
      }
      case Step::Kind::kNfd: {
        MOEQ_ASSIGN_OR_RETURN(s, Normalize(s, NormalForm::kNfd));
        break;
      }
      case Step::Kind::kNfkc: {
        MOEQ_ASSIGN_OR_RETURN(s, Normalize(s, NormalForm::kNfkc));
        break;
      }
      case Step::Kind::kNfkd: {
        MOEQ_ASSIGN_OR_RETURN(s, Normalize(s, NormalForm::kNfkd));
        break;
      }
      case Step::Kind::kLowercase: {
        MOEQ_ASSIGN_OR_RETURN(s, Lowercase(s));
        break;
      }
      case Step::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.text);
        break;
      case Step::Kind::kReplace: {
        MOEQ_ASSIGN_OR_RETURN(s, step.pattern.ReplaceAll(s, step.text));
        break;
      }
      case Step::Kind::kStrip: {
        size_t begin = 0;
        size_t end = s.size();
        if (step.left) {
          while (begin < end) {
            size_t next = begin;
            if (!IsWhitespace(DecodeUtf8(s, &next))) break;
            begin = next;
          }
        }
        if (step.right) {
          while (end > begin) {
            size_t start = end - 1;
            while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
            size_t probe = start;
            if (!IsWhitespace(DecodeUtf8(s, &probe))) break;
            end = start;
          }
        }
        s = s.substr(begin, end - begin);
        break;
      }
    }
  }
  return s;
}

// ---- PreTokenizer -----------------------------------------------------------------------------

Result<PreTokenizer> PreTokenizer::FromJson(const json& j, const std::string& where) {
  PreTokenizer p;
  if (!j.is_null()) MOEQ_RETURN_IF_ERROR(p.Parse(j, where));
  return p;
}

Result<PreTokenizer> PreTokenizer::LlamaSpm(bool add_space_prefix) {
  PreTokenizer p;
  Step step;
  step.kind = Step::Kind::kMetaspace;
  step.replacement = std::string(kMetaspace);
  step.prepend_scheme = add_space_prefix ? PrependScheme::kFirst : PrependScheme::kNever;
  step.prepend_after_added = add_space_prefix;
  step.prepend_even_if_present = true;
  step.split = false;
  p.steps_.push_back(std::move(step));
  return p;
}

Status PreTokenizer::AddRegexSplit(std::string_view pattern, bool literal, SplitBehavior behavior,
                                   bool invert, const std::string& where) {
  auto regex = Regex::Compile(pattern, literal);
  if (!regex.ok()) return regex.status().WithContext(where);
  Step step;
  step.kind = Step::Kind::kSplit;
  step.regex = std::shared_ptr<const Regex>(std::move(regex).value());
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
  return Status::Ok();
}

Status PreTokenizer::Parse(const json& j, const std::string& where, int depth) {
  MOEQ_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array())
      return Status::Corruption(where + ".pretokenizers: expected an array");
    if (depth >= kMaxSequenceDepth) {
      return Status::Corruption(where + ": Sequence nested deeper than " +
                                std::to_string(kMaxSequenceDepth) + " levels");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      MOEQ_RETURN_IF_ERROR(
          Parse((*it)[i], where + ".pretokenizers[" + std::to_string(i) + "]", depth + 1));
    }
    return Status::Ok();
  }
  if (type == "Split") {
    if (!j.contains("pattern")) return Status::Corruption(where + ".pattern: missing");
    MOEQ_ASSIGN_OR_RETURN(Pattern pattern, Pattern::FromJson(j["pattern"], where + ".pattern"));
    if (!j.contains("behavior")) return Status::Corruption(where + ".behavior: missing");
    MOEQ_ASSIGN_OR_RETURN(const SplitBehavior behavior,
                          ParseBehavior(j["behavior"], where + ".behavior"));
    MOEQ_ASSIGN_OR_RETURN(const bool invert, GetBool(j, "invert", false, where));
    Step step;
    step.kind = Step::Kind::kSplit;
    step.regex = pattern.regex;
    step.behavior = behavior;
    step.invert = invert;
    steps_.push_back(std::move(step));
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    Step step;
    step.kind = Step::Kind::kByteLevel;
    MOEQ_ASSIGN_OR_RETURN(step.add_prefix_space, GetBool(j, "add_prefix_space", true, where));
    MOEQ_ASSIGN_OR_RETURN(const bool use_regex, GetBool(j, "use_regex", true, where));
    if (use_regex) {
      MOEQ_ASSIGN_OR_RETURN(auto regex, Regex::Compile(kGpt2Pattern, false));
      step.regex = std::shared_ptr<const Regex>(std::move(regex));
    }
    steps_.push_back(std::move(step));
    return Status::Ok();
  }
  if (type == "Metaspace") {
    Step step;
    step.kind = Step::Kind::kMetaspace;
    MOEQ_ASSIGN_OR_RETURN(step.replacement,
                          GetString(j, "replacement", std::string(kMetaspace), where));
    if (step.replacement.empty())
      return Status::Corruption(where + ".replacement: must not be empty");
    MOEQ_ASSIGN_OR_RETURN(const bool add_prefix_space, GetBool(j, "add_prefix_space", true, where));
    MOEQ_ASSIGN_OR_RETURN(
        const std::string scheme,
        GetString(j, "prepend_scheme", add_prefix_space ? "always" : "never", where));
    if (scheme == "always") {
      step.prepend_scheme = PrependScheme::kAlways;
    } else if (scheme == "first") {
      step.prepend_scheme = PrependScheme::kFirst;
    } else if (scheme == "never") {
      step.prepend_scheme = PrependScheme::kNever;
    } else {
      return Status::Corruption(
          where + ".prepend_scheme: expected \"always\", \"first\" or \"never\", got \"" + scheme +
          "\"");
    }
    MOEQ_ASSIGN_OR_RETURN(step.split, GetBool(j, "split", true, where));
    steps_.push_back(std::move(step));
    return Status::Ok();
  }
  if (type == "Whitespace")
    return AddRegexSplit(R"(\w+|[^\w\s]+)", false, SplitBehavior::kRemoved, true, where);
  if (type == "WhitespaceSplit")
    return AddRegexSplit(R"(\s+)", false, SplitBehavior::kRemoved, false, where);
  if (type == "Digits") {
    MOEQ_ASSIGN_OR_RETURN(const bool individual, GetBool(j, "individual_digits", false, where));
    return AddRegexSplit(individual ? R"(\p{N})" : R"(\p{N}+)", false, SplitBehavior::kIsolated,
                         false, where);
  }
  if (type == "CharDelimiterSplit") {
    MOEQ_ASSIGN_OR_RETURN(const std::string delimiter, GetString(j, "delimiter", "", where));
    if (delimiter.empty()) return Status::Corruption(where + ".delimiter: missing or empty");
    return AddRegexSplit(delimiter, true, SplitBehavior::kRemoved, false, where);
  }
  return Status::Unsupported(where + ".type: pre-tokenizer \"" + type + "\" is not supported");
}

Status PreTokenizer::Run(size_t step_index, const Piece& piece, const PieceSink& sink) const {
  if (piece.text.empty()) return Status::Ok();
  if (step_index == steps_.size()) {
    sink(piece.text);
    return Status::Ok();
  }
  const Step& step = steps_[step_index];
  // Runs the remaining steps on the parts `spans` of `text` (the piece text, possibly rewritten).
  auto recurse = [&](std::string_view text, bool at_start, bool after_added,
                     const std::vector<Span>& spans) {
    for (const auto& [b, e] : spans) {
      if (b == e) continue;
      MOEQ_RETURN_IF_ERROR(
          Run(step_index + 1,
              Piece{text.substr(b, e - b), at_start && b == 0, after_added && b == 0}, sink));
    }
    return Status::Ok();
  };
  std::vector<Span> matches;
  std::vector<Span> spans;
  switch (step.kind) {
    case Step::Kind::kSplit:
      MOEQ_RETURN_IF_ERROR(step.regex->FindAll(piece.text, &matches));
      SplitSpans(piece.text.size(), matches, step.behavior, step.invert, &spans);
      return recurse(piece.text, piece.at_start, piece.after_added, spans);
    case Step::Kind::kByteLevel: {
      std::string prefixed;
      std::string_view text = piece.text;
      if (step.add_prefix_space && text[0] != ' ') {
        prefixed = " " + std::string(text);
        text = prefixed;
      }
      if (step.regex) {
        MOEQ_RETURN_IF_ERROR(step.regex->FindAll(text, &matches));
        SplitSpans(text.size(), matches, SplitBehavior::kIsolated, false, &spans);
      } else {
        spans.emplace_back(0, text.size());
      }
      std::string mapped;
      for (const auto& [b, e] : spans) {
        if (b == e) continue;
        mapped.clear();
        AppendByteLevel(text.substr(b, e - b), &mapped);
        MOEQ_RETURN_IF_ERROR(
            Run(step_index + 1,
                Piece{mapped, piece.at_start && b == 0, piece.after_added && b == 0}, sink));
      }
      return Status::Ok();
    }
    case Step::Kind::kMetaspace: {
      std::string text = ReplaceLiteral(piece.text, " ", step.replacement);
      const bool starts = text.compare(0, step.replacement.size(), step.replacement) == 0;
      bool prepend = step.prepend_scheme == PrependScheme::kAlways;
      if (step.prepend_scheme == PrependScheme::kFirst) {
        prepend = piece.at_start || (step.prepend_after_added && piece.after_added);
      }
      if (prepend && (!starts || step.prepend_even_if_present)) text.insert(0, step.replacement);
      if (step.split) {
        SplitSpans(text.size(), FindLiteral(text, step.replacement), SplitBehavior::kMergedWithNext,
                   false, &spans);
      } else {
        spans.emplace_back(0, text.size());
      }
      return recurse(text, piece.at_start, piece.after_added, spans);
    }
  }
  return Status::Internal("unknown pre-tokenizer step");
}

}  // namespace moeq::tokenizer_internal
