// The CUDA backend against the reference CPU kernels: one table of small graphs (one op or one fused
// pattern each, with shapes from ResNet/MobileNet/BERT layers and odd sizes), each built for the GPU in
// FP32 and FP16, run on random inputs and compared with RunReference on the same (optimized) graph.
// Tolerances are norm-wise, ||gpu - ref|| / ||ref||:
//   FP32 1e-4: cuDNN runs with FMA math (no TF32); FFT and Winograd algorithms and cuBLASLt's split-K
//     reorder sums, which costs a few ulps per output (measured well under 1e-5), never 1e-4.
//   FP16 1e-2: inputs and weights are rounded to 11-bit mantissas (2^-11 ~ 5e-4 relative each) and the
//     outputs of every layer again; sums accumulate in FP32. A few layers deep this stays under 5e-3.
// Every test skips without a GPU (CI has none), so this file only has to compile and link there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>

#include "backends/cuda/cuda_backend.h"
#if KILN_HAVE_CUDA
#include "backends/cuda/cuda_program.h"
#endif
#include "build/builder.h"
#include "kiln/engine.h"
#include "ops/infer.h"
#include "passes/pass.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

#define KILN_SKIP_WITHOUT_GPU()                                              \
  do {                                                                       \
    if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no usable GPU";           \
  } while (0)

Tensor RandomTensor(const std::vector<int64_t>& sizes, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  Tensor t(DType::kFloat32, sizes);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

double RelativeError(const Tensor& got, const Tensor& want) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = got.data<float>()[i], w = want.data<float>()[i];
    if (!std::isfinite(g)) return INFINITY;
    num += (g - w) * (g - w);
    den += w * w;
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// A small graph builder for the table.
struct G {
  Graph g;
  std::mt19937 rng{42};
  Value* In(const std::string& name, std::vector<int64_t> sizes) {
    std::vector<Dim> dims(sizes.begin(), sizes.end());
    Value* v = g.AddValue(name, DType::kFloat32, Shape(std::move(dims)));
    g.AddInput(v);
    return v;
  }
  Value* W(const std::string& name, std::vector<int64_t> sizes, float scale = 0.5f) {
    return g.AddConstant(name, RandomTensor(sizes, rng, -scale, scale));
  }
  Value* Ints(const std::string& name, std::vector<int64_t> v) { return g.AddConstant(name, Tensor::FromVector(v)); }
  Value* Scalar(const std::string& name, float v) { return g.AddConstant(name, Tensor::Scalar(v)); }
  Value* Op(OpKind op, std::vector<Value*> ins, const std::string& out, int opset = 17) {
    Value* y = g.AddValue(out, DType::kFloat32);
    last = g.AddNode(op, out + "_node", std::move(ins), {y}, opset);
    return y;
  }
  Node* last = nullptr;
  Graph Done(Value* y) {
    g.AddOutput(y);
    EXPECT_TRUE(InferShapes(g).ok());
    return std::move(g);
  }
};

Value* Conv(G& b, Value* x, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t group,
            bool bias, const std::string& name, int64_t dilation = 1) {
  std::vector<Value*> ins = {x, b.W(name + "_w", {cout, cin / group, k, k})};
  if (bias) ins.push_back(b.W(name + "_b", {cout}));
  Value* y = b.Op(OpKind::kConv, ins, name);
  b.last->attrs().Set("kernel_shape", std::vector<int64_t>{k, k});
  b.last->attrs().Set("strides", std::vector<int64_t>{stride, stride});
  b.last->attrs().Set("pads", std::vector<int64_t>{pad, pad, pad, pad});
  b.last->attrs().Set("dilations", std::vector<int64_t>{dilation, dilation});
  b.last->attrs().Set("group", group);
  return y;
}

struct Case {
  std::string name;
  std::function<Graph()> make;
  std::string conv_tactic = "";  // if set, every convolution runs this tactic instead of the tuner's pick
  std::string gemm_tactic = "";  // likewise for every Gemm, MatMul and kiln.FusedGemm
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  cases.push_back({"conv3x3_bias_relu", [] {
                     G b;
                     Value* x = b.In("x", {2, 16, 14, 14});
                     return b.Done(b.Op(OpKind::kRelu, {Conv(b, x, 16, 32, 3, 1, 1, 1, true, "c")}, "y"));
                   }});
  cases.push_back({"conv_stride2_dilation2_odd", [] {
                     G b;
                     Value* x = b.In("x", {3, 5, 17, 15});
                     return b.Done(Conv(b, x, 5, 7, 3, 2, 2, 1, false, "y", 2));
                   }});
  cases.push_back({"conv7x7_stem_maxpool", [] {
                     G b;
                     Value* x = b.In("x", {1, 3, 64, 64});
                     Value* c = b.Op(OpKind::kRelu, {Conv(b, x, 3, 16, 7, 2, 3, 1, true, "c")}, "r");
                     Value* y = b.Op(OpKind::kMaxPool, {c}, "y");
                     b.last->attrs().Set("kernel_shape", std::vector<int64_t>{3, 3});
                     b.last->attrs().Set("strides", std::vector<int64_t>{2, 2});
                     b.last->attrs().Set("pads", std::vector<int64_t>{1, 1, 1, 1});
                     return b.Done(y);
                   }});
  cases.push_back({"depthwise_relu6", [] {
                     G b;
                     Value* x = b.In("x", {2, 32, 14, 14});
                     Value* c = Conv(b, x, 32, 32, 3, 1, 1, 32, true, "c");
                     return b.Done(b.Op(OpKind::kClip, {c, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}, "y", 13));
                   }});
  const std::function<Graph()> resnet_block = [] {
    G b;
    Value* x = b.In("x", {2, 64, 8, 8});
    Value* c1 = b.Op(OpKind::kRelu, {Conv(b, x, 64, 64, 1, 1, 0, 1, true, "c1")}, "r1");
    Value* c2 = Conv(b, c1, 64, 64, 3, 1, 1, 1, true, "c2");
    Value* s = b.Op(OpKind::kAdd, {c2, x}, "s");
    return b.Done(b.Op(OpKind::kRelu, {s}, "y"));
  };
  cases.push_back({"resnet_block_fused_cudnn", resnet_block, "cudnn.conv_bias_act.a1"});
  cases.push_back({"resnet_block_cudnn_then_epilogue", resnet_block, "cudnn.conv.a1"});
  cases.push_back({"pointwise_as_gemm", [] {  // FP16 only: NHWC 1x1 convolutions as cuBLASLt GEMMs
                     G b;
                     Value* x = b.In("x", {2, 32, 9, 7});
                     Value* c1 = b.Op(OpKind::kRelu, {Conv(b, x, 32, 32, 1, 1, 0, 1, true, "c1")}, "r1");
                     Value* s = b.Op(OpKind::kAdd, {Conv(b, c1, 32, 32, 1, 1, 0, 1, true, "c2"), x}, "s");
                     Value* r = b.Op(OpKind::kRelu, {s}, "r2");
                     Value* c3 = Conv(b, r, 32, 24, 1, 1, 0, 1, false, "c3");
                     return b.Done(b.Op(OpKind::kClip, {c3, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}, "y", 13));
                   }, "cublaslt.conv1x1.h0"});
  cases.push_back({"depthwise_kiln_kernel", [] {
                     G b;
                     Value* x = b.In("x", {2, 24, 15, 13});
                     Value* c = Conv(b, x, 24, 24, 3, 2, 1, 24, true, "c");
                     return b.Done(b.Op(OpKind::kClip, {c, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}, "y", 13));
                   }, "kiln.dwconv"});
  // Stride 1, no activation, odd sizes narrower than the kernel's 4-pixel tile; and 12 channels (not a
  // multiple of 8: the FP16 NHWC path falls back to the one-output-per-thread kernel).
  cases.push_back({"depthwise_kiln_kernel_stride1", [] {
                     G b;
                     Value* x = b.In("x", {3, 40, 9, 3});
                     return b.Done(Conv(b, x, 40, 40, 3, 1, 1, 40, true, "y"));
                   }, "kiln.dwconv"});
  cases.push_back({"depthwise_kiln_kernel_12_channels", [] {
                     G b;
                     Value* x = b.In("x", {2, 12, 10, 10});
                     return b.Done(b.Op(OpKind::kRelu, {Conv(b, x, 12, 12, 3, 1, 1, 12, true, "c")}, "y"));
                   }, "kiln.dwconv"});
  // The one-pixel-a-thread form (kiln.dwconv.t1) at both strides, odd sizes, and under a deferred Clip.
  cases.push_back({"depthwise_kiln_kernel_t1", [] {
                     G b;
                     Value* x = b.In("x", {2, 24, 15, 13});
                     Value* c = Conv(b, x, 24, 24, 3, 2, 1, 24, true, "c");
                     Value* r = b.Op(OpKind::kClip, {c, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}, "r", 13);
                     return b.Done(Conv(b, r, 24, 24, 3, 1, 1, 24, true, "y"));
                   }, "kiln.dwconv.t1"});
  // MobileNetV2's inverted residual: the expansion's Clip(0, 6) runs as a ReLU and the depthwise kernel
  // clamps its input to 6 (DeferredClips). The input is scaled so that many expanded values pass 6.
  cases.push_back({"inverted_residual_deferred_clip", [] {
                     G b;
                     Value* x = b.In("x", {2, 16, 11, 10});
                     Value* xs = b.Op(OpKind::kMul, {x, b.Scalar("ten", 10.f)}, "xs");
                     Value* e = Conv(b, xs, 16, 48, 1, 1, 0, 1, true, "e");
                     Value* er = b.Op(OpKind::kClip, {e, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}, "er", 13);
                     Value* d = Conv(b, er, 48, 48, 3, 1, 1, 48, true, "d");
                     Value* dr = b.Op(OpKind::kClip, {d, b.Scalar("lo2", 0.f), b.Scalar("hi2", 6.f)}, "dr", 13);
                     Value* p = Conv(b, dr, 48, 16, 1, 1, 0, 1, true, "p");
                     return b.Done(b.Op(OpKind::kAdd, {p, xs}, "y"));
                   }, "kiln.dwconv"});
  // Kiln's pointwise kernel (forced where it applies: K <= 64), FP16: an expansion 16 -> 96 with ReLU6,
  // and a 24 -> 24 projection with a residual and ReLU; 189 pixels (not a multiple of its 4-pixel groups).
  cases.push_back({"pointwise_kiln_kernel", [] {
                     G b;
                     Value* x = b.In("x", {3, 16, 9, 7});
                     Value* e = Conv(b, x, 16, 96, 1, 1, 0, 1, true, "e");
                     Value* er = b.Op(OpKind::kClip, {e, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}, "er", 13);
                     Value* d = Conv(b, er, 96, 96, 3, 1, 1, 96, true, "d");
                     Value* p = Conv(b, d, 96, 24, 1, 1, 0, 1, false, "p");
                     Value* q = Conv(b, p, 24, 24, 1, 1, 0, 1, true, "q");
                     return b.Done(b.Op(OpKind::kRelu, {b.Op(OpKind::kAdd, {q, p}, "s")}, "y"));
                   }, "kiln.pointwise"});
  // Kiln's stem kernel (forced where it applies: at most 4 input channels), FP16: MobileNetV2's 3 -> 32 3x3
  // stride 2 with ReLU6 on odd sizes, then 3 channels again (a 1x1 to 3) into a 5x5 to 24 outputs (K rounded
  // up to the kernel's 32 inside), no bias, with a residual.
  cases.push_back({"stem_kiln_kernel", [] {
                     G b;
                     Value* x = b.In("x", {2, 3, 17, 15});
                     Value* c = Conv(b, x, 3, 32, 3, 2, 1, 1, true, "c");
                     Value* r = b.Op(OpKind::kClip, {c, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}, "r", 13);
                     Value* t = Conv(b, r, 32, 3, 1, 1, 0, 1, true, "t");
                     Value* u = Conv(b, t, 3, 24, 5, 1, 2, 1, false, "u");
                     Value* v = Conv(b, t, 3, 24, 1, 1, 0, 1, true, "v");
                     return b.Done(b.Op(OpKind::kRelu, {b.Op(OpKind::kAdd, {u, v}, "s")}, "y"));
                   }, "kiln.stemconv"});
  // GEMM weights in the other layout (cublaslt.gemm.t, forced): a MatMul with a [K, N] weight and a bias,
  // then a Gemm with transB (its weight [N, K] becomes [K, N]).
  {
    Case gemm_t{"gemm_weight_transposed", [] {
                  G b;
                  Value* x = b.In("x", {5, 7, 24});
                  Value* m = b.Op(OpKind::kMatMul, {x, b.W("w1", {24, 40})}, "m");
                  Value* r = b.Op(OpKind::kRelu, {b.Op(OpKind::kAdd, {m, b.W("b1", {40})}, "mb")}, "r");
                  Value* f = b.Op(OpKind::kReshape, {r, b.Ints("flat", {35, 40})}, "f", 13);
                  Value* y = b.Op(OpKind::kGemm, {f, b.W("w2", {16, 40}), b.W("b2", {16})}, "y");
                  b.last->attrs().Set("transB", int64_t{1});
                  return b.Done(y);
                }};
    gemm_t.gemm_tactic = "cublaslt.gemm.t.h0";
    cases.push_back(gemm_t);
  }
  cases.push_back({"resnet_block_residual", [] {
                     G b;
                     Value* x = b.In("x", {2, 64, 8, 8});
                     Value* c1 = b.Op(OpKind::kRelu, {Conv(b, x, 64, 64, 1, 1, 0, 1, true, "c1")}, "r1");
                     Value* c2 = Conv(b, c1, 64, 64, 3, 1, 1, 1, true, "c2");
                     Value* s = b.Op(OpKind::kAdd, {c2, x}, "s");
                     return b.Done(b.Op(OpKind::kRelu, {s}, "y"));
                   }});
  cases.push_back({"mobilenet_tail_gap_gemm", [] {
                     G b;
                     Value* x = b.In("x", {4, 24, 7, 7});
                     Value* c = Conv(b, x, 24, 40, 1, 1, 0, 1, true, "c");
                     Value* p = b.Op(OpKind::kGlobalAveragePool, {c}, "p");
                     Value* f = b.Op(OpKind::kFlatten, {p}, "f");
                     Value* y = b.Op(OpKind::kGemm, {f, b.W("fw", {10, 40}), b.W("fb", {10})}, "y");
                     b.last->attrs().Set("transB", int64_t{1});
                     return b.Done(y);
                   }});
  cases.push_back({"avgpool_pads_ceil", [] {
                     G b;
                     Value* x = b.In("x", {2, 6, 11, 9});
                     Value* y = b.Op(OpKind::kAveragePool, {x}, "y");
                     b.last->attrs().Set("kernel_shape", std::vector<int64_t>{3, 2});
                     b.last->attrs().Set("strides", std::vector<int64_t>{2, 2});
                     b.last->attrs().Set("pads", std::vector<int64_t>{1, 0, 1, 1});
                     b.last->attrs().Set("ceil_mode", int64_t{1});
                     return b.Done(y);
                   }});
  cases.push_back({"embedding_sums_8_wide", [] {  // FP16: broadcast sums 8 elements per thread
                     G b;
                     Value* x = b.In("x", {3, 5, 24});
                     Value* t = b.Op(OpKind::kAdd, {x, b.W("tok", {24})}, "t");
                     Value* p = b.Op(OpKind::kAdd, {t, b.In("pos", {1, 5, 24})}, "p");
                     return b.Done(b.Op(OpKind::kMul, {p, b.In("gate", {3, 1, 24})}, "y"));
                   }});
  cases.push_back({"embedding_layernorm", [] {  // FP16: gather + two broadcast sums folded into the norm
                     G b;
                     Value* ids = b.g.AddValue("ids", DType::kInt64, Shape{3, 5});
                     b.g.AddInput(ids);
                     Value* e = b.Op(OpKind::kGather, {b.W("table", {11, 64}), ids}, "e", 13);
                     Value* t = b.Op(OpKind::kAdd, {e, b.W("tok", {64})}, "t");
                     Value* p = b.Op(OpKind::kAdd, {t, b.In("pos", {1, 5, 64})}, "p");
                     Value* n = b.Op(OpKind::kLayerNormalization, {p, b.W("g", {64}), b.W("bt", {64})}, "n");
                     b.last->attrs().Set("axis", int64_t{-1});
                     return b.Done(n);
                   }});
  cases.push_back({"pools_8_channel_words", [] {  // FP16 NHWC with C % 8 == 0: 16-byte words per tap
                     G b;
                     Value* x = b.In("x", {2, 16, 13, 11});
                     Value* m = b.Op(OpKind::kMaxPool, {x}, "m");
                     b.last->attrs().Set("kernel_shape", std::vector<int64_t>{3, 3});
                     b.last->attrs().Set("strides", std::vector<int64_t>{2, 2});
                     b.last->attrs().Set("pads", std::vector<int64_t>{1, 1, 1, 1});
                     Value* y = b.Op(OpKind::kAveragePool, {m}, "y");
                     b.last->attrs().Set("kernel_shape", std::vector<int64_t>{3, 2});
                     b.last->attrs().Set("pads", std::vector<int64_t>{1, 0, 1, 1});
                     b.last->attrs().Set("ceil_mode", int64_t{1});
                     return b.Done(y);
                   }});
  cases.push_back({"vgg_tail_reshape_gemm_relu", [] {
                     G b;
                     Value* x = b.In("x", {3, 32, 7, 7});
                     Value* r = b.Op(OpKind::kReshape, {x, b.Ints("shape", {3, -1})}, "r");
                     Value* g1 = b.Op(OpKind::kGemm, {r, b.W("w1", {64, 1568}, 0.05f), b.W("b1", {64})}, "g1");
                     b.last->attrs().Set("transB", int64_t{1});
                     Value* a = b.Op(OpKind::kRelu, {g1}, "a");
                     Value* y = b.Op(OpKind::kGemm, {a, b.W("w2", {64, 13}), b.W("b2", {1, 13})}, "y");
                     return b.Done(y);
                   }});
  cases.push_back({"matmul_batched_broadcast", [] {
                     G b;
                     Value* a = b.In("a", {2, 3, 5, 7});
                     Value* c = b.In("c", {2, 3, 7, 9});
                     Value* m = b.Op(OpKind::kMatMul, {a, c}, "m");
                     return b.Done(b.Op(OpKind::kMatMul, {m, b.W("w", {9, 4})}, "y"));
                   }});
  cases.push_back({"eltwise_broadcast_chain", [] {
                     G b;
                     Value* x = b.In("x", {2, 3, 4, 5});
                     Value* z = b.In("z", {3, 1, 5});
                     Value* s = b.Op(OpKind::kAdd, {x, z}, "s");
                     Value* m = b.Op(OpKind::kMul, {s, b.W("k", {4, 1})}, "m");
                     Value* d = b.Op(OpKind::kDiv, {m, b.Scalar("two", 2.f)}, "d");
                     Value* e = b.Op(OpKind::kSub, {b.W("k2", {5}), d}, "e");
                     Value* t = b.Op(OpKind::kTanh, {e}, "t");
                     Value* g = b.Op(OpKind::kSigmoid, {t}, "g");
                     Value* h = b.Op(OpKind::kHardSwish, {g}, "h");
                     Value* l = b.Op(OpKind::kLeakyRelu, {h}, "l");
                     Value* r = b.Op(OpKind::kErf, {l}, "r");
                     return b.Done(b.Op(OpKind::kMul, {r, x}, "y"));
                   }});
  cases.push_back({"softmax_transpose_concat", [] {
                     G b;
                     Value* x = b.In("x", {2, 4, 6, 10});
                     Value* s = b.Op(OpKind::kSoftmax, {x}, "s", 13);
                     Value* t = b.Op(OpKind::kTranspose, {s}, "t");
                     b.last->attrs().Set("perm", std::vector<int64_t>{0, 2, 1, 3});
                     Value* u = b.In("u", {2, 6, 3, 10});
                     Value* c = b.Op(OpKind::kConcat, {t, u}, "c");
                     b.last->attrs().Set("axis", int64_t{2});
                     return b.Done(b.Op(OpKind::kLogSoftmax, {c}, "y", 13));
                   }});
  cases.push_back({"transposes_tiled_chunked_general", [] {
                     G b;
                     Value* x = b.In("x", {3, 5, 1, 7, 9});
                     Value* t1 = b.Op(OpKind::kTranspose, {x}, "t1", 13);  // general
                     b.last->attrs().Set("perm", std::vector<int64_t>{3, 0, 4, 2, 1});
                     Value* t2 = b.Op(OpKind::kTranspose, {t1}, "t2", 13);  // [7,3,9,1,5] -> batched 2-D
                     b.last->attrs().Set("perm", std::vector<int64_t>{0, 4, 3, 1, 2});
                     Value* t3 = b.Op(OpKind::kTranspose, {t2}, "t3", 13);  // [7,5,1,3,9] -> chunks of 9
                     b.last->attrs().Set("perm", std::vector<int64_t>{1, 0, 2, 3, 4});
                     return b.Done(b.Op(OpKind::kSigmoid, {t3}, "y"));
                   }});
  cases.push_back({"bert_layernorm_gelu", [] {
                     G b;
                     Value* x = b.In("x", {2, 9, 64});
                     Value* n = b.Op(OpKind::kLayerNormalization, {x, b.W("g", {64}), b.W("bt", {64})}, "n");
                     Value* m = b.Op(OpKind::kMatMul, {n, b.W("w", {64, 96}, 0.2f)}, "m");
                     Value* a = b.Op(OpKind::kAdd, {m, b.W("ab", {96})}, "a");
                     Value* g = b.Op(OpKind::kGelu, {a}, "y", 20);
                     return b.Done(g);
                   }});
  // BERT-base's rows (FP16: one warp per row in registers), a row of 2048 and one not a multiple of 8.
  for (int64_t cols : {768, 2048, 1000}) {
    cases.push_back({"layernorm_" + std::to_string(cols), [cols] {
                       G b;
                       Value* x = b.In("x", {37, cols});
                       return b.Done(b.Op(OpKind::kLayerNormalization, {x, b.W("g", {cols}), b.W("bt", {cols})}, "y"));
                     }});
  }
  return cases;
}

// Builds `graph` for the GPU (optimized: fused ops included), runs it on random inputs (twice, so the
// second run replays the captured CUDA graph) and compares with the reference kernels.
void CheckCase(const Case& c, Precision precision, double tolerance) {
  if ((c.conv_tactic.rfind("cublaslt.conv1x1", 0) == 0 || c.conv_tactic == "kiln.pointwise" ||
       c.conv_tactic == "kiln.stemconv") &&
      precision != Precision::kFp16) {
    return;
  }
  BuildOptions options;
  options.device = DeviceType::kCuda;
  options.precision = precision;
  auto plan = build::BuildPlan(c.make(), options, c.name);
  ASSERT_TRUE(plan.ok()) << c.name << ": " << plan.status().ToString();
  if (!c.conv_tactic.empty()) {
    for (size_t i = 0; i < plan->schedule.size(); ++i) {
      const Node& n = *plan->schedule[i];
      if (n.op() != OpKind::kConv && n.op() != OpKind::kFusedConv) continue;
      // kiln.dwconv is forced on the depthwise convolutions only, kiln.pointwise on the 1x1 convolutions of
      // at most 64 input channels; the others keep the tuner's pick.
      if (c.conv_tactic.rfind("kiln.dwconv", 0) == 0 && n.attrs().GetInt("group", 1) == 1) continue;
      const std::vector<int64_t> ws = *n.input(1)->shape()->sizes();
      if (c.conv_tactic == "kiln.pointwise" && (ws[2] != 1 || ws[3] != 1 || ws[1] > 64)) continue;
      if (c.conv_tactic == "kiln.stemconv" && (ws[1] > 4 || n.attrs().GetInt("group", 1) != 1)) continue;
      plan->layers[i].tactic = c.conv_tactic;
    }
  }
  if (!c.gemm_tactic.empty()) {
    for (size_t i = 0; i < plan->schedule.size(); ++i) {
      const OpKind op = plan->schedule[i]->op();
      if (op == OpKind::kGemm || op == OpKind::kMatMul || op == OpKind::kFusedGemm) {
        plan->layers[i].tactic = c.gemm_tactic;
      }
    }
  }
  auto exec = cuda::CudaExecutor::Create(*plan, 0);
  ASSERT_TRUE(exec.ok()) << c.name << ": " << exec.status().ToString();
  for (int round = 0; round < 3; ++round) {
    std::mt19937 rng(100 + round);
    TensorMap feeds;
    for (const Value* v : plan->graph->inputs()) {
      if (v->is_constant()) continue;
      if (v->dtype() == DType::kInt64) {  // indices (every table in the cases has at least 10 rows)
        Tensor t(DType::kInt64, *v->shape()->sizes());
        std::uniform_int_distribution<int64_t> dist(0, 9);
        for (int64_t i = 0; i < t.numel(); ++i) t.data<int64_t>()[i] = dist(rng);
        feeds[v->name()] = std::move(t);
      } else {
        feeds[v->name()] = RandomTensor(*v->shape()->sizes(), rng);
      }
    }
    auto want = RunReference(*plan->graph, feeds);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    auto got = (*exec)->Run(feeds);
    ASSERT_TRUE(got.ok()) << c.name << ": " << got.status().ToString();
    for (const auto& [name, t] : *want) {
      ASSERT_TRUE(got->count(name)) << name;
      const Tensor& g = got->at(name);
      ASSERT_EQ(g.sizes(), t.sizes()) << c.name << " " << name;
      const double err = RelativeError(g, t);
      EXPECT_LT(err, tolerance) << c.name << " (" << PrecisionName(precision) << ") output " << name << " round " << round;
    }
  }
}

TEST(CudaBackend, OpsMatchReferenceFp32) {
  KILN_SKIP_WITHOUT_GPU();
  for (const Case& c : Cases()) CheckCase(c, Precision::kFp32, 1e-4);
}

TEST(CudaBackend, OpsMatchReferenceFp16) {
  KILN_SKIP_WITHOUT_GPU();
  for (const Case& c : Cases()) CheckCase(c, Precision::kFp16, 1e-2);
}

#if KILN_HAVE_CUDA
// Which Clips DeferredClips moves into the depthwise consumer: reads the graph and the tactics only, so it
// runs without a GPU (in CI too; builds without a CUDA toolkit have no DeferredClips).
TEST(CudaBackend, DefersReluSixToDepthwiseKernelOnly) {
  G b;
  Value* x = b.In("x", {1, 8, 6, 6});
  auto relu6 = [&](Value* v, const std::string& name, float lo) {
    return b.Op(OpKind::kClip, {v, b.Scalar(name + "_lo", lo), b.Scalar(name + "_hi", 6.f)}, name, 13);
  };
  Value* e1 = relu6(Conv(b, x, 8, 16, 1, 1, 0, 1, true, "e1"), "r1", 0.f);     // -> depthwise: deferred
  Value* d1 = relu6(Conv(b, e1, 16, 16, 3, 1, 1, 16, true, "d1"), "r2", 0.f);  // -> 1x1: kept
  Value* e2 = relu6(Conv(b, d1, 16, 16, 1, 1, 0, 1, true, "e2"), "r3", -1.f);  // lower bound not 0: kept
  Value* d2 = Conv(b, e2, 16, 16, 3, 1, 1, 16, true, "d2");
  Value* e3 = relu6(Conv(b, d2, 16, 16, 1, 1, 0, 1, true, "e3"), "r4", 0.f);   // two consumers: kept
  Value* d3 = Conv(b, e3, 16, 16, 3, 1, 1, 16, true, "d3");
  Value* e4 = relu6(Conv(b, d3, 16, 16, 1, 1, 0, 1, true, "e4"), "r5", 0.f);   // consumer on cuDNN: kept
  Value* d4 = Conv(b, e4, 16, 16, 3, 1, 1, 16, true, "d4");
  Graph g = b.Done(b.Op(OpKind::kAdd, {d4, b.Op(OpKind::kAdd, {d3, e3}, "s")}, "y"));
  PassReport report;
  ASSERT_TRUE(FuseConv(g, report).ok());
  auto order = g.TopologicalOrder();
  ASSERT_TRUE(order.ok());
  std::vector<const Node*> schedule(order->begin(), order->end());
  std::vector<std::string> tactics;
  std::map<std::string, const Value*> by_conv;  // depthwise layer -> its input
  for (const Node* n : schedule) {
    const bool conv = n->op() == OpKind::kConv || n->op() == OpKind::kFusedConv;
    const bool depthwise = conv && n->attrs().GetInt("group", 1) > 1;
    const std::string w = n->input(1) ? n->input(1)->name() : "";  // outputs are renamed by fusion
    tactics.push_back(depthwise && w != "d4_w" ? "kiln.dwconv" : "cudnn.conv.a1");
    if (depthwise) by_conv[w] = n->input(0);
  }
  ASSERT_EQ(by_conv.size(), 4u) << "FuseConv did not fuse as expected";
  const auto clips = cuda::DeferredClips(schedule, tactics, {});
  ASSERT_EQ(clips.size(), 1u);
  EXPECT_EQ(clips.begin()->first, by_conv["d1_w"]);
  EXPECT_EQ(clips.begin()->second, 6.f);
}
#endif  // KILN_HAVE_CUDA

TEST(CudaBackend, RefusesWhatItCannotRun) {
  KILN_SKIP_WITHOUT_GPU();
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{1, 4});
  g.AddInput(x);
  Value* y = g.AddValue("y", DType::kFloat32);
  Node* n = g.AddNode(OpKind::kCumSum, "cumsum", {x, g.AddConstant("axis", Tensor::Scalar<int64_t>(1))}, {y}, 14);
  EXPECT_NE(cuda::WhyUnsupported(*n), "");
  g.AddOutput(y);
  ASSERT_TRUE(InferShapes(g).ok());
  BuildOptions options;
  options.device = DeviceType::kCuda;
  auto plan = build::BuildPlan(std::move(g), options, "cumsum");
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("CumSum"), std::string::npos) << plan.status().ToString();
}

