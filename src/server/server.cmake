# The inference server (`kiln serve`): KServe v2 over HTTP, dynamic batching, metrics. Depends only on the
# public runtime API (include/kiln) plus cpp-httplib and nlohmann::json (Debian's libcpp-httplib-dev,
# nlohmann-json3-dev) for the HTTP front end, and gRPC (Debian's libgrpc++-dev, protobuf-compiler-grpc) for the
# optional gRPC front end: without gRPC the server builds with HTTP only.
find_package(nlohmann_json 3.10 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(KILN_HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)  # the compiled library and its -D flags

# Triton's config.pbtxt schema (the subset Kiln reads), generated with protoc.
set(KILN_SERVER_PROTO_OUT ${CMAKE_CURRENT_BINARY_DIR}/server_proto)
set(KILN_SERVER_PROTO_SRCS ${KILN_SERVER_PROTO_OUT}/server/model_config.pb.cc)
add_custom_command(
  OUTPUT ${KILN_SERVER_PROTO_SRCS} ${KILN_SERVER_PROTO_OUT}/server/model_config.pb.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${KILN_SERVER_PROTO_OUT}
  COMMAND protobuf::protoc --cpp_out=${KILN_SERVER_PROTO_OUT} -I${PROJECT_SOURCE_DIR}/src
          ${PROJECT_SOURCE_DIR}/src/server/model_config.proto
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/model_config.proto protobuf::protoc
  COMMENT "protoc: src/server/model_config.proto")

# The gRPC front end (Triton's GRPCInferenceService): grpc_*.cc and grpc_service.proto, when gRPC is found.
option(KILN_SERVER_WITH_GRPC "Build kiln serve's gRPC front end when gRPC is found" ON)
if (KILN_SERVER_WITH_GRPC)
  find_package(gRPC CONFIG QUIET)
endif()
if (NOT KILN_SERVER_WITH_GRPC)
  set(KILN_SERVER_GRPC OFF)
elseif (gRPC_FOUND AND TARGET gRPC::grpc++ AND TARGET gRPC::grpc_cpp_plugin)
  set(KILN_SERVER_GRPC ON)
  set(KILN_GRPC_TARGET gRPC::grpc++)
  set(KILN_GRPC_PLUGIN $<TARGET_FILE:gRPC::grpc_cpp_plugin>)
else()
  pkg_check_modules(KILN_GRPCPP QUIET IMPORTED_TARGET grpc++)
  find_program(KILN_GRPC_CPP_PLUGIN grpc_cpp_plugin)
  if (KILN_GRPCPP_FOUND AND KILN_GRPC_CPP_PLUGIN)
    set(KILN_SERVER_GRPC ON)
    set(KILN_GRPC_TARGET PkgConfig::KILN_GRPCPP)
    set(KILN_GRPC_PLUGIN ${KILN_GRPC_CPP_PLUGIN})
  else()
    set(KILN_SERVER_GRPC OFF)
  endif()
endif()
if (KILN_SERVER_GRPC)
  message(STATUS "kiln serve: gRPC front end enabled")
  set(KILN_GRPC_GENERATED ${KILN_SERVER_PROTO_OUT}/server/grpc_service.pb.cc
                          ${KILN_SERVER_PROTO_OUT}/server/grpc_service.grpc.pb.cc)
  add_custom_command(
    OUTPUT ${KILN_GRPC_GENERATED} ${KILN_SERVER_PROTO_OUT}/server/grpc_service.pb.h
           ${KILN_SERVER_PROTO_OUT}/server/grpc_service.grpc.pb.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${KILN_SERVER_PROTO_OUT}
    COMMAND protobuf::protoc --cpp_out=${KILN_SERVER_PROTO_OUT} --grpc_out=${KILN_SERVER_PROTO_OUT}
            --plugin=protoc-gen-grpc=${KILN_GRPC_PLUGIN} -I${PROJECT_SOURCE_DIR}/src
            ${PROJECT_SOURCE_DIR}/src/server/grpc_service.proto
    DEPENDS ${CMAKE_CURRENT_LIST_DIR}/grpc_service.proto ${CMAKE_CURRENT_LIST_DIR}/model_config.proto
            protobuf::protoc
    COMMENT "protoc + grpc_cpp_plugin: src/server/grpc_service.proto")
elseif (NOT KILN_SERVER_WITH_GRPC)
  message(STATUS "kiln serve: building without the gRPC front end (KILN_SERVER_WITH_GRPC=OFF)")
else()
  message(STATUS "kiln serve: gRPC not found (find_package(gRPC) / pkg-config grpc++ and grpc_cpp_plugin): "
                 "building without the gRPC front end (install libgrpc++-dev protobuf-compiler-grpc)")
endif()

file(GLOB KILN_SERVER_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cc)
list(FILTER KILN_SERVER_SOURCES EXCLUDE REGEX "/(grpc_[^/]*|cuda_shared_memory[^/]*)\\.cc$")
add_library(kiln_server STATIC ${KILN_SERVER_SOURCES} ${KILN_SERVER_PROTO_SRCS})
# CUDA shared memory opens the client's cudaIpcMemHandle_t with the CUDA runtime when the CUDA build switch is
# on (KILN_HAVE_CUDA); otherwise a stub answers that this build has no CUDA.
if (KILN_HAVE_CUDA)
  find_package(CUDAToolkit REQUIRED)
  target_sources(kiln_server PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cuda_shared_memory.cc)
  target_link_libraries(kiln_server PRIVATE CUDA::cudart)
else()
  target_sources(kiln_server PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cuda_shared_memory_stub.cc)
endif()
if (KILN_SERVER_GRPC)
  file(GLOB KILN_SERVER_GRPC_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/grpc_*.cc)
  target_sources(kiln_server PRIVATE ${KILN_SERVER_GRPC_SOURCES} ${KILN_GRPC_GENERATED})
  target_link_libraries(kiln_server PRIVATE ${KILN_GRPC_TARGET})
  target_compile_definitions(kiln_server PUBLIC KILN_SERVER_GRPC=1)
endif()
target_include_directories(kiln_server PUBLIC ${KILN_SERVER_PROTO_OUT} ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(kiln_server PUBLIC kiln protobuf::libprotobuf Threads::Threads
                      PRIVATE PkgConfig::KILN_HTTPLIB nlohmann_json::nlohmann_json rt ${CMAKE_DL_LIBS})

# The CUDA shared-memory round trip through another process (tests/server_cuda): CUDA builds only; it
# skips on a machine without a GPU.
if (KILN_HAVE_CUDA AND KILN_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
  add_executable(kiln_server_cuda_tests ${CMAKE_CURRENT_LIST_DIR}/../../tests/server_cuda/cuda_shm_test.cc)
  target_link_libraries(kiln_server_cuda_tests PRIVATE kiln_server CUDA::cudart GTest::gtest GTest::gtest_main)
  gtest_discover_tests(kiln_server_cuda_tests DISCOVERY_TIMEOUT 60 PROPERTIES LABELS unit)
endif()

target_sources(kiln_cli PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../../tools/cmd_serve.cc)
target_link_libraries(kiln_cli PRIVATE kiln_server)
