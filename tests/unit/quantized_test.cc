// 8-bit layers: kiln.QConv / kiln.QMatMul / kiln.QAdd (src/ops/quantized.cc), the fuse_qdq pass, and the
// 8-bit CPU tactics ("onednn.qconv", "onednn.qmatmul", "kiln.qadd", "kiln.quantize", "kiln.dequantize")
// held to the reference kernels.
//
// Tolerances. The reference kernels compute the QDQ sub-graph in float (dequantize, float convolution,
// quantize); onednn.qconv accumulates exactly in i32 and requantizes once. The two agree exactly except
// where the float result lies within rounding error of a half step of the output scale, where they may
// round apart: at most 1 step, on a small fraction of elements (measured: well under 1%; the check allows
// 2% so that it never flakes and still fails on any wrong tap, pad, zero point or scale, which moves most
// elements by many steps). The element-wise tactics compute the reference's float operations in the
// same order: bit-identical. Every case also checks that a quarter or more of the outputs are strictly
// inside the output type's range (ReLU sends about half to 0), so that a saturated output cannot pass by
// accident.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "ir/graph.h"
#include "ops/infer.h"
#include "ops/op_util.h"
#include "ops/registry.h"
#include "passes/pass.h"
#include "passes/pipeline.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

using Ints = std::vector<int64_t>;

Tensor Scalar(DType t, double v) {
  Tensor s(t, {});
  if (t == DType::kFloat32) s.data<float>()[0] = static_cast<float>(v);
  if (t == DType::kUInt8) s.data<uint8_t>()[0] = static_cast<uint8_t>(v);
  if (t == DType::kInt8) s.data<int8_t>()[0] = static_cast<int8_t>(v);
  return s;
}

Tensor RandomInt8(DType t, const Ints& sizes, std::mt19937& rng, int lo, int hi) {
  Tensor x(t, sizes);
  std::uniform_int_distribution<int> d(lo, hi);
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (t == DType::kUInt8) x.data<uint8_t>()[i] = static_cast<uint8_t>(d(rng));
    if (t == DType::kInt8) x.data<int8_t>()[i] = static_cast<int8_t>(d(rng));
  }
  return x;
}

// Uniform floats in [lo, hi).
Tensor RandomFloat(const Ints& sizes, std::mt19937& rng, float lo, float hi) {
  Tensor x(DType::kFloat32, sizes);
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = d(rng);
  return x;
}

Expected<Tensor> RunNode(const Node& node, const std::vector<const Tensor*>& ins, cpu::CpuKernel* kernel) {
  static const KernelLimits kLimits;
  KernelContext ctx(node, ins, kLimits);
  KILN_RETURN_IF_ERROR(kernel ? kernel->Run(ctx) : OpRegistry::Global().Find(node.op())->run(ctx));
  if (ctx.outputs().empty() || ctx.outputs()[0].empty()) return Internal("no output");
  return ctx.outputs()[0];
}

// Checks `got` against `want` (8-bit): at most `max_step` apart everywhere, at most `max_frac` of the
// elements differing, and a quarter or more of `want` strictly inside the type's range.
void ExpectQuantClose(const Tensor& want, const Tensor& got, int max_step, double max_frac, const std::string& what) {
  ASSERT_EQ(want.dtype(), got.dtype()) << what;
  ASSERT_EQ(want.sizes(), got.sizes()) << what;
  const double lo = want.dtype() == DType::kUInt8 ? 0 : -128, hi = want.dtype() == DType::kUInt8 ? 255 : 127;
  int64_t differ = 0, inside = 0;
  int reported = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const int64_t e = want.GetAsInt64(i), a = got.GetAsInt64(i);
    inside += e > lo && e < hi;
    if (e == a) continue;
    ++differ;
    if (std::llabs(e - a) > max_step && reported++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: expected " << e << ", got " << a;
    }
  }
  EXPECT_LE(static_cast<double>(differ), max_frac * static_cast<double>(want.numel()))
      << what << ": " << differ << " of " << want.numel() << " elements differ";
  EXPECT_GE(static_cast<double>(inside), 0.25 * static_cast<double>(want.numel()))
      << what << ": the case saturates; pick other scales";
}

// f32 outputs: the kernel's exact i32 accumulation scaled once against the reference's float convolution
// of dequantized values (sums of up to 144 products rounded in float): within 1e-5 of the output's
// largest magnitude (measured: a few 1e-7); a wrong tap, pad or scale is off by a whole product (> 1e-3).
void ExpectFloatClose(const Tensor& want, const Tensor& got, const std::string& what) {
  ASSERT_EQ(got.dtype(), DType::kFloat32) << what;
  ASSERT_EQ(want.sizes(), got.sizes()) << what;
  double peak = 0;
  for (int64_t i = 0; i < want.numel(); ++i) peak = std::max(peak, std::fabs(double{want.data<float>()[i]}));
  ASSERT_GT(peak, 0) << what;
  int bad = 0;
  for (int64_t i = 0; i < want.numel() && bad < 5; ++i) {
    const double e = want.data<float>()[i], a = got.data<float>()[i];
    const bool ok = std::fabs(e - a) <= 1e-5 * peak;
    EXPECT_TRUE(ok) << what << "[" << i << "]: expected " << e << ", got " << a;
    bad += !ok;
  }
}

struct QConvCase {
  std::string name;
  Ints x;  // NCHW sizes
  Ints w;
  Attributes attrs;
  DType xt = DType::kUInt8;
  int x_zero = 0;
  bool per_channel = true;
  bool bias = true;
  DType yt = DType::kUInt8;  // kFloat32: no y_scale / y_zero_point (an f32 output)
  int y_zero = 0;
};

Attributes A(std::initializer_list<std::pair<const char*, AttrValue>> kv) {
  Attributes a;
  for (const auto& p : kv) a.Set(p.first, p.second);
  return a;
}

