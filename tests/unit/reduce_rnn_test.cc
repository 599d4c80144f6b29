// Reductions, ArgMax/ArgMin, CumSum, TopK, RNN/GRU/LSTM, NonMaxSuppression and Q/DQ through the reference
// executor. Expected values are hand-computed or come from onnxruntime 1.20 (the recurrent cases; the
// script generating inputs with the same sin() formula as Gen() below was run once and its numbers pasted).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ir/graph.h"
#include "ops/infer.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// One node under test. Inputs given as tensors; `constant` ones become graph constants.
class OneNode {
 public:
  OneNode(OpKind op, int opset) : op_(op), opset_(opset) {}

  OneNode& In(Tensor t, bool constant = false) {
    const std::string name = "in" + std::to_string(inputs_.size());
    Value* v;
    if (constant) {
      v = g_.AddConstant(name, std::move(t));
    } else {
      v = g_.AddValue(name, t.dtype(), Shape::FromSizes(t.sizes()));
      g_.AddInput(v);
      feeds_[name] = std::move(t);
    }
    inputs_.push_back(v);
    return *this;
  }
  OneNode& Skip() {
    inputs_.push_back(nullptr);
    return *this;
  }
  OneNode& Attr(const std::string& name, AttrValue v) {
    attrs_.Set(name, std::move(v));
    return *this;
  }
  // Builds with `num_outputs` outputs (those in `skipped` left unrequested), infers shapes, and runs.
  Expected<TensorMap> Run(int num_outputs = 1, std::vector<int> skipped = {}) {
    std::vector<Value*> outs;
    for (int i = 0; i < num_outputs; ++i) {
      bool skip = std::find(skipped.begin(), skipped.end(), i) != skipped.end();
      outs.push_back(skip ? nullptr : g_.AddValue("out" + std::to_string(i), DType::kUndefined));
    }
    node_ = g_.AddNode(op_, "n", inputs_, outs, opset_);
    for (const auto& [k, v] : attrs_.all()) node_->attrs().Set(k, v);
    for (Value* o : outs) {
      if (o) g_.AddOutput(o);
    }
    KILN_RETURN_IF_ERROR(ValidateGraphOps(g_));
    KILN_RETURN_IF_ERROR(InferShapes(g_));
    return RunReference(g_, feeds_);
  }
  const Value* output(size_t i) const { return node_->output(i); }
  Graph& graph() { return g_; }

 private:
  OpKind op_;
  int opset_;
  Graph g_;
  TensorMap feeds_;
  std::vector<Value*> inputs_;
  Attributes attrs_;
  Node* node_ = nullptr;
};

template <typename T>
Tensor Make(std::vector<int64_t> sizes, std::vector<T> values) {
  Tensor t = Tensor::FromVector(values);
  return t.Reshaped(std::move(sizes));
}

Tensor Iota(std::vector<int64_t> sizes) {
  std::vector<float> v(static_cast<size_t>(NumElements(sizes)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i + 1);
  return Make(std::move(sizes), v);
}

template <typename T>
void ExpectValues(const Tensor& t, std::vector<int64_t> sizes, std::vector<T> want, double tol = 1e-5) {
  ASSERT_EQ(t.dtype(), DTypeOf<T>::value);
  ASSERT_EQ(t.sizes(), sizes);
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    const double got = t.GetAsDouble(static_cast<int64_t>(i));
    const double exp = static_cast<double>(static_cast<ComputeT<T>>(want[i]));
    if (std::isinf(exp)) {
      EXPECT_EQ(got, exp) << "element " << i;
    } else {
      EXPECT_NEAR(got, exp, tol * (1 + std::fabs(exp))) << "element " << i;
    }
  }
}

