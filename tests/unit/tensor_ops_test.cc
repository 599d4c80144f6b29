// Data-movement and shape ops (src/ops/kernels/dm_*.cc) through shape inference and the reference
// executor. Expected values are hand-computed (NumPy semantics worked out on paper).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ir/graph.h"
#include "ops/infer.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

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
  Expected<TensorMap> Run(int num_outputs = 1) {
    std::vector<Value*> outs;
    for (int i = 0; i < num_outputs; ++i) outs.push_back(g_.AddValue("out" + std::to_string(i), DType::kUndefined));
    node_ = g_.AddNode(op_, "n", inputs_, outs, opset_);
    for (const auto& [k, v] : attrs_.all()) node_->attrs().Set(k, v);
    for (Value* o : outs) g_.AddOutput(o);
    KILN_RETURN_IF_ERROR(ValidateGraphOps(g_));
    KILN_RETURN_IF_ERROR(InferShapes(g_));
    return RunReference(g_, feeds_);
  }
  const Value* output(size_t i) const { return node_->output(i); }

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
  return Tensor::FromVector(values).Reshaped(std::move(sizes));
}

Tensor Iota(std::vector<int64_t> sizes) {
  std::vector<float> v(static_cast<size_t>(NumElements(sizes)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Make(std::move(sizes), v);
}

Tensor Ints(std::vector<int64_t> v) { return Tensor::FromVector<int64_t>(v); }

template <typename T>
void ExpectValues(const Tensor& t, std::vector<int64_t> sizes, std::vector<T> want, double tol = 1e-6) {
  ASSERT_EQ(t.dtype(), DTypeOf<T>::value);
  ASSERT_EQ(t.sizes(), sizes);
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    const double exp = static_cast<double>(static_cast<ComputeT<T>>(want[i]));
    EXPECT_NEAR(t.GetAsDouble(static_cast<int64_t>(i)), exp, tol * (1 + std::fabs(exp))) << "element " << i;
  }
}

#define ASSERT_OK_AND_GET(lhs, expr)                          \
  auto lhs##_or = (expr);                                     \
  ASSERT_TRUE(lhs##_or.ok()) << lhs##_or.status().ToString(); \
  auto lhs = std::move(lhs##_or).value()

// ---- shape inference with symbolic dims ----

// A graph x -> op -> y where x has a possibly-symbolic shape and the other inputs are constants.
class InferOne {
 public:
  InferOne(OpKind op, int opset, std::vector<Shape> inputs, std::vector<Tensor> constants = {}) {
    std::vector<Value*> ins;
    for (size_t i = 0; i < inputs.size(); ++i) {
      Value* v = g_.AddValue("x" + std::to_string(i), DType::kFloat32, inputs[i]);
      g_.AddInput(v);
      ins.push_back(v);
    }
    for (size_t i = 0; i < constants.size(); ++i) ins.push_back(g_.AddConstant("c" + std::to_string(i), constants[i]));
    y_ = g_.AddValue("y", DType::kUndefined);
    node_ = g_.AddNode(op, "n", ins, {y_}, opset);
    g_.AddOutput(y_);
  }
  InferOne& Attr(const std::string& name, AttrValue v) {
    node_->attrs().Set(name, std::move(v));
    return *this;
  }
  // The inferred output shape as a string ("[batch,12]"), or the error.
  std::string Shape() {
    Status st = InferShapes(g_);
    if (!st.ok()) return st.ToString();
    return y_->shape() ? y_->shape()->ToString() : "unknown rank";
  }

 private:
  Graph g_;
  Value* y_;
  Node* node_;
};

const Dim kBatch = Dim::Symbol("batch");

TEST(TensorOpsInferTest, ReshapeResolvesZeroAndMinusOneWithSymbolicBatch) {
  EXPECT_EQ(InferOne(OpKind::kReshape, 14, {Shape{kBatch, 3, 4}}, {Ints({0, -1})}).Shape(), "[batch,12]");
  EXPECT_EQ(InferOne(OpKind::kReshape, 14, {Shape{kBatch, 3, 4}}, {Ints({-1, 12})}).Shape(), "[batch,12]");
  EXPECT_EQ(InferOne(OpKind::kReshape, 14, {Shape{kBatch, 12}}, {Ints({0, 3, -1})}).Shape(), "[batch,3,4]");
  EXPECT_EQ(InferOne(OpKind::kReshape, 14, {Shape{kBatch, 6}}, {Ints({-1, 2, 3})}).Shape(), "[batch,2,3]");
  // -1 would be batch * 2: not expressible, so unknown; the static dims stay.
  EXPECT_EQ(InferOne(OpKind::kReshape, 14, {Shape{kBatch, 6}}, {Ints({-1, 3})}).Shape(), "[?,3]");
  EXPECT_EQ(InferOne(OpKind::kReshape, 14, {Shape{2, 3, 4}}, {Ints({4, -1})}).Shape(), "[4,6]");
  // allowzero: 0 is a real size.
  EXPECT_EQ(InferOne(OpKind::kReshape, 14, {Shape{0, 3}}, {Ints({3, 0})}).Attr("allowzero", int64_t{1}).Shape(),
            "[3,0]");
  EXPECT_NE(InferOne(OpKind::kReshape, 14, {Shape{2, 3, 4}}, {Ints({5, -1})}).Shape().find("cannot reshape"),
            std::string::npos);
}

TEST(TensorOpsInferTest, ConcatSumsAxisAndKeepsSymbolicDims) {
  EXPECT_EQ(InferOne(OpKind::kConcat, 13, {Shape{kBatch, 3}, Shape{kBatch, 5}}).Attr("axis", int64_t{1}).Shape(),
            "[batch,8]");
  EXPECT_EQ(InferOne(OpKind::kConcat, 13, {Shape{kBatch, 3}, Shape{2, 3}}).Attr("axis", int64_t{0}).Shape(),
            "[?,3]");
  EXPECT_EQ(InferOne(OpKind::kConcat, 13, {Shape{kBatch, 3}, Shape{0, 3}}).Attr("axis", int64_t{0}).Shape(),
            "[batch,3]");
  EXPECT_NE(InferOne(OpKind::kConcat, 13, {Shape{2, 3}, Shape{2, 4}}).Attr("axis", int64_t{0}).Shape().find("differ"),
            std::string::npos);
}

TEST(TensorOpsInferTest, FlattenTransposeUnsqueezeKeepSymbols) {
  EXPECT_EQ(InferOne(OpKind::kFlatten, 13, {Shape{kBatch, 3, 4, 4}}).Shape(), "[batch,48]");
  EXPECT_EQ(InferOne(OpKind::kFlatten, 13, {Shape{kBatch, 3, 4, 4}}).Attr("axis", int64_t{2}).Shape(), "[?,16]");
  EXPECT_EQ(InferOne(OpKind::kFlatten, 13, {Shape{kBatch, 3}}).Attr("axis", int64_t{0}).Shape(), "[1,?]");
  EXPECT_EQ(InferOne(OpKind::kTranspose, 13, {Shape{kBatch, 3, 7}}).Attr("perm", std::vector<int64_t>{2, 0, 1}).Shape(),
            "[7,batch,3]");
  EXPECT_EQ(InferOne(OpKind::kUnsqueeze, 13, {Shape{kBatch, 3}}, {Ints({0, -1})}).Shape(), "[1,batch,3,1]");
  EXPECT_EQ(InferOne(OpKind::kSqueeze, 13, {Shape{kBatch, 1, 3}}, {Ints({1})}).Shape(), "[batch,3]");
  EXPECT_EQ(InferOne(OpKind::kShape, 15, {Shape{kBatch, 3, 5}}).Attr("start", int64_t{-2}).Shape(), "[2]");
}

// ---- values ----

TEST(TensorOpsTest, ReshapeAliasesInputAndResolvesMinusOne) {
  OneNode n(OpKind::kReshape, 14);
  n.In(Iota({2, 3, 2})).In(Ints({0, -1}), true);
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {2, 6}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
}

TEST(TensorOpsTest, TransposeOfFloat16MovesBits) {
  Tensor x(DType::kFloat16, {2, 3});
  for (int i = 0; i < 6; ++i) x.data<Float16>()[i] = Float16(static_cast<float>(i) + 0.5f);
  OneNode n(OpKind::kTranspose, 13);
  n.In(x);
  ASSERT_OK_AND_GET(out, n.Run());
  // [[0.5,1.5,2.5],[3.5,4.5,5.5]]^T
  ExpectValues<Float16>(out["out0"], {3, 2},
                        {Float16(0.5f), Float16(3.5f), Float16(1.5f), Float16(4.5f), Float16(2.5f), Float16(5.5f)});
}

TEST(TensorOpsTest, SliceNegativeStepClampsEnds) {
  // x = 0..9; starts -1, ends -100 (clamped to "before 0"), step -2: 9, 7, 5, 3, 1.
  OneNode n(OpKind::kSlice, 13);
  n.In(Iota({10})).In(Ints({-1}), true).In(Ints({-100}), true).In(Ints({0}), true).In(Ints({-2}), true);
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {5}, {9, 7, 5, 3, 1});
}

TEST(TensorOpsTest, SliceInt64MaxEndOnSecondAxis) {
  // x = [[0,1,2,3],[4,5,6,7]]; axis 1 from 1 to INT64_MAX step 2: [[1,3],[5,7]].
  OneNode n(OpKind::kSlice, 13);
  n.In(Iota({2, 4}))
      .In(Ints({1}), true)
      .In(Ints({std::numeric_limits<int64_t>::max()}), true)
      .In(Ints({1}), true)
      .In(Ints({2}), true);
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {2, 2}, {1, 3, 5, 7});
}

TEST(TensorOpsTest, SplitNumOutputsUneven) {
  OneNode n(OpKind::kSplit, 18);
  n.In(Iota({7})).Attr("num_outputs", int64_t{3});
  ASSERT_OK_AND_GET(out, n.Run(3));
  ExpectValues<float>(out["out0"], {3}, {0, 1, 2});
  ExpectValues<float>(out["out1"], {3}, {3, 4, 5});
  ExpectValues<float>(out["out2"], {1}, {6});
}

TEST(TensorOpsTest, GatherNegativeIndexAxis1) {
  // x = [[0,1,2],[3,4,5]]; indices [-1, 0] on axis 1: [[2,0],[5,3]].
  OneNode n(OpKind::kGather, 13);
  n.In(Iota({2, 3})).In(Ints({-1, 0})).Attr("axis", int64_t{1});
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {2, 2}, {2, 0, 5, 3});
}

