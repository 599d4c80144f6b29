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

// --- the backend surface (src/backends/cuda/cuda_backend.h) without CUDA -------------------------
#include "backends/cuda/cuda_backend.h"

namespace kiln::cuda {

bool BackendCompiled() { return false; }
int DeviceCount() { return 0; }
std::string WhyUnsupported(const Node&) { return "Kiln was built without CUDA"; }
Expected<std::vector<CudaLayerChoice>> ChooseCudaTactics(const std::vector<const Node*>&, const CudaBuildOptions&) {
  return Unsupported("Kiln was built without CUDA (no CUDA toolkit at configure time)");
}
Expected<std::unique_ptr<CudaExecutor>> CudaExecutor::Create(const plan::Plan&, int) {
  return Unsupported("Kiln was built without CUDA (no CUDA toolkit at configure time)");
}

}  // namespace kiln::cuda