// A BERT layer in miniature, with a dynamic batch and sequence: the shape arithmetic that slices the
// position ids (Shape -> Gather -> Unsqueeze -> Slice) runs on the host when each program is built, the
// embeddings are gathered on the GPU, the mask is cast from int64, the QKV product is split, and
// kiln.Attention runs as two batched products around a masked softmax.
Graph MiniBert() {
  G b;
  const DType i64 = DType::kInt64;
  auto typed = [&](const std::string& name, DType t) { return b.g.AddValue(name, t); };
  Value* ids = b.g.AddValue("ids", i64, Shape{Dim::Symbol("batch"), Dim::Symbol("seq")});
  Value* mask = b.g.AddValue("mask", i64, Shape{Dim::Symbol("batch"), Dim::Symbol("seq")});
  b.g.AddInput(ids);
  b.g.AddInput(mask);
  Value* shape = typed("shape", i64);
  b.g.AddNode(OpKind::kShape, "shape_node", {ids}, {shape}, 13);
  Value* seq = typed("seq_len", i64);
  b.g.AddNode(OpKind::kGather, "seq_node", {shape, b.g.AddConstant("one", Tensor::Scalar<int64_t>(1))}, {seq}, 13);
  Value* seq1 = typed("seq1", i64);
  b.g.AddNode(OpKind::kUnsqueeze, "seq1_node", {seq, b.Ints("ax0", {0})}, {seq1}, 13);
  std::vector<int64_t> arange(16);
  for (int i = 0; i < 16; ++i) arange[static_cast<size_t>(i)] = i;
  Tensor pos_ids = Tensor::FromVector(arange).Reshaped({1, 16});
  Value* pos = typed("pos", i64);
  b.g.AddNode(OpKind::kSlice, "pos_node",
              {b.g.AddConstant("pos_ids", std::move(pos_ids)), b.Ints("st", {0}), seq1, b.Ints("ax1", {1})}, {pos}, 13);
  Value* emb = b.Op(OpKind::kGather, {b.W("wemb", {10, 32}), ids}, "emb", 13);
  Value* pemb = b.Op(OpKind::kGather, {b.W("pos_table", {16, 32}), pos}, "pos_emb", 13);
  Value* x = b.Op(OpKind::kAdd, {emb, pemb}, "x");
  Value* ln = b.Op(OpKind::kLayerNormalization, {x, b.W("lng", {32}), b.W("lnb", {32})}, "ln");
  Value* qkv = b.Op(OpKind::kAdd, {b.Op(OpKind::kMatMul, {ln, b.W("wqkv", {32, 96})}, "mm"), b.W("bqkv", {96})}, "qkv");
  Value *q = b.g.AddValue("q", DType::kFloat32), *k = b.g.AddValue("k", DType::kFloat32),
        *v = b.g.AddValue("v", DType::kFloat32);
  b.g.AddNode(OpKind::kSplit, "split", {qkv, b.Ints("sizes", {32, 32, 32})}, {q, k, v}, 13)
      ->attrs().Set("axis", int64_t{2});
  Value* heads = b.Ints("heads", {0, 0, 4, 8});
  auto perm = [&](Value* t, const std::string& name, std::vector<int64_t> p) {
    Value* r = b.Op(OpKind::kReshape, {t, heads}, name + "_r", 13);
    Value* y = b.Op(OpKind::kTranspose, {r}, name + "_t", 13);
    b.last->attrs().Set("perm", p);
    return y;
  };
  Value* qh = perm(q, "q", {0, 2, 1, 3});
  Value* kh = perm(k, "k", {0, 2, 3, 1});
  Value* vh = perm(v, "v", {0, 2, 1, 3});
  Value* m1 = typed("m1", i64);
  b.g.AddNode(OpKind::kUnsqueeze, "m1_node", {mask, b.Ints("ax_m", {1, 2})}, {m1}, 13);
  Value* mf = b.Op(OpKind::kCast, {m1}, "mf", 13);
  b.last->attrs().Set("to", int64_t{1});
  Value* madd = b.Op(OpKind::kMul, {b.Op(OpKind::kSub, {b.Scalar("c1", 1.f), mf}, "inv"), b.Scalar("big", -10000.f)}, "madd");
  Value* att = b.Op(OpKind::kAttention, {qh, kh, vh, madd}, "att", 13);
  b.last->attrs().Set("scale", 0.35355339f);
  Value* at = b.Op(OpKind::kTranspose, {att}, "att_t", 13);
  b.last->attrs().Set("perm", std::vector<int64_t>{0, 2, 1, 3});
  Value* y = b.Op(OpKind::kReshape, {at, b.Ints("back", {0, 0, 32})}, "att_r", 13);
  return b.Done(b.Op(OpKind::kTanh, {y}, "y", 13));
}

