// What the CUDA backend can report without exposing any CUDA type. Nothing outside src/backends/cuda/
// includes a CUDA header; this header is the backend's whole surface for now.
#pragma once

#include <string>
#include <vector>

namespace kiln {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0;
  int sm_minor = 0;
  size_t memory_bytes = 0;
};

struct CudaInfo {
  bool compiled = false;        // the CUDA backend was built in
  std::string runtime_version;  // CUDA runtime the binary was built against, "13.0"
  std::string driver_version;   // "" when no driver is installed
  std::string cudnn_version;    // "9.19.0"
  std::string cublas_version;   // cuBLASLt, "13.1.0"
  std::vector<CudaDeviceInfo> devices;
  std::string unavailable_reason;  // why no device can be used, when devices is empty
};

// Queries the CUDA runtime once and caches the answer. Safe on machines without a GPU or driver.
const CudaInfo& QueryCuda();

}  // namespace kiln
