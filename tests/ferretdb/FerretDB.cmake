# FerretDB.cmake: the `ferretdb` CTest fixture, a FerretDB v1 server that
# ctest starts before and stops after every test that requires it.
#
#   include(${PROJECT_SOURCE_DIR}/tests/ferretdb/FerretDB.cmake)
#   fzip_add_mongodb_test(NAME storage.conformance.mongodb DATABASE conformance
#                         COMMAND $<TARGET_FILE:test_store_conformance> @MONGODB_URI@)
#
# @MONGODB_URI@ in COMMAND becomes mongodb://127.0.0.1:PORT/DATABASE; the
# same URI is in the environment as FZIP_TEST_MONGODB_URI.  The server's
# base URI is in ${FZIP_FERRETDB_URI_FILE}.  See tests/ferretdb/README.md.
include_guard(GLOBAL)
# Cache variables: other directories include this file too, and
# include_guard skips the body there, so plain variables would be unset.

set(FZIP_FERRETDB_DIR ${CMAKE_CURRENT_LIST_DIR} CACHE INTERNAL "")
set(FZIP_FERRETDB_BIN ${PROJECT_BINARY_DIR}/ferretdb/fzip-ferretdb CACHE INTERNAL "")
set(FZIP_FERRETDB_RUN_DIR ${PROJECT_BINARY_DIR}/ferretdb/run CACHE INTERNAL "")
set(FZIP_FERRETDB_URI_FILE ${FZIP_FERRETDB_RUN_DIR}/uri CACHE INTERNAL "")

find_program(FZIP_GO go)
if(NOT FZIP_GO)
  message(WARNING "go not found: the ferretdb fixture and MongoDB tests will fail")
endif()

# The first build downloads nothing (go.sum is committed, modules come from
# the module cache or proxy) but compiles FerretDB: ~2 minutes on 2 cores.
add_test(NAME ferretdb.start
  COMMAND sh -c "\"$0\" build \"$1\" && \"$0\" start \"$1\" \"$2\""
          ${FZIP_FERRETDB_DIR}/ferretdb.sh ${FZIP_FERRETDB_BIN} ${FZIP_FERRETDB_RUN_DIR})
set_tests_properties(ferretdb.start PROPERTIES FIXTURES_SETUP ferretdb TIMEOUT 900
                     LABELS "ferretdb;live-db")
add_test(NAME ferretdb.stop
  COMMAND ${FZIP_FERRETDB_DIR}/ferretdb.sh stop ${FZIP_FERRETDB_RUN_DIR})
set_tests_properties(ferretdb.stop PROPERTIES FIXTURES_CLEANUP ferretdb TIMEOUT 60
                     LABELS "ferretdb;live-db")

function(fzip_add_mongodb_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;DATABASE;TIMEOUT" "COMMAND")
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 600)
  endif()
  add_test(NAME ${arg_NAME}
    COMMAND ${FZIP_FERRETDB_DIR}/with-uri.sh ${FZIP_FERRETDB_URI_FILE} ${arg_DATABASE}
            ${arg_COMMAND})
  set_tests_properties(${arg_NAME} PROPERTIES FIXTURES_REQUIRED ferretdb
                       TIMEOUT ${arg_TIMEOUT} LABELS "live-db;mongodb")
endfunction()
