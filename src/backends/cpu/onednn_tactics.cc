// The oneDNN build of the fast CPU tactics (cpu_kernels.h): which op family offers candidates for a node.
#include <dlfcn.h>

#include <cstring>
#include <dnnl.hpp>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"

namespace kiln::cpu {

std::vector<CpuTactic> CpuTacticsFor(const Node& node) {
  // An if-chain rather than a switch over OpKind: the few ops with tactics, every other op has none.
  const OpKind op = node.op();
  if (op == OpKind::kConv || op == OpKind::kFusedConv || op == OpKind::kConvNhwc) return onednn::ConvTactics(node);
  if (op == OpKind::kMatMul || op == OpKind::kGemm || op == OpKind::kFusedGemm) return onednn::MatMulTactics(node);
  if (op == OpKind::kMaxPool || op == OpKind::kAveragePool || op == OpKind::kGlobalAveragePool ||
      op == OpKind::kGlobalMaxPool || op == OpKind::kPoolNhwc) {
    return onednn::PoolTactics(node);
  }
  if (op == OpKind::kSoftmax || op == OpKind::kLogSoftmax) return onednn::SoftmaxTactics(node);
  if (op == OpKind::kTranspose) return onednn::TransposeTactics(node);
  if (op == OpKind::kAttention) return onednn::AttentionTactics(node);
  if (op == OpKind::kLayerNormalization) return onednn::LayerNormTactics(node);
  if (op == OpKind::kQConv) return onednn::QConvTactics(node);
  if (op == OpKind::kQMatMul) return onednn::QMatMulTactics(node);
  if (op == OpKind::kQuantizeLinear || op == OpKind::kDequantizeLinear || op == OpKind::kQAdd) {
    return onednn::QuantEltwiseTactics(node);
  }
  return {};
}

bool HasChannelsLastKernel(const Node& node) {
  return onednn::HasNhwcConv(node) || onednn::HasNhwcPool(node) || onednn::HasNhwcQConv(node);
}

std::unique_ptr<CpuKernel> CreateCpuKernel(const Node& node, const std::string& name) {
  for (CpuTactic& t : CpuTacticsFor(node)) {
    if (t.name == name) return t.create();
  }
  return nullptr;
}

void SetKernelThreads(int threads) {
  // OpenMP comes with libdnnl (libgomp); looked up at run time so that Kiln itself needs no OpenMP flags
  // (clang's sanitizer build has no OpenMP of its own).
  using SetNumThreads = void (*)(int);
  static const auto set = reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set && threads > 0) set(threads);
}

size_t LivePackedWeightBytes() { return onednn::LivePackedBytes(); }

std::vector<PackedWeightCopy> LivePackedWeights(const Tensor& w) {
  std::vector<PackedWeightCopy> out;
  for (const auto& [layout, mem] : onednn::LivePackedOf(w.raw_data())) {
    const size_t size = mem->get_desc().get_size();
    Tensor bytes(DType::kUInt8, {static_cast<int64_t>(size)});
    std::memcpy(bytes.raw_data(), mem->get_data_handle(), size);
    out.push_back({layout, std::move(bytes)});
  }
  return out;
}

std::shared_ptr<const void> AdoptPackedWeights(const Tensor& w, const std::string& layout, const Tensor& bytes) {
  // The plan's bytes are only read (oneDNN takes a non-const handle).
  return onednn::OfferPacked(w.raw_data(), layout, const_cast<void*>(bytes.raw_data()), bytes.nbytes());
}

uint64_t PackedWeightReorders() { return onednn::PackReorders(); }

bool HaveBf16() {
  static const bool have = dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core_bf16;
  return have;
}

namespace {
// Whether oneDNN's effective ISA includes `isa` (oneDNN's ISA values are bit sets, each holding its subsets').
bool IsaIncludes(dnnl::cpu_isa isa) {
  const auto have = static_cast<unsigned>(dnnl::get_effective_cpu_isa()), want = static_cast<unsigned>(isa);
  return (have & want) == want;
}
}  // namespace

bool HaveInt8Dot() {
  static const bool have = IsaIncludes(dnnl::cpu_isa::avx512_core_vnni) || IsaIncludes(dnnl::cpu_isa::avx2_vnni);
  return have;
}

bool HaveWinograd() {
  static const bool have = IsaIncludes(dnnl::cpu_isa::avx512_core);
  return have;
}

bool HaveOneDnn() { return true; }

std::string OneDnnVersion() {
  const dnnl_version_t* v = dnnl::version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace kiln::cpu