void CheckMiniBert(Precision precision, double tolerance) {
  BuildOptions options;
  options.device = DeviceType::kCuda;
  options.precision = precision;
  OptimizationProfile profile;
  profile.inputs["ids"] = InputProfile{{1, 1}, {2, 7}, {4, 16}};
  profile.inputs["mask"] = InputProfile{{1, 1}, {2, 7}, {4, 16}};
  options.profiles.push_back(profile);
  auto plan = build::BuildPlan(MiniBert(), options, "mini_bert");
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  auto exec = cuda::CudaExecutor::Create(*plan, 0);
  ASSERT_TRUE(exec.ok()) << exec.status().ToString();
  std::mt19937 rng(9);
  for (std::vector<int64_t> sizes : {std::vector<int64_t>{2, 7}, {3, 16}, {2, 7}, {1, 5}}) {
    TensorMap feeds;
    for (const char* name : {"ids", "mask"}) {
      Tensor t(DType::kInt64, sizes);
      std::uniform_int_distribution<int64_t> dist(0, std::string(name) == "ids" ? 9 : 1);
      for (int64_t i = 0; i < t.numel(); ++i) t.data<int64_t>()[i] = dist(rng);
      feeds[name] = std::move(t);
    }
    auto want = RunReference(*plan->graph, feeds);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    auto got = (*exec)->Run(feeds);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_LT(RelativeError(got->at("y"), want->at("y")), tolerance) << sizes[0] << "x" << sizes[1];
  }
}

