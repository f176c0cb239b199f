// Typed field access for tokenizer.json objects; errors name the file and the JSON path.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "moeq/base/json_reader.h"
#include "moeq/base/status.h"

namespace moeq::tokenizer_internal {

/// `obj[key]` as a bool; `fallback` when absent or null.
inline Result<bool> GetBool(const nlohmann::json& obj, const char* key, bool fallback,
                            const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    return Status::Corruption(where + "." + key + ": expected true or false, got " +
                              JsonExcerpt(*it));
  return it->get<bool>();
}

/// `obj[key]` as a string; `fallback` when absent or null.
inline Result<std::string> GetString(const nlohmann::json& obj, const char* key,
                                     const std::string& fallback, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string())
    return Status::Corruption(where + "." + key + ": expected a string, got " + JsonExcerpt(*it));
  return it->get<std::string>();
}

/// `obj[key]` as a non-negative integer; `fallback` when absent or null.
inline Result<int64_t> GetCount(const nlohmann::json& obj, const char* key, int64_t fallback,
                                const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    return Status::Corruption(where + "." + key + ": expected a non-negative integer, got " +
                              JsonExcerpt(*it));
  }
  return it->get<int64_t>();
}

/// The "type" string of a pipeline component.
inline Result<std::string> GetType(const nlohmann::json& obj, const std::string& where) {
  if (!obj.is_object())
    return Status::Corruption(where + ": expected an object, got " + JsonExcerpt(obj));
  const auto it = obj.find("type");
  if (it == obj.end() || !it->is_string())
    return Status::Corruption(where + ".type: missing or not a string");
  return it->get<std::string>();
}

}  // namespace moeq::tokenizer_internal
