# Writes OUT (a header with kGitDescribe = `git describe --always --dirty --tags` of SOURCE_DIR)
# when its content changes; run at every build by the target moeq_git_version.
execute_process(COMMAND git -C "${SOURCE_DIR}" describe --always --dirty --tags
                OUTPUT_VARIABLE describe OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR describe STREQUAL "")
  set(describe "unknown")
endif()
file(WRITE "${OUT}.tmp" "// Generated at build time by cmake/git_version.cmake. Do not edit.
#pragma once

namespace moeq {
/// `git describe --always --dirty --tags` of the source tree at build time (\"unknown\" outside git).
inline constexpr const char* kGitDescribe = \"${describe}\";
}  // namespace moeq
")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
