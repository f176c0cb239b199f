// tokenizer.json decoders: token strings back to text bytes.
#include <cstdlib>

#include "tokenizer/json_fields.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/unicode_text.h"

namespace moeq::tokenizer_internal {
namespace {

using nlohmann::json;

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

/// The byte of a "<0xAB>" token, or -1.
int ByteFallbackValue(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

/// Bytes of a byte-level token; the token itself when one of its characters is not in the alphabet.
void AppendByteLevelDecoded(std::string_view token, std::string* out) {
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const int b = ByteLevelByte(DecodeUtf8(token, &i));
    if (b < 0) {
      out->append(token);
      return;
    }
    bytes.push_back(static_cast<char>(b));
  }
  out->append(bytes);
}

std::string Join(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace

Result<Decoder> Decoder::FromJson(const json& j, const std::string& where) {
  Decoder d;
  if (!j.is_null()) MOEQ_RETURN_IF_ERROR(d.Parse(j, where));
  return d;
}

Result<Decoder> Decoder::LlamaSpm(bool strip_leading_space) {
  Decoder d;
  Step replace{};
  replace.kind = Step::Kind::kReplace;
  replace.text = " ";
  MOEQ_ASSIGN_OR_RETURN(replace.pattern,
                        Pattern::FromJson(json{{"String", std::string(kMetaspace)}}, "decoder"));
  d.steps_.push_back(std::move(replace));
  d.steps_.push_back(Step{Step::Kind::kByteFallback, {}, {}, false, 0, 0});
  d.steps_.push_back(Step{Step::Kind::kFuse, {}, {}, false, 0, 0});
  if (strip_leading_space) d.steps_.push_back(Step{Step::Kind::kStrip, " ", {}, false, 1, 0});
  return d;
}

Status Decoder::Parse(const json& j, const std::string& where, int depth) {
  MOEQ_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  Step step{};
  if (type == "Sequence") {
    const auto it = j.find("decoders");
    if (it == j.end() || !it->is_array())
      return Status::Corruption(where + ".decoders: expected an array");
    if (depth >= kMaxSequenceDepth) {
      return Status::Corruption(where + ": Sequence nested deeper than " +
                                std::to_string(kMaxSequenceDepth) + " levels");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      MOEQ_RETURN_IF_ERROR(
          Parse((*it)[i], where + ".decoders[" + std::to_string(i) + "]", depth + 1));
    }
    return Status::Ok();
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::kMetaspace;
    MOEQ_ASSIGN_OR_RETURN(step.text, GetString(j, "replacement", std::string(kMetaspace), where));
    MOEQ_ASSIGN_OR_RETURN(const bool add_prefix_space, GetBool(j, "add_prefix_space", true, where));
    MOEQ_ASSIGN_OR_RETURN(
        const std::string scheme,
        GetString(j, "prepend_scheme", add_prefix_space ? "always" : "never", where));
    step.strip_first = scheme != "never";
  } else if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    if (!j.contains("pattern")) return Status::Corruption(where + ".pattern: missing");
    MOEQ_ASSIGN_OR_RETURN(step.pattern, Pattern::FromJson(j["pattern"], where + ".pattern"));
    MOEQ_ASSIGN_OR_RETURN(step.text, GetString(j, "content", "", where));
  } else if (type == "ByteFallback") {
    step.kind = Step::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Step::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    MOEQ_ASSIGN_OR_RETURN(step.text, GetString(j, "content", " ", where));
    size_t probe = 0;
    if (step.text.empty() || (DecodeUtf8(step.text, &probe), probe != step.text.size())) {
      return Status::Corruption(where + ".content: expected a single character");
    }
    MOEQ_ASSIGN_OR_RETURN(const int64_t start, GetCount(j, "start", 0, where));
    MOEQ_ASSIGN_OR_RETURN(const int64_t stop, GetCount(j, "stop", 0, where));
    step.start = static_cast<size_t>(start);
    step.stop = static_cast<size_t>(stop);
  } else {
    return Status::Unsupported(where + ".type: decoder \"" + type + "\" is not supported");
  }
  steps_.push_back(std::move(step));
  return Status::Ok();
}

std::string Decoder::Apply(std::vector<std::string> tokens) const {
  if (steps_.empty()) {
    // Hugging Face joins the tokens with spaces when there is no decoder.
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i == 0 ? "" : " ") + tokens[i];
    return out;
  }
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kByteLevel: {
        std::string out;
        for (const auto& t : tokens) AppendByteLevelDecoded(t, &out);
        tokens.assign(1, std::move(out));
        break;
      }
      case Step::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          // As Hugging Face: in the first token every replacement character is dropped.
          const std::string_view with = (i == 0 && step.strip_first) ? "" : " ";
          std::string out;
          size_t prev = 0;
          for (size_t pos = tokens[i].find(step.text); pos != std::string::npos;
               pos = tokens[i].find(step.text, prev)) {
            out.append(tokens[i], prev, pos - prev);
            out.append(with);
            prev = pos + step.text.size();
          }
          out.append(tokens[i], prev);
          tokens[i] = std::move(out);
        }
        break;
      case Step::Kind::kReplace:
        for (auto& t : tokens) {
          auto replaced = step.pattern.ReplaceAll(t, step.text);
          if (replaced.ok()) t = std::move(replaced).value();
        }
        break;
      case Step::Kind::kByteFallback: {
        std::vector<std::string> out;
        out.reserve(tokens.size());
        bool in_bytes = false;
        for (auto& t : tokens) {
          const int b = ByteFallbackValue(t);
          if (b >= 0) {
            if (!in_bytes) out.emplace_back();
            out.back().push_back(static_cast<char>(b));
            in_bytes = true;
          } else {
            out.push_back(std::move(t));
            in_bytes = false;
          }
        }
        tokens = std::move(out);
        break;
      }
      case Step::Kind::kFuse:
        tokens.assign(1, Join(tokens));
        break;
      case Step::Kind::kStrip:
        for (auto& t : tokens) {
          const std::string& c = step.text;
          size_t begin = 0;
          for (size_t k = 0; k < step.start && t.compare(begin, c.size(), c) == 0; ++k)
            begin += c.size();
          size_t end = t.size();
          for (size_t k = 0; k < step.stop && end >= begin + c.size() &&
                             t.compare(end - c.size(), c.size(), c) == 0;
               ++k) {
            end -= c.size();
          }
          t = t.substr(begin, end - begin);
        }
        break;
    }
  }
  return Join(tokens);
}

}  // namespace moeq::tokenizer_internal
