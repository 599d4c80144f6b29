// Elementwise and activation ops: values against hand-computed (or NumPy-computed) numbers, broadcasting,
// shape inference with symbolic dims, dtype coverage and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "ir/graph.h"
#include "ops/infer.h"
#include "ops/registry.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

template <typename T>
Tensor Make(const std::vector<T>& values, std::vector<int64_t> sizes) {
  return Tensor::FromVector(values).Reshaped(std::move(sizes));
}
template <typename T>
Tensor Vec(const std::vector<T>& values) {
  return Tensor::FromVector(values);
}
Tensor F16(const std::vector<float>& values) {
  std::vector<Float16> h;
  for (float f : values) h.push_back(Float16(f));
  return Tensor::FromVector(h);
}
Tensor BF16(const std::vector<float>& values) {
  std::vector<BFloat16> h;
  for (float f : values) h.push_back(BFloat16(f));
  return Tensor::FromVector(h);
}

// Builds a one-node graph (empty tensors in `ins` are omitted optional inputs), validates it, infers shapes,
// runs the reference kernel and checks the output against the inferred dtype and shape.
Expected<Tensor> RunOp(OpKind op, const std::vector<Tensor>& ins,
                       const std::vector<std::pair<std::string, AttrValue>>& attrs = {}, int opset = 21) {
  Graph g;
  std::vector<Value*> values;
  TensorMap feeds;
  for (size_t i = 0; i < ins.size(); ++i) {
    if (ins[i].empty()) {
      values.push_back(nullptr);
      continue;
    }
    const std::string name = "in" + std::to_string(i);
    Value* v = g.AddValue(name, ins[i].dtype(), Shape::FromSizes(ins[i].sizes()));
    g.AddInput(v);
    values.push_back(v);
    feeds[name] = ins[i];
  }
  Value* y = g.AddValue("y", DType::kUndefined);
  Node* n = g.AddNode(op, "n", values, {y}, opset);
  for (const auto& [k, v] : attrs) n->attrs().Set(k, v);
  g.AddOutput(y);
  KILN_RETURN_IF_ERROR(ValidateGraphOps(g));
  KILN_RETURN_IF_ERROR(InferShapes(g));
  KILN_ASSIGN_OR_RETURN(TensorMap out, RunReference(g, feeds));
  Tensor t = out.at("y");
  if (t.dtype() != y->dtype()) return Internal("kernel dtype differs from inferred dtype");
  if (!y->shape() || y->shape()->sizes() != t.sizes()) {
    return Internal("kernel shape " + SizesToString(t.sizes()) + " differs from inferred shape");
  }
  return t;
}

std::vector<double> Values(const Tensor& t) {
  std::vector<double> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(t.GetAsDouble(i));
  return v;
}

void ExpectValues(const Expected<Tensor>& t, const std::vector<double>& expected, double tol = 1e-6) {
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<double> got = Values(*t);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(expected[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "element " << i << " = " << got[i];
    } else if (std::isinf(expected[i])) {
      EXPECT_EQ(got[i], expected[i]) << "element " << i;
    } else {
      EXPECT_NEAR(got[i], expected[i], tol * std::max(1.0, std::fabs(expected[i]))) << "element " << i;
    }
  }
}

// ---- binary arithmetic ------------------------------------------------------------------------------

TEST(ElementwiseTest, AddBroadcastsRowAgainstMatrix) {
  auto y = RunOp(OpKind::kAdd, {Make<float>({1, 2, 3, 4, 5, 6}, {2, 3}), Vec<float>({10, 20, 30})});
  ExpectValues(y, {11, 22, 33, 14, 25, 36});
  EXPECT_EQ(y->sizes(), (std::vector<int64_t>{2, 3}));
}

TEST(ElementwiseTest, BroadcastBothWays) {
  // [2,1] - [1,3] -> [2,3]
  auto y = RunOp(OpKind::kSub, {Make<double>({1, 2}, {2, 1}), Make<double>({10, 20, 30}, {1, 3})});
  ExpectValues(y, {-9, -19, -29, -8, -18, -28});
  // rank-0 with rank-3
  auto z = RunOp(OpKind::kMul, {Tensor::Scalar<int32_t>(3), Make<int32_t>({1, 2, 3, 4}, {1, 2, 2})});
  ExpectValues(z, {3, 6, 9, 12});
  EXPECT_EQ(z->sizes(), (std::vector<int64_t>{1, 2, 2}));
  // middle-dim broadcast [2,1,2] + [3,1]
  auto w = RunOp(OpKind::kAdd, {Make<int64_t>({0, 1, 2, 3}, {2, 1, 2}), Make<int64_t>({10, 20, 30}, {3, 1})});
  ExpectValues(w, {10, 11, 20, 21, 30, 31, 12, 13, 22, 23, 32, 33});
}

