// UTF-8 helpers, ICU normalization and the GPT-2 byte-level alphabet.
#include "tokenizer/unicode_text.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>

namespace moeq::tokenizer_internal {
namespace {

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

/// UTF-8 → UTF-16 with ICU.
Result<std::u16string> ToUtf16(std::string_view s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t len = 0;
  u_strFromUTF8(nullptr, 0, &len, s.data(), static_cast<int32_t>(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) {
    return Status::InvalidArgument(std::string("UTF-8 to UTF-16 conversion failed: ") +
                                   u_errorName(err));
  }
  std::u16string out(static_cast<size_t>(len), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(reinterpret_cast<UChar*>(out.data()), len, nullptr, s.data(),
                static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) {
    return Status::InvalidArgument(std::string("UTF-8 to UTF-16 conversion failed: ") +
                                   u_errorName(err));
  }
  return out;
}

Result<std::string> ToUtf8(const std::u16string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t len = 0;
  u_strToUTF8(nullptr, 0, &len, reinterpret_cast<const UChar*>(s.data()),
              static_cast<int32_t>(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) {
    return Status::Internal(std::string("UTF-16 to UTF-8 conversion failed: ") + u_errorName(err));
  }
  std::string out(static_cast<size_t>(len), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), len, nullptr, reinterpret_cast<const UChar*>(s.data()),
              static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) {
    return Status::Internal(std::string("UTF-16 to UTF-8 conversion failed: ") + u_errorName(err));
  }
  return out;
}

}  // namespace

size_t FindInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return kNoError;
}

uint32_t DecodeUtf8(std::string_view s, size_t* pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = *pos;
  const unsigned char c = p[i];
  const size_t len = Utf8SequenceLength(c);
  if (len == 1 || i + len > s.size()) {
    *pos = i + 1;
    return c;
  }
  uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
  *pos = i + len;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

Result<std::string> Normalize(std::string_view s, NormalForm form) {
  if (IsAscii(s)) return std::string(s);  // every normal form leaves ASCII unchanged
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = nullptr;
  switch (form) {
    case NormalForm::kNfc:
      norm = unorm2_getNFCInstance(&err);
      break;
    case NormalForm::kNfd:
      norm = unorm2_getNFDInstance(&err);
      break;
    case NormalForm::kNfkc:
      norm = unorm2_getNFKCInstance(&err);
      break;
    case NormalForm::kNfkd:
      norm = unorm2_getNFKDInstance(&err);
      break;
  }
  if (U_FAILURE(err) || norm == nullptr) {
    return Status::Internal(std::string("ICU normalizer unavailable: ") + u_errorName(err));
  }
  MOEQ_ASSIGN_OR_RETURN(std::u16string in, ToUtf16(s));
  const auto* src = reinterpret_cast<const UChar*>(in.data());
  const auto src_len = static_cast<int32_t>(in.size());
  // Already normalized text (the common case) is returned without rewriting.
  const int32_t span = unorm2_spanQuickCheckYes(norm, src, src_len, &err);
  if (U_SUCCESS(err) && span == src_len) return std::string(s);
  err = U_ZERO_ERROR;
  const int32_t need = unorm2_normalize(norm, src, src_len, nullptr, 0, &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) {
    return Status::Internal(std::string("ICU normalization failed: ") + u_errorName(err));
  }
  std::u16string out(static_cast<size_t>(need), u'\0');
  err = U_ZERO_ERROR;
  unorm2_normalize(norm, src, src_len, reinterpret_cast<UChar*>(out.data()), need, &err);
  if (U_FAILURE(err))
    return Status::Internal(std::string("ICU normalization failed: ") + u_errorName(err));
  return ToUtf8(out);
}

Result<std::string> Lowercase(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
  }
  MOEQ_ASSIGN_OR_RETURN(std::u16string in, ToUtf16(s));
  UErrorCode err = U_ZERO_ERROR;
  const auto* src = reinterpret_cast<const UChar*>(in.data());
  const auto src_len = static_cast<int32_t>(in.size());
  const int32_t need = u_strToLower(nullptr, 0, src, src_len, "", &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) {
    return Status::Internal(std::string("ICU lowercasing failed: ") + u_errorName(err));
  }
  std::u16string out(static_cast<size_t>(need), u'\0');
  err = U_ZERO_ERROR;
  u_strToLower(reinterpret_cast<UChar*>(out.data()), need, src, src_len, "", &err);
  if (U_FAILURE(err))
    return Status::Internal(std::string("ICU lowercasing failed: ") + u_errorName(err));
  return ToUtf8(out);
}

bool IsWhitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return u_isUWhiteSpace(static_cast<UChar32>(cp)) != 0;
}

bool IsWordChar(uint32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  }
  return u_isalnum(static_cast<UChar32>(cp)) != 0;
}

namespace {

struct ByteLevelTables {
  std::array<std::string, 256> alphabet;
  std::array<int16_t, 324> byte_of{};  // code points 0..323 cover the whole alphabet

  ByteLevelTables() {
    byte_of.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      AppendUtf8(cp, &alphabet[static_cast<size_t>(b)]);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

const std::array<std::string, 256>& ByteLevelAlphabet() { return Tables().alphabet; }

int ByteLevelByte(uint32_t cp) {
  if (cp >= Tables().byte_of.size()) return -1;
  return Tables().byte_of[cp];
}

void AppendByteLevel(std::string_view bytes, std::string* out) {
  const auto& alphabet = Tables().alphabet;
  for (char c : bytes) out->append(alphabet[static_cast<unsigned char>(c)]);
}

}  // namespace moeq::tokenizer_internal
