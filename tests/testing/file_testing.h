// Helpers for I/O tests: raw (possibly broken) safetensors files and temporary directories.
#pragma once

#include <string>

namespace moeq::testing_util {

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Writes a safetensors file with exactly `header` as its JSON header (no padding, no checks)
/// followed by `data_bytes` bytes of a repeating pattern, for bad-input tests.
void WriteRawSafetensors(const std::string& path, const std::string& header, size_t data_bytes);

}  // namespace moeq::testing_util