TEST(ElementwiseTest, IncompatibleShapesFail) {
  auto y = RunOp(OpKind::kAdd, {Vec<float>({1, 2, 3}), Vec<float>({1, 2})});
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.status().message().find("broadcast"), std::string::npos) << y.status().message();
}

TEST(ElementwiseTest, IntegerArithmeticWraps) {
  ExpectValues(RunOp(OpKind::kAdd, {Vec<int32_t>({INT32_MAX}), Vec<int32_t>({1})}), {INT32_MIN});
  ExpectValues(RunOp(OpKind::kSub, {Vec<uint8_t>({0}), Vec<uint8_t>({1})}), {255});
  ExpectValues(RunOp(OpKind::kMul, {Vec<uint16_t>({65535}), Vec<uint16_t>({65535})}), {1});
  ExpectValues(RunOp(OpKind::kMul, {Vec<int64_t>({INT64_MAX}), Vec<int64_t>({2})}), {-2});
}

TEST(ElementwiseTest, DivIntegerTruncatesAndRejectsZero) {
  ExpectValues(RunOp(OpKind::kDiv, {Vec<int32_t>({7, -7, 6, INT32_MIN}), Vec<int32_t>({-2, 2, 3, -1})}),
               {-3, -3, 2, INT32_MIN});
  ExpectValues(RunOp(OpKind::kDiv, {Vec<uint8_t>({200}), Vec<uint8_t>({3})}), {66});
  auto z = RunOp(OpKind::kDiv, {Vec<int64_t>({1, 2}), Vec<int64_t>({1, 0})});
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.status().message().find("division by zero"), std::string::npos);
  ExpectValues(RunOp(OpKind::kDiv, {Vec<float>({1, -1, 3}), Vec<float>({0, 0, 2})}), {kInf, -kInf, 1.5});
}

TEST(ElementwiseTest, ModFollowsFmodAttribute) {
  // NumPy: np.mod([-4, 7, 5, 4, -7, 8], [2, -3, 8, -2, 3, 5]) = [0, -2, 5, 0, 2, 3]
  ExpectValues(RunOp(OpKind::kMod, {Vec<int32_t>({-4, 7, 5, 4, -7, 8}), Vec<int32_t>({2, -3, 8, -2, 3, 5})}),
               {0, -2, 5, 0, 2, 3});
  // np.fmod(...) = [0, 1, 5, 0, -1, 3]
  ExpectValues(RunOp(OpKind::kMod, {Vec<int32_t>({-4, 7, 5, 4, -7, 8}), Vec<int32_t>({2, -3, 8, -2, 3, 5})},
                     {{"fmod", int64_t{1}}}),
               {0, 1, 5, 0, -1, 3});
  // np.fmod([-4.5, 7.5], [2, -2]) = [-0.5, 1.5]
  ExpectValues(RunOp(OpKind::kMod, {Vec<double>({-4.5, 7.5}), Vec<double>({2, -2})}, {{"fmod", int64_t{1}}}),
               {-0.5, 1.5});
  EXPECT_FALSE(RunOp(OpKind::kMod, {Vec<float>({1}), Vec<float>({2})}).ok());  // float needs fmod=1
  EXPECT_FALSE(RunOp(OpKind::kMod, {Vec<int32_t>({1}), Vec<int32_t>({0})}).ok());
  EXPECT_FALSE(RunOp(OpKind::kMod, {Vec<int32_t>({1}), Vec<int32_t>({2})}, {{"fmod", int64_t{2}}}).ok());
}

TEST(ElementwiseTest, PowMixedTypesTakeBaseType) {
  auto a = RunOp(OpKind::kPow, {Vec<float>({1, 2, 3}), Vec<int64_t>({2})});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->dtype(), DType::kFloat32);
  ExpectValues(a, {1, 4, 9});
  auto b = RunOp(OpKind::kPow, {Vec<int32_t>({2, 3, 4}), Vec<float>({0.5f, 2.f, -1.f})});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->dtype(), DType::kInt32);
  ExpectValues(b, {1, 9, 0});  // sqrt(2) truncated, 9, 1/4 truncated
  ExpectValues(RunOp(OpKind::kPow, {Vec<int64_t>({3, -2, 1, -1}), Vec<int64_t>({4, 3, -5, -3})}),
               {81, -8, 1, -1});
  ExpectValues(RunOp(OpKind::kPow, {Vec<double>({4, 2}), Vec<double>({0.5, -2})}), {2, 0.25});
}

