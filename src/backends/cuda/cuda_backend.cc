// The CUDA backend's entry points (src/backends/cuda/cuda_backend.h).
#include "backends/cuda/cuda_backend.h"

#include "backends/cuda/cuda_info.h"

namespace kiln::cuda {

bool BackendCompiled() { return true; }
int DeviceCount() { return static_cast<int>(QueryCuda().devices.size()); }
std::string WhyUnsupported(const Node& node) { return "op " + std::string(node.op_name()) + " (no GPU kernels yet)"; }
Expected<std::vector<CudaLayerChoice>> ChooseCudaTactics(const std::vector<const Node*>&, const CudaBuildOptions&) {
  return Unsupported("the CUDA backend has no tactics yet");
}
Expected<std::unique_ptr<CudaExecutor>> CudaExecutor::Create(const plan::Plan&, int) {
  return Unsupported("the CUDA backend cannot execute plans yet");
}

}  // namespace kiln::cuda
