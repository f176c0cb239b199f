// PCRE2 wrapper: compile once, find all matches; falls back from JIT to the interpreter when the
// JIT stack is too small for a match (long runs of whitespace).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "tokenizer/unicode_text.h"

namespace moeq::tokenizer_internal {
namespace {

std::string Pcre2Error(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0)
    return "PCRE2 error " + std::to_string(code);
  return reinterpret_cast<const char*>(buf);
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* md) const { pcre2_match_data_free(md); }
};

}  // namespace

Result<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern, bool literal) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // PCRE2_LITERAL admits only a few options; UCP does not matter for a verbatim match.
  const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return Status::InvalidArgument("regex /" + std::string(pattern) +
                                   "/ does not compile at offset " + std::to_string(error_offset) +
                                   ": " + Pcre2Error(error_code));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort; the interpreter is used otherwise
  return std::unique_ptr<Regex>(new Regex(code, std::string(pattern)));
}

Regex::~Regex() { pcre2_code_free(code_); }

Status Regex::FindAll(std::string_view text, std::vector<Span>* out) const {
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create_from_pattern(code_, nullptr));
  if (!md) return Status::Internal("out of memory creating PCRE2 match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    // The subject was validated once by the caller; PCRE2 need not check it again per match.
    int rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       md.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) return Status::Internal("regex /" + pattern_ + "/ failed: " + Pcre2Error(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const size_t b = ov[0];
    const size_t e = ov[1];
    if (e > b) {
      out->emplace_back(b, e);
      start = e;
    } else {
      // An empty match: move on by one character.
      if (b >= text.size()) break;
      start = b + Utf8SequenceLength(static_cast<unsigned char>(text[b]));
    }
  }
  return Status::Ok();
}

}  // namespace moeq::tokenizer_internal