TEST(ElementwiseTest, OverflowingEdgeCasesAreDefined) {
  ExpectValues(RunOp(OpKind::kMod, {Vec<int32_t>({INT32_MIN, -7}), Vec<int32_t>({-1, -1})}), {0, 0});
  ExpectValues(RunOp(OpKind::kAbs, {Vec<int8_t>({-128, -127})}), {-128, 127});
  ExpectValues(RunOp(OpKind::kPow, {Vec<int32_t>({2, 0}), Vec<int32_t>({40, -1})}),
               {0, 0});  // 2^40 wraps to 0
  ExpectValues(
      RunOp(OpKind::kPow, {Vec<int64_t>({1, -1, 2}), Vec<uint64_t>({UINT64_MAX, UINT64_MAX - 1, 3})}),
      {1, 1, 8});
  ExpectValues(RunOp(OpKind::kPow, {Vec<int8_t>({10}), Vec<double>({1e10})}), {127});  // saturates
  ExpectValues(RunOp(OpKind::kErf, {Vec<int32_t>({0, 1, 7, -9})}), {0, 0, 1, -1});
}

TEST(ElementwiseTest, EmptyTensorsBroadcast) {
  auto y = RunOp(OpKind::kAdd, {Make<float>({}, {0, 3}), Vec<float>({1, 2, 3})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ(y->sizes(), (std::vector<int64_t>{0, 3}));
  auto m = RunOp(OpKind::kMax, {Make<int32_t>({}, {2, 0}), Make<int32_t>({5, 6}, {2, 1})});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->sizes(), (std::vector<int64_t>{2, 0}));
  auto w = RunOp(OpKind::kWhere, {Make<bool>({}, {0}), Vec<float>({1}), Vec<float>({2})});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->numel(), 0);
}

// ---- variadic -----------------------------------------------------------------------------------------

TEST(ElementwiseTest, VariadicOpsBroadcast) {
  const Tensor a = Vec<float>({1, 5, 3});
  const Tensor b = Make<float>({2, 4}, {2, 1});
  ExpectValues(RunOp(OpKind::kMax, {a, b}), {2, 5, 3, 4, 5, 4});
  ExpectValues(RunOp(OpKind::kMin, {a, b}), {1, 2, 2, 1, 4, 3});
  ExpectValues(RunOp(OpKind::kSum, {a, b, Tensor::Scalar<float>(1)}), {4, 8, 6, 6, 10, 8});
  ExpectValues(RunOp(OpKind::kMean, {a, b, Tensor::Scalar<float>(3)}),
               {2, 10.0 / 3, 8.0 / 3, 8.0 / 3, 4, 10.0 / 3});
  ExpectValues(RunOp(OpKind::kMax, {a}), {1, 5, 3});
  ExpectValues(RunOp(OpKind::kMax, {Vec<float>({1, kNaN}), Vec<float>({kNaN, 0})}), {kNaN, kNaN});
  ExpectValues(RunOp(OpKind::kMin, {Vec<int8_t>({-5, 7}), Vec<int8_t>({3, 2}), Vec<int8_t>({0, 9})}),
               {-5, 2});
  EXPECT_FALSE(RunOp(OpKind::kMean, {Vec<int32_t>({1}), Vec<int32_t>({2})}).ok());  // float types only
  EXPECT_FALSE(RunOp(OpKind::kSum, {Vec<float>({1}), Vec<double>({2})}).ok());
}

// ---- comparison, logic, Where ---------------------------------------------------------------------------

TEST(ElementwiseTest, ComparisonsGiveBool) {
  auto eq = RunOp(OpKind::kEqual, {Vec<int64_t>({1, 2, 3}), Tensor::Scalar<int64_t>(2)});
  ASSERT_TRUE(eq.ok());
  EXPECT_EQ(eq->dtype(), DType::kBool);
  ExpectValues(eq, {0, 1, 0});
  ExpectValues(RunOp(OpKind::kLess, {F16({1, 2, 3}), F16({2, 2, 2})}), {1, 0, 0});
  ExpectValues(RunOp(OpKind::kGreater, {Vec<float>({1, kNaN, 3}), Vec<float>({0, 0, 3})}), {1, 0, 0});
  ExpectValues(RunOp(OpKind::kLessOrEqual, {Vec<uint32_t>({1, 2, 3}), Vec<uint32_t>({2})}), {1, 1, 0});
  ExpectValues(RunOp(OpKind::kGreaterOrEqual, {Vec<double>({1, 2, 3}), Vec<double>({2})}), {0, 1, 1});
  ExpectValues(RunOp(OpKind::kEqual, {Vec<bool>({true, false}), Vec<bool>({true, true})}), {1, 0});
  EXPECT_EQ(RunOp(OpKind::kLess, {Vec<bool>({true}), Vec<bool>({false})}).status().code(),
            StatusCode::kUnsupported);
}

