// ScopedTempDir: a unique directory under $TMPDIR (or /tmp) for one test, removed with all its
// contents when the object goes out of scope.
#pragma once

#include <string>
#include <string_view>

namespace moeq::test {

class ScopedTempDir {
 public:
  /// Creates "<$TMPDIR or /tmp>/<prefix>-XXXXXX"; aborts the test binary if that fails.
  explicit ScopedTempDir(std::string_view prefix = "moeq-test");
  /// Removes the directory recursively (errors are ignored).
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  /// Absolute path of the directory.
  const std::string& path() const { return path_; }
  /// path() + "/" + name.
  std::string Join(std::string_view name) const;

 private:
  std::string path_;
};

}  // namespace moeq::test