TEST(TensorOpsTest, PadModes) {
  const Tensor x = Make<float>({3}, {1, 2, 3});
  struct Case {
    const char* mode;
    std::vector<float> want;
  };
  for (const Case& c : {Case{"constant", {9, 9, 1, 2, 3, 9, 9}}, Case{"reflect", {3, 2, 1, 2, 3, 2, 1}},
                        Case{"edge", {1, 1, 1, 2, 3, 3, 3}}, Case{"wrap", {2, 3, 1, 2, 3, 1, 2}}}) {
    OneNode n(OpKind::kPad, 19);
    n.In(x).In(Ints({2, 2}), true).In(Tensor::Scalar<float>(9.f), true).Attr("mode", std::string(c.mode));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {7}, c.want);
  }
}

TEST(TensorOpsTest, PadNegativeCrops) {
  OneNode n(OpKind::kPad, 13);
  n.In(Make<float>({4}, {1, 2, 3, 4})).In(Ints({-1, 1}), true);
  ASSERT_OK_AND_GET(out, n.Run());
  ExpectValues<float>(out["out0"], {4}, {2, 3, 4, 0});
}

TEST(TensorOpsTest, ExpandAndTile) {
  {
    OneNode n(OpKind::kExpand, 13);
    n.In(Make<float>({3, 1}, {1, 2, 3})).In(Ints({2, 1, 2}), true);
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {2, 3, 2}, {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3});
  }
  {
    OneNode n(OpKind::kTile, 13);
    n.In(Make<int32_t>({1, 2}, {7, 8})).In(Ints({2, 2}), true);
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int32_t>(out["out0"], {2, 4}, {7, 8, 7, 8, 7, 8, 7, 8});
  }
}

