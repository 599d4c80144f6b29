# The fast CPU backend: oneDNN tactics when oneDNN is found, else only the reference kernels
# (cpu_kernels_none.cc). Included from the top CMakeLists.txt right after the `kiln` target is defined.
#
# oneDNN is found by its header and library rather than find_package(dnnl CONFIG): Debian's dnnl-config.cmake
# (libdnnl-dev 2.6, built with the OpenCL GPU runtime) calls find_package(OpenCL REQUIRED), which fails the
# whole configure on machines without OpenCL headers even though Kiln uses only the CPU engine.
option(KILN_ENABLE_ONEDNN "Build the oneDNN CPU tactics when oneDNN is found" ON)
set(KILN_HAVE_ONEDNN OFF)
if(KILN_ENABLE_ONEDNN)
  find_path(KILN_ONEDNN_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.hpp dnnl.hpp)
  find_library(KILN_ONEDNN_LIBRARY NAMES dnnl)
  if(KILN_ONEDNN_INCLUDE_DIR AND KILN_ONEDNN_LIBRARY)
    set(KILN_HAVE_ONEDNN ON)
  endif()
endif()
message(STATUS "Kiln oneDNN CPU tactics: ${KILN_HAVE_ONEDNN} ${KILN_ONEDNN_LIBRARY}")

if(KILN_HAVE_ONEDNN)
  if(NOT TARGET kiln_onednn)
    add_library(kiln_onednn INTERFACE IMPORTED)
    target_include_directories(kiln_onednn INTERFACE ${KILN_ONEDNN_INCLUDE_DIR})
    target_link_libraries(kiln_onednn INTERFACE ${KILN_ONEDNN_LIBRARY})
  endif()
  # onednn_*.cc: tactics on oneDNN primitives; kiln_*.cc: Kiln's own kernels that sit among them.
  file(GLOB KILN_ONEDNN_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/onednn_*.cc
       ${CMAKE_CURRENT_LIST_DIR}/kiln_*.cc)
  target_sources(kiln PRIVATE ${KILN_ONEDNN_SOURCES})
  # The 8-bit element-wise kernels must not fuse a multiply and an add into one FMA: they compute the
  # reference kernels' float operations exactly (GCC contracts vector intrinsics by default).
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/kiln_qeltwise.cc PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
  # PUBLIC: `kiln` is a static library, so whatever links it needs libdnnl too.
  target_link_libraries(kiln PUBLIC kiln_onednn)
  target_compile_definitions(kiln PRIVATE KILN_HAVE_ONEDNN=1)
else()
  target_sources(kiln PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cpu_kernels_none.cc)
endif()