#define ASSERT_OK_AND_GET(lhs, expr)                          \
  auto lhs##_or = (expr);                                     \
  ASSERT_TRUE(lhs##_or.ok()) << lhs##_or.status().ToString(); \
  auto lhs = std::move(lhs##_or).value()

// x = 1..12 as [2,3,2]: [[[1,2],[3,4],[5,6]],[[7,8],[9,10],[11,12]]]
TEST(ReduceTest, SumAxesInputNoKeepdims) {
  OneNode n(OpKind::kReduceSum, 13);
  n.In(Iota({2, 3, 2})).In(Tensor::FromVector<int64_t>({1}), true).Attr("keepdims", int64_t{0});
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {2, 2}, {9, 12, 27, 30});
}

TEST(ReduceTest, MeanAxesAttributeKeepdims) {
  OneNode n(OpKind::kReduceMean, 11);
  n.In(Iota({2, 3, 2})).Attr("axes", std::vector<int64_t>{0, -1});
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {1, 3, 1}, {4.5f, 6.5f, 8.5f});
}

TEST(ReduceTest, NoAxesReducesAllUnlessNoop) {
  {
    OneNode n(OpKind::kReduceSum, 13);
    n.In(Iota({2, 3, 2}));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {1, 1, 1}, {78});
  }
  {
    OneNode n(OpKind::kReduceSum, 13);
    n.In(Iota({2, 2})).In(Tensor(DType::kInt64, {0}), true).Attr("noop_with_empty_axes", int64_t{1});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {2, 2}, {1, 2, 3, 4});
  }
  {
    // The input unchanged, not squared (the ONNX text and onnxruntime).
    OneNode n(OpKind::kReduceSumSquare, 18);
    n.In(Make<float>({2}, {-1, 4})).Attr("noop_with_empty_axes", int64_t{1});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {2}, {-1, 4});
  }
}

TEST(ReduceTest, EmptyReductionsGiveIdentityElements) {
  struct Case {
    OpKind op;
    float want;
  };
  for (const Case& c :
       {Case{OpKind::kReduceMax, -kInf}, Case{OpKind::kReduceMin, kInf}, Case{OpKind::kReduceSum, 0},
        Case{OpKind::kReduceProd, 1}, Case{OpKind::kReduceLogSumExp, -kInf},
        Case{OpKind::kReduceLogSum, -kInf}, Case{OpKind::kReduceL2, 0}}) {
    OneNode n(c.op, 18);
    n.In(Tensor(DType::kFloat32, {2, 0})).In(Tensor::FromVector<int64_t>({1}), true);
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {2, 1}, {c.want, c.want});
  }
}

TEST(ReduceTest, NormsAndLogs) {
  const Tensor x = Make<float>({3}, {-1, 2, -3});
  auto run = [&](OpKind op) {
    OneNode n(op, 18);
    n.In(x).Attr("keepdims", int64_t{0});
    auto r = n.Run();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r.value()["out0"].GetAsDouble(0) : 0.0;
  };
  EXPECT_NEAR(run(OpKind::kReduceL1), 6, 1e-6);
  EXPECT_NEAR(run(OpKind::kReduceL2), std::sqrt(14.0), 1e-6);
  EXPECT_NEAR(run(OpKind::kReduceSumSquare), 14, 1e-6);
  EXPECT_NEAR(run(OpKind::kReduceProd), 6, 1e-6);
  EXPECT_NEAR(run(OpKind::kReduceLogSumExp), 2.0549852, 1e-6);  // log(e^-1 + e^2 + e^-3)
  // Large inputs must not overflow.
  OneNode n(OpKind::kReduceLogSumExp, 13);
  n.In(Make<float>({2}, {1000, 1000})).Attr("keepdims", int64_t{0});
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {}, {1000.6931472f});
}

