// Test helpers for files: raw safetensors writing.
#include "testing/file_testing.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace moeq::testing_util {

void WriteRawSafetensors(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = header.size();
  o.write(reinterpret_cast<const char*>(&n), 8);
  o << header;
  for (size_t i = 0; i < data_bytes; ++i) o.put(static_cast<char>(i * 7 + 1));
}

}  // namespace moeq::testing_util
