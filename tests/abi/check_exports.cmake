execute_process(COMMAND ${NM} -D --defined-only -C ${LIB} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REPLACE "\n" ";" lines "${syms}")
set(bad "")
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-f]+ [TDBRVW] (.*)$")
    set(sym "${CMAKE_MATCH_1}")
    if(NOT sym MATCHES "^shmkv_" AND NOT sym MATCHES "^shmkv::(Cache|ErrorCategory|Result)"
       AND NOT sym MATCHES "^(typeinfo|vtable|guard variable|typeinfo name) "
       # Vague-linkage instantiations of standard templates carry default
       # visibility from the standard headers.
       AND NOT sym MATCHES "^(std|__gnu_cxx)::" AND NOT sym MATCHES "^void std::")
      list(APPEND bad "${sym}")
    endif()
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "non-API symbols exported: ${bad}")
endif()
message(STATUS "only API symbols exported")
