// The neural-network op groups (src/ops/kernels/nn_*.cc), registered together by RegisterNnOps (nn.cc).
#pragma once

namespace kiln {

class OpRegistry;

void RegisterNnConvOps(OpRegistry& r);     // Conv, ConvTranspose
void RegisterNnPoolOps(OpRegistry& r);     // MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool
void RegisterNnNormOps(OpRegistry& r);     // BatchNormalization, InstanceNormalization, LayerNormalization
void RegisterNnMatMulOps(OpRegistry& r);   // Gemm, MatMul
void RegisterNnSoftmaxOps(OpRegistry& r);  // Softmax, LogSoftmax, Hardmax
void RegisterNnEinsumOps(OpRegistry& r);   // Einsum

}  // namespace kiln