std::vector<QConvCase> QConvCases() {
  const Attributes relu = A({{"activation", std::string("Relu")}});
  std::vector<QConvCase> c = {
      {"resnet_1x1_relu", {2, 64, 14, 14}, {64, 64, 1, 1}, relu},
      {"resnet_3x3_pad_relu", {1, 32, 15, 15}, {48, 32, 3, 3},
       A({{"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Relu")}})},
      {"stem_7x7_s2_input_zero_point", {1, 3, 31, 31}, {16, 3, 7, 7},
       A({{"strides", Ints{2, 2}}, {"pads", Ints{3, 3, 3, 3}}, {"activation", std::string("Relu")}}), DType::kUInt8,
       126},
      {"downsample_1x1_s2_no_act_y_zero_point", {1, 16, 9, 9}, {24, 16, 1, 1}, A({{"strides", Ints{2, 2}}}),
       DType::kUInt8, 0, true, true, DType::kUInt8, 121},
      {"depthwise_3x3_clip", {1, 24, 11, 13}, {24, 1, 3, 3},
       A({{"group", int64_t{24}}, {"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Clip")},
          {"activation_alpha", 0.f}, {"activation_beta", 6.f}})},
      {"grouped_odd_geometry", {3, 12, 10, 9}, {18, 4, 3, 2},
       A({{"group", int64_t{3}}, {"strides", Ints{2, 1}}, {"dilations", Ints{2, 1}}, {"pads", Ints{1, 0, 2, 1}}}),
       DType::kUInt8, 17, false, false, DType::kUInt8, 100},
      {"signed_x_signed_y", {1, 8, 7, 7}, {10, 8, 3, 3}, A({{"pads", Ints{1, 1, 1, 1}}}), DType::kInt8, -5, true,
       true, DType::kInt8, 3},
      {"same_upper", {1, 5, 8, 8}, {7, 5, 3, 3}, A({{"auto_pad", std::string("SAME_UPPER")}, {"strides", Ints{2, 2}}}),
       DType::kUInt8, 40, true, false, DType::kUInt8, 90},
      // f32 outputs (no final Q), with and without a fused ReLU, an X zero point and padding
      {"float_out_3x3_relu", {2, 16, 9, 9}, {20, 16, 3, 3},
       A({{"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Relu")}}), DType::kUInt8, 30, true, true,
       DType::kFloat32},
      {"float_out_signed_grouped", {1, 8, 7, 6}, {8, 4, 3, 3}, A({{"group", int64_t{2}}, {"strides", Ints{2, 2}}}),
       DType::kInt8, 3, false, true, DType::kFloat32},
  };
  return c;
}

// A one-node kiln.QConv graph (X a graph input in the case's layout) and X's feed.
struct QConvGraph {
  Graph g;
  Node* node = nullptr;
  Tensor x;
};

void BuildQConv(const QConvCase& c, bool channels_last, QConvGraph& out) {
  std::mt19937 rng(7);
  const bool u8 = c.xt == DType::kUInt8;
  const Ints xs = channels_last ? Ints{c.x[0], c.x[2], c.x[3], c.x[1]} : c.x;
  Value* x = out.g.AddValue("x", c.xt, Shape::FromSizes(xs));
  out.g.AddInput(x);
  out.x = RandomInt8(c.xt, xs, rng, u8 ? 0 : -128, u8 ? 255 : 127);
  const double sx = 0.02;
  const int64_t m = c.w[0];
  const int64_t fan_in = c.w[1] * c.w[2] * c.w[3];
  Tensor ws(DType::kFloat32, c.per_channel ? Ints{m} : Ints{});
  std::uniform_real_distribution<float> scale(0.5f, 1.5f);
  for (int64_t i = 0; i < ws.numel(); ++i) ws.data<float>()[i] = 0.01f * scale(rng);
  Tensor b(DType::kFloat32, {m});
  std::uniform_real_distribution<float> bias(-0.5f, 0.5f);
  for (int64_t i = 0; i < m; ++i) b.data<float>()[i] = bias(rng);
  // The output scale: about 4 standard deviations of the float output over the type's 256 steps.
  const double x_std = sx * 74, w_std = 0.01 * 74;
  const double sy = 4 * std::sqrt(static_cast<double>(fan_in)) * x_std * w_std / 128;
  std::vector<Value*> ins = {
      x,
      out.g.AddConstant("x_scale", Scalar(DType::kFloat32, sx)),
      out.g.AddConstant("x_zero", Scalar(c.xt, c.x_zero)),
      out.g.AddConstant("w", RandomInt8(DType::kInt8, c.w, rng, -127, 127)),
      out.g.AddConstant("w_scale", std::move(ws)),
      nullptr,
      c.yt == DType::kFloat32 ? nullptr : out.g.AddConstant("y_scale", Scalar(DType::kFloat32, sy)),
      c.yt == DType::kFloat32 ? nullptr : out.g.AddConstant("y_zero", Scalar(c.yt, c.y_zero)),
      c.bias ? out.g.AddConstant("b", std::move(b)) : nullptr,
  };
  while (!ins.back()) ins.pop_back();
  Value* y = out.g.AddValue("y", DType::kUndefined);
  out.node = out.g.AddNode(OpKind::kQConv, "qconv", ins, {y}, 17);
  out.node->attrs() = c.attrs;
  if (channels_last) out.node->attrs().Set("channels_last", int64_t{1});
  out.g.AddOutput(y);
}

std::vector<const Tensor*> NodeInputs(const Node& n, const Tensor& x) {
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < n.num_inputs(); ++i) {
    const Value* v = n.input(i);
    ins.push_back(!v ? nullptr : v->is_constant() ? v->constant() : &x);
  }
  return ins;
}