TEST(CudaBackend, MiniBertMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  CheckMiniBert(Precision::kFp32, 1e-4);
  CheckMiniBert(Precision::kFp16, 1e-2);
}

// Embedding rows of >= 512 bytes are gathered a warp per row (negative indices count from the end).
TEST(CudaBackend, GatherRowsMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  for (Precision precision : {Precision::kFp32, Precision::kFp16}) {
    G b;
    Value* ids = b.g.AddValue("ids", DType::kInt64, Shape{3, 7});
    b.g.AddInput(ids);
    Graph graph = b.Done(b.Op(OpKind::kGather, {b.W("table", {50, 256}), ids}, "y", 13));
    BuildOptions options;
    options.device = DeviceType::kCuda;
    options.precision = precision;
    auto plan = build::BuildPlan(std::move(graph), options, "gather");
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    auto exec = cuda::CudaExecutor::Create(*plan, 0);
    ASSERT_TRUE(exec.ok()) << exec.status().ToString();
    std::mt19937 rng(3);
    Tensor t(DType::kInt64, {3, 7});
    std::uniform_int_distribution<int64_t> dist(-50, 49);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<int64_t>()[i] = dist(rng);
    TensorMap feeds = {{"ids", std::move(t)}};
    auto want = RunReference(*plan->graph, feeds);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    auto got = (*exec)->Run(feeds);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    // FP32 is a copy; FP16 rounds each weight once (2^-11 relative).
    EXPECT_LE(RelativeError(got->at("y"), want->at("y")), precision == Precision::kFp32 ? 0.0 : 5e-4);
  }
}