TEST(ElementwiseTest, LogicOps) {
  const Tensor a = Vec<bool>({false, false, true, true});
  const Tensor b = Vec<bool>({false, true, false, true});
  ExpectValues(RunOp(OpKind::kAnd, {a, b}), {0, 0, 0, 1});
  ExpectValues(RunOp(OpKind::kOr, {a, b}), {0, 1, 1, 1});
  ExpectValues(RunOp(OpKind::kXor, {a, b}), {0, 1, 1, 0});
  ExpectValues(RunOp(OpKind::kNot, {a}), {1, 1, 0, 0});
  ExpectValues(RunOp(OpKind::kAnd, {Make<bool>({true, false}, {2, 1}), b}), {0, 1, 0, 1, 0, 0, 0, 0});
  EXPECT_EQ(RunOp(OpKind::kAnd, {Vec<int32_t>({1}), Vec<int32_t>({1})}).status().code(),
            StatusCode::kUnsupported);
}

TEST(ElementwiseTest, WhereBroadcastsThreeWays) {
  // cond [2,1], x [3], y scalar -> [2,3]
  auto y = RunOp(OpKind::kWhere,
                 {Make<bool>({true, false}, {2, 1}), Vec<int32_t>({1, 2, 3}), Tensor::Scalar<int32_t>(-1)});
  ExpectValues(y, {1, 2, 3, -1, -1, -1});
  ExpectValues(RunOp(OpKind::kWhere, {Vec<bool>({true, false}), F16({1.5f, 2}), F16({3, 4})}), {1.5, 4});
  ExpectValues(
      RunOp(OpKind::kWhere, {Vec<bool>({false, true}), Vec<bool>({true, true}), Vec<bool>({false, false})}),
      {0, 1});
  EXPECT_FALSE(RunOp(OpKind::kWhere, {Vec<int32_t>({1}), Vec<float>({1}), Vec<float>({2})}).ok());
  EXPECT_FALSE(RunOp(OpKind::kWhere, {Vec<bool>({true}), Vec<float>({1}), Vec<double>({2})}).ok());
}

// ---- unary math -------------------------------------------------------------------------------------

TEST(ElementwiseTest, UnaryMath) {
  ExpectValues(RunOp(OpKind::kNeg, {Vec<int8_t>({-128, 5, 0})}), {-128, -5, 0});
  ExpectValues(RunOp(OpKind::kAbs, {Vec<int16_t>({-3, 4})}), {3, 4});
  ExpectValues(RunOp(OpKind::kAbs, {Vec<float>({-0.5f, 2})}), {0.5, 2});
  ExpectValues(RunOp(OpKind::kSign, {Vec<float>({-2, 0, 3, kNaN})}), {-1, 0, 1, kNaN});
  ExpectValues(RunOp(OpKind::kSign, {Vec<int32_t>({-7, 0, 9})}), {-1, 0, 1});
  ExpectValues(RunOp(OpKind::kSqrt, {Vec<float>({4, 2, -1})}), {2, 1.41421356, kNaN});
  ExpectValues(RunOp(OpKind::kExp, {Vec<double>({0, 1})}), {1, 2.718281828459045});
  ExpectValues(RunOp(OpKind::kLog, {Vec<float>({1, 0})}), {0, -kInf});
  ExpectValues(RunOp(OpKind::kReciprocal, {Vec<float>({4, -0.5f})}), {0.25, -2});
  ExpectValues(RunOp(OpKind::kFloor, {Vec<float>({-1.5f, 1.5f})}), {-2, 1});
  ExpectValues(RunOp(OpKind::kCeil, {Vec<float>({-1.5f, 1.5f})}), {-1, 2});
  // Round half to even.
  ExpectValues(RunOp(OpKind::kRound, {Vec<float>({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 2.4f, 2.6f})}),
               {0, 2, 2, 0, -2, 2, 3});
  ExpectValues(RunOp(OpKind::kSin, {Vec<float>({0, 1})}), {0, 0.8414709848});
  ExpectValues(RunOp(OpKind::kCos, {Vec<float>({0, 1})}), {1, 0.5403023059});
  ExpectValues(RunOp(OpKind::kTan, {Vec<float>({1})}), {1.5574077247});
  ExpectValues(RunOp(OpKind::kAsin, {Vec<float>({0.5f})}), {0.5235987756});
  ExpectValues(RunOp(OpKind::kAcos, {Vec<float>({0.5f})}), {1.0471975512});
  ExpectValues(RunOp(OpKind::kAtan, {Vec<float>({1})}), {0.7853981634});
  ExpectValues(RunOp(OpKind::kSinh, {Vec<float>({1})}), {1.1752011936});
  ExpectValues(RunOp(OpKind::kCosh, {Vec<float>({1})}), {1.5430806348});
  ExpectValues(RunOp(OpKind::kAsinh, {Vec<float>({1})}), {0.8813735870});
  ExpectValues(RunOp(OpKind::kAcosh, {Vec<float>({2})}), {1.3169578969});
  ExpectValues(RunOp(OpKind::kAtanh, {Vec<float>({0.5f})}), {0.5493061443});
  ExpectValues(RunOp(OpKind::kErf, {Vec<float>({0, 1, -2})}), {0, 0.8427007929, -0.9953222650});
  ExpectValues(RunOp(OpKind::kExp, {F16({1})}), {2.71875}, 1e-4);  // f16(e) = 2.71875
  ExpectValues(RunOp(OpKind::kSqrt, {BF16({9})}), {3});
}