TEST(QuantizedOps, QConvChannelsLastReferenceEqualsNchw) {
  // The NHWC form is the same op: its reference output is the NCHW one permuted.
  for (const QConvCase& c : QConvCases()) {
    SCOPED_TRACE(c.name);
    QConvGraph nchw, nhwc;
    BuildQConv(c, false, nchw);
    BuildQConv(c, true, nhwc);
    ASSERT_TRUE(InferShapes(nchw.g).ok()) << InferShapes(nchw.g).message();
    ASSERT_TRUE(InferShapes(nhwc.g).ok()) << InferShapes(nhwc.g).message();
    // Same values: the NHWC feed is the NCHW feed permuted.
    nhwc.x = PermuteRank4(nchw.x, {0, 2, 3, 1});
    Expected<Tensor> a = RunNode(*nchw.node, NodeInputs(*nchw.node, nchw.x), nullptr);
    Expected<Tensor> b = RunNode(*nhwc.node, NodeInputs(*nhwc.node, nhwc.x), nullptr);
    ASSERT_TRUE(a.ok() && b.ok());
    const Tensor a_nhwc = PermuteRank4(*a, {0, 2, 3, 1});
    ASSERT_EQ(a_nhwc.sizes(), b->sizes());
    ASSERT_EQ(nhwc.node->output(0)->shape()->sizes(), b->sizes());
    EXPECT_EQ(std::memcmp(a_nhwc.raw_data(), b->raw_data(), b->nbytes()), 0);
  }
}

TEST(QuantizedTactics, QConvMatchesReference) {
  if (!cpu::HaveOneDnn()) GTEST_SKIP() << "built without oneDNN: no fast CPU tactics";
  if (!cpu::HaveInt8Dot()) GTEST_SKIP() << "this CPU has no VNNI: the 8-bit tactics are not offered "
                                         "(NoInt8TacticsWithoutVnni checks that)";
  for (const QConvCase& c : QConvCases()) {
    for (bool channels_last : {false, true}) {
      SCOPED_TRACE(c.name + (channels_last ? " NHWC" : " NCHW"));
      QConvGraph q;
      BuildQConv(c, channels_last, q);
      ASSERT_TRUE(ValidateGraphOps(q.g).ok()) << ValidateGraphOps(q.g).message();
      ASSERT_TRUE(InferShapes(q.g).ok()) << InferShapes(q.g).message();
      const std::vector<const Tensor*> ins = NodeInputs(*q.node, q.x);
      Expected<Tensor> want = RunNode(*q.node, ins, nullptr);
      ASSERT_TRUE(want.ok()) << want.status().message();
      std::vector<cpu::CpuTactic> tactics = cpu::CpuTacticsFor(*q.node);
      ASSERT_EQ(tactics.size(), 1u);
      EXPECT_EQ(tactics[0].name, "onednn.qconv");
      EXPECT_EQ(tactics[0].precision, "int8");
      std::unique_ptr<cpu::CpuKernel> kernel = tactics[0].create();
      for (int rep = 0; rep < 2; ++rep) {  // the second run reuses the cached primitive and packed weights
        Expected<Tensor> got = RunNode(*q.node, ins, kernel.get());
        ASSERT_TRUE(got.ok()) << got.status().message();
        if (c.yt == DType::kFloat32) {
          ExpectFloatClose(*want, *got, c.name);
        } else {
          ExpectQuantClose(*want, *got, 1, 0.02, c.name);
        }
      }
    }
  }
}

// kiln.QMatMul: A [.., K] 8-bit per tensor, B [K, N] i8 per tensor or per column, optional Bias [N], f32 or
// 8-bit Y. The 8-bit Y's scale and zero point come from the float result of the same case, so that the
// output spans the type's range without saturating.
struct QMatMulCase {
  std::string name;
  Ints a;
  int64_t n = 0;
  DType at = DType::kUInt8;
  int a_zero = 0;
  bool per_column = true;
  bool bias = true;
  std::string activation;  // f32 Y only
};

std::vector<QMatMulCase> QMatMulCases() {
  return {
      {"bert-like rank 3, u8 zp 131, per column, bias", {2, 9, 64}, 48, DType::kUInt8, 131, true, true},
      {"rank 2, odd K and N, u8 zp 0, per tensor", {7, 33}, 17, DType::kUInt8, 0, false, false},
      {"rank 4, i8 zp -3, per column, no bias", {2, 3, 5, 40}, 50, DType::kInt8, -3, true, false},
      {"one row, K 1", {1, 1}, 9, DType::kUInt8, 200, true, true},
      {"fused GELU (erf), rank 3", {3, 20, 64}, 96, DType::kUInt8, 128, true, true, "Gelu"},
      {"fused ReLU, no bias", {5, 30}, 24, DType::kInt8, 0, false, false, "Relu"},
  };
}

struct QMatMulGraph {
  Graph g;
  Node* node = nullptr;
  Tensor a;
};

// y_scale <= 0: an f32 Y.
void BuildQMatMul(const QMatMulCase& c, double y_scale, int y_zero, QMatMulGraph& out) {
  std::mt19937 rng(static_cast<unsigned>(c.a.size() * 131 + static_cast<size_t>(c.n)));
  Graph& g = out.g;
  const int64_t k = c.a.back();
  auto add = [&](const std::string& name, Tensor t) { return g.AddConstant(name, std::move(t)); };
  Value* a = g.AddValue("a", c.at, Shape::FromSizes(c.a));
  g.AddInput(a);
  out.a = c.at == DType::kUInt8 ? RandomInt8(c.at, c.a, rng, 0, 255) : RandomInt8(c.at, c.a, rng, -128, 127);
  Tensor bs(DType::kFloat32, c.per_column ? Ints{c.n} : Ints{});
  std::uniform_real_distribution<float> scale(0.004f, 0.012f);
  for (int64_t i = 0; i < bs.numel(); ++i) bs.data<float>()[i] = scale(rng);
  std::vector<Value*> ins = {a, add("sa", Scalar(DType::kFloat32, 0.02)), add("za", Scalar(c.at, c.a_zero)),
                             add("b", RandomInt8(DType::kInt8, {k, c.n}, rng, -127, 127)), add("sb", std::move(bs)),
                             nullptr, nullptr, nullptr, nullptr};
  if (y_scale > 0) {
    ins[6] = add("sy", Scalar(DType::kFloat32, y_scale));
    ins[7] = add("zy", Scalar(DType::kUInt8, y_zero));
  }
  if (c.bias) {
    ins[8] = add("bias", RandomFloat({c.n}, rng, -3.f, 3.f));
  }
  while (!ins.back()) ins.pop_back();
  Value* y = g.AddValue("y", DType::kUndefined);
  out.node = g.AddNode(OpKind::kQMatMul, "qmm", ins, {y}, 1);
  if (!c.activation.empty()) out.node->attrs().Set("activation", c.activation);
  g.AddOutput(y);
}

