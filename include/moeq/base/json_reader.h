// The one JSON reading layer (docs/reliability.md): every JSON moeq reads (config.json,
// tokenizer.json, sensitivity.jsonl, allocation.json, routing profiles and traces, priors, tiers,
// --tokens lists, safetensors headers, eval.json) goes through ParseJson / ReadJsonFile.
//
//  - Nesting is limited to kMaxJsonDepth, checked by an iterative pre-scan before nlohmann
//    parses anything (so neither parsing, nor dumping, nor destroying a value can recurse deeply).
//  - Every nlohmann exception (parse_error, out_of_range for numbers such as 1e400, type_error)
//    is caught at the reader boundary and becomes a Status::Corruption naming the file.
//  - Error messages show values only through JsonExcerpt: short and non-recursive.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>

#include "moeq/base/status.h"

namespace moeq {

/// The deepest nesting of arrays/objects any moeq input may have. Real inputs need < 10
/// (tokenizer.json Sequences nest 3-4 levels).
inline constexpr int kMaxJsonDepth = 256;

/// Checks `text` (without parsing it) for nesting deeper than `max_depth`; strings and escapes
/// are skipped. Iterative, O(size). The error names `source` and the byte offset.
Status CheckJsonDepth(std::string_view text, std::string_view source,
                      int max_depth = kMaxJsonDepth);

/// Parses JSON text named `source` (a file, or "file: line 3"), depth-checked first; never throws.
/// `callback` is nlohmann's parser callback (may be null).
Result<nlohmann::json> ParseJson(std::string_view text, std::string_view source,
                                 const nlohmann::json::parser_callback_t& callback = nullptr);

/// A short, non-recursive description of a value for error messages: scalars as JSON (strings
/// cut to `max_chars`), arrays as "an array of N elements", objects as "an object with N keys".
std::string JsonExcerpt(const nlohmann::json& value, size_t max_chars = 48);

/// The message of any nlohmann exception without its "[json.exception.x.y]" prefix.
std::string JsonExceptionText(const nlohmann::json::exception& e);

/// Runs `f` (returning Status or Result<T>) and turns any nlohmann exception it throws (a
/// type_error from get<T>() on a value of the wrong type, out_of_range from at()) into a
/// Status::Corruption naming `source`: the boundary every JSON reader puts around its parsing.
template <class F>
auto CatchJsonErrors(std::string_view source, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(std::string(source) + ": " + JsonExceptionText(e));
  }
}

}  // namespace moeq
