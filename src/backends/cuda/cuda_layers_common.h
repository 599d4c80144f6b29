// Helpers shared by the CUDA backend's layer files (cuda_layers.cc, cuda_gemm.cc); internal to
// src/backends/cuda/.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_program.h"

namespace kiln::cuda {

template <typename T>
using Handle = std::shared_ptr<std::remove_pointer_t<T>>;

inline std::vector<int64_t> SizesOf(const Value* v) { return v->shape()->sizes().value_or(std::vector<int64_t>{}); }
inline int64_t Prod(const std::vector<int64_t>& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}
// The fused activation of kiln.FusedConv / kiln.FusedGemm (attributes `activation`, `activation_alpha`,
// `activation_beta`, defaults as in src/ops/fused.cc).
Expected<k::ActParams> FusedActivation(const Attributes& a);
// The activation the layer being lowered applies: FusedActivation of its attributes, or a ReLU where its
// Clip(0, hi) is deferred to the consumer (ProgramBuilder::DeferredClip of its output).
Expected<k::ActParams> LayerActivation(const ProgramBuilder& b);
// "cudnn.conv.a1" with prefix "cudnn.conv.a" -> 1; -1 if the prefix does not match.
int TacticNumber(const std::string& tactic, const std::string& prefix);

// One cuBLASLt product Y = act(alpha * op(A) op(B) + beta * C + bias) (+ post addends), row-major, as
// Kiln's layers see it. Lt is column-major: Y^T [N, M] = op(B)^T [N, K] * op(A)^T [K, M], so B's memory is
// Lt's A and A's memory is Lt's B, and a bias of length N is Lt's per-row bias. The algorithm is the
// tactic's `.hN` (N-th heuristic result).
struct LtGemm {
  int a = -1, b = -1, y = -1;
  int64_t M = 0, N = 0, K = 0, batch = 1;
  bool ta = false, tb = false, a_broadcast = false, b_broadcast = false;
  int bias = -1, cmat = -1;
  float alpha = 1.f, beta = 0.f;
  k::ActParams act;
  std::vector<std::pair<int, k::Broadcast>> post;  // y += t (broadcast), after the product
};
Status AddLtGemm(ProgramBuilder& b, const LtGemm& g);

// A 1x1, stride-1, unpadded, ungrouped convolution (over NHWC: one GEMM).
bool IsPointwise(const Node& node);
// Y [M, N] = X [M, K] W^T with W [N, K] (1x1 filters), bias, residual z as the C matrix, activation.
Status LowerConvPointwise(ProgramBuilder& b, int x, int w, int bias, int z, int y, int64_t M, int64_t N, int64_t K,
                          k::ActParams act);
Status LowerGemm(ProgramBuilder& b);
// kiln.Attention as two cuBLASLt products around a softmax (cuda_gemm.cc, tactic cublaslt.attention).
Status LowerAttention(ProgramBuilder& b);
// kiln.Attention by its tactic: Kiln's fused FP16 kernel (cuda_attention.cc, kiln.flash_attention) or
// LowerAttention.
Status LowerAttentionLayer(ProgramBuilder& b);
// FP16 LayerNormalization with the Adds and the embedding Gather that feed it folded in (cuda_layernorm.cc):
// the layers it folds (empty: none, lower it alone), and its lowering.
std::vector<const Node*> LayerNormFolds(const Node& node, bool half);
Status LowerFusedLayerNorm(ProgramBuilder& b);

}  // namespace kiln::cuda
