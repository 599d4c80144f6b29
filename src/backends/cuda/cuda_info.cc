#include "backends/cuda/cuda_info.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

namespace kiln {

namespace {
std::string Version3(size_t v, size_t major_div, size_t minor_div) {
  return std::to_string(v / major_div) + "." + std::to_string(v % major_div / minor_div) + "." +
         std::to_string(v % minor_div);
}
}  // namespace

const CudaInfo& QueryCuda() {
  static const CudaInfo info = [] {
    CudaInfo i;
    i.compiled = true;
    i.runtime_version = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
    i.cudnn_version = Version3(cudnnGetVersion(), 10000, 100);
    i.cublas_version = Version3(cublasLtGetVersion(), 10000, 100);
    int driver = 0;
    if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0) {
      i.driver_version = std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
    }
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      i.unavailable_reason = cudaGetErrorString(err);
      return i;
    }
    for (int d = 0; d < count; ++d) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
      i.devices.push_back({d, prop.name, prop.major, prop.minor, prop.totalGlobalMem});
    }
    if (i.devices.empty()) i.unavailable_reason = "no CUDA device found";
    return i;
  }();
  return info;
}

}  // namespace kiln
