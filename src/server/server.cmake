# The inference server (`kiln serve`): KServe v2 over HTTP, dynamic batching, metrics. Depends only on the
# public runtime API (include/kiln) plus cpp-httplib and nlohmann::json (Debian's libcpp-httplib-dev,
# nlohmann-json3-dev) for the HTTP front end.
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

file(GLOB KILN_SERVER_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cc)
add_library(kiln_server STATIC ${KILN_SERVER_SOURCES} ${KILN_SERVER_PROTO_SRCS})
target_include_directories(kiln_server PUBLIC ${KILN_SERVER_PROTO_OUT} ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(kiln_server PUBLIC kiln protobuf::libprotobuf Threads::Threads
                      PRIVATE PkgConfig::KILN_HTTPLIB nlohmann_json::nlohmann_json)

target_sources(kiln_cli PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../../tools/cmd_serve.cc)
target_link_libraries(kiln_cli PRIVATE kiln_server)
