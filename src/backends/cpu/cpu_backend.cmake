# The fast CPU backend. Without oneDNN only the reference kernels exist (cpu_kernels_none.cc).
target_sources(kiln PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cpu_kernels_none.cc)