// Kiln's fused FP16 attention (kiln.flash_attention), forced, against the reference on inputs already
// rounded to FP16 (so the check sees the kernel's error alone). Per output, |gpu - ref| <= 2e-3 * max|v|:
// the output is a convex combination of V rows; the kernel rounds the softmax weights to FP16 before the
// P V product (2^-11 relative each, so at most 2^-11 * max|v| in total) and its output to FP16 (2^-11
// relative), accumulating in FP32 with ex2.approx (2^-22 relative); 2e-3 leaves room for both.
//   bert:     QKV [B,S,3HD] -> Split -> head split -> attention (mask [B,1,1,S]) -> head merge, all folded
//             into the kernel's strides; sequences below, at and across the 64-key tiles.
//   plain:    q [B,H,Sq,D] and v [B,H,Sk,D] as tensors, kt a head split of [B,Sk,HD], Sq != Sk, no mask.
//   row_mask: a full [B,1,Sq,Sk] mask (different per query row).
struct AttentionCase {
  std::string name;
  int64_t batch, heads, sq, sk, d;
  int mask;  // 0 none, 1 [B,1,1,Sk], 2 [B,1,Sq,Sk]
};

float RoundToHalf(float x) {
  if (x == 0.f || !std::isfinite(x)) return x;
  int e = 0;
  const double m = std::frexp(static_cast<double>(x), &e);  // |m| in [0.5, 1): 11 significant bits in FP16
  return static_cast<float>(std::ldexp(std::nearbyint(std::ldexp(m, 11)), e - 11));
}

