// UTF-8 helpers, Unicode normalization (ICU) and the GPT-2 byte-level alphabet.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "moeq/base/status.h"

namespace moeq::tokenizer_internal {

inline constexpr size_t kNoError = static_cast<size_t>(-1);

/// Byte offset of the first ill-formed UTF-8 sequence in `s` (overlong forms, surrogates and code
/// points above U+10FFFF are ill-formed), or kNoError.
size_t FindInvalidUtf8(std::string_view s);

/// Number of bytes of the UTF-8 sequence whose lead byte is `lead` (1 for a stray byte).
inline size_t Utf8SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

/// Decodes the code point at `s[*pos]` of valid UTF-8 and moves `*pos` past it.
uint32_t DecodeUtf8(std::string_view s, size_t* pos);
/// Appends `cp` encoded as UTF-8.
void AppendUtf8(uint32_t cp, std::string* out);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };

/// Unicode normalization of valid UTF-8 text.
Result<std::string> Normalize(std::string_view s, NormalForm form);
/// Full Unicode lowercasing (root locale) of valid UTF-8 text.
Result<std::string> Lowercase(std::string_view s);

/// Unicode White_Space.
bool IsWhitespace(uint32_t cp);
/// Letters, digits and '_' (word characters for AddedToken::single_word).
bool IsWordChar(uint32_t cp);

/// GPT-2 bytes_to_unicode: the UTF-8 text of the character that stands for byte `b`.
const std::array<std::string, 256>& ByteLevelAlphabet();
/// The byte a byte-level character stands for, or -1 when `cp` is not in the alphabet.
int ByteLevelByte(uint32_t cp);
/// Appends the byte-level form of `bytes` (each byte becomes its alphabet character).
void AppendByteLevel(std::string_view bytes, std::string* out);

}  // namespace moeq::tokenizer_internal
