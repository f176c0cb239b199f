# Man pages and bash completion for the moeq tools.
#   - man/moeq-<tool>.1 is generated at build time from the tool's --help and --version with
#     Debian's help2man (target moeq_man, part of ALL), when help2man is installed; without it
#     the build goes on and no man pages are installed (a message says so).
#   - completion/moeq.bash is installed once per tool name, as bash-completion's lazy loader
#     looks completions up by command name.
include(GNUInstallDirs)

find_program(MOEQ_HELP2MAN help2man)
set(MOEQ_MAN_PAGES)
if(MOEQ_HELP2MAN)
  file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/man")
  foreach(dir ${MOEQ_TOOL_DIRS})
    get_filename_component(tool ${dir} NAME)
    if(TARGET ${tool})
      set(page "${CMAKE_BINARY_DIR}/man/${tool}.1")
      add_custom_command(
        OUTPUT "${page}"
        COMMAND "${MOEQ_HELP2MAN}" --no-info --no-discard-stderr --section 1 --source moeq
                --name "a tool of moeq, the MoE quantization toolchain" --output "${page}" "$<TARGET_FILE:${tool}>"
        DEPENDS ${tool}
        COMMENT "help2man ${tool}"
        VERBATIM)
      list(APPEND MOEQ_MAN_PAGES "${page}")
    endif()
  endforeach()
  add_custom_target(moeq_man ALL DEPENDS ${MOEQ_MAN_PAGES})
  install(FILES ${MOEQ_MAN_PAGES} DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
else()
  message(STATUS "help2man not found: no man pages (apt-get install help2man)")
endif()

foreach(dir ${MOEQ_TOOL_DIRS})
  get_filename_component(tool ${dir} NAME)
  if(EXISTS "${dir}/main.cpp")
    install(FILES "${CMAKE_CURRENT_SOURCE_DIR}/completion/moeq.bash"
            DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" RENAME "${tool}")
  endif()
endforeach()