TEST(ReduceTest, IntegerAndBoolInputs) {
  {
    OneNode n(OpKind::kReduceProd, 18);
    n.In(Make<int64_t>({2, 2}, {3, -4, 5, 6})).In(Tensor::FromVector<int64_t>({0}), true);
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int64_t>(out["out0"], {1, 2}, {15, -24});
  }
  {
    OneNode n(OpKind::kReduceL2, 18);
    n.In(Make<int32_t>({2}, {3, 4})).Attr("keepdims", int64_t{0});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int32_t>(out["out0"], {}, {5});
  }
  {
    OneNode n(OpKind::kReduceMax, 20);
    n.In(Make<bool>({2, 2}, {false, true, false, false})).In(Tensor::FromVector<int64_t>({1}), true);
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<bool>(out["out0"], {2, 1}, {true, false});
  }
  {
    // int32 sums wrap like int32 arithmetic; a log of 0 saturates instead of being an undefined cast.
    OneNode n(OpKind::kReduceSum, 13);
    n.In(Make<int32_t>({2}, {2147483647, 1})).Attr("keepdims", int64_t{0});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int32_t>(out["out0"], {}, {-2147483647 - 1});
    OneNode l(OpKind::kReduceLogSum, 18);
    l.In(Make<int32_t>({2}, {0, 0})).Attr("keepdims", int64_t{0});
    ASSERT_OK_AND_GET(out2, l.Run());
    ExpectValues<int32_t>(out2["out0"], {}, {-2147483647 - 1});
  }
  OneNode bad(OpKind::kReduceSum, 13);
  bad.In(Make<bool>({2}, {true, false}));
  EXPECT_FALSE(bad.Run().ok());
}

TEST(ReduceTest, ShapesStaySymbolic) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 4, 5});
  g.AddInput(x);
  Value* axes = g.AddConstant("axes", Tensor::FromVector<int64_t>({-1}));
  Value* y = g.AddValue("y", DType::kUndefined);
  Value* dyn_axes = g.AddValue("dyn_axes", DType::kInt64, Shape{2});
  g.AddInput(dyn_axes);
  Value* z = g.AddValue("z", DType::kUndefined);
  Value* w = g.AddValue("w", DType::kUndefined);
  g.AddNode(OpKind::kReduceMax, "r", {x, axes}, {y}, 18);
  g.AddNode(OpKind::kReduceSum, "s", {x, dyn_axes}, {z}, 13)->attrs().Set("keepdims", int64_t{0});
  g.AddNode(OpKind::kReduceSum, "t", {x, dyn_axes}, {w}, 13);
  g.AddOutput(y);
  g.AddOutput(z);
  g.AddOutput(w);
  ASSERT_TRUE(InferShapes(g).ok());
  EXPECT_EQ(y->shape()->ToString(), "[batch,4,1]");
  EXPECT_EQ(z->shape()->rank(), 1u);
  EXPECT_EQ(w->shape()->rank(), 3u);
}

TEST(ReduceTest, RefusesAxesOutOfRangeAndWrongForm) {
  OneNode a(OpKind::kReduceSum, 13);
  a.In(Iota({2, 2})).In(Tensor::FromVector<int64_t>({2}), true);
  EXPECT_FALSE(a.Run().ok());
  OneNode b(OpKind::kReduceMean, 18);
  b.In(Iota({2, 2})).Attr("axes", std::vector<int64_t>{0});
  EXPECT_FALSE(b.Run().ok());
}

// [[2,5,5],[7,1,7]]
TEST(ArgTest, ArgMaxFirstAndLastIndex) {
  const Tensor x = Make<float>({2, 3}, {2, 5, 5, 7, 1, 7});
  {
    OneNode n(OpKind::kArgMax, 13);
    n.In(x).Attr("axis", int64_t{1});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int64_t>(out["out0"], {2, 1}, {1, 0});
  }
  {
    OneNode n(OpKind::kArgMax, 13);
    n.In(x).Attr("axis", int64_t{-1}).Attr("select_last_index", int64_t{1}).Attr("keepdims", int64_t{0});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int64_t>(out["out0"], {2}, {2, 2});
  }
  {
    OneNode n(OpKind::kArgMin, 13);
    n.In(Make<int32_t>({2, 3}, {2, 5, 5, 7, 1, 7})).Attr("keepdims", int64_t{0});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int64_t>(out["out0"], {3}, {0, 1, 0});
  }
  OneNode empty(OpKind::kArgMax, 13);
  empty.In(Tensor(DType::kFloat32, {2, 0})).Attr("axis", int64_t{1});
  EXPECT_FALSE(empty.Run().ok());
}

