// Helpers for I/O tests: raw (possibly broken) safetensors files.
#pragma once

#include <string>

#include "testing/temp_dir.h"

namespace moeq::testing_util {

/// Older name of test::ScopedTempDir, kept for existing tests.
using TempDir = test::ScopedTempDir;

/// Writes a safetensors file with exactly `header` as its JSON header (no padding, no checks)
/// followed by `data_bytes` bytes of a repeating pattern, for bad-input tests.
void WriteRawSafetensors(const std::string& path, const std::string& header, size_t data_bytes);

}  // namespace moeq::testing_util
