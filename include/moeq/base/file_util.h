// Files: atomic writes, JSON reading with precise errors, hashing.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "moeq/base/atomic_file.h"
#include "moeq/base/json_reader.h"
#include "moeq/base/status.h"

namespace moeq {

/// Reads a whole file.
Result<std::string> ReadFile(const std::string& path);
/// Parses a JSON file through ParseJson (moeq/json_reader.h: depth limit, no exception escapes);
/// errors name the file and the position of a syntax error.
Result<nlohmann::json> ReadJsonFile(const std::string& path);
/// Writes `contents` through an AtomicFile (moeq/atomic_file.h), replacing an existing `path`.
/// Outputs of a command use the other overload with AtomicWriteOptions{.overwrite = ctx.force},
/// so that a file that appears while the command runs is not replaced without --force.
Status WriteFileAtomic(const std::string& path, std::string_view contents);
/// The useful part of a JSON parse error ("line 1, column 28: syntax error while parsing ..."),
/// without nlohmann's "[json.exception.parse_error.101] parse error at" prefix.
std::string JsonParseErrorText(const nlohmann::json::parse_error& e);
/// JSON text, keys sorted, 2-space indent, trailing newline.
std::string DumpJson(const nlohmann::json& j);

/// SHA-256 of bytes, lowercase hex.
std::string Sha256Hex(std::span<const std::byte> data);
std::string Sha256Hex(std::string_view data);
/// SHA-256 of a file's contents (streamed).
Result<std::string> Sha256File(const std::string& path);

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t n);
  /// Lowercase hex digest; the object must not be updated afterwards.
  std::string HexDigest();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  uint64_t len_ = 0;
  size_t fill_ = 0;
};

}  // namespace moeq
