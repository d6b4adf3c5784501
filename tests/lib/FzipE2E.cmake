# FzipE2E.cmake: the Python end-to-end tests of fzipd (tests/lib's harness).
#
#   include(${PROJECT_SOURCE_DIR}/tests/lib/FzipE2E.cmake)
#   fzip_add_e2e_test(NAME export.e2e.sqlite SCRIPT test_export_e2e.py
#                     LABELS export e2e TIMEOUT 900 [ENVIRONMENT VAR=VALUE ...])
#
# FZIP_E2E_ENV is what every such test gets: the fzipd binary, the Python
# stubs tests/interop generates, and tests/export's store_blob_probe; the
# MongoDB variants pass it to /usr/bin/env themselves.  No include_guard:
# each including directory needs the variable set in its own scope.
set(FZIP_E2E_ENV "FZIPD=$<TARGET_FILE:fzipd>"
    "FZIP_PY_STUBS=${PROJECT_BINARY_DIR}/tests/interop/pygen"
    "FZIP_STORE_PROBE=$<TARGET_FILE:store_blob_probe>")

function(fzip_add_e2e_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;SCRIPT;TIMEOUT" "LABELS;ENVIRONMENT")
  set(env ${FZIP_E2E_ENV} ${arg_ENVIRONMENT})
  add_test(NAME ${arg_NAME}
           COMMAND ${FZIP_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/${arg_SCRIPT})
  set_tests_properties(${arg_NAME} PROPERTIES ENVIRONMENT "${env}" LABELS "${arg_LABELS}"
                       TIMEOUT ${arg_TIMEOUT})
endfunction()