Graph AttentionGraph(const AttentionCase& c) {
  G b;
  const int64_t hd = c.heads * c.d;
  auto heads = [&](Value* x, const std::string& name, std::vector<int64_t> perm) {
    Value* r = b.Op(OpKind::kReshape, {x, b.Ints(name + "_shape", {0, 0, c.heads, c.d})}, name + "_r", 13);
    Value* t = b.Op(OpKind::kTranspose, {r}, name + "_t", 13);
    b.last->attrs().Set("perm", perm);
    return t;
  };
  Value *q = nullptr, *kt = nullptr, *v = nullptr;
  if (c.name == "plain") {
    q = b.In("q", {c.batch, c.heads, c.sq, c.d});
    kt = heads(b.In("k", {c.batch, c.sk, hd}), "k", {0, 2, 3, 1});
    v = b.In("v", {c.batch, c.heads, c.sk, c.d});
  } else {
    Value* qkv = b.In("qkv", {c.batch, c.sq, 3 * hd});
    Value *q2 = b.g.AddValue("q2", DType::kFloat32), *k2 = b.g.AddValue("k2", DType::kFloat32),
          *v2 = b.g.AddValue("v2", DType::kFloat32);
    b.g.AddNode(OpKind::kSplit, "split", {qkv, b.Ints("sizes", {hd, hd, hd})}, {q2, k2, v2}, 13)
        ->attrs().Set("axis", int64_t{2});
    q = heads(q2, "q", {0, 2, 1, 3});
    kt = heads(k2, "k", {0, 2, 3, 1});
    v = heads(v2, "v", {0, 2, 1, 3});
  }
  std::vector<Value*> ins = {q, kt, v};
  if (c.mask == 1) ins.push_back(b.In("mask", {c.batch, 1, 1, c.sk}));
  if (c.mask == 2) ins.push_back(b.In("mask", {c.batch, 1, c.sq, c.sk}));
  Value* att = b.Op(OpKind::kAttention, ins, "att", 13);
  b.last->attrs().Set("scale", 1.f / std::sqrt(static_cast<float>(c.d)));
  if (c.name == "plain") return b.Done(att);
  Value* merged = b.Op(OpKind::kTranspose, {att}, "att_t", 13);
  b.last->attrs().Set("perm", std::vector<int64_t>{0, 2, 1, 3});
  return b.Done(b.Op(OpKind::kReshape, {merged, b.Ints("back", {0, 0, hd})}, "y", 13));
}