TEST(CumSumTest, ExclusiveAndReverse) {
  const Tensor x = Make<float>({4}, {1, 2, 3, 4});
  struct Case {
    int64_t exclusive, reverse;
    std::vector<float> want;
  };
  for (const Case& c : {Case{0, 0, {1, 3, 6, 10}}, Case{1, 0, {0, 1, 3, 6}}, Case{0, 1, {10, 9, 7, 4}},
                        Case{1, 1, {9, 7, 4, 0}}}) {
    OneNode n(OpKind::kCumSum, 14);
    n.In(x).In(Tensor::Scalar<int32_t>(0)).Attr("exclusive", c.exclusive).Attr("reverse", c.reverse);
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {4}, c.want);
  }
  OneNode n(OpKind::kCumSum, 11);
  n.In(Make<int64_t>({2, 3}, {1, 2, 3, 4, 5, 6})).In(Tensor::Scalar<int64_t>(-2));
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<int64_t>(out["out0"], {2, 3}, {1, 2, 3, 5, 7, 9});
}

TEST(TopKTest, LargestSmallestAndTies) {
  const Tensor x = Make<float>({2, 5}, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3});
  {
    OneNode n(OpKind::kTopK, 11);
    n.In(x).In(Tensor::FromVector<int64_t>({3}), true);
    ASSERT_OK_AND_GET(out, n.Run(2));
    ExpectValues<float>(out["out0"], {2, 3}, {5, 4, 3, 9, 6, 5});
    ExpectValues<int64_t>(out["out1"], {2, 3}, {4, 2, 0, 0, 2, 3});
  }
  {
    OneNode n(OpKind::kTopK, 11);
    n.In(x).In(Tensor::FromVector<int64_t>({2})).Attr("largest", int64_t{0});
    ASSERT_OK_AND_GET(out, n.Run(2));
    ExpectValues<float>(out["out0"], {2, 2}, {1, 1, 2, 3});
    ExpectValues<int64_t>(out["out1"], {2, 2}, {1, 3, 6 - 5, 9 - 5});
  }
  {
    // Opset 1 form: k attribute, along axis 0; equal values keep the lower index first.
    OneNode n(OpKind::kTopK, 9);
    n.In(Make<int32_t>({3, 1}, {7, 7, 8})).Attr("k", int64_t{2}).Attr("axis", int64_t{0});
    ASSERT_OK_AND_GET(out, n.Run(2));
    ExpectValues<int32_t>(out["out0"], {2, 1}, {8, 7});
    ExpectValues<int64_t>(out["out1"], {2, 1}, {2, 0});
  }
  OneNode bad(OpKind::kTopK, 11);
  bad.In(x).In(Tensor::FromVector<int64_t>({6}));
  EXPECT_FALSE(bad.Run().ok());
}

// The recurrent inputs: sin(i * 0.37 + c) * 0.5, as the onnxruntime script made them.
Tensor Gen(std::vector<int64_t> sizes, double c, float scale = 1.f) {
  std::vector<float> v(static_cast<size_t>(NumElements(sizes)));
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<float>(std::sin(static_cast<double>(i) * 0.37 + c) * 0.5) * scale;
  }
  return Make(std::move(sizes), v);
}

constexpr int64_t kS = 3, kN = 2, kI = 3, kH = 2;

TEST(RecurrentTest, LstmBidirectionalWithEverything) {
  OneNode n(OpKind::kLSTM, 14);
  n.In(Gen({kS, kN, kI}, 0.1))
      .In(Gen({2, 4 * kH, kI}, 0.2))
      .In(Gen({2, 4 * kH, kH}, 0.3))
      .In(Gen({2, 8 * kH}, 0.4))
      .In(Tensor::FromVector<int32_t>({3, 2}))
      .In(Gen({2, kN, kH}, 0.5))
      .In(Gen({2, kN, kH}, 0.6))
      .In(Gen({2, 3 * kH}, 0.7))
      .Attr("hidden_size", kH)
      .Attr("direction", std::string("bidirectional"));
  ASSERT_OK_AND_GET(out, n.Run(3));
  ExpectValues<float>(out["out0"], {3, 2, 2, 2},
                      {0.04055553f,  0.08763749f,  0.1234921f,  0.1774592f,  -0.06819837f, -0.09826877f,
                       -0.05299751f, -0.0969117f,  0.03984122f, 0.0916026f,  -0.07471961f, -0.02737636f,
                       -0.04130641f, -0.02739456f, 0.0543138f,  0.06845886f, -0.09395509f, -0.08547457f,
                       0.f,          0.f,          0.02179346f, 0.1414489f,  0.f,          0.f});
  ExpectValues<float>(out["out1"], {2, 2, 2},
                      {-0.09395509f, -0.08547457f, -0.07471961f, -0.02737636f, -0.06819837f, -0.09826877f,
                       -0.05299751f, -0.0969117f});
  ExpectValues<float>(out["out2"], {2, 2, 2},
                      {-0.2177558f, -0.1426057f, -0.1498173f, -0.0462262f, -0.1471465f, -0.1796771f,
                       -0.1306379f, -0.1705027f});
}