TEST(ElementwiseTest, UnaryDtypeErrors) {
  auto s = RunOp(OpKind::kSqrt, {Vec<int32_t>({4})});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(s.status().message().find("i32"), std::string::npos) << s.status().message();
  EXPECT_FALSE(RunOp(OpKind::kNeg, {Vec<uint8_t>({1})}).ok());
  EXPECT_FALSE(RunOp(OpKind::kNot, {Vec<float>({1})}).ok());
}

TEST(ElementwiseTest, IsNaNAndIsInf) {
  const Tensor x = Vec<float>({1, kNaN, kInf, -kInf});
  ExpectValues(RunOp(OpKind::kIsNaN, {x}), {0, 1, 0, 0});
  ExpectValues(RunOp(OpKind::kIsInf, {x}), {0, 0, 1, 1});
  ExpectValues(RunOp(OpKind::kIsInf, {x}, {{"detect_negative", int64_t{0}}}), {0, 0, 1, 0});
  ExpectValues(RunOp(OpKind::kIsInf, {x}, {{"detect_positive", int64_t{0}}}), {0, 0, 0, 1});
  ExpectValues(RunOp(OpKind::kIsNaN, {F16({kNaN, 0})}), {1, 0});
}

// ---- Cast ---------------------------------------------------------------------------------------------

TEST(ElementwiseTest, CastFloatToIntTruncatesAndSaturates) {
  const auto to = [](DType t) { return std::vector<std::pair<std::string, AttrValue>>{{"to", int64_t(t)}}; };
  auto i32 = RunOp(OpKind::kCast, {Vec<float>({1e10f, -1e10f, kNaN, 2.7f, -2.7f, kInf})}, to(DType::kInt32));
  ASSERT_TRUE(i32.ok());
  EXPECT_EQ(i32->dtype(), DType::kInt32);
  ExpectValues(i32, {INT32_MAX, INT32_MIN, 0, 2, -2, INT32_MAX});
  ExpectValues(RunOp(OpKind::kCast, {Vec<float>({-5, 300, 3.9f, -0.5f})}, to(DType::kUInt8)), {0, 255, 3, 0});
  auto i64 = RunOp(OpKind::kCast, {Vec<double>({1e300, -1e300})}, to(DType::kInt64));
  ASSERT_TRUE(i64.ok());
  EXPECT_EQ(i64->data<int64_t>()[0], INT64_MAX);
  EXPECT_EQ(i64->data<int64_t>()[1], INT64_MIN);
  auto u64 = RunOp(OpKind::kCast, {Vec<double>({1e300, -3})}, to(DType::kUInt64));
  ASSERT_TRUE(u64.ok());
  EXPECT_EQ(u64->data<uint64_t>()[0], UINT64_MAX);
  EXPECT_EQ(u64->data<uint64_t>()[1], 0u);
}

