# Registering the examples' tests (label "example"); included by
# examples/CMakeLists.txt. Each function registers nothing without
# SHMKV_BUILD_TESTS or in a sanitizer build (SHMKV_SANITIZE: the examples
# load libshmkv.so into an uninstrumented interpreter), and says why in a
# status message when what the test needs is not there.

# shmkv_example_phrase(<out> <item>...)
# Sets <out> to the items as a phrase: "a", "a and b", "a, b and c".
function(shmkv_example_phrase out)
  set(items ${ARGN})
  list(POP_BACK items last)
  if(items)
    list(JOIN items ", " phrase)
    set(phrase "${phrase} and ${last}")
  else()
    set(phrase "${last}")
  endif()
  set(${out} "${phrase}" PARENT_SCOPE)
endfunction()

# shmkv_example_pytest(<name> <test file> IMPORTS <module>... APT <package>...)
# Registers the pytest file <test file> of the current directory as the
# test <name>, run by $SHMKV_PYTHON (else /usr/bin/python3) on the
# libshmkv.so of this build (SHMKV_LIB) and bindings/python (PYTHONPATH).
# Left out when that python cannot import the modules; the message names
# the apt packages that provide them.
function(shmkv_example_pytest name test_file)
  cmake_parse_arguments(ARG "" "" "IMPORTS;APT" ${ARGN})
  if(NOT SHMKV_BUILD_TESTS OR SHMKV_SANITIZE)
    return()
  endif()

  # SHMKV_PYTHON is defined in bindings/python, which comes after the
  # examples; on a first configure it is not set yet.
  if(SHMKV_PYTHON)
    set(python ${SHMKV_PYTHON})
  else()
    set(python /usr/bin/python3)
  endif()
  list(JOIN ARG_IMPORTS ", " imports)
  execute_process(COMMAND ${python} -c "import ${imports}"
                  RESULT_VARIABLE have_deps OUTPUT_QUIET ERROR_QUIET)
  if(NOT have_deps EQUAL 0)
    shmkv_example_phrase(modules ${ARG_IMPORTS})
    list(JOIN ARG_APT " " packages)
    message(STATUS "${name} skipped: ${python} cannot import ${modules} "
                   "(apt-get install ${packages})")
    return()
  endif()

  # -p no:cacheprovider and PYTHONDONTWRITEBYTECODE keep the source tree clean.
  add_test(NAME ${name}
    COMMAND ${python} -m pytest -q -p no:cacheprovider
            ${CMAKE_CURRENT_SOURCE_DIR}/${test_file})
  set_tests_properties(${name} PROPERTIES
    LABELS "example"
    TIMEOUT 120
    ENVIRONMENT "SHMKV_LIB=$<TARGET_FILE:shmkv>;PYTHONPATH=${PROJECT_SOURCE_DIR}/bindings/python;PYTHONDONTWRITEBYTECODE=1")
endfunction()

# shmkv_example_node_test(<name> [CHROMIUM])
# Registers test.sh of the current directory as the test <name>, pointed
# at the directory of this build's libshmkv.so (SHMKV_LIB_DIR), with its
# reports going to the current directory of the build
# (SHMKV_TEST_ARTIFACTS). It needs node and npm, and with CHROMIUM also
# Chromium (passed as CHROMIUM); it is left out without them.
function(shmkv_example_node_test name)
  cmake_parse_arguments(ARG "CHROMIUM" "" "" ${ARGN})
  if(NOT SHMKV_BUILD_TESTS OR SHMKV_SANITIZE)
    return()
  endif()

  set(programs node npm)
  if(ARG_CHROMIUM)
    list(APPEND programs chromium)
  endif()
  set(found TRUE)
  foreach(program IN LISTS programs)
    string(TOUPPER "SHMKV_${program}" var)
    find_program(${var} ${program})
    if(NOT ${var})
      set(found FALSE)
    endif()
  endforeach()
  if(NOT found)
    shmkv_example_phrase(needs ${programs})
    message(STATUS "${name}: skipped (needs ${needs})")
    return()
  endif()

  set(environment "SHMKV_LIB_DIR=$<TARGET_FILE_DIR:shmkv>")
  if(ARG_CHROMIUM)
    list(APPEND environment "CHROMIUM=${SHMKV_CHROMIUM}")
  endif()
  list(APPEND environment "SHMKV_TEST_ARTIFACTS=${CMAKE_CURRENT_BINARY_DIR}")
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test.sh)
  set_tests_properties(${name} PROPERTIES
    LABELS "example" TIMEOUT 180
    ENVIRONMENT "${environment}")
endfunction()