TEST(QuantizedTactics, QMatMulMatchesReference) {
  if (!cpu::HaveOneDnn()) GTEST_SKIP() << "built without oneDNN: no fast CPU tactics";
  if (!cpu::HaveInt8Dot()) GTEST_SKIP() << "this CPU has no VNNI: the 8-bit tactics are not offered "
                                         "(NoInt8TacticsWithoutVnni checks that)";
  for (const QMatMulCase& c : QMatMulCases()) {
    // f32 Y first; its range sets the 8-bit Y's parameters.
    QMatMulGraph f;
    BuildQMatMul(c, 0, 0, f);
    ASSERT_TRUE(ValidateGraphOps(f.g).ok()) << ValidateGraphOps(f.g).message();
    ASSERT_TRUE(InferShapes(f.g).ok()) << InferShapes(f.g).message();
    Expected<Tensor> ref = RunNode(*f.node, NodeInputs(*f.node, f.a), nullptr);
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    Ints want_sizes = c.a;
    want_sizes.back() = c.n;
    ASSERT_EQ(ref->sizes(), want_sizes);
    ASSERT_EQ(f.node->output(0)->shape()->sizes(), want_sizes);
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < ref->numel(); ++i) {
      lo = std::min(lo, ref->data<float>()[i]);
      hi = std::max(hi, ref->data<float>()[i]);
    }
    const double sy = std::max(1e-3, (double{hi} - lo) / 255.0);
    const int zy = static_cast<int>(std::lround(-lo / sy));
    for (bool float_out : {true, false}) {
      if (!float_out && !c.activation.empty()) continue;
      SCOPED_TRACE(c.name + (float_out ? ", f32 Y" : ", u8 Y"));
      QMatMulGraph q;
      BuildQMatMul(c, float_out ? 0 : sy, zy, q);
      ASSERT_TRUE(InferShapes(q.g).ok()) << InferShapes(q.g).message();
      const std::vector<const Tensor*> ins = NodeInputs(*q.node, q.a);
      Expected<Tensor> want = RunNode(*q.node, ins, nullptr);
      ASSERT_TRUE(want.ok()) << want.status().message();
      std::vector<cpu::CpuTactic> tactics = cpu::CpuTacticsFor(*q.node);
      ASSERT_EQ(tactics.size(), 1u);
      EXPECT_EQ(tactics[0].name, "onednn.qmatmul");
      EXPECT_EQ(tactics[0].precision, "int8");
      std::unique_ptr<cpu::CpuKernel> kernel = tactics[0].create();
      for (int rep = 0; rep < 2; ++rep) {  // the second run reuses the cached primitive and packed weights
        Expected<Tensor> got = RunNode(*q.node, ins, kernel.get());
        ASSERT_TRUE(got.ok()) << got.status().message();
        if (float_out) {
          ExpectFloatClose(*want, *got, c.name);
        } else {
          ExpectQuantClose(*want, *got, 1, 0.02, c.name);
        }
      }
    }
  }
}

// kiln.QMatMul's activation is kiln.FusedGemm's: an unknown one is refused when the graph is validated.
TEST(QuantizedOps, QMatMulRejectsUnknownActivation) {
  QMatMulGraph q;
  BuildQMatMul({"bad activation", {2, 8}, 4, DType::kUInt8, 0, true, false, "Bogus"}, 0, 0, q);
  const Status st = ValidateGraphOps(q.g);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Bogus"), std::string::npos) << st.message();
}

// One-node Q / DQ / QAdd graphs with per-tensor parameters.
// Without VNNI oneDNN's 8-bit products saturate 16-bit partial sums (results off by many steps, seen on an
// AVX2-only CPU): neither 8-bit product tactic may be offered there, so those layers run their exact
// reference kernels.
TEST(QuantizedTactics, NoInt8TacticsWithoutVnni) {
  if (!cpu::HaveOneDnn()) GTEST_SKIP() << "built without oneDNN: no fast CPU tactics";
  if (cpu::HaveInt8Dot()) GTEST_SKIP() << "this CPU has VNNI (QConvMatchesReference runs the tactics)";
  for (const QConvCase& c : QConvCases()) {
    for (bool channels_last : {false, true}) {
      QConvGraph q;
      BuildQConv(c, channels_last, q);
      ASSERT_TRUE(InferShapes(q.g).ok()) << InferShapes(q.g).message();
      EXPECT_TRUE(cpu::CpuTacticsFor(*q.node).empty()) << c.name;
      EXPECT_FALSE(cpu::HasChannelsLastKernel(*q.node)) << c.name;
    }
  }
  for (const QMatMulCase& c : QMatMulCases()) {
    QMatMulGraph q;
    BuildQMatMul(c, 0.05, 0, q);
    ASSERT_TRUE(InferShapes(q.g).ok()) << InferShapes(q.g).message();
    EXPECT_TRUE(cpu::CpuTacticsFor(*q.node).empty()) << c.name;
  }
}