// FP32 (the strict-FP32 kernel, head dim 64): FP32 products and sums, ex2.approx (2^-22 relative) and
// the online rescaling (a few more ulps): |gpu - ref| <= 2e-5 * max|v| leaves room for both and would
// catch any wrong weight, key or row.
void CheckFlashAttention(const AttentionCase& c, const std::string& tactic, Precision precision = Precision::kFp16) {
  const std::string label = c.name + " " + std::to_string(c.batch) + "x" + std::to_string(c.heads) + "x" +
                            std::to_string(c.sq) + "x" + std::to_string(c.sk) + "x" + std::to_string(c.d) + " " +
                            tactic + " " + PrecisionName(precision);
  const double tolerance = precision == Precision::kFp16 ? 2e-3 : 2e-5;
  BuildOptions options;
  options.device = DeviceType::kCuda;
  options.precision = precision;
  auto plan = build::BuildPlan(AttentionGraph(c), options, "attention");
  ASSERT_TRUE(plan.ok()) << label << ": " << plan.status().ToString();
  int forced = 0;
  for (size_t i = 0; i < plan->schedule.size(); ++i) {
    if (plan->schedule[i]->op() == OpKind::kAttention) {
      plan->layers[i].tactic = tactic;
      ++forced;
    }
  }
  ASSERT_EQ(forced, 1) << label;
  auto exec = cuda::CudaExecutor::Create(*plan, 0);
  ASSERT_TRUE(exec.ok()) << exec.status().ToString();
  for (int round = 0; round < 3; ++round) {
    std::mt19937 rng(static_cast<uint32_t>(7 + round));
    TensorMap feeds;
    float vmax = 0.f;
    for (const Value* in : plan->graph->inputs()) {
      if (in->is_constant()) continue;
      Tensor t = RandomTensor(*in->shape()->sizes(), rng, -2.f, 2.f);
      for (int64_t i = 0; i < t.numel(); ++i) {
        float& x = t.data<float>()[i];
        // Masks: 0 or -10000 (the BERT form), the first key always open.
        if (in->name() == "mask") x = (i % c.sk == 0 || x > -1.f) ? 0.f : -10000.f;
        x = RoundToHalf(x);
        if (in->name() != "mask") vmax = std::max(vmax, std::fabs(x));
      }
      feeds[in->name()] = std::move(t);
    }
    auto want = RunReference(*plan->graph, feeds);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    auto got = (*exec)->Run(feeds);
    ASSERT_TRUE(got.ok()) << label << ": " << got.status().ToString();
    for (const auto& [name, w] : *want) {
      const Tensor& g = got->at(name);
      ASSERT_EQ(g.sizes(), w.sizes()) << label;
      double worst = 0;
      for (int64_t i = 0; i < w.numel(); ++i) {
        const double e = std::fabs(static_cast<double>(g.data<float>()[i]) - w.data<float>()[i]);
        worst = std::isfinite(e) ? std::max(worst, e) : INFINITY;
      }
      EXPECT_LE(worst, tolerance * vmax) << label << " round " << round;
      EXPECT_LT(RelativeError(g, w), tolerance) << label << " round " << round;
    }
  }
}