TEST(RecurrentTest, LstmClipInputForgetAndBatchFirstLayout) {
  const std::vector<float> y = {0.1545057f,  0.1056999f,  0.1742697f,   0.1056999f,
                                0.2345018f,  0.1422325f,  0.002002209f, 0.002851979f,
                                0.02720382f, 0.04485152f, -0.06955854f, -0.09794292f};
  const std::vector<float> yh = {0.02720382f, 0.04485152f, -0.06955854f, -0.09794292f};
  const std::vector<float> yc = {0.07218044f, 0.07218044f, -0.1840502f, -0.171616f};
  for (int64_t layout : {0, 1}) {
    Tensor x = Gen({kS, kN, kI}, 0.1);
    if (layout == 1) {  // [S,N,I] -> [N,S,I]
      Tensor xb(DType::kFloat32, {kN, kS, kI});
      for (int64_t s = 0; s < kS; ++s)
        for (int64_t b = 0; b < kN; ++b)
          for (int64_t i = 0; i < kI; ++i)
            xb.data<float>()[(b * kS + s) * kI + i] = x.data<float>()[(s * kN + b) * kI + i];
      x = xb;
    }
    OneNode n(OpKind::kLSTM, 14);
    n.In(x)
        .In(Gen({1, 4 * kH, kI}, 0.2, 4.f))
        .In(Gen({1, 4 * kH, kH}, 0.3))
        .Attr("hidden_size", kH)
        .Attr("clip", 0.5f)
        .Attr("input_forget", int64_t{1})
        .Attr("layout", layout);
    ASSERT_OK_AND_GET(out, n.Run(3));
    if (layout == 0) {
      ExpectValues<float>(out["out0"], {3, 1, 2, 2}, y);
      ExpectValues<float>(out["out1"], {1, 2, 2}, yh);
      ExpectValues<float>(out["out2"], {1, 2, 2}, yc);
    } else {
      // Y [N,S,1,H]; Y_h and Y_c [N,1,H] (same order as [1,N,H]).
      std::vector<float> yb;
      for (int64_t b = 0; b < kN; ++b)
        for (int64_t s = 0; s < kS; ++s)
          for (int64_t h = 0; h < kH; ++h) yb.push_back(y[static_cast<size_t>((s * kN + b) * kH + h)]);
      ExpectValues<float>(out["out0"], {2, 3, 1, 2}, yb);
      ExpectValues<float>(out["out1"], {2, 1, 2}, yh);
      ExpectValues<float>(out["out2"], {2, 1, 2}, yc);
    }
  }
}

TEST(RecurrentTest, GruReverseBothResetForms) {
  const std::vector<std::vector<float>> want_y = {
      {0.0359437f, -0.04023848f, 0.1036944f, -0.03589306f, 0.1623653f, -0.001459785f, 0.3715771f, 0.03816712f,
       0.3831428f, 0.1217425f, 0.3649502f, 0.2447911f},
      {0.1285644f, 0.09786242f, 0.1841448f, 0.09070757f, 0.2329383f, 0.1066025f, 0.4436331f, 0.1297713f,
       0.4300343f, 0.1909174f, 0.4092862f, 0.3063061f}};
  for (int64_t lbr : {0, 1}) {
    OneNode n(OpKind::kGRU, 14);
    n.In(Gen({kS, kN, kI}, 0.1))
        .In(Gen({1, 3 * kH, kI}, 0.2))
        .In(Gen({1, 3 * kH, kH}, 0.3))
        .In(Gen({1, 6 * kH}, 0.4))
        .Skip()
        .In(Gen({1, kN, kH}, 0.5))
        .Attr("hidden_size", kH)
        .Attr("direction", std::string("reverse"))
        .Attr("linear_before_reset", lbr);
    ASSERT_OK_AND_GET(out, n.Run(2));
    const auto& y = want_y[static_cast<size_t>(lbr)];
    ExpectValues<float>(out["out0"], {3, 1, 2, 2}, y);
    ExpectValues<float>(out["out1"], {1, 2, 2}, std::vector<float>(y.begin(), y.begin() + 4));
  }
}

