# saola_add_test(NAME name SOURCES a.cc b.cc LIBS lib... LABELS unit|integration|gpu|slow [TIMEOUT s])
# One GoogleTest binary registered as one CTest test, so `ctest -L unit` selects by label.
function(saola_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  target_compile_definitions(${T_NAME} PRIVATE
    SAOLA_SOURCE_DIR="${CMAKE_SOURCE_DIR}" SAOLA_BINARY_DIR="${CMAKE_BINARY_DIR}")
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "SAOLA_SOURCE_DIR=${CMAKE_SOURCE_DIR};SAOLA_BINARY_DIR=${CMAKE_BINARY_DIR}")
endfunction()

# saola_add_fuzzer(NAME name SOURCES a.cc LIBS lib...)
# A libFuzzer target; built only with -DSAOLA_FUZZ=ON and clang.
function(saola_add_fuzzer)
  cmake_parse_arguments(F "" "NAME" "SOURCES;LIBS" ${ARGN})
  if(NOT SAOLA_FUZZ)
    return()
  endif()
  add_executable(${F_NAME} ${F_SOURCES})
  target_compile_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
endfunction()

# saola_proto_library(NAME lib ROOT dir PROTOS a.proto b.proto [DEPS lib...])
# C++ messages (protoc) and gRPC stubs (grpc_cpp_plugin) for PROTOS (paths relative to ROOT,
# which is also the import root), compiled into a static library whose users include
# "<path>.pb.h" / "<path>.grpc.pb.h". Generated files land in the current binary dir.
function(saola_proto_library)
  cmake_parse_arguments(P "" "NAME;ROOT" "PROTOS;DEPS;IMPORTS" ${ARGN})
  find_program(SAOLA_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
  set(out ${CMAKE_CURRENT_BINARY_DIR})
  set(sources)
  set(import_flags --proto_path=${P_ROOT})
  foreach(dir ${P_IMPORTS})
    list(APPEND import_flags --proto_path=${dir})
  endforeach()
  foreach(proto ${P_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    add_custom_command(
      OUTPUT ${out}/${stem}.pb.cc ${out}/${stem}.pb.h ${out}/${stem}.grpc.pb.cc ${out}/${stem}.grpc.pb.h
      COMMAND protobuf::protoc ${import_flags} --cpp_out=${out} --grpc_out=${out}
        --plugin=protoc-gen-grpc=${SAOLA_GRPC_CPP_PLUGIN} ${proto}
      WORKING_DIRECTORY ${P_ROOT}
      DEPENDS ${P_ROOT}/${proto}
      COMMENT "protoc ${proto}")
    list(APPEND sources ${out}/${stem}.pb.cc ${out}/${stem}.grpc.pb.cc)
  endforeach()
  add_library(${P_NAME} STATIC ${sources})
  target_include_directories(${P_NAME} PUBLIC ${out})
  # Generated code trips our warnings; it is not ours to fix.
  target_compile_options(${P_NAME} PRIVATE -w)
  target_link_libraries(${P_NAME} PUBLIC protobuf::libprotobuf gRPC::grpc++ ${P_DEPS})
endfunction()