TEST(ElementwiseTest, CastBetweenOtherTypes) {
  const auto to = [](DType t) { return std::vector<std::pair<std::string, AttrValue>>{{"to", int64_t(t)}}; };
  ExpectValues(RunOp(OpKind::kCast, {Vec<int32_t>({300, -1})}, to(DType::kInt8)), {44, -1});  // wraps
  ExpectValues(RunOp(OpKind::kCast, {Vec<float>({0, -0.f, 0.5f, kNaN})}, to(DType::kBool)), {0, 0, 1, 1});
  ExpectValues(RunOp(OpKind::kCast, {Vec<bool>({true, false})}, to(DType::kFloat32)), {1, 0});
  ExpectValues(RunOp(OpKind::kCast, {Vec<float>({0.1f, 65504, 1e6f})}, to(DType::kFloat16)),
               {0.0999755859375, 65504, kInf});
  ExpectValues(RunOp(OpKind::kCast, {F16({1.5f, -2})}, to(DType::kBFloat16)), {1.5, -2});
  // To bfloat16 truncates like ONNX's reference: 0x3EF5EEB0 (0.47892547) -> 0x3EF5 (0.478515625).
  auto bf = RunOp(OpKind::kCast, {Vec<float>({0.47892547f, kNaN})}, to(DType::kBFloat16));
  ASSERT_TRUE(bf.ok());
  EXPECT_EQ(bf->data<BFloat16>()[0].bits, 0x3EF5);
  EXPECT_TRUE(std::isnan(static_cast<float>(bf->data<BFloat16>()[1])));
  ExpectValues(RunOp(OpKind::kCast, {Vec<int64_t>({7})}, to(DType::kFloat64)), {7});
  ExpectValues(RunOp(OpKind::kCast, {Vec<uint8_t>({200})}, to(DType::kInt64)), {200});
  // saturate is accepted (it only matters for float8).
  ExpectValues(RunOp(OpKind::kCast, {Vec<float>({2})}, {{"to", int64_t{6}}, {"saturate", int64_t{0}}}), {2});
  auto str = RunOp(OpKind::kCast, {Vec<float>({2})}, {{"to", int64_t{8}}});
  ASSERT_FALSE(str.ok());
  EXPECT_EQ(str.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(str.status().message().find("string"), std::string::npos);
  EXPECT_EQ(RunOp(OpKind::kCast, {Vec<float>({2})}, {{"to", int64_t{17}}}).status().code(),
            StatusCode::kUnsupported);
  EXPECT_FALSE(RunOp(OpKind::kCast, {Vec<float>({2})}, {{"to", int64_t{99}}}).ok());
  EXPECT_FALSE(RunOp(OpKind::kCast, {Vec<float>({2})}).ok());  // 'to' is required

  auto like = RunOp(OpKind::kCastLike, {Vec<float>({1.9f, -1.9f}), Vec<int16_t>({0})});
  ASSERT_TRUE(like.ok());
  EXPECT_EQ(like->dtype(), DType::kInt16);
  ExpectValues(like, {1, -1});
}

// ---- every numeric dtype ------------------------------------------------------------------------------

TEST(ElementwiseTest, AddAndWhereCoverEveryStoredDtype) {
  for (DType t :
       {DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kBFloat16, DType::kInt8, DType::kUInt8,
        DType::kInt16, DType::kUInt16, DType::kInt32, DType::kUInt32, DType::kInt64, DType::kUInt64}) {
    const Tensor a = Vec<float>({1, 2}).CastTo(t);
    const Tensor b = Vec<float>({3, 4}).CastTo(t);
    auto y = RunOp(OpKind::kAdd, {a, b});
    ASSERT_TRUE(y.ok()) << DTypeName(t) << ": " << y.status().ToString();
    EXPECT_EQ(y->dtype(), t);
    ExpectValues(y, {4, 6});
    ExpectValues(RunOp(OpKind::kMax, {a, b}), {3, 4});
    ExpectValues(RunOp(OpKind::kLess, {a, b}), {1, 1});
    ExpectValues(RunOp(OpKind::kWhere, {Vec<bool>({true, false}), a, b}), {1, 4});
    ExpectValues(RunOp(OpKind::kClip, {a, Tensor(), Tensor::Scalar<float>(1.5f).CastTo(t)}),
                 {1, IsFloat(t) ? 1.5 : 1});
  }
  EXPECT_EQ(RunOp(OpKind::kAdd, {Vec<bool>({true}), Vec<bool>({true})}).status().code(),
            StatusCode::kUnsupported);
}

// ---- activations ---------------------------------------------------------------------------------------

TEST(ActivationTest, ReluFamily) {
  ExpectValues(RunOp(OpKind::kRelu, {Vec<float>({-1, 0, 2, kNaN})}), {0, 0, 2, kNaN});
  ExpectValues(RunOp(OpKind::kRelu, {Vec<int32_t>({-3, 4})}), {0, 4});
  ExpectValues(RunOp(OpKind::kLeakyRelu, {Vec<float>({-1, 2})}), {-0.01, 2});
  ExpectValues(RunOp(OpKind::kLeakyRelu, {Vec<float>({-1, 2})}, {{"alpha", 0.1f}}), {-0.1, 2}, 1e-6);
  ExpectValues(RunOp(OpKind::kThresholdedRelu, {Vec<float>({0.5f, 1, 1.5f})}), {0, 0, 1.5});
  ExpectValues(RunOp(OpKind::kThresholdedRelu, {Vec<float>({0.5f, 1, 1.5f})}, {{"alpha", 0.2f}}),
               {0.5, 1, 1.5});
  ExpectValues(RunOp(OpKind::kElu, {Vec<float>({-1, 2})}), {-0.6321205588, 2});
  ExpectValues(RunOp(OpKind::kElu, {Vec<float>({-1})}, {{"alpha", 2.f}}), {-1.2642411177});
  // selu(-1) = 1.0507 * 1.67326 * (e^-1 - 1)
  ExpectValues(RunOp(OpKind::kSelu, {Vec<float>({-1, 2})}), {-1.1113307378, 2.1014020443});
  ExpectValues(RunOp(OpKind::kCelu, {Vec<float>({-1, 2})}, {{"alpha", 2.f}}), {-0.7869386805, 2});
  EXPECT_FALSE(RunOp(OpKind::kRelu, {Vec<float>({1})}, {{"alpha", 0.5f}}).ok());  // unknown attribute
  EXPECT_FALSE(RunOp(OpKind::kElu, {Vec<int32_t>({1})}).ok());
}

TEST(ActivationTest, SmoothActivations) {
  ExpectValues(RunOp(OpKind::kSigmoid, {Vec<float>({0, 2, -100, 100})}), {0.5, 0.8807970780, 3.720076e-44, 1},
               1e-5);
  ExpectValues(RunOp(OpKind::kTanh, {Vec<double>({0.5})}), {0.46211715726000974});
  ExpectValues(RunOp(OpKind::kHardSigmoid, {Vec<float>({-5, 0, 1, 5})}), {0, 0.5, 0.7, 1});
  ExpectValues(RunOp(OpKind::kHardSigmoid, {Vec<float>({1})}, {{"alpha", 0.5f}, {"beta", 0.25f}}), {0.75});
  ExpectValues(RunOp(OpKind::kHardSwish, {Vec<float>({-4, -1, 0, 1, 4})}), {0, -1.0 / 3, 0, 2.0 / 3, 4});
  ExpectValues(RunOp(OpKind::kSoftplus, {Vec<float>({0, 100, -100})}), {0.6931471806, 100, 3.720076e-44},
               1e-5);
  ExpectValues(RunOp(OpKind::kSoftsign, {Vec<float>({1, -3})}), {0.5, -0.75});
  ExpectValues(RunOp(OpKind::kMish, {Vec<float>({1, -1})}), {0.8650983882673103, -0.3034014613});
  ExpectValues(RunOp(OpKind::kGelu, {Vec<float>({1, -1})}), {0.8413447460685429, -0.15865525393145707});
  ExpectValues(RunOp(OpKind::kGelu, {Vec<float>({1})}, {{"approximate", std::string("tanh")}}),
               {0.8411919906082768});
  EXPECT_FALSE(RunOp(OpKind::kGelu, {Vec<float>({1})}, {{"approximate", std::string("fast")}}).ok());
  ExpectValues(RunOp(OpKind::kSigmoid, {BF16({0})}), {0.5});
  ExpectValues(RunOp(OpKind::kTanh, {F16({1})}), {0.76171875}, 1e-4);  // f16(0.76159) = 0.76171875
}

TEST(ActivationTest, PReluSlopeBroadcastsToX) {
  // slope [3] against X [2,3]
  ExpectValues(
      RunOp(OpKind::kPRelu, {Make<float>({-1, -2, 3, -4, 5, -6}, {2, 3}), Vec<float>({0.1f, 0.2f, 0.3f})}),
      {-0.1, -0.4, 3, -0.4, 5, -1.8}, 1e-6);
  ExpectValues(RunOp(OpKind::kPRelu, {Vec<int32_t>({-3, 3}), Vec<int32_t>({2})}), {-6, 3});
  // slope may not grow X.
  EXPECT_FALSE(RunOp(OpKind::kPRelu, {Vec<float>({-1}), Make<float>({1, 2}, {2, 1})}).ok());
}

TEST(ActivationTest, ClipAttributesBeforeOpset11InputsAfter) {
  ExpectValues(RunOp(OpKind::kClip, {Vec<float>({-2, 0.5f, 3})}, {{"min", -1.f}, {"max", 1.f}}, 6),
               {-1, 0.5, 1});
  ExpectValues(RunOp(OpKind::kClip, {Vec<float>({-2, 0.5f, 3})}, {{"max", 1.f}}, 6), {-2, 0.5, 1});
  ExpectValues(RunOp(OpKind::kClip,
                     {Vec<float>({-2, 0.5f, 3}), Tensor::Scalar<float>(0), Tensor::Scalar<float>(1)}, {}, 13),
               {0, 0.5, 1});
  ExpectValues(RunOp(OpKind::kClip, {Vec<float>({-2, 0.5f, 3}), Tensor::Scalar<float>(0)}, {}, 13),
               {0, 0.5, 3});
  ExpectValues(RunOp(OpKind::kClip, {Vec<float>({-2, 3})}, {}, 13), {-2, 3});
  // min > max: every value becomes max.
  ExpectValues(
      RunOp(OpKind::kClip, {Vec<float>({-2, 3}), Tensor::Scalar<float>(2), Tensor::Scalar<float>(1)}, {}, 13),
      {1, 1});
  ExpectValues(RunOp(OpKind::kClip, {Vec<int64_t>({-9, 4, 9}), Tensor(), Tensor::Scalar<int64_t>(5)}, {}, 13),
               {-9, 4, 5});
  EXPECT_FALSE(RunOp(OpKind::kClip, {Vec<float>({1})}, {{"min", 0.f}}, 13).ok());
  EXPECT_FALSE(RunOp(OpKind::kClip, {Vec<float>({1}), Vec<float>({0, 1})}, {}, 13).ok());  // min not scalar
  EXPECT_FALSE(RunOp(OpKind::kClip, {Vec<float>({1}), Tensor::Scalar<double>(0)}, {}, 13).ok());
}

// ---- shape inference ------------------------------------------------------------------------------------

TEST(ElementwiseInferTest, BroadcastKeepsSymbolicDims) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 1, 4});
  Value* w = g.AddValue("w", DType::kFloat32, Shape{3, 1});
  Value* s = g.AddValue("s", DType::kFloat32, Shape{Dim::Symbol("batch"), Dim::Symbol("seq"), 1});
  Value* c = g.AddValue("c", DType::kBool, Shape{Dim::Symbol("seq"), 1});
  g.AddInput(x);
  g.AddInput(w);
  g.AddInput(s);
  g.AddInput(c);
  Value* sum = g.AddValue("sum", DType::kUndefined);
  Value* cmp = g.AddValue("cmp", DType::kUndefined);
  Value* sel = g.AddValue("sel", DType::kUndefined);
  Value* act = g.AddValue("act", DType::kUndefined);
  g.AddNode(OpKind::kAdd, "add", {x, w}, {sum}, 17);
  g.AddNode(OpKind::kLess, "less", {sum, s}, {cmp}, 17);
  g.AddNode(OpKind::kWhere, "where", {c, s, x}, {sel}, 17);
  g.AddNode(OpKind::kSigmoid, "sig", {sel}, {act}, 17);
  g.AddOutput(cmp);
  g.AddOutput(act);
  ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();
  EXPECT_EQ(sum->dtype(), DType::kFloat32);
  EXPECT_EQ(sum->shape()->ToString(), "[batch,3,4]");
  EXPECT_EQ(cmp->dtype(), DType::kBool);
  // seq against the static 3 becomes 3.
  EXPECT_EQ(cmp->shape()->ToString(), "[batch,3,4]");
  EXPECT_EQ(sel->shape()->ToString(), "[batch,seq,4]");
  EXPECT_EQ(act->shape()->ToString(), "[batch,seq,4]");
}