TEST(RecurrentTest, RnnBidirectionalCustomActivationsAndLengths) {
  OneNode n(OpKind::kRNN, 14);
  n.In(Gen({kS, kN, kI}, 0.1))
      .In(Gen({2, kH, kI}, 0.2))
      .In(Gen({2, kH, kH}, 0.3))
      .In(Gen({2, 2 * kH}, 0.4))
      .In(Tensor::FromVector<int32_t>({2, 3}))
      .Attr("hidden_size", kH)
      .Attr("direction", std::string("bidirectional"))
      .Attr("activations", std::vector<std::string>{"LeakyRelu", "HardSigmoid"})
      .Attr("activation_alpha", std::vector<float>{0.3f, 0.25f})
      .Attr("activation_beta", std::vector<float>{0.4f, 0.4f});
  ASSERT_OK_AND_GET(out, n.Run(2, {0}));
  EXPECT_EQ(out.count("out0"), 0u);
  ExpectValues<float>(
      out["out1"], {2, 2, 2},
      {1.245352f, 2.0908f, 1.26034f, 1.900386f, 0.7200236f, 0.5122354f, 0.792136f, 0.4684555f});
}

TEST(RecurrentTest, RefusesBadShapesAndAttributes) {
  OneNode a(OpKind::kRNN, 14);
  a.In(Gen({kS, kN, kI}, 0.1))
      .In(Gen({1, kH, kI + 1}, 0.2))
      .In(Gen({1, kH, kH}, 0.3))
      .Attr("hidden_size", kH);
  EXPECT_FALSE(a.Run(2).ok());
  OneNode b(OpKind::kGRU, 14);
  b.In(Gen({kS, kN, kI}, 0.1))
      .In(Gen({1, 3 * kH, kI}, 0.2))
      .In(Gen({1, 3 * kH, kH}, 0.3))
      .Attr("direction", std::string("sideways"));
  EXPECT_FALSE(b.Run(2).ok());
  OneNode c(OpKind::kLSTM, 14);
  c.In(Gen({kS, kN, kI}, 0.1))
      .In(Gen({1, 4 * kH, kI}, 0.2))
      .In(Gen({1, 4 * kH, kH}, 0.3))
      .Skip()
      .In(Tensor::FromVector<int32_t>({4, 1}));
  EXPECT_FALSE(c.Run(3).ok());
}

// boxes of ONNX's suppress_by_IOU example
Tensor NmsBoxes(bool center) {
  if (center) {
    return Make<float>({1, 6, 4}, {0.5f, 0.5f,  1, 1, 0.5f, 0.6f,  1, 1, 0.5f, 0.4f,   1, 1,
                                   0.5f, 10.5f, 1, 1, 0.5f, 10.6f, 1, 1, 0.5f, 100.5f, 1, 1});
  }
  return Make<float>({1, 6, 4}, {0, 0,  1, 1,  0, 0.1f,  1, 1.1f,  0, -0.1f, 1, 0.9f,
                                 0, 10, 1, 11, 0, 10.1f, 1, 11.1f, 0, 100,   1, 101});
}

