// ScopedTempDir: mkdtemp on creation, recursive removal on destruction.
#include "testing/temp_dir.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "moeq/base/status.h"

namespace moeq::test {

ScopedTempDir::ScopedTempDir(std::string_view prefix) {
  const char* env = std::getenv("TMPDIR");
  std::string base = (env != nullptr && *env != '\0') ? env : "/tmp";
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string pattern = base + "/" + std::string(prefix) + "-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  MOEQ_CHECK(::mkdtemp(buf.data()) != nullptr);
  path_ = buf.data();
}

ScopedTempDir::~ScopedTempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ScopedTempDir::Join(std::string_view name) const {
  return path_ + "/" + std::string(name);
}

}  // namespace moeq::test
