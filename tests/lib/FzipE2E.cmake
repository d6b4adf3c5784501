# FzipE2E.cmake: the Python end-to-end tests of fzipd (tests/lib's harness).
#
#   include(${PROJECT_SOURCE_DIR}/tests/lib/FzipE2E.cmake)
#   fzip_add_e2e_test(NAME export.e2e.sqlite SCRIPT test_export_e2e.py
#                     LABELS export e2e TIMEOUT 900 [ENVIRONMENT VAR=VALUE ...])
#
# FZIP_E2E_ENV is what every such test gets: the fzipd binary, the Python
# stubs tests/interop generates, and tests/export's store_blob_probe; the
# MongoDB variants pass it to /usr/bin/env themselves (fzip_add_e2e_pair
# below registers both for one script).  No include_guard:
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

# The same script on both stores: NAME.sqlite (the embedded store) and
# NAME.mongodb (FerretDB fixture, database NAME with '.' as '_'), labelled
# LABELS, plus live-db;mongodb on the second.  The MongoDB run gets
# FZIP_TEST_SCALE=SCALE when SCALE is given (FerretDB is slow: smaller
# data) and MONGODB_ENVIRONMENT, and its own MONGODB_TIMEOUT (default
# TIMEOUT).  The including directory must include
# tests/ferretdb/FerretDB.cmake first.
#
#   fzip_add_e2e_pair(NAME import.copy SCRIPT test_import_copy.py
#                     LABELS import e2e TIMEOUT 600 SCALE 0.1)
function(fzip_add_e2e_pair)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;SCRIPT;TIMEOUT;MONGODB_TIMEOUT;SCALE"
                        "LABELS;MONGODB_ENVIRONMENT")
  if(NOT COMMAND fzip_add_mongodb_test)
    message(FATAL_ERROR "fzip_add_e2e_pair(${arg_NAME}): include FerretDB.cmake first")
  endif()
  if(NOT arg_MONGODB_TIMEOUT)
    set(arg_MONGODB_TIMEOUT ${arg_TIMEOUT})
  endif()
  set(mongodb_env FZIP_TEST_STORE=mongodb ${arg_MONGODB_ENVIRONMENT})
  if(arg_SCALE)
    list(APPEND mongodb_env FZIP_TEST_SCALE=${arg_SCALE})
  endif()
  string(REPLACE "." "_" database ${arg_NAME})
  fzip_add_e2e_test(NAME ${arg_NAME}.sqlite SCRIPT ${arg_SCRIPT} LABELS ${arg_LABELS}
                    TIMEOUT ${arg_TIMEOUT})
  fzip_add_mongodb_test(NAME ${arg_NAME}.mongodb DATABASE ${database}
    TIMEOUT ${arg_MONGODB_TIMEOUT}
    COMMAND /usr/bin/env ${FZIP_E2E_ENV} ${mongodb_env}
            ${FZIP_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/${arg_SCRIPT})
  set_tests_properties(${arg_NAME}.mongodb PROPERTIES
                       LABELS "${arg_LABELS};live-db;mongodb")
endfunction()
