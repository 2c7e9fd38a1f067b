option(NIMBUS_BUILD_TESTS "Build the test suites" ON)
option(NIMBUS_WERROR "Treat warnings as errors" OFF)

# Common compile options for every Nimbus target.
function(nimbus_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wno-missing-field-initializers
                                           # GCC 12 false positive on Asio coroutine frames (aligned_new
                                           # paired with the frame's sized operator delete) at -O2.
                                           -Wno-mismatched-new-delete
                                           # GCC 12 false positives inside libstdc++'s std::string at -O2.
                                           -Wno-array-bounds -Wno-stringop-overflow)
  if(NIMBUS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  target_compile_definitions(${target} PRIVATE BOOST_ASIO_NO_DEPRECATED)
endfunction()

# Boost headers are the bulk of every compile: one precompiled header, reused by every
# target that touches Asio/Beast/JSON (same flags, so REUSE_FROM is valid).
add_library(nimbus_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
# Same usage requirements as every consumer: GCC refuses a PCH built with other macros.
target_link_libraries(nimbus_pch PUBLIC Boost::headers Boost::json Boost::url spdlog::spdlog)
nimbus_target_defaults(nimbus_pch)
target_precompile_headers(nimbus_pch PRIVATE ${PROJECT_SOURCE_DIR}/cmake/pch.hpp)

function(nimbus_use_pch target)
  target_precompile_headers(${target} REUSE_FROM nimbus_pch)
endfunction()

# nimbus_library(name SOURCES ... DEPS ...)
function(nimbus_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  nimbus_target_defaults(${name})
  nimbus_use_pch(${name})
endfunction()

# nimbus_test(name LABEL unit|integration SOURCES ... DEPS ...)
function(nimbus_test name)
  cmake_parse_arguments(ARG "" "LABEL" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  nimbus_target_defaults(${name})
  nimbus_use_pch(${name})
  gtest_discover_tests(${name} PROPERTIES LABELS ${ARG_LABEL} DISCOVERY_TIMEOUT 30)
endfunction()

# The API's allocator. An API instance allocates and frees a few dozen small blocks per
# request (coroutine frames, strings, replies) from several threads: with glibc's malloc
# that was a tenth of its CPU under load (perf); with jemalloc (which Redis ships with)
# the same stack served 2-20 % more results reads/s in alternating runs, and malloc left
# the top of the profile. Sanitizer builds keep their own allocator, which they need to
# see every block.
option(NIMBUS_JEMALLOC "Link the API with jemalloc" ON)
function(nimbus_use_jemalloc target)
  if(NIMBUS_JEMALLOC AND NOT CMAKE_CXX_FLAGS MATCHES "fsanitize")
    find_library(NIMBUS_JEMALLOC_LIBRARY NAMES jemalloc REQUIRED)
    target_link_libraries(${target} PRIVATE ${NIMBUS_JEMALLOC_LIBRARY})
  endif()
endfunction()
