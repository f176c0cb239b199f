// Fuzz target: a whole GGUF file through GgufFile::Open, then every (small enough) tensor
// dequantized to float.
#include "fuzz/fuzz_common.h"
#include "moeq/export/gguf_writer.h"

namespace moeq::fuzz {

int GgufReader(const uint8_t* data, size_t size) {
  const std::string path = WriteInput(data, size, ".gguf");
  auto f = GgufFile::Open(path);
  if (!f.ok()) return 0;
  for (const auto& t : (*f)->tensors()) {
    if (t.numel() > (1 << 20)) continue;  // the reader bounded it by the file size already
    auto v = (*f)->DequantizeTensor(t.name);
    (void)v;
  }
  return 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(GgufReader)
