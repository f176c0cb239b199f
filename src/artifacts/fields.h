// Typed field access for the artefact readers (private to the artifacts module). Errors read
// "WHERE: field 'F': what".
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeq/base/json_reader.h"
#include "moeq/base/status.h"

namespace moeq::artifacts {

struct FieldCtx {
  std::string where;  ///< "path:line" or "path: tensors[3]"
  Status Error(std::string_view field, std::string_view what) const {
    return Status::Corruption(where + ": field '" + std::string(field) + "': " + std::string(what));
  }
};

inline const nlohmann::json* FindField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

inline Result<std::string> GetString(const nlohmann::json& j, const char* key, const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_string()) return c.Error(key, "expected a string, got " + JsonExcerpt(*v));
  return v->get<std::string>();
}

inline Result<int64_t> GetInt(const nlohmann::json& j, const char* key, const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_number_integer()) return c.Error(key, "expected an integer, got " + JsonExcerpt(*v));
  return v->get<int64_t>();
}

inline Result<double> GetNumber(const nlohmann::json& j, const char* key, const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_number()) return c.Error(key, "expected a number, got " + JsonExcerpt(*v));
  const double x = v->get<double>();
  if (!std::isfinite(x)) return c.Error(key, "not finite");
  return x;
}

inline Result<bool> GetBool(const nlohmann::json& j, const char* key, const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_boolean()) return c.Error(key, "expected true or false, got " + JsonExcerpt(*v));
  return v->get<bool>();
}

inline Result<std::vector<int64_t>> GetShape(const nlohmann::json& j, const char* key,
                                             const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr) return c.Error(key, "missing");
  if (!v->is_array()) return c.Error(key, "expected an array of integers");
  std::vector<int64_t> out;
  for (const auto& d : *v) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      return c.Error(key, "expected non-negative integers, got " + JsonExcerpt(*v));
    out.push_back(d.get<int64_t>());
  }
  return out;
}

/// A number when present (NAN when absent); an error when present with another type.
inline Result<double> GetOptionalNumber(const nlohmann::json& j, const char* key,
                                        const FieldCtx& c) {
  const auto* v = FindField(j, key);
  if (v == nullptr || v->is_null()) return NAN;
  if (!v->is_number()) return c.Error(key, "expected a number, got " + JsonExcerpt(*v));
  return v->get<double>();
}

}  // namespace moeq::artifacts