TEST(NmsTest, SuppressesByIouAndScore) {
  const Tensor scores = Make<float>({1, 1, 6}, {0.9f, 0.75f, 0.6f, 0.95f, 0.5f, 0.3f});
  for (bool center : {false, true}) {
    OneNode n(OpKind::kNonMaxSuppression, 11);
    n.In(NmsBoxes(center))
        .In(scores)
        .In(Tensor::FromVector<int64_t>({3}))
        .In(Tensor::FromVector<float>({0.5f}))
        .In(Tensor::FromVector<float>({0.0f}))
        .Attr("center_point_box", int64_t{center ? 1 : 0});
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int64_t>(out["out0"], {3, 3}, {0, 0, 3, 0, 0, 0, 0, 0, 5});
  }
  OneNode n(OpKind::kNonMaxSuppression, 11);
  n.In(NmsBoxes(false))
      .In(scores)
      .In(Tensor::FromVector<int64_t>({3}))
      .In(Tensor::FromVector<float>({0.5f}))
      .In(Tensor::FromVector<float>({0.4f}));
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<int64_t>(out["out0"], {2, 3}, {0, 0, 3, 0, 0, 0});
  EXPECT_FALSE(n.output(0)->shape()->dims()[0].is_static());
  // No max_output_boxes_per_class: nothing is selected.
  OneNode none(OpKind::kNonMaxSuppression, 11);
  none.In(NmsBoxes(false)).In(scores);
  ASSERT_OK_AND_GET(out2, none.Run());
  EXPECT_EQ(out2["out0"].sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(QuantTest, QuantizeRoundsHalfToEvenAndSaturates) {
  OneNode n(OpKind::kQuantizeLinear, 13);
  n.In(Make<float>({8}, {0, 2, 3, 1, 5, 1000, -254, -1000}))
      .In(Tensor::Scalar<float>(2))
      .In(Tensor::Scalar<uint8_t>(128));
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<uint8_t>(out["out0"], {8}, {128, 129, 130, 128, 130, 255, 1, 0});
  OneNode s(OpKind::kQuantizeLinear, 10);
  s.In(Make<float>({3}, {-1, -3, 300})).In(Tensor::Scalar<float>(2));  // no zero point: uint8
  ASSERT_OK_AND_GET(out2, s.Run());
  ExpectValues<uint8_t>(out2["out0"], {3}, {0, 0, 150});
}

TEST(QuantTest, PerAxisAndBlocked) {
  // x [1,2,2], axis 1: scales [1,2], zero points [0,10]
  OneNode n(OpKind::kQuantizeLinear, 13);
  n.In(Make<float>({1, 2, 2}, {4, -4, 4, -4}))
      .In(Tensor::FromVector<float>({1, 2}))
      .In(Tensor::FromVector<int8_t>({0, 10}));
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<int8_t>(out["out0"], {1, 2, 2}, {4, -4, 12, 8});

  OneNode d(OpKind::kDequantizeLinear, 21);
  d.In(Make<uint8_t>({2, 4}, {10, 12, 20, 24, 1, 2, 3, 4}))
      .In(Make<float>({2, 2}, {0.5f, 2, 1, 10}))
      .In(Make<uint8_t>({2, 2}, {10, 20, 0, 4}))
      .Attr("axis", int64_t{1})
      .Attr("block_size", int64_t{2});
  ASSERT_OK_AND_GET(out2, d.Run());
  ExpectValues<float>(out2["out0"], {2, 4}, {0, 1, 0, 8, 1, 2, -10, 0});
}

TEST(QuantTest, DequantizeInt32AndInt16) {
  OneNode n(OpKind::kDequantizeLinear, 13);
  n.In(Make<int32_t>({2}, {-3, 7})).In(Tensor::Scalar<float>(0.5f));
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {2}, {-1.5f, 3.5f});
  OneNode q(OpKind::kQuantizeLinear, 21);
  q.In(Make<float>({2}, {1e6f, -7})).In(Tensor::Scalar<float>(1)).In(Tensor::Scalar<int16_t>(-1));
  ASSERT_OK_AND_GET(out2, q.Run());
  ExpectValues<int16_t>(out2["out0"], {2}, {32767, -8});
  OneNode bad(OpKind::kDequantizeLinear, 13);
  bad.In(Make<uint8_t>({2, 3}, {1, 2, 3, 4, 5, 6}))
      .In(Tensor::FromVector<float>({1, 2}))
      .Attr("axis", int64_t{1});
  EXPECT_FALSE(bad.Run().ok());
}

}  // namespace
}  // namespace kiln