TEST(ElementwiseInferTest, UnknownRankAndErrors) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32);  // rank unknown
  Value* y = g.AddValue("y", DType::kFloat32, Shape{2, 3});
  Value* z = g.AddValue("z", DType::kInt32, Shape{3});
  g.AddInput(x);
  g.AddInput(y);
  g.AddInput(z);
  Value* a = g.AddValue("a", DType::kUndefined);
  g.AddNode(OpKind::kMul, "mul", {x, y}, {a}, 14);
  Value* c = g.AddValue("c", DType::kUndefined);
  g.AddNode(OpKind::kCast, "cast", {y}, {c}, 14)->attrs().Set("to", int64_t{7});
  g.AddOutput(a);
  g.AddOutput(c);
  ASSERT_TRUE(InferShapes(g).ok());
  EXPECT_EQ(a->dtype(), DType::kFloat32);
  EXPECT_FALSE(a->shape().has_value());
  EXPECT_EQ(c->dtype(), DType::kInt64);
  EXPECT_EQ(c->shape()->ToString(), "[2,3]");

  Value* bad = g.AddValue("bad", DType::kUndefined);
  g.AddNode(OpKind::kAdd, "add", {y, z}, {bad}, 14);  // f32 + i32
  g.AddOutput(bad);
  Status st = InferShapes(g);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("add"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("i32"), std::string::npos) << st.message();
}

TEST(ElementwiseInferTest, StaticMismatchIsAnError) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("n"), 4});
  Value* y = g.AddValue("y", DType::kFloat32, Shape{5});
  g.AddInput(x);
  g.AddInput(y);
  Value* a = g.AddValue("a", DType::kUndefined);
  g.AddNode(OpKind::kSub, "sub", {x, y}, {a}, 14);
  g.AddOutput(a);
  EXPECT_FALSE(InferShapes(g).ok());
}

}  // namespace
}  // namespace kiln
