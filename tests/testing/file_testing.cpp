// Test helpers for files: temporary directories and raw safetensors writing.
#include "testing/file_testing.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace moeq::testing_util {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/moeq-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteRawSafetensors(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = header.size();
  o.write(reinterpret_cast<const char*>(&n), 8);
  o << header;
  for (size_t i = 0; i < data_bytes; ++i) o.put(static_cast<char>(i * 7 + 1));
}

}  // namespace moeq::testing_util
