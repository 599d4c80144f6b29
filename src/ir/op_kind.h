// The closed set of operators Kiln's IR knows. The list is the one place an op is named; the op registry
// (src/ops/) gives each its attributes, shape function and reference kernel. A switch over OpKind has no
// default, so adding an op here fails to compile until every switch handles it.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kiln {

// X(EnumName, "OnnxName"). Ops not from ONNX (fused ops made by passes) use a "kiln." prefix.
#define KILN_OP_LIST(X)                                                                          \
  /* elementwise arithmetic, comparison and logic */                                             \
  X(Add, "Add") X(Sub, "Sub") X(Mul, "Mul") X(Div, "Div") X(Pow, "Pow") X(Mod, "Mod")             \
  X(Max, "Max") X(Min, "Min") X(Sum, "Sum") X(Mean, "Mean")                                      \
  X(Neg, "Neg") X(Abs, "Abs") X(Sqrt, "Sqrt") X(Exp, "Exp") X(Log, "Log")                         \
  X(Reciprocal, "Reciprocal") X(Floor, "Floor") X(Ceil, "Ceil") X(Round, "Round") X(Sign, "Sign") \
  X(Sin, "Sin") X(Cos, "Cos") X(Tan, "Tan") X(Asin, "Asin") X(Acos, "Acos") X(Atan, "Atan")       \
  X(Sinh, "Sinh") X(Cosh, "Cosh") X(Asinh, "Asinh") X(Acosh, "Acosh") X(Atanh, "Atanh")           \
  X(Erf, "Erf") X(IsNaN, "IsNaN") X(IsInf, "IsInf")                                              \
  X(Equal, "Equal") X(Less, "Less") X(Greater, "Greater") X(LessOrEqual, "LessOrEqual")          \
  X(GreaterOrEqual, "GreaterOrEqual") X(And, "And") X(Or, "Or") X(Xor, "Xor") X(Not, "Not")       \
  X(Where, "Where") X(Cast, "Cast") X(CastLike, "CastLike")                                      \
  /* activations */                                                                              \
  X(Relu, "Relu") X(LeakyRelu, "LeakyRelu") X(PRelu, "PRelu") X(Sigmoid, "Sigmoid")               \
  X(Tanh, "Tanh") X(HardSigmoid, "HardSigmoid") X(HardSwish, "HardSwish") X(Elu, "Elu")           \
  X(Selu, "Selu") X(Celu, "Celu") X(Gelu, "Gelu") X(Clip, "Clip") X(Softplus, "Softplus")          \
  X(Softsign, "Softsign") X(Mish, "Mish") X(ThresholdedRelu, "ThresholdedRelu")                  \
  /* convolution, pooling, normalization, matrix products */                                     \
  X(Conv, "Conv") X(ConvTranspose, "ConvTranspose") X(BatchNormalization, "BatchNormalization")   \
  X(InstanceNormalization, "InstanceNormalization") X(LayerNormalization, "LayerNormalization")  \
  X(MaxPool, "MaxPool") X(AveragePool, "AveragePool") X(GlobalAveragePool, "GlobalAveragePool")  \
  X(GlobalMaxPool, "GlobalMaxPool") X(Gemm, "Gemm") X(MatMul, "MatMul") X(Einsum, "Einsum")        \
  X(Softmax, "Softmax") X(LogSoftmax, "LogSoftmax") X(Hardmax, "Hardmax")                         \
  /* reductions */                                                                               \
  X(ReduceSum, "ReduceSum") X(ReduceMean, "ReduceMean") X(ReduceMax, "ReduceMax")                \
  X(ReduceMin, "ReduceMin") X(ReduceProd, "ReduceProd") X(ReduceL1, "ReduceL1")                   \
  X(ReduceL2, "ReduceL2") X(ReduceLogSum, "ReduceLogSum") X(ReduceLogSumExp, "ReduceLogSumExp")    \
  X(ReduceSumSquare, "ReduceSumSquare") X(ArgMax, "ArgMax") X(ArgMin, "ArgMin")                  \
  X(CumSum, "CumSum") X(TopK, "TopK")                                                            \
  /* data movement and shapes */                                                                 \
  X(Concat, "Concat") X(Split, "Split") X(Slice, "Slice") X(Gather, "Gather")                     \
  X(GatherElements, "GatherElements") X(GatherND, "GatherND") X(ScatterND, "ScatterND")            \
  X(ScatterElements, "ScatterElements") X(Reshape, "Reshape") X(Flatten, "Flatten")               \
  X(Transpose, "Transpose") X(Squeeze, "Squeeze") X(Unsqueeze, "Unsqueeze") X(Expand, "Expand")    \
  X(Tile, "Tile") X(Shape, "Shape") X(Size, "Size") X(Constant, "Constant")                      \
  X(ConstantOfShape, "ConstantOfShape") X(Range, "Range") X(Identity, "Identity")                 \
  X(Dropout, "Dropout") X(Pad, "Pad") X(Resize, "Resize") X(DepthToSpace, "DepthToSpace")         \
  X(SpaceToDepth, "SpaceToDepth") X(NonZero, "NonZero") X(OneHot, "OneHot") X(Trilu, "Trilu")      \
  /* recurrent, detection, quantization */                                                       \
  X(LSTM, "LSTM") X(GRU, "GRU") X(RNN, "RNN") X(NonMaxSuppression, "NonMaxSuppression")            \
  X(QuantizeLinear, "QuantizeLinear") X(DequantizeLinear, "DequantizeLinear")                     \
  /* Kiln's own ops, made by passes (src/passes/); reference kernels in src/ops/fused.cc, channels_last.cc, quantized.cc */ \
  X(FusedConv, "kiln.FusedConv") X(FusedGemm, "kiln.FusedGemm") X(Swish, "kiln.Swish")              \
  X(Attention, "kiln.Attention") X(ConvNhwc, "kiln.ConvNhwc") X(PoolNhwc, "kiln.PoolNhwc")            \
  X(QConv, "kiln.QConv") X(QAdd, "kiln.QAdd") X(QMatMul, "kiln.QMatMul")

enum class OpKind : uint16_t {
#define KILN_OP_ENUM_(name, onnx_name) k##name,
  KILN_OP_LIST(KILN_OP_ENUM_)
#undef KILN_OP_ENUM_
};

inline constexpr int kNumOpKinds = 0
#define KILN_OP_COUNT_(name, onnx_name) +1
    KILN_OP_LIST(KILN_OP_COUNT_)
#undef KILN_OP_COUNT_
    ;

// The op's ONNX name ("Conv").
std::string_view OpKindName(OpKind op);
// The OpKind for an ONNX op_type in the default domain, if Kiln's IR has it.
std::optional<OpKind> OpKindFromName(std::string_view onnx_name);

}  // namespace kiln