TEST(QuantizedTactics, ElementwiseBitIdentical) {
  if (!cpu::HaveOneDnn()) GTEST_SKIP() << "built without oneDNN: no fast CPU tactics";
  std::mt19937 rng(11);
  const Ints sizes = {2, 5, 7, 9};
  for (DType t : {DType::kUInt8, DType::kInt8}) {
    const int lo = t == DType::kUInt8 ? 0 : -128, hi = t == DType::kUInt8 ? 255 : 127;
    // QuantizeLinear: float input spread over the range and beyond (saturation), plus NaN and +-inf.
    {
      Graph g;
      Value* x = g.AddValue("x", DType::kFloat32, Shape::FromSizes(sizes));
      g.AddInput(x);
      Value* y = g.AddValue("y", DType::kUndefined);
      Node* n = g.AddNode(OpKind::kQuantizeLinear, "q", {x, g.AddConstant("s", Scalar(DType::kFloat32, 0.037)),
                                                          g.AddConstant("z", Scalar(t, t == DType::kUInt8 ? 131 : -3))},
                          {y}, 13);
      g.AddOutput(y);
      ASSERT_TRUE(InferShapes(g).ok());
      Tensor xf = RandomFloat(sizes, rng, -6.f, 6.f);
      xf.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
      xf.data<float>()[1] = std::numeric_limits<float>::infinity();
      xf.data<float>()[2] = -std::numeric_limits<float>::infinity();
      xf.data<float>()[3] = 0.037f * 2.5f;  // a tie: rounds to even
      std::vector<cpu::CpuTactic> tactics = cpu::CpuTacticsFor(*n);
      ASSERT_EQ(tactics.size(), 1u);
      auto k = tactics[0].create();
      Expected<Tensor> want = RunNode(*n, {&xf, n->input(1)->constant(), n->input(2)->constant()}, nullptr);
      Expected<Tensor> got = RunNode(*n, {&xf, n->input(1)->constant(), n->input(2)->constant()}, k.get());
      ASSERT_TRUE(want.ok() && got.ok());
      ASSERT_EQ(want->nbytes(), got->nbytes());
      EXPECT_EQ(std::memcmp(want->raw_data(), got->raw_data(), got->nbytes()), 0) << "QuantizeLinear";
    }
    // DequantizeLinear.
    {
      Graph g;
      Value* x = g.AddValue("x", t, Shape::FromSizes(sizes));
      g.AddInput(x);
      Value* y = g.AddValue("y", DType::kUndefined);
      Node* n = g.AddNode(OpKind::kDequantizeLinear, "dq",
                          {x, g.AddConstant("s", Scalar(DType::kFloat32, 0.0213)), g.AddConstant("z", Scalar(t, 7))},
                          {y}, 13);
      g.AddOutput(y);
      ASSERT_TRUE(InferShapes(g).ok());
      Tensor xq = RandomInt8(t, sizes, rng, lo, hi);
      std::vector<cpu::CpuTactic> tactics = cpu::CpuTacticsFor(*n);
      ASSERT_EQ(tactics.size(), 1u);
      auto k = tactics[0].create();
      Expected<Tensor> want = RunNode(*n, {&xq, n->input(1)->constant(), n->input(2)->constant()}, nullptr);
      Expected<Tensor> got = RunNode(*n, {&xq, n->input(1)->constant(), n->input(2)->constant()}, k.get());
      ASSERT_TRUE(want.ok() && got.ok());
      EXPECT_EQ(std::memcmp(want->raw_data(), got->raw_data(), got->nbytes()), 0) << "DequantizeLinear";
    }
    // kiln.QAdd, with and without ReLU.
    for (const char* act : {"", "Relu"}) {
      Graph g;
      Value* a = g.AddValue("a", t, Shape::FromSizes(sizes));
      Value* b = g.AddValue("b", t, Shape::FromSizes(sizes));
      g.AddInput(a);
      g.AddInput(b);
      Value* y = g.AddValue("y", DType::kUndefined);
      Node* n = g.AddNode(OpKind::kQAdd, "qadd",
                          {a, g.AddConstant("sa", Scalar(DType::kFloat32, 0.031)), g.AddConstant("za", Scalar(t, 12)), b,
                           g.AddConstant("sb", Scalar(DType::kFloat32, 0.017)), g.AddConstant("zb", Scalar(t, 3)),
                           g.AddConstant("sy", Scalar(DType::kFloat32, 0.05)), g.AddConstant("zy", Scalar(t, 9))},
                          {y}, 13);
      n->attrs().Set("activation", std::string(act));
      g.AddOutput(y);
      ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();
      Tensor av = RandomInt8(t, sizes, rng, lo, hi), bv = RandomInt8(t, sizes, rng, lo, hi);
      std::vector<const Tensor*> ins;
      for (size_t i = 0; i < n->num_inputs(); ++i) {
        ins.push_back(i == 0 ? &av : i == 3 ? &bv : n->input(i)->constant());
      }
      std::vector<cpu::CpuTactic> tactics = cpu::CpuTacticsFor(*n);
      ASSERT_EQ(tactics.size(), 1u);
      auto k = tactics[0].create();
      Expected<Tensor> want = RunNode(*n, ins, nullptr);
      Expected<Tensor> got = RunNode(*n, ins, k.get());
      ASSERT_TRUE(want.ok() && got.ok()) << (want.ok() ? got.status().message() : want.status().message());
      EXPECT_EQ(std::memcmp(want->raw_data(), got->raw_data(), got->nbytes()), 0) << "QAdd " << act;
    }
  }
}

