// The JSON reading layer: iterative depth pre-scan, exception-free parsing, short excerpts.
#include "moeq/base/json_reader.h"

namespace moeq {

Status CheckJsonDepth(std::string_view text, std::string_view source, int max_depth) {
  int depth = 0;
  bool in_string = false, escape = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escape)
        escape = false;
      else if (c == '\\')
        escape = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) {
          return Status::Corruption(std::string(source) + ": JSON nested deeper than " +
                                    std::to_string(max_depth) + " levels at byte " +
                                    std::to_string(i) + " (moeq's limit kMaxJsonDepth)");
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;  // unbalanced text is the parser's error to report
        break;
      default:
        break;
    }
  }
  return Status::Ok();
}

std::string JsonExceptionText(const nlohmann::json::exception& e) {
  std::string m = e.what();
  // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> "line 1, column 2:
  // ..."
  const auto close = m.find("] ");
  if (close != std::string::npos && m.rfind("[json.exception.", 0) == 0) m = m.substr(close + 2);
  const auto at = m.find("parse error at ");
  if (at == 0) m = m.substr(15);
  if (m.size() > 300) m = m.substr(0, 300) + "...";
  return m;
}

Result<nlohmann::json> ParseJson(std::string_view text, std::string_view source,
                                 const nlohmann::json::parser_callback_t& callback) {
  MOEQ_RETURN_IF_ERROR(CheckJsonDepth(text, source));
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::parse_error& e) {
    return Status::Corruption(std::string(source) + ": invalid JSON: " + JsonExceptionText(e));
  } catch (const nlohmann::json::exception& e) {
    // out_of_range.406 for a number such as 1e400, and anything a callback throws.
    return Status::Corruption(std::string(source) + ": invalid JSON: " + JsonExceptionText(e));
  }
}

std::string JsonExcerpt(const nlohmann::json& v, size_t max_chars) {
  switch (v.type()) {
    case nlohmann::json::value_t::array:
      return v.empty() ? "[]"
                       : "an array of " + std::to_string(v.size()) +
                             (v.size() == 1 ? " element" : " elements");
    case nlohmann::json::value_t::object:
      return v.empty() ? "{}"
                       : "an object with " + std::to_string(v.size()) +
                             (v.size() == 1 ? " key" : " keys");
    case nlohmann::json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      if (s.size() <= max_chars)
        return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return nlohmann::json(s.substr(0, max_chars))
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
             "... (" + std::to_string(s.size()) + " bytes)";
    }
    case nlohmann::json::value_t::binary:
      return "binary data";
    case nlohmann::json::value_t::discarded:
      return "a discarded value";
    default:
      return v.dump();  // null, boolean, numbers: short and flat
  }
}

}  // namespace moeq
