// The fast CPU tactics (src/backends/cpu) held to the reference kernels: one table of cases (op,
// attributes, input shapes: odd sizes, strides, dilations, groups, asymmetric pads, batch 1 and 3, shapes of
// ResNet-50, MobileNetV2 and BERT, every fused activation with and without residual). Each case builds a
// one-node graph, runs the op's reference kernel and every tactic CpuTacticsFor offers on the same random
// inputs, twice (the second run hits the kernel's primitive and packed-weight caches), and compares
// (BF16 tactics against the reference on bfloat16-rounded inputs: see WantFor).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "ir/graph.h"
#include "ops/infer.h"
#include "ops/registry.h"

namespace kiln {
namespace {

// An input of a case: a graph input (random each run), a constant (weights: random, fixed), or omitted.
struct In {
  enum Kind { kInput, kConst, kNone } kind = kNone;
  std::vector<int64_t> sizes;
};
In X(std::vector<int64_t> s) { return {In::kInput, std::move(s)}; }
In W(std::vector<int64_t> s) { return {In::kConst, std::move(s)}; }
In None() { return {}; }

struct Case {
  std::string name;
  OpKind op;
  std::vector<In> inputs;
  Attributes attrs;
};

Attributes A(std::initializer_list<std::pair<const char*, AttrValue>> kv) {
  Attributes a;
  for (const auto& kv_pair : kv) a.Set(kv_pair.first, kv_pair.second);
  return a;
}

using Ints = std::vector<int64_t>;

std::vector<Case> ConvCases() {
  const OpKind kC = OpKind::kConv, kF = OpKind::kFusedConv;
  std::vector<Case> cases = {
      // ResNet-50
      {"resnet_stem_7x7_s2", kC, {X({1, 3, 224, 224}), W({64, 3, 7, 7}), W({64})},
       A({{"strides", Ints{2, 2}}, {"pads", Ints{3, 3, 3, 3}}})},
      {"resnet_3x3_relu", kF, {X({1, 64, 56, 56}), W({64, 64, 3, 3}), W({64})},
       A({{"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Relu")}})},
      {"resnet_1x1_residual_relu", kF, {X({1, 64, 56, 56}), W({256, 64, 1, 1}), W({256}), X({1, 256, 56, 56})},
       A({{"activation", std::string("Relu")}})},
      {"resnet_1x1_s2_downsample", kC, {X({1, 256, 56, 56}), W({512, 256, 1, 1}), W({512})},
       A({{"strides", Ints{2, 2}}})},
      {"resnet_3x3_s2_batch3", kF, {X({3, 128, 28, 28}), W({128, 128, 3, 3}), W({128})},
       A({{"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Relu")}})},
      // MobileNetV2
      {"mbv2_depthwise_s2_relu6", kF, {X({1, 96, 112, 112}), W({96, 1, 3, 3}), W({96})},
       A({{"group", int64_t{96}}, {"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 1, 1}},
          {"activation", std::string("Clip")}, {"activation_alpha", 0.f}, {"activation_beta", 6.f}})},
      {"mbv2_depthwise_batch3", kF, {X({3, 144, 28, 28}), W({144, 1, 3, 3}), W({144})},
       A({{"group", int64_t{144}}, {"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Clip")},
          {"activation_alpha", 0.f}, {"activation_beta", 6.f}})},
      {"mbv2_project_residual", kF, {X({1, 144, 28, 28}), W({24, 144, 1, 1}), W({24}), X({1, 24, 28, 28})}, {}},
      // Odd geometry
      {"odd_stride_dilation_asym_pads", kC, {X({3, 5, 13, 11}), W({7, 5, 3, 2}), W({7})},
       A({{"strides", Ints{2, 1}}, {"dilations", Ints{2, 3}}, {"pads", Ints{1, 0, 2, 3}}})},
      {"grouped_3", kC, {X({2, 6, 9, 9}), W({9, 2, 3, 3}), W({9})}, A({{"group", int64_t{3}}, {"pads", Ints{1, 1, 1, 1}}})},
      {"no_bias", kC, {X({1, 4, 8, 8}), W({6, 4, 3, 3})}, {}},
      {"same_upper_s2", kC, {X({1, 4, 7, 9}), W({5, 4, 3, 3}), W({5})},
       A({{"auto_pad", std::string("SAME_UPPER")}, {"strides", Ints{2, 2}}})},
      {"same_lower_s2", kC, {X({1, 4, 8, 9}), W({5, 4, 4, 3}), W({5})},
       A({{"auto_pad", std::string("SAME_LOWER")}, {"strides", Ints{2, 2}}})},
      {"valid_s3", kC, {X({3, 3, 11, 10}), W({4, 3, 3, 3})}, A({{"auto_pad", std::string("VALID")}, {"strides", Ints{3, 3}}})},
      {"unused_end_pad", kC, {X({1, 2, 8, 8}), W({3, 2, 3, 3})}, A({{"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 2, 2}}})},
      {"conv1d", kC, {X({2, 3, 17}), W({4, 3, 5}), W({4})}, A({{"pads", Ints{2, 1}}})},
      {"conv3d", kC, {X({1, 2, 5, 6, 7}), W({3, 2, 3, 3, 3}), W({3})}, A({{"pads", Ints{1, 1, 1, 1, 1, 1}}})},
      {"weights_not_constant", kC, {X({1, 8, 10, 10}), X({8, 8, 3, 3}), X({8})}, A({{"pads", Ints{1, 1, 1, 1}}})},
  };
  // Every fused activation, alternately with and without a residual, batch 1 and 3.
  const std::vector<Attributes> acts = {
      A({{"activation", std::string("Relu")}}),
      A({{"activation", std::string("Tanh")}}),
      A({{"activation", std::string("Sigmoid")}}),
      A({{"activation", std::string("Gelu")}}),
      A({{"activation", std::string("GeluTanh")}}),
      A({{"activation", std::string("HardSwish")}}),
      A({{"activation", std::string("LeakyRelu")}}),
      A({{"activation", std::string("LeakyRelu")}, {"activation_alpha", 0.2f}}),
      A({{"activation", std::string("Clip")}, {"activation_alpha", -0.5f}, {"activation_beta", 0.75f}}),
      A({{"activation", std::string("Clip")}, {"activation_alpha", 0.f}}),
      A({{"activation", std::string("Clip")}}),
      A({{"activation", std::string("HardSigmoid")}}),
      A({{"activation", std::string("HardSigmoid")}, {"activation_alpha", 0.5f}, {"activation_beta", 0.25f}}),
      A({{"activation", std::string("Swish")}}),
      A({{"activation", std::string("Swish")}, {"activation_alpha", 1.702f}}),
      A({{"activation", std::string("")}}),
  };
  for (size_t i = 0; i < acts.size(); ++i) {
    const bool residual = i % 2 == 0;
    const int64_t n = i % 3 == 0 ? 3 : 1;
    Case c{"act_" + acts[i].GetString("activation") + std::to_string(i) + (residual ? "_residual" : ""), kF,
           {X({n, 8, 10, 10}), W({12, 8, 3, 3}), W({12})}, acts[i]};
    c.attrs.Set("pads", Ints{1, 1, 1, 1});
    if (residual) c.inputs.push_back(X({n, 12, 10, 10}));
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<Case> MatMulCases() {
  const OpKind kM = OpKind::kMatMul, kG = OpKind::kGemm, kF = OpKind::kFusedGemm;
  std::vector<Case> cases = {
      // BERT-base
      {"bert_ffn_up", kM, {X({2, 128, 768}), W({768, 3072})}, {}},
      {"bert_qk", kM, {X({2, 12, 128, 64}), X({2, 12, 64, 128})}, {}},
      {"bert_ffn_gelu_fused", kF, {X({2, 128, 768}), W({768, 768}), W({768}), X({2, 128, 768})},
       A({{"activation", std::string("Gelu")}})},
      {"bert_pooler_tanh", kF, {X({3, 768}), W({768, 768}), W({768})},
       A({{"activation", std::string("Tanh")}, {"transB", int64_t{1}}})},
      // Broadcasting and odd sizes
      {"batch_broadcast_both", kM, {X({3, 1, 5, 7}), X({4, 7, 6})}, {}},
      {"batch_broadcast_a2d", kM, {X({5, 7}), X({2, 7, 3})}, {}},
      {"one_by_one", kM, {X({1, 1}), X({1, 1})}, {}},
      {"outer_product", kM, {X({17, 1}), W({1, 19})}, {}},
      // Gemm forms
      {"resnet_fc_transB_bias", kG, {X({3, 2048}), W({1000, 2048}), W({1000})}, A({{"transB", int64_t{1}}})},
      {"gemm_transA_alpha_beta_col", kG, {X({13, 9}), W({13, 11}), W({9, 1})},
       A({{"transA", int64_t{1}}, {"alpha", 0.5f}, {"beta", 2.f}})},
      {"gemm_scalar_c_beta0", kG, {X({4, 5}), W({5, 6}), W({})}, A({{"beta", 0.f}})},
      {"gemm_full_c", kG, {X({4, 5}), W({6, 5}), W({4, 6})}, A({{"transB", int64_t{1}}, {"alpha", -1.5f}})},
      {"gemm_no_c_b_input", kG, {X({7, 3}), X({3, 8})}, {}},
      {"gemm_both_trans_row_c", kG, {X({9, 4}), X({6, 9}), W({1, 6})},
       A({{"transA", int64_t{1}}, {"transB", int64_t{1}}, {"beta", 0.25f}})},
      // FusedGemm forms
      {"fused_trans_alpha_relu", kF, {X({2, 33, 5}), W({17, 33}), W({1, 17})},
       A({{"transA", int64_t{1}}, {"transB", int64_t{1}}, {"alpha", 1.5f}, {"activation", std::string("Relu")}})},
      {"fused_residual_only_broadcast", kF, {X({3, 4, 6}), W({6, 5}), None(), X({4, 5})},
       A({{"activation", std::string("Sigmoid")}})},
      {"fused_batched_b", kF, {X({2, 4, 6}), X({2, 6, 5}), W({2, 1, 5}), X({2, 4, 5})},
       A({{"beta", 0.5f}, {"activation", std::string("HardSwish")}})},
  };
  const char* acts[] = {"Relu", "Tanh", "Sigmoid", "Gelu", "GeluTanh", "HardSwish", "LeakyRelu", "Clip",
                        "HardSigmoid", "Swish"};
  int i = 0;
  for (const char* act : acts) {
    Case c{std::string("fused_act_") + act, kF, {X({4, 33}), W({33, 17}), W({17})}, A({{"activation", std::string(act)}})};
    if (std::string(act) == "Clip") {
      c.attrs.Set("activation_alpha", -0.25f);
      c.attrs.Set("activation_beta", 0.5f);
    }
    if (i++ % 2) c.inputs.push_back(X({4, 17}));
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<Case> PoolSoftmaxCases() {
  const OpKind kMax = OpKind::kMaxPool, kAvg = OpKind::kAveragePool;
  return {
      {"resnet_maxpool_3x3_s2", kMax, {X({1, 64, 112, 112})},
       A({{"kernel_shape", Ints{3, 3}}, {"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 1, 1}}})},
      {"maxpool_ceil_asym_batch3", kMax, {X({3, 5, 11, 10})},
       A({{"kernel_shape", Ints{3, 2}}, {"strides", Ints{2, 3}}, {"pads", Ints{0, 1, 1, 0}}, {"ceil_mode", int64_t{1}}})},
      {"maxpool_same_upper", kMax, {X({1, 3, 7, 9})},
       A({{"kernel_shape", Ints{3, 3}}, {"strides", Ints{2, 2}}, {"auto_pad", std::string("SAME_UPPER")}})},
      {"avgpool_exclude_pad", kAvg, {X({3, 4, 9, 9})},
       A({{"kernel_shape", Ints{3, 3}}, {"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 1, 1}}})},
      {"avgpool_include_pad_ceil", kAvg, {X({1, 4, 10, 9})},
       A({{"kernel_shape", Ints{3, 3}}, {"strides", Ints{2, 2}}, {"pads", Ints{1, 0, 1, 0}},
          {"count_include_pad", int64_t{1}}, {"ceil_mode", int64_t{1}}})},
      {"avgpool_1d", kAvg, {X({2, 3, 15})}, A({{"kernel_shape", Ints{4}}, {"strides", Ints{3}}})},
      {"resnet_global_avg", OpKind::kGlobalAveragePool, {X({3, 2048, 7, 7})}, {}},
      {"global_max_odd", OpKind::kGlobalMaxPool, {X({1, 5, 3, 11})}, {}},
      {"bert_softmax", OpKind::kSoftmax, {X({2, 12, 128, 128})}, {}},
      {"softmax_odd_axis_minus1", OpKind::kSoftmax, {X({3, 7, 19})}, A({{"axis", int64_t{-1}}})},
      {"logsoftmax_2d", OpKind::kLogSoftmax, {X({5, 1000})}, A({{"axis", int64_t{1}}})},
  };
}

Tensor Random(const std::vector<int64_t>& sizes, std::mt19937& rng) {
  Tensor t(DType::kFloat32, sizes);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

// A one-node graph for `c` (inputs named in0.., constants holding random weights) and its graph-input
// tensors; symbolic_batch makes dim 0 of input 0 a symbol.
struct OneNode {
  Graph g;
  Node* node = nullptr;
  std::vector<Tensor> feeds;  // per input; empty for constants and omitted inputs
};

void Build(const Case& c, unsigned seed, OneNode& out, bool symbolic_batch = false) {
  std::mt19937 rng(seed);
  std::vector<Value*> ins;
  out.feeds.assign(c.inputs.size(), Tensor());
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const In& in = c.inputs[i];
    const std::string name = "in" + std::to_string(i);
    if (in.kind == In::kNone) {
      ins.push_back(nullptr);
    } else if (in.kind == In::kConst) {
      ins.push_back(out.g.AddConstant(name, Random(in.sizes, rng)));
    } else {
      Shape s = Shape::FromSizes(in.sizes);
      if (symbolic_batch && i == 0) s[0] = Dim::Symbol("batch");
      Value* v = out.g.AddValue(name, DType::kFloat32, s);
      out.g.AddInput(v);
      ins.push_back(v);
      out.feeds[i] = Random(in.sizes, rng);
    }
  }
  Value* y = out.g.AddValue("y", DType::kUndefined);
  out.node = out.g.AddNode(c.op, "node", ins, {y}, 17);
  out.node->attrs() = c.attrs;
  out.g.AddOutput(y);
}

std::vector<const Tensor*> Inputs(const OneNode& n) {
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < n.node->num_inputs(); ++i) {
    const Value* v = n.node->input(i);
    ins.push_back(!v ? nullptr : v->is_constant() ? v->constant() : &n.feeds[i]);
  }
  return ins;
}

Expected<Tensor> RunReferenceKernel(const Node& node, const std::vector<const Tensor*>& ins) {
  static const KernelLimits kLimits;
  KernelContext ctx(node, ins, kLimits);
  KILN_RETURN_IF_ERROR(OpRegistry::Global().Find(node.op())->run(ctx));
  return ctx.outputs()[0];
}

Expected<Tensor> RunKernel(cpu::CpuKernel& kernel, const Node& node, const std::vector<const Tensor*>& ins) {
  static const KernelLimits kLimits;
  KernelContext ctx(node, ins, kLimits);
  KILN_RETURN_IF_ERROR(kernel.Run(ctx));
  if (ctx.outputs().empty() || ctx.outputs()[0].empty()) return Internal("no output");
  return ctx.outputs()[0];
}

// f32 tolerance: oneDNN blocks and reorders the summations (and approximates tanh/erf/exp in its
// eltwise post-ops to a few ulps), so results differ from the reference's sequential float sums by
// rounding. For sums of K products of values in [-1, 1] that error grows like sqrt(K) ulps of the
// partial sums; 1e-4 relative (with 1e-4 absolute near zero) holds up to K = 3072 with margin while
// still catching any wrong tap, pad, group or post-op (those are off by O(0.1)).
constexpr double kTolerance = 1e-4;
// Winograd F(4x4, 3x3) ("onednn.conv_nhwc_wino") computes in a transformed domain whose transforms have
// entries up to 8 (and 1/24 ...), so rounding is amplified: measured on these cases (inputs in [-1, 1],
// K = 9 * C up to 1152) |error| / (1 + |expected|) reached 7e-6 where the direct kernels stay below 1e-6;
// 2e-4 keeps a wide margin and still catches a wrong tap or pad (errors of O(0.1)).
constexpr double kWinogradTolerance = 2e-4;

double ToleranceOf(const std::string& tactic) {
  return tactic.find("wino") != std::string::npos ? kWinogradTolerance : kTolerance;
}

void ExpectClose(const Tensor& want, const Tensor& got, const std::string& what, double tol = kTolerance) {
  ASSERT_EQ(got.dtype(), DType::kFloat32) << what;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  int bad = 0;
  for (int64_t i = 0; i < want.numel() && bad < 5; ++i) {
    const double e = want.data<float>()[i], a = got.data<float>()[i];
    const bool ok = std::fabs(e - a) <= tol + tol * std::fabs(e);
    EXPECT_TRUE(ok) << what << "[" << i << "]: expected " << e << ", got " << a;
    bad += !ok;
  }
}

// `t` rounded to bfloat16 (round to nearest even), kept in f32.
Tensor RoundedToBf16(const Tensor& t) {
  Tensor out(DType::kFloat32, t.sizes());
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint32_t u;
    std::memcpy(&u, &t.data<float>()[i], 4);
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u;
    std::memcpy(&out.data<float>()[i], &u, 4);
  }
  return out;
}

// What tactic `t` must produce: the reference output, or for BF16 tactics the reference on inputs 0 and 1
// (activations and weights) rounded to bfloat16, which is what those tactics compute exactly up to FP32
// summation order (bfloat16 products are exact in FP32), so ExpectClose's FP32 tolerance applies.
Expected<Tensor> WantFor(const cpu::CpuTactic& t, const Node& node, std::vector<const Tensor*> ins, const Tensor& want) {
  if (t.precision != "bf16") return want;
  Tensor rounded[2];
  for (size_t i = 0; i < 2 && i < ins.size(); ++i) {
    if (!ins[i]) continue;
    rounded[i] = RoundedToBf16(*ins[i]);
    ins[i] = &rounded[i];
  }
  return RunReferenceKernel(node, ins);
}

void CheckCase(const Case& c, unsigned seed) {
  SCOPED_TRACE(c.name);
  OneNode n;
  Build(c, seed, n);
  ASSERT_TRUE(ValidateGraphOps(n.g).ok()) << ValidateGraphOps(n.g).message();
  ASSERT_TRUE(InferShapes(n.g).ok()) << InferShapes(n.g).message();
  const std::vector<const Tensor*> ins = Inputs(n);
  Expected<Tensor> want = RunReferenceKernel(*n.node, ins);
  ASSERT_TRUE(want.ok()) << want.status().message();
  std::vector<cpu::CpuTactic> tactics = cpu::CpuTacticsFor(*n.node);
  ASSERT_FALSE(tactics.empty()) << "no tactic for " << c.name;
  for (const cpu::CpuTactic& t : tactics) {
    ASSERT_NE(cpu::CreateCpuKernel(*n.node, t.name), nullptr) << t.name;
    std::unique_ptr<cpu::CpuKernel> kernel = t.create();
    ASSERT_NE(kernel, nullptr) << t.name;
    Expected<Tensor> expected = WantFor(t, *n.node, ins, *want);
    ASSERT_TRUE(expected.ok()) << expected.status().message();
    for (int rep = 0; rep < 2; ++rep) {
      Expected<Tensor> got = RunKernel(*kernel, *n.node, ins);
      ASSERT_TRUE(got.ok()) << t.name << ": " << got.status().message();
      ExpectClose(*expected, *got, c.name + " " + t.name + " run " + std::to_string(rep), ToleranceOf(t.name));
    }
  }
}

// The channels-last form of a 2-D Conv / kiln.FusedConv / pool case (kiln.ConvNhwc / kiln.PoolNhwc with
// X and Z permuted to NHWC), or nullopt for cases the channels_last pass would leave alone.
std::optional<Case> ChannelsLastCase(const Case& c) {
  OneNode n;
  Build(c, 1, n);
  if (!InferShapes(n.g).ok() || !cpu::HasChannelsLastKernel(*n.node)) return std::nullopt;
  Case out = c;
  out.name += "_nhwc";
  const bool conv = c.op == OpKind::kConv || c.op == OpKind::kFusedConv;
  out.op = conv ? OpKind::kConvNhwc : OpKind::kPoolNhwc;
  if (!conv) out.attrs.Set("pool", std::string(OpKindName(c.op)));
  for (size_t i : {size_t{0}, size_t{3}}) {
    if (i >= out.inputs.size() || out.inputs[i].kind == In::kNone) continue;
    const Ints s = out.inputs[i].sizes;
    out.inputs[i].sizes = {s[0], s[2], s[3], s[1]};
  }
  return out;
}

class CpuKernelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu::HaveOneDnn()) GTEST_SKIP() << "built without oneDNN: no fast CPU tactics";
  }
};

TEST_F(CpuKernelsTest, ConvMatchesReference) {
  unsigned seed = 1;
  for (const Case& c : ConvCases()) CheckCase(c, seed++);
}

TEST_F(CpuKernelsTest, MatMulMatchesReference) {
  unsigned seed = 100;
  for (const Case& c : MatMulCases()) CheckCase(c, seed++);
}

TEST_F(CpuKernelsTest, PoolSoftmaxMatchReference) {
  unsigned seed = 200;
  for (const Case& c : PoolSoftmaxCases()) CheckCase(c, seed++);
}

// kiln.ConvNhwc and kiln.PoolNhwc: their reference kernels agree with the NCHW op's (permuted), and every
// tactic ("onednn.conv_nhwc", "onednn.conv_nhwc_wino", "onednn.pool_nhwc") agrees with them.
TEST_F(CpuKernelsTest, ChannelsLastMatchesReference) {
  unsigned seed = 300;
  int checked = 0, winograd = 0, bf16 = 0;
  std::vector<Case> cases = ConvCases();
  for (const Case& c : PoolSoftmaxCases()) cases.push_back(c);
  for (const Case& nchw : cases) {
    const std::optional<Case> c = ChannelsLastCase(nchw);
    if (!c) continue;
    SCOPED_TRACE(c->name);
    ++checked;
    // The reference of the NHWC op is the NCHW op's, permuted: same weights, inputs permuted.
    OneNode a, b;
    Build(nchw, seed, a);
    Build(*c, seed, b);
    ASSERT_TRUE(InferShapes(a.g).ok() && InferShapes(b.g).ok());
    for (size_t i : {size_t{0}, size_t{3}}) {
      if (i >= b.feeds.size() || b.feeds[i].empty()) continue;
      const Tensor& x = a.feeds[i];
      Tensor t(DType::kFloat32, {x.size(0), x.size(2), x.size(3), x.size(1)});
      for (int64_t n = 0; n < x.size(0); ++n)
        for (int64_t ch = 0; ch < x.size(1); ++ch)
          for (int64_t h = 0; h < x.size(2); ++h)
            for (int64_t w = 0; w < x.size(3); ++w)
              t.data<float>()[((n * x.size(2) + h) * x.size(3) + w) * x.size(1) + ch] =
                  x.data<float>()[((n * x.size(1) + ch) * x.size(2) + h) * x.size(3) + w];
      b.feeds[i] = std::move(t);
    }
    Expected<Tensor> want_nchw = RunReferenceKernel(*a.node, Inputs(a));
    Expected<Tensor> want = RunReferenceKernel(*b.node, Inputs(b));
    ASSERT_TRUE(want_nchw.ok() && want.ok());
    const Tensor& y = *want_nchw;
    ASSERT_EQ(want->sizes(), (Ints{y.size(0), y.size(2), y.size(3), y.size(1)}));
    for (int64_t n = 0; n < y.size(0); ++n)
      for (int64_t ch = 0; ch < y.size(1); ++ch)
        for (int64_t h = 0; h < y.size(2); ++h)
          for (int64_t w = 0; w < y.size(3); ++w)
            ASSERT_EQ(want->data<float>()[((n * y.size(2) + h) * y.size(3) + w) * y.size(1) + ch],
                      y.data<float>()[((n * y.size(1) + ch) * y.size(2) + h) * y.size(3) + w]);
    const std::vector<cpu::CpuTactic> tactics = cpu::CpuTacticsFor(*b.node);
    ASSERT_FALSE(tactics.empty());
    for (const cpu::CpuTactic& t : tactics) {
      winograd += t.name == "onednn.conv_nhwc_wino";
      bf16 += t.precision == "bf16";
      auto kernel = t.create();
      Expected<Tensor> expected = WantFor(t, *b.node, Inputs(b), *want);
      ASSERT_TRUE(expected.ok()) << expected.status().message();
      for (int rep = 0; rep < 2; ++rep) {
        Expected<Tensor> got = RunKernel(*kernel, *b.node, Inputs(b));
        ASSERT_TRUE(got.ok()) << t.name << ": " << got.status().message();
        ExpectClose(*expected, *got, c->name + " " + t.name, ToleranceOf(t.name));
      }
    }
    ++seed;
  }
  EXPECT_GE(checked, 20);
  // oneDNN has Winograd kernels on AVX-512 only; elsewhere the tactic must not be offered.
  if (cpu::HaveWinograd()) {
    EXPECT_GE(winograd, 5);
  } else {
    EXPECT_EQ(winograd, 0);
  }
  if (cpu::HaveBf16()) EXPECT_GE(bf16, 20);
}

// kiln.Attention ("onednn.attention"): BERT's form with its [batch, 1, 1, seq] mask, full and row masks,
// no mask, odd sizes (Sq != Sk, Dv != D), rank 3.
TEST_F(CpuKernelsTest, AttentionMatchesReference) {
  const OpKind kA = OpKind::kAttention;
  const std::vector<Case> cases = {
      {"bert_heads_mask", kA, {X({2, 12, 128, 64}), X({2, 12, 64, 128}), X({2, 12, 128, 64}), X({2, 1, 1, 128})},
       A({{"scale", 0.125f}})},
      {"no_mask", kA, {X({1, 4, 16, 8}), X({1, 4, 8, 16}), X({1, 4, 16, 8})}, A({{"scale", 0.35f}})},
      {"full_mask_odd", kA, {X({3, 2, 7, 5}), X({3, 2, 5, 9}), X({3, 2, 9, 6}), W({3, 2, 7, 9})}, {}},
      {"row_mask_rank3", kA, {X({5, 11, 3}), X({5, 3, 13}), X({5, 13, 4}), W({11, 1})}, A({{"scale", 2.f}})},
  };
  unsigned seed = 500;
  for (const Case& c : cases) CheckCase(c, seed++);
  OneNode n;
  Build({"broadcast_batch", kA, {X({2, 3, 4, 5}), X({1, 3, 5, 4}), X({2, 3, 4, 5})}, {}}, 1, n);
  ASSERT_TRUE(InferShapes(n.g).ok());
  EXPECT_TRUE(cpu::CpuTacticsFor(*n.node).empty());
}

// LayerNormalization over the last axis ("onednn.layernorm"): BERT's shape, odd sizes, no bias, rank 2.
TEST_F(CpuKernelsTest, LayerNormMatchesReference) {
  const OpKind kL = OpKind::kLayerNormalization;
  const std::vector<Case> cases = {
      {"bert", kL, {X({2, 128, 768}), W({768}), W({768})}, A({{"epsilon", 1e-12f}})},
      {"odd_no_bias", kL, {X({3, 5, 7, 13}), W({13})}, {}},
      {"rank2_axis1", kL, {X({9, 33}), W({33}), W({33})}, A({{"axis", int64_t{1}}, {"epsilon", 1e-3f}})},
  };
  unsigned seed = 600;
  for (const Case& c : cases) CheckCase(c, seed++);
  OneNode n;
  Build({"axis0", kL, {X({4, 6}), W({4, 6}), W({4, 6})}, A({{"axis", int64_t{0}}})}, 1, n);
  ASSERT_TRUE(InferShapes(n.g).ok());
  EXPECT_TRUE(cpu::CpuTacticsFor(*n.node).empty());
}

// Transpose ("onednn.transpose", and "kiln.transpose_rows" where the last dim stays) against the
// reference on every kind of permutation it meets.
TEST_F(CpuKernelsTest, TransposeMatchesReference) {
  const std::vector<Case> cases = {
      {"to_nhwc", OpKind::kTranspose, {X({2, 5, 7, 3})}, A({{"perm", Ints{0, 2, 3, 1}}})},
      {"to_nchw", OpKind::kTranspose, {X({2, 7, 3, 5})}, A({{"perm", Ints{0, 3, 1, 2}}})},
      {"bert_heads", OpKind::kTranspose, {X({2, 128, 12, 64})}, A({{"perm", Ints{0, 2, 1, 3}}})},
      {"bert_keys", OpKind::kTranspose, {X({2, 128, 12, 64})}, A({{"perm", Ints{0, 2, 3, 1}}})},
      {"default_reverse", OpKind::kTranspose, {X({3, 4, 5})}, {}},
      {"matrix", OpKind::kTranspose, {X({33, 17})}, A({{"perm", Ints{1, 0}}})},
      {"identity", OpKind::kTranspose, {X({3, 4})}, A({{"perm", Ints{0, 1}}})},
      {"rank6", OpKind::kTranspose, {X({2, 1, 3, 2, 4, 3})}, A({{"perm", Ints{5, 3, 1, 0, 4, 2}}})},
      {"unit_dims", OpKind::kTranspose, {X({1, 1, 1, 9})}, A({{"perm", Ints{0, 3, 1, 2}}})},
      {"rank5_rows", OpKind::kTranspose, {X({3, 1, 4, 2, 5})}, A({{"perm", Ints{2, 0, 3, 1, 4}}})},
  };
  unsigned seed = 400;
  for (const Case& c : cases) CheckCase(c, seed++);
}

// One kernel object sees several runtime batch sizes (a symbolic batch dim): one primitive per shape.
TEST_F(CpuKernelsTest, RuntimeBatchSizes) {
  const std::vector<Case> cases = {
      {"conv_residual", OpKind::kFusedConv, {X({1, 8, 9, 9}), W({16, 8, 3, 3}), W({16}), X({1, 16, 9, 9})},
       A({{"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Relu")}})},
      {"matmul", OpKind::kMatMul, {X({1, 10, 32}), W({32, 24})}, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    OneNode n;
    Build(c, 5, n, /*symbolic_batch=*/true);
    ASSERT_TRUE(InferShapes(n.g).ok());
    for (const cpu::CpuTactic& t : cpu::CpuTacticsFor(*n.node)) {
      std::unique_ptr<cpu::CpuKernel> kernel = t.create();
      for (int64_t batch : {1, 3, 2, 3, 1}) {
        std::mt19937 rng(static_cast<unsigned>(batch));
        for (size_t i = 0; i < c.inputs.size(); ++i) {
          if (c.inputs[i].kind != In::kInput) continue;
          std::vector<int64_t> sizes = c.inputs[i].sizes;
          sizes[0] = batch;
          n.feeds[i] = Random(sizes, rng);
        }
        const auto ins = Inputs(n);
        Expected<Tensor> want = RunReferenceKernel(*n.node, ins);
        ASSERT_TRUE(want.ok());
        Expected<Tensor> expected = WantFor(t, *n.node, ins, *want);
        ASSERT_TRUE(expected.ok());
        Expected<Tensor> got = RunKernel(*kernel, *n.node, ins);
        ASSERT_TRUE(got.ok()) << got.status().message();
        ExpectClose(*expected, *got, t.name + " batch " + std::to_string(batch));
      }
    }
  }
}

// A residual placed in the output's own memory (in place, as an executor may arrange) is still added.
TEST_F(CpuKernelsTest, ResidualInPlace) {
  const Case c{"conv", OpKind::kFusedConv, {X({1, 4, 6, 6}), W({4, 4, 3, 3}), W({4}), X({1, 4, 6, 6})},
               A({{"pads", Ints{1, 1, 1, 1}}})};
  OneNode n;
  Build(c, 9, n);
  ASSERT_TRUE(InferShapes(n.g).ok());
  const auto ins = Inputs(n);
  Expected<Tensor> want = RunReferenceKernel(*n.node, ins);
  ASSERT_TRUE(want.ok());
  for (const cpu::CpuTactic& t : cpu::CpuTacticsFor(*n.node)) {
    auto kernel = t.create();
    auto z = std::make_shared<Buffer>(n.feeds[3].nbytes());
    std::memcpy(z->data(), n.feeds[3].raw_data(), n.feeds[3].nbytes());
    Tensor z_t(DType::kFloat32, n.feeds[3].sizes(), z);
    std::vector<const Tensor*> aliased = ins;
    aliased[3] = &z_t;
    const KernelLimits limits;
    KernelContext ctx(*n.node, aliased, limits);
    ctx.PlaceOutput(0, OutputPlacement{z, 0, z->size(), /*zero=*/false});
    ASSERT_TRUE(kernel->Run(ctx).ok()) << t.name;
    EXPECT_EQ(ctx.outputs()[0].raw_data(), z->data()) << "output not placed over Z";
    ExpectClose(*want, ctx.outputs()[0], t.name + " in place");
  }
}

// Node forms the tactics do not take get no candidates (the reference kernel runs them).
TEST_F(CpuKernelsTest, DeclinesUnsupportedForms) {
  const std::vector<Case> cases = {
      {"matmul_rank1", OpKind::kMatMul, {X({2, 3, 4}), X({4})}, {}},
      {"matmul_rank7", OpKind::kMatMul, {X({1, 1, 1, 1, 1, 2, 3}), X({3, 4})}, {}},
      {"fused_conv_broadcast_residual", OpKind::kFusedConv,
       {X({1, 4, 6, 6}), W({4, 4, 3, 3}), W({4}), X({1, 4, 1, 1})}, A({{"pads", Ints{1, 1, 1, 1}}})},
      {"relu", OpKind::kRelu, {X({2, 3})}, {}},
      {"softmax_axis1_of_3", OpKind::kSoftmax, {X({2, 3, 4})}, A({{"axis", int64_t{1}}})},
      {"maxpool_dilated", OpKind::kMaxPool, {X({1, 2, 9, 9})},
       A({{"kernel_shape", Ints{3, 3}}, {"dilations", Ints{2, 2}}})},
  };
  for (const Case& c : cases) {
    OneNode n;
    Build(c, 3, n);
    ASSERT_TRUE(InferShapes(n.g).ok()) << c.name;
    EXPECT_TRUE(cpu::CpuTacticsFor(*n.node).empty()) << c.name;
    EXPECT_EQ(cpu::CreateCpuKernel(*n.node, "onednn.conv"), nullptr) << c.name;
  }
  // f16 inputs.
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat16, Shape::FromSizes({1, 4, 6, 6}));
  Value* w = g.AddValue("w", DType::kFloat16, Shape::FromSizes({4, 4, 3, 3}));
  g.AddInput(x);
  g.AddInput(w);
  Value* y = g.AddValue("y", DType::kUndefined);
  Node* conv = g.AddNode(OpKind::kConv, "conv", {x, w}, {y}, 17);
  g.AddOutput(y);
  ASSERT_TRUE(InferShapes(g).ok());
  EXPECT_TRUE(cpu::CpuTacticsFor(*conv).empty());
  Value* a = g.AddValue("a", DType::kFloat16, Shape::FromSizes({4, 6}));
  Value* b = g.AddValue("b", DType::kFloat16, Shape::FromSizes({6, 3}));
  Value* m = g.AddValue("m", DType::kUndefined);
  Node* mm = g.AddNode(OpKind::kMatMul, "mm", {a, b}, {m}, 17);
  EXPECT_TRUE(cpu::CpuTacticsFor(*mm).empty());
  // A rank the graph does not know.
  Value* u = g.AddValue("u", DType::kFloat32);
  Value* v = g.AddValue("v", DType::kFloat32, Shape::FromSizes({6, 3}));
  Value* o = g.AddValue("o", DType::kUndefined);
  Node* unknown = g.AddNode(OpKind::kMatMul, "unknown", {u, v}, {o}, 17);
  EXPECT_TRUE(cpu::CpuTacticsFor(*unknown).empty());
}

// Runtime tensors that do not fit the node are errors, not crashes.
TEST_F(CpuKernelsTest, MismatchedRuntimeShapesFail) {
  struct Bad {
    Case c;
    size_t input;
    std::vector<int64_t> runtime_sizes;
  };
  const std::vector<Bad> bad = {
      {{"conv_channels", OpKind::kConv, {X({1, 8, 10, 10}), W({16, 8, 3, 3})}, {}}, 0, {1, 4, 10, 10}},
      {{"conv_rank", OpKind::kConv, {X({1, 8, 10, 10}), W({16, 8, 3, 3})}, {}}, 0, {8, 10, 10}},
      {{"conv_too_small", OpKind::kConv, {X({1, 8, 10, 10}), W({16, 8, 3, 3})}, {}}, 0, {1, 8, 2, 2}},
      {{"conv_residual", OpKind::kFusedConv, {X({1, 8, 10, 10}), W({16, 8, 3, 3}), None(), X({1, 16, 8, 8})}, {}},
       3, {1, 16, 9, 9}},
      {{"conv_bias", OpKind::kConv, {X({1, 8, 10, 10}), W({16, 8, 3, 3}), X({16})}, {}}, 2, {15}},
      {{"matmul_inner", OpKind::kMatMul, {X({2, 5, 7}), W({7, 3})}, {}}, 0, {2, 5, 6}},
      {{"matmul_batch", OpKind::kMatMul, {X({2, 5, 7}), X({2, 7, 3})}, {}}, 1, {3, 7, 3}},
      {{"matmul_rank1", OpKind::kMatMul, {X({5, 7}), W({7, 3})}, {}}, 0, {7}},
      {{"gemm_c", OpKind::kGemm, {X({5, 7}), W({7, 3}), X({3})}, {}}, 2, {4}},
      {{"maxpool_rank", OpKind::kMaxPool, {X({1, 2, 9, 9})}, A({{"kernel_shape", Ints{3, 3}}})}, 0, {2, 9, 9}},
      {{"maxpool_too_small", OpKind::kMaxPool, {X({1, 2, 9, 9})}, A({{"kernel_shape", Ints{3, 3}}})}, 0, {1, 2, 2, 9}},
      {{"fused_gemm_r", OpKind::kFusedGemm, {X({5, 7}), W({7, 3}), None(), X({5, 3})}, {}}, 3, {5, 2}},
  };
  for (const Bad& b : bad) {
    OneNode n;
    Build(b.c, 3, n);
    ASSERT_TRUE(InferShapes(n.g).ok()) << b.c.name;
    std::mt19937 rng(1);
    n.feeds[b.input] = Random(b.runtime_sizes, rng);
    const auto tactics = cpu::CpuTacticsFor(*n.node);
    ASSERT_FALSE(tactics.empty()) << b.c.name;
    for (const cpu::CpuTactic& t : tactics) {
      auto kernel = t.create();
      Expected<Tensor> got = RunKernel(*kernel, *n.node, Inputs(n));
      EXPECT_FALSE(got.ok()) << b.c.name << " " << t.name << " accepted " << SizesToString(b.runtime_sizes);
    }
  }
}

// Constant weights are packed once per process: a second kernel for the same node (another context, another
// server instance) shares the first one's copy, and the copy goes when the last kernel holding it goes.
TEST_F(CpuKernelsTest, PackedWeightsAreSharedByKernels) {
  const size_t before = cpu::LivePackedWeightBytes();
  const Case conv{"conv", OpKind::kConv, {X({1, 16, 9, 9}), W({32, 16, 3, 3}), W({32})}, A({{"pads", Ints{1, 1, 1, 1}}})};
  const Case gemm{"gemm", OpKind::kGemm, {X({4, 64}), W({48, 64}), W({48})}, A({{"transB", int64_t{1}}})};
  for (const Case& c : {conv, gemm}) {
    SCOPED_TRACE(c.name);
    OneNode n;
    Build(c, 11, n);
    ASSERT_TRUE(InferShapes(n.g).ok());
    const auto ins = Inputs(n);
    const std::string tactic = cpu::CpuTacticsFor(*n.node).front().name;
    auto a = cpu::CreateCpuKernel(*n.node, tactic);
    auto b = cpu::CreateCpuKernel(*n.node, tactic);
    ASSERT_TRUE(a && b);
    Expected<Tensor> ya = RunKernel(*a, *n.node, ins);
    ASSERT_TRUE(ya.ok()) << ya.status().message();
    const size_t one = cpu::LivePackedWeightBytes() - before;
    EXPECT_GE(one, n.node->input(1)->constant()->nbytes()) << "the weights were not packed";
    Expected<Tensor> yb = RunKernel(*b, *n.node, ins);
    ASSERT_TRUE(yb.ok());
    EXPECT_EQ(cpu::LivePackedWeightBytes() - before, one) << "the second kernel packed its own copy";
    EXPECT_EQ(std::memcmp(ya->raw_data(), yb->raw_data(), ya->nbytes()), 0);
    a.reset();
    EXPECT_EQ(cpu::LivePackedWeightBytes() - before, one) << "freed while a kernel still uses it";
    b.reset();
    EXPECT_EQ(cpu::LivePackedWeightBytes(), before);
  }
}

TEST_F(CpuKernelsTest, ReportsVersion) { EXPECT_FALSE(cpu::OneDnnVersion().empty()); }

// Not a test: times one ResNet-50 3x3 conv (1x64x56x56, 64->64) on the reference kernel and each tactic.
// Run with --gtest_also_run_disabled_tests --gtest_filter='*Timing*'.
TEST_F(CpuKernelsTest, DISABLED_TimingResNetConv) {
  const Case c{"resnet_3x3", OpKind::kFusedConv, {X({1, 64, 56, 56}), W({64, 64, 3, 3}), W({64})},
               A({{"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Relu")}})};
  OneNode n;
  Build(c, 1, n);
  ASSERT_TRUE(InferShapes(n.g).ok());
  const auto ins = Inputs(n);
  auto time_ms = [&](const std::function<void()>& fn, int runs) {
    fn();  // warm up: primitive creation, weight packing
    std::vector<double> ms;
    for (int i = 0; i < runs; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  const double ref = time_ms([&] { ASSERT_TRUE(RunReferenceKernel(*n.node, ins).ok()); }, 3);
  std::printf("reference: %.2f ms\n", ref);
  for (const cpu::CpuTactic& t : cpu::CpuTacticsFor(*n.node)) {
    auto kernel = t.create();
    const double ms = time_ms([&] { ASSERT_TRUE(RunKernel(*kernel, *n.node, ins).ok()); }, 20);
    std::printf("%s: %.3f ms (%.1fx)\n", t.name.c_str(), ms, ref / ms);
  }
}

}  // namespace
}  // namespace kiln
