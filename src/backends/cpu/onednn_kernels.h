// The oneDNN tactics of each op family; onednn_tactics.cc picks the family by op kind.
#pragma once

#include <vector>

#include "backends/cpu/cpu_kernels.h"

namespace kiln::cpu::onednn {

// Conv, kiln.FusedConv: "onednn.conv" (oneDNN's preferred activation layout, reordered per call) and
// "onednn.conv_nchw" (plain NCHW activations). Both pack the weights once.
std::vector<CpuTactic> ConvTactics(const Node& node);

// MatMul, Gemm, kiln.FusedGemm: "onednn.matmul".
std::vector<CpuTactic> MatMulTactics(const Node& node);

// MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool: "onednn.pool"; Softmax and LogSoftmax over the
// last axis: "onednn.softmax".
std::vector<CpuTactic> PoolTactics(const Node& node);
std::vector<CpuTactic> SoftmaxTactics(const Node& node);

}  // namespace kiln::cpu::onednn
