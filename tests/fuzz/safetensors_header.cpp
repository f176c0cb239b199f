// Fuzz target: a whole .safetensors file (8-byte header length, JSON header, data) through
// SafetensorsFile::Open, then a view of every tensor.
#include "fuzz/fuzz_common.h"
#include "moeq/formats/safetensors.h"

namespace moeq::fuzz {

int SafetensorsHeader(const uint8_t* data, size_t size) {
  const std::string path = WriteInput(data, size, ".safetensors");
  auto f = SafetensorsFile::Open(path);
  if (!f.ok()) return 0;
  uint64_t sum = 0;
  for (const auto& t : (*f)->tensors()) {
    auto v = (*f)->View(t.name);
    if (!v.ok()) continue;
    const auto bytes = v->data;
    for (size_t i = 0; i < bytes.size(); i += 4096) sum += static_cast<uint8_t>(bytes[i]);
    (*f)->Release(t.name);
  }
  return sum == 1 ? 0 : 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(SafetensorsHeader)
