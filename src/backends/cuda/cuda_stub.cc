// Built when no CUDA toolkit was found at configure time.
#include "backends/cuda/cuda_info.h"

namespace kiln {

const CudaInfo& QueryCuda() {
  static const CudaInfo info = [] {
    CudaInfo i;
    i.unavailable_reason = "Kiln was built without CUDA";
    return i;
  }();
  return info;
}

}  // namespace kiln
