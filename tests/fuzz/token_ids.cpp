// Fuzz target: a --tokens file; the first byte picks the file name's extension (.json, .npy,
// .u16, .u32, or none: detected from the content), the rest is the file.
#include "fuzz/fuzz_common.h"
#include "moeq/tokenizer/tokenizer.h"

namespace moeq::fuzz {

int TokenIds(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* kExt[] = {".json", ".npy", ".u16", ".u32", ".ids"};
  const std::string path = WriteInput(data + 1, size - 1, kExt[data[0] % 5]);
  auto ids = LoadTokenIds(path);
  (void)ids;
  return 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(TokenIds)
