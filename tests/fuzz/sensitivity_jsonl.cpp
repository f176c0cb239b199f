// Fuzz target: sensitivity.jsonl text through the allocator's reader.
#include "fuzz/fuzz_common.h"
#include "moeq/allocate/allocation.h"

namespace moeq::fuzz {

int SensitivityJsonl(const uint8_t* data, size_t size) {
  auto f = alloc::ParseSensitivity(std::string_view(reinterpret_cast<const char*>(data), size),
                                   "sensitivity.jsonl");
  (void)f;
  return 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(SensitivityJsonl)