TEST(TensorOpsTest, ResizeNearestAndLinear) {
  {
    // asymmetric nearest (floor) 2x: [[1,2],[3,4]] -> each pixel repeated 2x2.
    OneNode n(OpKind::kResize, 19);
    n.In(Make<float>({1, 1, 2, 2}, {1, 2, 3, 4}))
        .Skip()
        .In(Tensor::FromVector<float>({1, 1, 2, 2}), true)
        .Attr("coordinate_transformation_mode", std::string("asymmetric"))
        .Attr("nearest_mode", std::string("floor"));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {1, 1, 4, 4}, {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  }
  {
    // half_pixel linear 2x of [0, 1]: x_ori = -0.25, 0.25, 0.75, 1.25 -> 0, 0.25, 0.75, 1 (edges clamp).
    OneNode n(OpKind::kResize, 13);
    n.In(Make<float>({2}, {0, 1})).Skip().In(Tensor::FromVector<float>({2}), true).Attr("mode", std::string("linear"));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {4}, {0, 0.25f, 0.75f, 1});
  }
}

TEST(TensorOpsTest, ScatterNDAddAndGatherND) {
  {
    OneNode n(OpKind::kScatterND, 16);
    n.In(Make<float>({4}, {1, 2, 3, 4}))
        .In(Make<int64_t>({3, 1}, {1, 3, 1}))
        .In(Make<float>({3}, {10, 20, 30}))
        .Attr("reduction", std::string("add"));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {4}, {1, 42, 3, 24});
  }
  {
    // x = [[0,1],[2,3]]; indices [[1,0],[0,1]] -> [2, 1].
    OneNode n(OpKind::kGatherND, 13);
    n.In(Iota({2, 2})).In(Make<int64_t>({2, 2}, {1, 0, 0, 1}));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {2}, {2, 1});
  }
}

