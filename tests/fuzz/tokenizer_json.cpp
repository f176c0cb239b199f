// Fuzz target: tokenizer.json text through Tokenizer::FromJsonText, then encode and decode a
// fixed multilingual text.
#include "fuzz/fuzz_common.h"
#include "moeq/tokenizer/tokenizer.h"

namespace moeq::fuzz {

int TokenizerJson(const uint8_t* data, size_t size) {
  auto tok = Tokenizer::FromJsonText(std::string_view(reinterpret_cast<const char*>(data), size),
                                     "tokenizer.json");
  if (!tok.ok()) return 0;
  static const char* kTexts[] = {"Hello world, it's 2024!\n  tabs\tand  spaces",
                                 "ünïcödé 日本語のテキスト 🙂 \xe2\x80\x8b",
                                 "<|endoftext|><s> </s>"};
  for (const char* text : kTexts) {
    auto ids = (*tok)->Encode(text);
    if (ids.ok()) (void)(*tok)->Decode(*ids);
  }
  return 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(TokenizerJson)
