// The oneDNN tactics of each op family; onednn_tactics.cc picks the family by op kind.
#pragma once

#include <vector>

#include "backends/cpu/cpu_kernels.h"

namespace kiln::cpu::onednn {

// Conv, kiln.FusedConv: "onednn.conv" (oneDNN's preferred activation layout, reordered per call) and
// "onednn.conv_nchw" (plain NCHW activations); kiln.ConvNhwc: "onednn.conv_nhwc". All pack the weights
// once. HasNhwcConv: whether a Conv / kiln.FusedConv would have "onednn.conv_nhwc" as kiln.ConvNhwc.
std::vector<CpuTactic> ConvTactics(const Node& node);
bool HasNhwcConv(const Node& node);

// MatMul, Gemm, kiln.FusedGemm: "onednn.matmul".
std::vector<CpuTactic> MatMulTactics(const Node& node);

// MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool: "onednn.pool"; kiln.PoolNhwc:
// "onednn.pool_nhwc" (HasNhwcPool: whether a pool would have it); Softmax and LogSoftmax over the last
// axis: "onednn.softmax".
std::vector<CpuTactic> PoolTactics(const Node& node);
bool HasNhwcPool(const Node& node);
std::vector<CpuTactic> SoftmaxTactics(const Node& node);

// kiln.Attention with Q, K, V of one rank and equal batch dims: "onednn.attention".
std::vector<CpuTactic> AttentionTactics(const Node& node);

// LayerNormalization over the last axis with constant [C] Scale and B: "onednn.layernorm".
std::vector<CpuTactic> LayerNormTactics(const Node& node);

// Transpose of rank 1 to 6: "onednn.transpose" (f32; a reorder from strided to plain memory) and, when
// the last dim stays last, "kiln.transpose_rows" (row copies).
std::vector<CpuTactic> TransposeTactics(const Node& node);

// kiln.QConv (2-D, i8 weights with zero points 0, constant scales): "onednn.qconv" (onednn_qconv.cc).
// HasNhwcQConv: whether it has one (and so may be made channels-last).
std::vector<CpuTactic> QConvTactics(const Node& node);
bool HasNhwcQConv(const Node& node);
// "" if the scales, zero points and bias of a kiln.QConv / kiln.QMatMul (inputs 1, 2, 4-8) suit the 8-bit
// kernels: constants, input and output per tensor, weights symmetric and per tensor or per `channels`, an
// f32 bias; else why not.
std::string WhyNotQuantParams(const Node& node, int64_t channels);

// kiln.QMatMul (8-bit A per tensor, constant i8 [K, N] B with zero points 0, constant scales):
// "onednn.qmatmul" (onednn_qmatmul.cc).
std::vector<CpuTactic> QMatMulTactics(const Node& node);

// Per-tensor QuantizeLinear / DequantizeLinear and same-shape kiln.QAdd: "kiln.quantize",
// "kiln.dequantize", "kiln.qadd" (kiln_qeltwise.cc: Kiln's own loops, not oneDNN's).
std::vector<CpuTactic> QuantEltwiseTactics(const Node& node);

}  // namespace kiln::cpu::onednn
