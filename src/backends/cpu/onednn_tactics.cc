// The oneDNN build of the fast CPU tactics (cpu_kernels.h): which op family offers candidates for a node.
#include <dnnl.hpp>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/onednn_kernels.h"

namespace kiln::cpu {

std::vector<CpuTactic> CpuTacticsFor(const Node& node) {
  // An if-chain rather than a switch over OpKind: the few ops with tactics, every other op has none.
  const OpKind op = node.op();
  if (op == OpKind::kConv || op == OpKind::kFusedConv) return onednn::ConvTactics(node);
  if (op == OpKind::kMatMul || op == OpKind::kGemm || op == OpKind::kFusedGemm) return onednn::MatMulTactics(node);
  if (op == OpKind::kMaxPool || op == OpKind::kAveragePool || op == OpKind::kGlobalAveragePool ||
      op == OpKind::kGlobalMaxPool) {
    return onednn::PoolTactics(node);
  }
  if (op == OpKind::kSoftmax || op == OpKind::kLogSoftmax) return onednn::SoftmaxTactics(node);
  return {};
}

std::unique_ptr<CpuKernel> CreateCpuKernel(const Node& node, const std::string& name) {
  for (CpuTactic& t : CpuTacticsFor(node)) {
    if (t.name == name) return t.create();
  }
  return nullptr;
}

bool HaveOneDnn() { return true; }

std::string OneDnnVersion() {
  const dnnl_version_t* v = dnnl::version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace kiln::cpu