TEST(TensorOpsTest, DepthToSpaceCrdAndNonZero) {
  {
    // C=4, b=2, CRD: out[0,0,i,j] = in[0, i*2+j, 0, 0] -> [[0,1],[2,3]].
    OneNode n(OpKind::kDepthToSpace, 13);
    n.In(Iota({1, 4, 1, 1})).Attr("blocksize", int64_t{2}).Attr("mode", std::string("CRD"));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<float>(out["out0"], {1, 1, 2, 2}, {0, 1, 2, 3});
  }
  {
    OneNode n(OpKind::kNonZero, 13);
    n.In(Make<float>({2, 2}, {0, 5, 7, 0}));
    ASSERT_OK_AND_GET(out, n.Run());
    ExpectValues<int64_t>(out["out0"], {2, 2}, {0, 1, 1, 0});
  }
}

// ---- bad indices and bad arguments give errors, never out-of-bounds reads ----

TEST(TensorOpsErrorTest, OutOfRangeIndices) {
  {
    OneNode n(OpKind::kGather, 13);
    n.In(Iota({3, 2})).In(Ints({0, 3}));
    auto r = n.Run();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
    EXPECT_NE(r.status().message().find("3 is out of range"), std::string::npos) << r.status().message();
  }
  {
    OneNode n(OpKind::kGather, 13);
    n.In(Iota({3, 2})).In(Ints({-4}));
    EXPECT_FALSE(n.Run().ok());
  }
  {
    OneNode n(OpKind::kGatherElements, 13);
    n.In(Iota({2, 2})).In(Make<int64_t>({2, 2}, {0, 1, 2, 0}));
    auto r = n.Run();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
  }
  {
    OneNode n(OpKind::kScatterND, 13);
    n.In(Iota({4})).In(Make<int64_t>({1, 1}, {-5})).In(Make<float>({1}, {1}));
    auto r = n.Run();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
  }
  {
    OneNode n(OpKind::kScatterElements, 13);
    n.In(Iota({2, 2})).In(Make<int64_t>({1, 1}, {7})).In(Make<float>({1, 1}, {1}));
    EXPECT_FALSE(n.Run().ok());
  }
}

TEST(TensorOpsErrorTest, BadShapesAndAttributes) {
  {
    OneNode n(OpKind::kReshape, 14);
    n.In(Iota({2, 3})).In(Ints({-1, -1}));
    auto r = n.Run();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("more than one -1"), std::string::npos) << r.status().message();
  }
  {
    OneNode n(OpKind::kTranspose, 13);
    n.In(Iota({2, 3})).Attr("perm", std::vector<int64_t>{0, 0});
    EXPECT_FALSE(n.Run().ok());
  }
  {
    OneNode n(OpKind::kSqueeze, 13);
    n.In(Iota({2, 3})).In(Ints({0}), true);
    EXPECT_FALSE(n.Run().ok());
  }
  {
    OneNode n(OpKind::kSlice, 13);
    n.In(Iota({4})).In(Ints({0}), true).In(Ints({4}), true).In(Ints({0}), true).In(Ints({0}), true);
    EXPECT_FALSE(n.Run().ok());
  }
  {
    OneNode n(OpKind::kRange, 13);
    n.In(Tensor::Scalar<int64_t>(0)).In(Tensor::Scalar<int64_t>(5)).In(Tensor::Scalar<int64_t>(0));
    EXPECT_FALSE(n.Run().ok());
  }
  {
    OneNode n(OpKind::kPad, 13);
    n.In(Iota({2})).In(Ints({-3, 0}), true);
    EXPECT_FALSE(n.Run().ok());
  }
  {
    OneNode n(OpKind::kConcat, 13);
    n.In(Iota({2})).Attr("axis", int64_t{3});
    EXPECT_FALSE(n.Run().ok());
  }
}

}  // namespace
}  // namespace kiln