// A small QDQ network in the form onnxruntime's quantize_static writes: Q(input) -> DQ -> Conv (DQ'd
// weights, DQ'd i32 bias) -> Q -> DQ -> MaxPool -> Q -> DQ -> Conv -> Relu -> Q, an Add of two DQs -> Q,
// and DQ -> Flatten -> Q -> DQ as the float output. The pass must fuse every bracket, and the optimized
// graph must compute what the original computes (reference executor on both; within one output step,
// see the file comment).
TEST(FuseQdq, FusesOnnxruntimeStyleGraphAndKeepsResults) {
  std::mt19937 rng(3);
  Graph g;
  Value* in = g.AddValue("input", DType::kFloat32, Shape::FromSizes({1, 4, 12, 12}));
  g.AddInput(in);
  int counter = 0;
  auto v = [&](const std::string& base) { return g.AddValue(base + std::to_string(counter++), DType::kUndefined); };
  auto q = [&](Value* x, double s, int z) {
    Value* y = v("q");
    g.AddNode(OpKind::kQuantizeLinear, "Q" + std::to_string(counter),
              {x, g.AddConstant("qs" + std::to_string(counter), Scalar(DType::kFloat32, s)),
               g.AddConstant("qz" + std::to_string(counter), Scalar(DType::kUInt8, z))},
              {y}, 13);
    return y;
  };
  auto dq = [&](Value* x, double s, int z) {
    Value* y = v("dq");
    g.AddNode(OpKind::kDequantizeLinear, "DQ" + std::to_string(counter),
              {x, g.AddConstant("ds" + std::to_string(counter), Scalar(DType::kFloat32, s)),
               g.AddConstant("dz" + std::to_string(counter), Scalar(DType::kUInt8, z))},
              {y}, 13);
    return y;
  };
  auto conv = [&](Value* x, int64_t cin, int64_t cout, bool relu) {
    Tensor wq = RandomInt8(DType::kInt8, {cout, cin, 3, 3}, rng, -127, 127);
    Tensor ws(DType::kFloat32, {cout});
    Tensor bq(DType::kInt32, {cout});
    Tensor bs(DType::kFloat32, {cout});
    for (int64_t i = 0; i < cout; ++i) {
      ws.data<float>()[i] = 0.004f + 0.001f * static_cast<float>(i % 3);
      bq.data<int32_t>()[i] = static_cast<int32_t>(i * 37 % 200) - 100;
      bs.data<float>()[i] = 0.05f * ws.data<float>()[i];
    }
    const std::string k = std::to_string(counter++);
    Value* w = v("w");
    Node* dqw = g.AddNode(OpKind::kDequantizeLinear, "DQw" + k,
                          {g.AddConstant("wq" + k, std::move(wq)), g.AddConstant("ws" + k, std::move(ws)),
                           g.AddConstant("wz" + k, Tensor(DType::kInt8, {cout}))},
                          {w}, 13);
    dqw->attrs().Set("axis", int64_t{0});
    Value* b = v("b");
    g.AddNode(OpKind::kDequantizeLinear, "DQb" + k,
              {g.AddConstant("bq" + k, std::move(bq)), g.AddConstant("bs" + k, std::move(bs)),
               g.AddConstant("bz" + k, Tensor(DType::kInt32, {cout}))},
              {b}, 13)
        ->attrs()
        .Set("axis", int64_t{0});
    Value* y = v("conv");
    Node* c = g.AddNode(OpKind::kConv, "Conv" + k, {x, w, b}, {y}, 13);
    c->attrs().Set("pads", Ints{1, 1, 1, 1});
    if (!relu) return y;
    Value* r = v("relu");
    g.AddNode(OpKind::kRelu, "Relu" + k, {y}, {r}, 13);
    return r;
  };
  Value* x0 = dq(q(in, 0.05, 128), 0.05, 128);
  Value* c1 = dq(q(conv(x0, 4, 8, false), 0.03, 0), 0.03, 0);  // Relu dropped: Q's zero point 0 clips
  Value* p = v("pool");
  g.AddNode(OpKind::kMaxPool, "Pool", {c1}, {p}, 12)->attrs().Set("kernel_shape", Ints{2, 2});
  Value* pq = dq(q(p, 0.03, 0), 0.03, 0);
  Value* c2 = dq(q(conv(pq, 8, 8, true), 0.04, 0), 0.04, 0);
  Value* c3 = dq(q(conv(pq, 8, 8, false), 0.04, 100), 0.04, 100);
  Value* sum = v("add");
  g.AddNode(OpKind::kAdd, "Add", {c2, c3}, {sum}, 13);
  Value* flat = v("flat");
  g.AddNode(OpKind::kFlatten, "Flatten", {dq(q(sum, 0.06, 90), 0.06, 90)}, {flat}, 13)->attrs().Set("axis", int64_t{1});
  Value* out = dq(q(flat, 0.06, 90), 0.06, 90);
  g.AddOutput(out);
  ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();

  const Tensor x = RandomFloat({1, 4, 12, 12}, rng, -3.f, 3.f);
  auto run = [&](const Graph& graph) -> Expected<Tensor> {
    KILN_ASSIGN_OR_RETURN(auto outs, RunReference(graph, {{"input", x}}));
    return outs.at(out->name());
  };
  Expected<Tensor> before = run(g);
  ASSERT_TRUE(before.ok()) << before.status().message();

  Expected<PipelineReport> report = RunPipeline(g, PipelineOptions{});
  ASSERT_TRUE(report.ok()) << report.status().message();
  int qconv = 0, qadd = 0, u8_pool = 0, u8_flatten = 0, float_conv = 0;
  for (const Node* n : g.nodes()) {
    qconv += n->op() == OpKind::kQConv;
    qadd += n->op() == OpKind::kQAdd;
    float_conv += n->op() == OpKind::kConv;
    u8_pool += n->op() == OpKind::kMaxPool && n->input(0)->dtype() == DType::kUInt8;
    u8_flatten += n->op() == OpKind::kFlatten && n->input(0)->dtype() == DType::kUInt8;
  }
  EXPECT_EQ(qconv, 3);
  EXPECT_EQ(qadd, 1);
  EXPECT_EQ(u8_pool, 1);
  EXPECT_EQ(u8_flatten, 1);
  EXPECT_EQ(float_conv, 0);
  Expected<Tensor> after = run(g);
  ASSERT_TRUE(after.ok()) << after.status().message();
  ASSERT_EQ(before->sizes(), after->sizes());
  // The float output is DQ of an 8-bit value: equal, or one step (0.06) apart on few elements.
  int differ = 0;
  for (int64_t i = 0; i < before->numel(); ++i) {
    const double e = before->data<float>()[i], a = after->data<float>()[i];
    EXPECT_LE(std::fabs(e - a), 0.06 * 1.001) << "[" << i << "]";
    differ += e != a;
  }
  EXPECT_LE(differ, before->numel() / 50 + 1);
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// TensorRT / NNCF placement: Q/DQ only on the convolution's inputs, its output (after a ReLU) stays float.
// The pass makes a kiln.QConv with an f32 output and the ReLU fused; results as before within float
// rounding (ExpectFloatClose's bound).
TEST(FuseQdq, FloatOutputConvolution) {
  std::mt19937 rng(5);
  Graph g;
  Value* in = g.AddValue("input", DType::kFloat32, Shape::FromSizes({1, 6, 10, 10}));
  g.AddInput(in);
  auto c = [&](const std::string& name, Tensor t) { return g.AddConstant(name, std::move(t)); };
  Value* xq = g.AddValue("xq", DType::kUndefined);
  g.AddNode(OpKind::kQuantizeLinear, "Qx", {in, c("sx", Scalar(DType::kFloat32, 0.02)), c("zx", Scalar(DType::kInt8, 0))},
            {xq}, 13);
  Value* x = g.AddValue("x", DType::kUndefined);
  g.AddNode(OpKind::kDequantizeLinear, "DQx", {xq, c("sx2", Scalar(DType::kFloat32, 0.02)), c("zx2", Scalar(DType::kInt8, 0))},
            {x}, 13);
  Value* w = g.AddValue("w", DType::kUndefined);
  g.AddNode(OpKind::kDequantizeLinear, "DQw",
            {c("wq", RandomInt8(DType::kInt8, {9, 6, 3, 3}, rng, -127, 127)), c("sw", Scalar(DType::kFloat32, 0.01))},
            {w}, 13);
  Value* y = g.AddValue("y", DType::kUndefined);
  g.AddNode(OpKind::kConv, "Conv", {x, w}, {y}, 13)->attrs().Set("pads", Ints{1, 1, 1, 1});
  Value* r = g.AddValue("r", DType::kUndefined);
  g.AddNode(OpKind::kRelu, "Relu", {y}, {r}, 13);
  g.AddOutput(r);
  ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();
  const Tensor feed = RandomFloat({1, 6, 10, 10}, rng, -2.f, 2.f);
  auto before = RunReference(g, {{"input", feed}});
  ASSERT_TRUE(before.ok()) << before.status().message();
  ASSERT_TRUE(RunPipeline(g, PipelineOptions{}).ok());
  const Node* qconv = nullptr;
  for (const Node* n : g.nodes()) {
    EXPECT_NE(n->op(), OpKind::kConv);
    EXPECT_NE(n->op(), OpKind::kRelu);
    if (n->op() == OpKind::kQConv) qconv = n;
  }
  ASSERT_NE(qconv, nullptr);
  EXPECT_EQ(qconv->output(0)->dtype(), DType::kFloat32);
  EXPECT_EQ(qconv->attrs().GetString("activation", ""), "Relu");
  auto after = RunReference(g, {{"input", feed}});
  ASSERT_TRUE(after.ok()) << after.status().message();
  ExpectFloatClose(before->at("r"), after->at("r"), "float-output QConv");
}

// A graph input "input" (f32 `sizes`) through QuantizeLinear and DequantizeLinear with u8 per-tensor
// parameters: an activation as onnxruntime's QDQ form feeds it to a quantized layer.
Value* QdqInput(Graph& g, const Ints& sizes, double scale, int zero) {
  Value* in = g.AddValue("input", DType::kFloat32, Shape::FromSizes(sizes));
  g.AddInput(in);
  auto params = [&](const std::string& s) {
    return std::vector<Value*>{g.AddConstant("s" + s, Scalar(DType::kFloat32, scale)),
                               g.AddConstant("z" + s, Scalar(DType::kUInt8, zero))};
  };
  const std::vector<Value*> q = params("q"), dq = params("dq");
  Value* xq = g.AddValue("xq", DType::kUndefined);
  g.AddNode(OpKind::kQuantizeLinear, "Qx", {in, q[0], q[1]}, {xq}, 13);
  Value* x = g.AddValue("x", DType::kUndefined);
  g.AddNode(OpKind::kDequantizeLinear, "DQx", {xq, dq[0], dq[1]}, {x}, 13);
  return x;
}

// onnxruntime's form of a quantized transformer projection: Q -> DQ on the activation, DQ of per-column
// i8 weights (axis 1), MatMul, bias Add, the result left in float (here through a ReLU, which fuse_gemm
// folds into the kiln.QMatMul). A MatMul of two activations (attention's) beside it stays float.
TEST(FuseQdq, MatMulWithBiasBecomesQMatMul) {
  std::mt19937 rng(11);
  Graph g;
  Value* x = QdqInput(g, {2, 5, 16}, 0.03, 120);
  auto c = [&](const std::string& name, Tensor t) { return g.AddConstant(name, std::move(t)); };
  Tensor sw(DType::kFloat32, {12});
  for (int64_t i = 0; i < 12; ++i) sw.data<float>()[i] = 0.005f + 0.001f * static_cast<float>(i);
  Value* w = g.AddValue("w", DType::kUndefined);
  Node* dqw = g.AddNode(OpKind::kDequantizeLinear, "DQw",
                        {c("wq", RandomInt8(DType::kInt8, {16, 12}, rng, -127, 127)), c("sw", std::move(sw)),
                         c("zw", Tensor(DType::kInt8, {12}))},
                        {w}, 13);
  dqw->attrs().Set("axis", int64_t{1});
  Value* y = g.AddValue("y", DType::kUndefined);
  g.AddNode(OpKind::kMatMul, "MatMul", {x, w}, {y}, 13);
  Tensor bias(DType::kFloat32, {12});
  for (int64_t i = 0; i < 12; ++i) bias.data<float>()[i] = 0.25f * static_cast<float>(i) - 1.f;
  Value* ya = g.AddValue("ya", DType::kUndefined);
  g.AddNode(OpKind::kAdd, "Bias", {c("bias", std::move(bias)), y}, {ya}, 13);
  Value* yb = g.AddValue("yb", DType::kUndefined);
  g.AddNode(OpKind::kRelu, "Relu", {ya}, {yb}, 13);
  // [2, 5, 16] x [2, 16, 5]: two activations; stays a float MatMul.
  Value* xt = g.AddValue("xt", DType::kUndefined);
  g.AddNode(OpKind::kTranspose, "T", {x}, {xt}, 13)->attrs().Set("perm", Ints{0, 2, 1});
  Value* scores = g.AddValue("scores", DType::kUndefined);
  g.AddNode(OpKind::kMatMul, "Scores", {x, xt}, {scores}, 13);
  g.AddOutput(yb);
  g.AddOutput(scores);
  ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();
  const Tensor feed = RandomFloat({2, 5, 16}, rng, -3.f, 3.f);
  auto before = RunReference(g, {{"input", feed}});
  ASSERT_TRUE(before.ok()) << before.status().message();
  ASSERT_TRUE(RunPipeline(g, PipelineOptions{}).ok());
  const Node* qmm = nullptr;
  int float_matmuls = 0;
  for (const Node* n : g.nodes()) {
    EXPECT_NE(n->op(), OpKind::kAdd);
    EXPECT_NE(n->op(), OpKind::kRelu);
    float_matmuls += n->op() == OpKind::kMatMul;
    if (n->op() == OpKind::kQMatMul) qmm = n;
  }
  ASSERT_NE(qmm, nullptr);
  EXPECT_EQ(float_matmuls, 1);
  EXPECT_EQ(qmm->output(0)->dtype(), DType::kFloat32);
  ASSERT_NE(qmm->input(8), nullptr);  // the bias
  EXPECT_EQ(qmm->attrs().GetString("activation", ""), "Relu");
  auto after = RunReference(g, {{"input", feed}});
  ASSERT_TRUE(after.ok()) << after.status().message();
  ExpectFloatClose(before->at("yb"), after->at("yb"), "QMatMul with bias");
  ExpectFloatClose(before->at("scores"), after->at("scores"), "float MatMul beside it");
}

// Three 8-bit projections of one quantized activation (attention's Q, K and V as onnxruntime writes them;
// one with a per-tensor weight scale and no bias) become one kiln.QMatMul over the weights side by side and
// a Split, with the same results.
TEST(FuseQdq, SiblingQMatMulsMergeHorizontally) {
  std::mt19937 rng(17);
  Graph g;
  Value* x = QdqInput(g, {2, 6, 16}, 0.025, 128);
  auto c = [&](const std::string& name, Tensor t) { return g.AddConstant(name, std::move(t)); };
  const int64_t widths[] = {12, 8, 12};
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    const std::string k = std::to_string(i);
    const int64_t n = widths[i];
    Tensor sw(DType::kFloat32, i == 1 ? Ints{} : Ints{n});
    for (int64_t j = 0; j < sw.numel(); ++j) sw.data<float>()[j] = 0.004f + 0.0005f * static_cast<float>(j + i);
    Value* w = g.AddValue("w" + k, DType::kUndefined);
    Node* dqw = g.AddNode(OpKind::kDequantizeLinear, "DQw" + k,
                          {c("wq" + k, RandomInt8(DType::kInt8, {16, n}, rng, -127, 127)), c("sw" + k, std::move(sw))},
                          {w}, 13);
    dqw->attrs().Set("axis", int64_t{1});
    Value* y = g.AddValue("y" + k, DType::kUndefined);
    g.AddNode(OpKind::kMatMul, "MatMul" + k, {x, w}, {y}, 13);
    Value* out = y;
    if (i != 1) {
      Tensor bias(DType::kFloat32, {n});
      for (int64_t j = 0; j < n; ++j) {
        bias.data<float>()[j] = 0.1f * static_cast<float>(j) - 0.5f * static_cast<float>(i);
      }
      out = g.AddValue("yb" + k, DType::kUndefined);
      g.AddNode(OpKind::kAdd, "Bias" + k, {y, c("bias" + k, std::move(bias))}, {out}, 13);
    }
    g.AddOutput(out);
    names.push_back(out->name());
  }
  ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();
  const Tensor feed = RandomFloat({2, 6, 16}, rng, -3.f, 3.f);
  auto before = RunReference(g, {{"input", feed}});
  ASSERT_TRUE(before.ok()) << before.status().message();
  ASSERT_TRUE(RunPipeline(g, PipelineOptions{}).ok());
  int qmatmuls = 0, splits = 0;
  for (const Node* n : g.nodes()) {
    qmatmuls += n->op() == OpKind::kQMatMul;
    splits += n->op() == OpKind::kSplit;
  }
  EXPECT_EQ(qmatmuls, 1);
  EXPECT_EQ(splits, 1);
  auto after = RunReference(g, {{"input", feed}});
  ASSERT_TRUE(after.ok()) << after.status().message();
  for (const std::string& name : names) ExpectFloatClose(before->at(name), after->at(name), name);
}

}  // namespace
}  // namespace kiln