TEST(CudaBackend, FlashAttentionMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  const std::vector<AttentionCase> cases = {
      {"bert", 2, 3, 128, 128, 64, 1}, {"bert", 2, 2, 1, 1, 64, 1},  {"bert", 3, 2, 7, 7, 64, 1},
      {"bert", 1, 2, 65, 65, 64, 1},   {"bert", 2, 4, 200, 200, 32, 1}, {"bert", 1, 2, 130, 130, 128, 0},
      {"plain", 2, 3, 50, 130, 64, 0}, {"plain", 1, 2, 70, 9, 128, 0}, {"row_mask", 2, 2, 100, 100, 64, 2},
      {"plain", 2, 2, 128, 192, 64, 0},
  };
  for (const AttentionCase& c : cases) {
    for (const char* tactic : {"kiln.flash_attention", "kiln.flash_attention.m128"}) {
      CheckFlashAttention(c, tactic);
    }
    if (c.d == 64) CheckFlashAttention(c, "kiln.flash_attention", Precision::kFp32);
  }
}

// The public API end to end: a CNN with a dynamic batch built for the GPU, several batch sizes and two
// contexts, against the CPU engine.
TEST(CudaBackend, EngineMatchesCpuEngine) {
  KILN_SKIP_WITHOUT_GPU();
  G b;
  Value* x = b.g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 3, 16, 16});
  b.g.AddInput(x);
  Value* c1 = b.Op(OpKind::kRelu, {Conv(b, x, 3, 8, 3, 1, 1, 1, true, "c1")}, "r1");
  Value* c2 = Conv(b, c1, 8, 8, 3, 1, 1, 1, true, "c2");
  Value* s = b.Op(OpKind::kRelu, {b.Op(OpKind::kAdd, {c2, c1}, "s")}, "r2");
  Value* p = b.Op(OpKind::kGlobalAveragePool, {s}, "p");
  Value* f = b.Op(OpKind::kFlatten, {p}, "f");
  Value* y = b.Op(OpKind::kGemm, {f, b.W("fw", {5, 8}), b.W("fb", {5})}, "logits");
  b.last->attrs().Set("transB", int64_t{1});
  Graph graph = b.Done(b.Op(OpKind::kSoftmax, {y}, "y", 13));
  BuildOptions gpu;
  gpu.device = DeviceType::kCuda;
  auto plan = build::BuildPlan(std::move(graph), gpu, "cnn");
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  auto e1 = cuda::CudaExecutor::Create(*plan, 0);
  auto e2 = cuda::CudaExecutor::Create(*plan, 0);
  ASSERT_TRUE(e1.ok() && e2.ok());
  std::mt19937 rng(5);
  for (int64_t batch : {1, 7, 32, 7, 1}) {
    TensorMap feeds = {{"x", RandomTensor({batch, 3, 16, 16}, rng)}};
    auto want = RunReference(*plan->graph, feeds);
    ASSERT_TRUE(want.ok());
    for (auto* e : {&*e1, &*e2}) {
      auto got = (*e)->Run(feeds);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_LT(RelativeError(got->at("y"), want->at("y")), 1e-4) << "batch " << batch;
      const cuda::CudaRunTimings t = (*e)->last_timings();
      EXPECT_GE(t.compute_ms, 0.0);
    }
  }
}

}  // namespace
}  // namespace kiln
