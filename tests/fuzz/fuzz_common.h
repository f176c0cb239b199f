// Shared helpers of the fuzz targets (tests/fuzz/*.cpp, docs/reliability.md). Each target is a
// function moeq::fuzz::<Name>(data, size) that must return 0 for every input and never crash,
// hang or leak; built with -DMOEQ_LIBFUZZER it also defines libFuzzer's LLVMFuzzerTestOneInput,
// and the always-built replay test (fuzz_replay_test.cpp) runs it over the seed corpus and
// every past crash input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moeq::fuzz {

/// Writes the input to a per-process scratch file named "input<ext>" and returns its path.
std::string WriteInput(const uint8_t* data, size_t size, std::string_view ext);
/// The per-process scratch directory (created once, removed at exit).
const std::string& ScratchDir();

int SafetensorsHeader(const uint8_t* data, size_t size);
int GgufReader(const uint8_t* data, size_t size);
int ConfigAdapter(const uint8_t* data, size_t size);
int TokenizerJson(const uint8_t* data, size_t size);
int SensitivityJsonl(const uint8_t* data, size_t size);
int AllocationJson(const uint8_t* data, size_t size);
int RoutingTrace(const uint8_t* data, size_t size);
int TokenIds(const uint8_t* data, size_t size);

}  // namespace moeq::fuzz

#ifdef MOEQ_LIBFUZZER
#define MOEQ_FUZZ_ENTRY(fn)                                                 \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    return moeq::fuzz::fn(data, size);                                      \
  }
#else
#define MOEQ_FUZZ_ENTRY(fn)
#endif
