// Neural-network ops (src/ops/kernels/nn_*.cc): shape inference and reference kernels. Expected numbers
// come from hand computation or from small independent NumPy loops (naive conv / pool definitions).
#include <gtest/gtest.h>

#include <limits>

#include <cmath>
#include <functional>

#include "ir/graph.h"
#include "ops/infer.h"
#include "ops/registry.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

Tensor F32(std::vector<int64_t> sizes, std::vector<float> values) {
  Tensor t(DType::kFloat32, std::move(sizes));
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  for (size_t i = 0; i < values.size() && i < static_cast<size_t>(t.numel()); ++i)
    t.data<float>()[i] = values[i];
  return t;
}

Tensor Iota(std::vector<int64_t> sizes, float start = 0.f) {
  Tensor t(DType::kFloat32, std::move(sizes));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + static_cast<float>(i);
  return t;
}

using AttrSetter = std::function<void(Attributes&)>;

// Builds a one-node graph (inputs as graph inputs; an empty Tensor is an omitted input), validates it,
// infers shapes, runs the reference kernel and checks the inferred shapes against the results.
Expected<std::vector<Tensor>> RunOp(OpKind op, int opset, const std::vector<Tensor>& inputs,
                                    const AttrSetter& set_attrs = nullptr, size_t num_outputs = 1) {
  Graph g;
  std::vector<Value*> ins;
  TensorMap feed;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].empty()) {
      ins.push_back(nullptr);
      continue;
    }
    const std::string name = "in" + std::to_string(i);
    Value* v = g.AddValue(name, inputs[i].dtype(), Shape::FromSizes(inputs[i].sizes()));
    g.AddInput(v);
    ins.push_back(v);
    feed[name] = inputs[i];
  }
  std::vector<Value*> outs;
  for (size_t i = 0; i < num_outputs; ++i)
    outs.push_back(g.AddValue("out" + std::to_string(i), DType::kUndefined));
  Node* n = g.AddNode(op, "node", ins, outs, opset);
  if (set_attrs) set_attrs(n->attrs());
  for (Value* o : outs) g.AddOutput(o);
  KILN_RETURN_IF_ERROR(ValidateGraphOps(g));
  KILN_RETURN_IF_ERROR(InferShapes(g));
  KILN_ASSIGN_OR_RETURN(TensorMap result, RunReference(g, feed));
  std::vector<Tensor> ys;
  for (Value* o : outs) {
    const Tensor& t = result.at(o->name());
    EXPECT_EQ(o->dtype(), t.dtype()) << o->name();
    if (o->shape()) {
      EXPECT_EQ(*o->shape(), Shape::FromSizes(t.sizes())) << o->name();
    }
    ys.push_back(t);
  }
  return ys;
}

void ExpectTensor(const Tensor& t, const std::vector<int64_t>& sizes, const std::vector<double>& want,
                  double tol = 1e-4) {
  ASSERT_EQ(t.sizes(), sizes);
  ASSERT_EQ(static_cast<size_t>(t.numel()), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(t.GetAsDouble(static_cast<int64_t>(i)), want[i], tol * std::max(1.0, std::abs(want[i])))
        << "element " << i;
  }
}

// Runs a single-output op and returns its output, failing the test on error.
Tensor Run1(OpKind op, int opset, const std::vector<Tensor>& inputs, const AttrSetter& set_attrs = nullptr) {
  auto r = RunOp(op, opset, inputs, set_attrs);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? (*r)[0] : Tensor();
}

// ---- Conv --------------------------------------------------------------------------------------------

TEST(NnConvTest, PadsAndStrides) {
  Tensor y = Run1(OpKind::kConv, 13, {Iota({1, 1, 5, 5}), F32({1, 1, 3, 3}, std::vector<float>(9, 1.f))},
                  [](Attributes& a) {
                    a.Set("pads", std::vector<int64_t>{1, 1, 1, 1});
                    a.Set("strides", std::vector<int64_t>{2, 2});
                  });
  ExpectTensor(y, {1, 1, 3, 3}, {12, 27, 24, 63, 108, 81, 72, 117, 84});
}

TEST(NnConvTest, DilationsAsymmetricPadsAndBias) {
  Tensor w = Iota({1, 1, 3, 3});
  for (int i = 0; i < 9; ++i) w.data<float>()[i] /= 10.f;
  Tensor y = Run1(OpKind::kConv, 11, {Iota({1, 1, 5, 5}), w, F32({1}, {0.5f})}, [](Attributes& a) {
    a.Set("dilations", std::vector<int64_t>{2, 2});
    a.Set("pads", std::vector<int64_t>{0, 1, 2, 1});
  });
  ExpectTensor(y, {1, 1, 3, 3}, {45.2, 62.9, 38.0, 18.1, 23.8, 13.3, 24.1, 31.3, 17.3});
}

TEST(NnConvTest, DepthwiseAndGroups) {
  Tensor dw = Run1(OpKind::kConv, 13, {Iota({1, 2, 3, 3}), F32({2, 1, 2, 2}, {1, 2, 3, 4, -1, 0.5, 2, -2})},
                   [](Attributes& a) { a.Set("group", int64_t{2}); });
  ExpectTensor(dw, {1, 2, 2, 2}, {27, 37, 57, 67, -6, -6.5, -7.5, -8});

  Tensor x = Iota({1, 4, 3, 3});
  for (int i = 0; i < 36; ++i) x.data<float>()[i] = static_cast<float>(i % 7);
  Tensor g2 = Run1(OpKind::kConv, 13, {x, Iota({2, 2, 2, 2}, -5.f)}, [](Attributes& a) {
    a.Set("group", int64_t{2});
    a.Set("strides", std::vector<int64_t>{1, 2});
  });
  ExpectTensor(g2, {1, 2, 2, 1}, {-6, -49, 128, 186});
}

TEST(NnConvTest, SameUpperAndLowerPadDifferentSides) {
  const Tensor w = F32({1, 1, 3, 3}, std::vector<float>(9, 1.f));
  auto with = [](const char* mode) {
    return [mode](Attributes& a) {
      a.Set("auto_pad", std::string(mode));
      a.Set("strides", std::vector<int64_t>{2, 2});
    };
  };
  // in 4, kernel 3, stride 2: output 2, one pad row/col, at the end (UPPER) or the start (LOWER).
  ExpectTensor(Run1(OpKind::kConv, 13, {Iota({1, 1, 4, 4}), w}, with("SAME_UPPER")), {1, 1, 2, 2},
               {45, 39, 66, 50});
  ExpectTensor(Run1(OpKind::kConv, 13, {Iota({1, 1, 4, 4}), w}, with("SAME_LOWER")), {1, 1, 2, 2},
               {10, 24, 51, 90});
}

TEST(NnConvTest, OneAndThreeSpatialDims) {
  ExpectTensor(Run1(OpKind::kConv, 13, {F32({1, 1, 5}, {1, 2, 3, 4, 5}), F32({1, 1, 3}, {1, 0, -1})},
                    [](Attributes& a) {
                      a.Set("pads", std::vector<int64_t>{1, 1});
                    }),
               {1, 1, 5}, {-2, -2, -2, -2, 4});
  ExpectTensor(
      Run1(OpKind::kConv, 13, {Iota({1, 1, 3, 3, 3}), F32({1, 1, 2, 2, 2}, std::vector<float>(8, 1.f))}),
      {1, 1, 2, 2, 2}, {52, 60, 76, 84, 124, 132, 148, 156});
}

TEST(NnConvTest, OtherFloatTypes) {
  Tensor x = Iota({1, 1, 5, 5}).CastTo(DType::kFloat16);
  Tensor w = F32({1, 1, 3, 3}, std::vector<float>(9, 1.f)).CastTo(DType::kFloat16);
  Tensor y = Run1(OpKind::kConv, 13, {x, w}, [](Attributes& a) {
    a.Set("pads", std::vector<int64_t>{1, 1, 1, 1});
    a.Set("strides", std::vector<int64_t>{2, 2});
  });
  ASSERT_EQ(y.dtype(), DType::kFloat16);
  ExpectTensor(y, {1, 1, 3, 3}, {12, 27, 24, 63, 108, 81, 72, 117, 84}, 1e-3);
  Tensor yd =
      Run1(OpKind::kConv, 13, {x.CastTo(DType::kFloat64), w.CastTo(DType::kFloat64)}, [](Attributes& a) {
        a.Set("auto_pad", std::string("SAME_UPPER"));
        a.Set("strides", std::vector<int64_t>{2, 2});
      });
  ASSERT_EQ(yd.dtype(), DType::kFloat64);
  ExpectTensor(yd, {1, 1, 3, 3}, {12, 27, 24, 63, 108, 81, 72, 117, 84});
  Tensor yb = Run1(OpKind::kGemm, 13,
                   {F32({2, 2}, {1, 2, 3, 4}).CastTo(DType::kBFloat16),
                    F32({2, 2}, {1, 1, 0, 1}).CastTo(DType::kBFloat16)});
  ASSERT_EQ(yb.dtype(), DType::kBFloat16);
  ExpectTensor(yb, {2, 2}, {1, 3, 3, 7});
}

TEST(NnConvTest, ShapeInferenceKeepsSymbolicBatch) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 3, 224, 224});
  g.AddInput(x);
  Value* w = g.AddConstant("w", Tensor(DType::kFloat32, {16, 3, 3, 3}));
  Value* y = g.AddValue("y", DType::kUndefined);
  Node* n = g.AddNode(OpKind::kConv, "conv", {x, w}, {y}, 13);
  n->attrs().Set("strides", std::vector<int64_t>{2, 2});
  n->attrs().Set("pads", std::vector<int64_t>{1, 1, 1, 1});
  Value* p = g.AddValue("p", DType::kUndefined);
  Node* pool = g.AddNode(OpKind::kMaxPool, "pool", {y}, {p}, 13);
  pool->attrs().Set("kernel_shape", std::vector<int64_t>{3, 3});
  pool->attrs().Set("strides", std::vector<int64_t>{2, 2});
  pool->attrs().Set("ceil_mode", int64_t{1});
  g.AddOutput(p);
  ASSERT_TRUE(ValidateGraphOps(g).ok());
  ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();
  EXPECT_EQ(y->shape()->ToString(), "[batch,16,112,112]");
  EXPECT_EQ(p->shape()->ToString(), "[batch,16,56,56]");  // ceil((112 - 3) / 2) + 1 = 56
}

// Spatial sizes near the int64 range (a damaged plan or model) are an error, not an overflow: the plan
// fuzzer reached ComputeWindowDim with a dim of 2^63 - 5 and pads of 256 (UBSan: signed overflow). (Huge
// pads, strides and dilations are already refused by the attribute checks.)
TEST(NnConvTest, HugeSpatialSizesAreErrors) {
  for (const int64_t size : {std::numeric_limits<int64_t>::max() - 4, int64_t{1} << 41}) {
    Graph g;
    Value* x = g.AddValue("x", DType::kFloat32, Shape::FromSizes({1, 1, size, 8}));
    g.AddInput(x);
    Value* w = g.AddConstant("w", Tensor(DType::kFloat32, {1, 1, 3, 3}));
    Value* y = g.AddValue("y", DType::kUndefined);
    g.AddNode(OpKind::kConv, "conv", {x, w}, {y}, 13)->attrs().Set("pads", std::vector<int64_t>{256, 0, 256, 0});
    g.AddOutput(y);
    const Status st = InferShapes(g);
    EXPECT_FALSE(st.ok()) << size;
    EXPECT_NE(st.message().find("out of range"), std::string::npos) << st.message();
  }
}

TEST(NnConvTest, BadAttributesAreErrors) {
  const Tensor x = Iota({1, 4, 5, 5});
  const Tensor w = Iota({2, 4, 3, 3});
  auto status = [&](const Tensor& xx, const Tensor& ww, AttrSetter set) {
    return RunOp(OpKind::kConv, 13, {xx, ww}, set).status();
  };
  EXPECT_FALSE(status(x, w, [](Attributes& a) { a.Set("strides", std::vector<int64_t>{0, 1}); }).ok());
  EXPECT_FALSE(status(x, w, [](Attributes& a) { a.Set("pads", std::vector<int64_t>{1, 1, 1}); }).ok());
  EXPECT_FALSE(status(x, w, [](Attributes& a) { a.Set("dilations", std::vector<int64_t>{1, 1, 1}); }).ok());
  EXPECT_FALSE(status(x, w, [](Attributes& a) { a.Set("auto_pad", std::string("SAME")); }).ok());
  EXPECT_FALSE(status(x, w, [](Attributes& a) { a.Set("group", int64_t{0}); }).ok());
  EXPECT_FALSE(status(x, w, [](Attributes& a) { a.Set("bogus", int64_t{1}); }).ok());
  Status g3 =
      status(Iota({1, 4, 5, 5}), Iota({3, 2, 3, 3}), [](Attributes& a) { a.Set("group", int64_t{3}); });
  EXPECT_FALSE(g3.ok());
  EXPECT_NE(g3.message().find("group"), std::string::npos) << g3.message();
  EXPECT_FALSE(status(Iota({1, 3, 5, 5}), w, nullptr).ok());  // W wants 4 input channels
  EXPECT_FALSE(status(Iota({1, 4, 2, 2}), w, nullptr).ok());  // image smaller than the kernel
  EXPECT_FALSE(status(Iota({1, 4, 5, 5}).CastTo(DType::kInt32), w.CastTo(DType::kInt32), nullptr).ok());
}

// ---- ConvTranspose -----------------------------------------------------------------------------------

TEST(NnConvTransposeTest, StridesWithOutputPadding) {
  Tensor y = Run1(OpKind::kConvTranspose, 11, {F32({1, 1, 2, 2}, {1, 2, 3, 4}), Iota({1, 1, 3, 3}, 1.f)},
                  [](Attributes& a) {
                    a.Set("strides", std::vector<int64_t>{2, 2});
                    a.Set("output_padding", std::vector<int64_t>{1, 1});
                  });
  ExpectTensor(y, {1, 1, 6, 6}, {1,  2,  5,  4,  6,  0, 4,  5,  14, 10, 12, 0, 10, 14, 36, 24, 30, 0,
                                 12, 15, 34, 20, 24, 0, 21, 24, 55, 32, 36, 0, 0,  0,  0,  0,  0,  0});
}

TEST(NnConvTransposeTest, PadsAndGroupsWithBias) {
  ExpectTensor(Run1(OpKind::kConvTranspose, 11, {F32({1, 1, 2, 2}, {1, 2, 3, 4}), Iota({1, 1, 3, 3}, 1.f)},
                    [](Attributes& a) {
                      a.Set("strides", std::vector<int64_t>{2, 2});
                      a.Set("pads", std::vector<int64_t>{1, 1, 1, 1});
                    }),
               {1, 1, 3, 3}, {5, 14, 10, 14, 36, 24, 15, 34, 20});
  ExpectTensor(
      Run1(OpKind::kConvTranspose, 11, {Iota({1, 2, 2, 2}, 1.f), Iota({2, 1, 2, 2}, 1.f), F32({2}, {1, -1})},
           [](Attributes& a) { a.Set("group", int64_t{2}); }),
      {1, 2, 3, 3}, {2, 5, 5, 7, 21, 17, 10, 25, 17, 24, 59, 35, 69, 163, 95, 48, 111, 63});
}

TEST(NnConvTransposeTest, OutputShapeAttribute) {
  // output_shape 6x6 equals the output_padding=1 result above (total padding -1: one extra row/col).
  Tensor y = Run1(OpKind::kConvTranspose, 11, {F32({1, 1, 2, 2}, {1, 2, 3, 4}), Iota({1, 1, 3, 3}, 1.f)},
                  [](Attributes& a) {
                    a.Set("strides", std::vector<int64_t>{2, 2});
                    a.Set("output_shape", std::vector<int64_t>{6, 6});
                  });
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 1, 6, 6}));
  EXPECT_EQ(y.data<float>()[14], 36.f);
  EXPECT_EQ(y.data<float>()[35], 0.f);
}

// ---- pooling -----------------------------------------------------------------------------------------

const std::vector<float> kPoolInput = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9,
                                       7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3};

TEST(NnPoolTest, MaxPoolCeilModeWithIndices) {
  auto r = RunOp(
      OpKind::kMaxPool, 12, {Iota({1, 1, 4, 4}, 1.f)},
      [](Attributes& a) {
        a.Set("kernel_shape", std::vector<int64_t>{3, 3});
        a.Set("strides", std::vector<int64_t>{2, 2});
        a.Set("ceil_mode", int64_t{1});
      },
      2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectTensor((*r)[0], {1, 1, 2, 2}, {11, 12, 15, 16});
  ExpectTensor((*r)[1], {1, 1, 2, 2}, {10, 11, 14, 15});
}

TEST(NnPoolTest, MaxPoolPadsStorageOrderAndDilations) {
  auto pads = [](int64_t order) {
    return [order](Attributes& a) {
      a.Set("kernel_shape", std::vector<int64_t>{2, 2});
      a.Set("strides", std::vector<int64_t>{2, 2});
      a.Set("pads", std::vector<int64_t>{1, 1, 1, 1});
      a.Set("storage_order", order);
    };
  };
  auto r = RunOp(OpKind::kMaxPool, 12, {F32({1, 1, 5, 5}, kPoolInput)}, pads(0), 2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectTensor((*r)[0], {1, 1, 3, 3}, {3, 4, 5, 9, 9, 9, 6, 6, 8});
  ExpectTensor((*r)[1], {1, 1, 3, 3}, {0, 2, 4, 5, 12, 14, 20, 22, 18});
  // Column-major indices: (h, w) -> h + 5 w. Row-major 5 = (1,0) -> 1, 12 = (2,2) -> 12, 22 = (4,2) -> 14.
  auto c = RunOp(OpKind::kMaxPool, 12, {F32({1, 1, 5, 5}, kPoolInput)}, pads(1), 2);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ExpectTensor((*c)[1], {1, 1, 3, 3}, {0, 10, 20, 1, 12, 22, 4, 14, 18});

  ExpectTensor(Run1(OpKind::kMaxPool, 12, {F32({1, 1, 5, 5}, kPoolInput)},
                    [](Attributes& a) {
                      a.Set("kernel_shape", std::vector<int64_t>{2, 2});
                      a.Set("dilations", std::vector<int64_t>{2, 2});
                    }),
               {1, 1, 3, 3}, {9, 8, 9, 9, 8, 6, 9, 8, 9});
}

TEST(NnPoolTest, MaxPoolUint8) {
  Tensor x(DType::kUInt8, {1, 1, 2, 2});
  const uint8_t v[] = {7, 250, 3, 9};
  for (int i = 0; i < 4; ++i) x.data<uint8_t>()[i] = v[i];
  Tensor y = Run1(OpKind::kMaxPool, 12, {x}, [](Attributes& a) {
    a.Set("kernel_shape", std::vector<int64_t>{2, 2});
  });
  ASSERT_EQ(y.dtype(), DType::kUInt8);
  EXPECT_EQ(y.data<uint8_t>()[0], 250);
}

TEST(NnPoolTest, AveragePoolCountIncludePad) {
  auto avg = [](int64_t include) {
    return [include](Attributes& a) {
      a.Set("kernel_shape", std::vector<int64_t>{3, 3});
      a.Set("strides", std::vector<int64_t>{2, 2});
      a.Set("pads", std::vector<int64_t>{1, 1, 1, 1});
      a.Set("count_include_pad", include);
    };
  };
  ExpectTensor(Run1(OpKind::kAveragePool, 11, {F32({1, 1, 5, 5}, kPoolInput)}, avg(0)), {1, 1, 3, 3},
               {3.75, 3.1666667, 3.5, 4.8333335, 5.5555553, 6.0, 3.25, 4.1666665, 4.75});
  ExpectTensor(Run1(OpKind::kAveragePool, 11, {F32({1, 1, 5, 5}, kPoolInput)}, avg(1)), {1, 1, 3, 3},
               {1.6666666, 2.1111112, 1.5555556, 3.2222223, 5.5555553, 4.0, 1.4444444, 2.7777777, 2.1111112});
}

TEST(NnPoolTest, AveragePoolCeilModePartialWindows) {
  // 5 wide, kernel 2, stride 2, ceil: a third window holding one column. Excluding padding it averages
  // what it holds; including it, it divides by the kernel size (as ONNX's reference does).
  auto avg = [](int64_t include) {
    return [include](Attributes& a) {
      a.Set("kernel_shape", std::vector<int64_t>{2, 2});
      a.Set("strides", std::vector<int64_t>{2, 2});
      a.Set("ceil_mode", int64_t{1});
      a.Set("count_include_pad", include);
    };
  };
  ExpectTensor(Run1(OpKind::kAveragePool, 11, {F32({1, 1, 5, 5}, kPoolInput)}, avg(0)), {1, 1, 3, 3},
               {3.75, 4.0, 4.0, 4.5, 6.75, 6.5, 4.0, 5.0, 3.0});
  ExpectTensor(Run1(OpKind::kAveragePool, 11, {F32({1, 1, 5, 5}, kPoolInput)}, avg(1)), {1, 1, 3, 3},
               {3.75, 4.0, 2.0, 4.5, 6.75, 3.25, 2.0, 2.5, 0.75});
}

TEST(NnPoolTest, GlobalPools) {
  ExpectTensor(Run1(OpKind::kGlobalAveragePool, 13, {Iota({1, 2, 2, 2})}), {1, 2, 1, 1}, {1.5, 5.5});
  ExpectTensor(Run1(OpKind::kGlobalMaxPool, 13, {F32({1, 2, 3}, {1, 9, 2, -1, -7, -3})}), {1, 2, 1}, {9, -1});
}

TEST(NnPoolTest, BadAttributesAreErrors) {
  EXPECT_FALSE(RunOp(OpKind::kMaxPool, 12, {Iota({1, 1, 4, 4})}).ok());  // kernel_shape is required
  EXPECT_FALSE(RunOp(OpKind::kMaxPool, 12, {Iota({1, 1, 4, 4})}, [](Attributes& a) {
                 a.Set("kernel_shape", std::vector<int64_t>{2, 0});
               }).ok());
  EXPECT_FALSE(RunOp(OpKind::kMaxPool, 12, {Iota({1, 1, 4, 4})}, [](Attributes& a) {
                 a.Set("kernel_shape", std::vector<int64_t>{2});  // 1 spatial dim for a 2-D image
               }).ok());
  EXPECT_FALSE(RunOp(OpKind::kAveragePool, 11, {Iota({1, 1, 4, 4})}, [](Attributes& a) {
                 a.Set("kernel_shape", std::vector<int64_t>{2, 2});
                 a.Set("dilations", std::vector<int64_t>{2, 2});  // only from opset 19
               }).ok());
}

// ---- normalization -----------------------------------------------------------------------------------

TEST(NnNormTest, BatchNormalizationInference) {
  ExpectTensor(
      Run1(OpKind::kBatchNormalization, 15,
           {Iota({1, 2, 2, 2}), F32({2}, {1, 2}), F32({2}, {0, 1}), F32({2}, {1, 2}), F32({2}, {4, 0.25})}),
      {1, 2, 2, 2}, {-0.49999937, 0.0, 0.49999937, 0.99999875, 8.99984, 12.99976, 16.99968, 20.9996});
  auto train =
      RunOp(OpKind::kBatchNormalization, 15,
            {Iota({1, 2, 2, 2}), F32({2}, {1, 2}), F32({2}, {0, 1}), F32({2}, {1, 2}), F32({2}, {4, 0.25})},
            [](Attributes& a) { a.Set("training_mode", int64_t{1}); });
  ASSERT_FALSE(train.ok());
  EXPECT_EQ(train.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(train.status().message().find("training_mode"), std::string::npos);
}

TEST(NnNormTest, BatchNormalizationPerActivationAtOpset7) {
  // spatial=0: one set of parameters per (channel, position). y = x * scale / sqrt(1 + 1e-5).
  ExpectTensor(Run1(OpKind::kBatchNormalization, 7,
                    {F32({1, 2, 2}, {1, 2, 3, 4}), F32({2, 2}, {1, 2, 3, 4}), F32({2, 2}, {0, 0, 0, 0}),
                     F32({2, 2}, {0, 0, 0, 0}), F32({2, 2}, {1, 1, 1, 1})},
                    [](Attributes& a) { a.Set("spatial", int64_t{0}); }),
               {1, 2, 2}, {0.999995, 3.99998, 8.999955, 15.99992});
  // 'spatial' no longer exists at opset 9.
  EXPECT_FALSE(RunOp(OpKind::kBatchNormalization, 9,
                     {F32({1, 2, 2}, {1, 2, 3, 4}), F32({2}, {1, 1}), F32({2}, {0, 0}), F32({2}, {0, 0}),
                      F32({2}, {1, 1})},
                     [](Attributes& a) { a.Set("spatial", int64_t{1}); })
                   .ok());
}

TEST(NnNormTest, InstanceNormalization) {
  ExpectTensor(Run1(OpKind::kInstanceNormalization, 6,
                    {F32({1, 2, 4}, {1, 2, 3, 5, 0, 0, 4, 4}), F32({2}, {1, 2}), F32({2}, {0, 1})}),
               {1, 2, 4},
               {-1.1832132, -0.5070914, 0.16903046, 1.5212742, -0.9999975, -0.9999975, 2.9999976, 2.9999976});
}

TEST(NnNormTest, LayerNormalizationWithStatistics) {
  auto r = RunOp(
      OpKind::kLayerNormalization, 17,
      {F32({2, 2, 2}, {1, 2, 3, 4, 2, 4, 6, 9}), F32({2, 2}, {1, 2, 0.5, -1}), F32({2}, {0.1, 0.2})},
      [](Attributes& a) { a.Set("axis", int64_t{1}); }, 3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectTensor(
      (*r)[0], {2, 2, 2},
      {-1.2416354, -0.6944236, 0.3236059, -1.1416354, -1.1567565, -0.7667358, 0.24501036, -1.2501036});
  ExpectTensor((*r)[1], {2, 1, 1}, {2.5, 5.25});
  ExpectTensor((*r)[2], {2, 1, 1}, {0.8944236, 0.3866943});
}

// ---- Gemm / MatMul -----------------------------------------------------------------------------------

TEST(NnMatMulTest, GemmTransposesAlphaBetaBroadcastC) {
  Tensor y = Run1(OpKind::kGemm, 13,
                  {F32({3, 2}, {1, 2, 3, 4, 5, 6}), F32({2, 3}, {1, 0, -1, 2, 1, 0}), F32({2}, {10, 20})},
                  [](Attributes& a) {
                    a.Set("transA", int64_t{1});
                    a.Set("transB", int64_t{1});
                    a.Set("alpha", 0.5f);
                    a.Set("beta", 2.f);
                  });
  ExpectTensor(y, {2, 2}, {18, 42.5, 18, 44});
  // No C (opset 11+): plain product. [[1,2],[3,4]] x [[1,1],[0,1]] = [[1,3],[3,7]].
  ExpectTensor(Run1(OpKind::kGemm, 11, {F32({2, 2}, {1, 2, 3, 4}), F32({2, 2}, {1, 1, 0, 1})}), {2, 2},
               {1, 3, 3, 7});
  EXPECT_FALSE(RunOp(OpKind::kGemm, 9, {F32({2, 2}, {1, 2, 3, 4}), F32({2, 2}, {1, 1, 0, 1})}).ok());
}

TEST(NnMatMulTest, BatchedBroadcastAndVectors) {
  // [2,1,2,3] x [3,2] x... : batch broadcast of a [1,2,3] left operand against [2,1,3,2].
  Tensor y = Run1(OpKind::kMatMul, 13, {Iota({1, 2, 3}), Iota({2, 1, 3, 2})});
  ExpectTensor(y, {2, 1, 2, 2}, {10, 13, 28, 40, 28, 31, 100, 112});
  ExpectTensor(Run1(OpKind::kMatMul, 13, {F32({3}, {1, 2, 3}), Iota({3, 2})}), {2}, {16, 22});
  ExpectTensor(Run1(OpKind::kMatMul, 13, {F32({2, 3}, {0, 2, 4, 1, 3, 5}), F32({3}, {1, 2, 3})}), {2},
               {16, 22});
  Tensor ai(DType::kInt64, {1, 2}), bi(DType::kInt64, {2, 1});
  ai.data<int64_t>()[0] = 3;
  ai.data<int64_t>()[1] = -4;
  bi.data<int64_t>()[0] = 5;
  bi.data<int64_t>()[1] = 6;
  Tensor yi = Run1(OpKind::kMatMul, 13, {ai, bi});
  ASSERT_EQ(yi.dtype(), DType::kInt64);
  EXPECT_EQ(yi.data<int64_t>()[0], -9);
  EXPECT_FALSE(RunOp(OpKind::kMatMul, 13, {Iota({2, 3}), Iota({2, 3})}).ok());
}

TEST(NnMatMulTest, LargerThanTheGemmBlocks) {
  // K = 300 and N = 1100 cross the GEMM's cache blocks. a[i][p] = i + 1, b[p][j] = p % 5 + j % 3, so
  // c[i][j] = (i + 1) * (sum_p p % 5 + 300 * (j % 3)) = (i + 1) * (600 + 300 * (j % 3)).
  const int64_t m = 3, k = 300, n = 1100;
  Tensor a(DType::kFloat32, {m, k}), b(DType::kFloat32, {k, n});
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t p = 0; p < k; ++p) a.data<float>()[i * k + p] = static_cast<float>(i + 1);
  }
  for (int64_t p = 0; p < k; ++p) {
    for (int64_t j = 0; j < n; ++j) b.data<float>()[p * n + j] = static_cast<float>(p % 5 + j % 3);
  }
  Tensor y = Run1(OpKind::kMatMul, 13, {a, b});
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{m, n}));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      ASSERT_EQ(y.data<float>()[i * n + j], static_cast<float>((i + 1) * (600 + 300 * (j % 3))))
          << i << "," << j;
    }
  }
}

TEST(NnMatMulTest, SymbolicShapeInference) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), Dim::Symbol("seq"), 64});
  g.AddInput(x);
  Value* w = g.AddConstant("w", Tensor(DType::kFloat32, {64, 32}));
  Value* y = g.AddValue("y", DType::kUndefined);
  g.AddNode(OpKind::kMatMul, "mm", {x, w}, {y}, 13);
  Value* s = g.AddValue("s", DType::kUndefined);
  g.AddNode(OpKind::kSoftmax, "sm", {y}, {s}, 13);
  g.AddOutput(s);
  ASSERT_TRUE(InferShapes(g).ok()) << InferShapes(g).message();
  EXPECT_EQ(y->shape()->ToString(), "[batch,seq,32]");
  EXPECT_EQ(s->shape()->ToString(), "[batch,seq,32]");
}

// ---- Softmax family ----------------------------------------------------------------------------------

const std::vector<float> kSoftmaxInput = {1, 2, 3, 4, 6, 5, -1, 0, 1, 2, 2, 9};

TEST(NnSoftmaxTest, Opset13IsPerAxis) {
  ExpectTensor(Run1(OpKind::kSoftmax, 13, {F32({2, 2, 3}, kSoftmaxInput)}), {2, 2, 3},
               {0.09003057, 0.24472848, 0.66524094, 0.09003057, 0.66524094, 0.24472848, 0.09003057,
                0.24472848, 0.66524094, 0.00091022195, 0.00091022195, 0.99817955});
  ExpectTensor(Run1(OpKind::kLogSoftmax, 13, {F32({2, 2, 3}, kSoftmaxInput)},
                    [](Attributes& a) { a.Set("axis", int64_t{1}); }),
               {2, 2, 3},
               {-3.0485873, -4.01815, -2.126928, -0.04858735, -0.018149927, -0.12692802, -3.0485873,
                -2.126928, -8.000336, -0.04858735, -0.12692802, -0.00033540637});
}

TEST(NnSoftmaxTest, BeforeOpset13CoercesTo2D) {
  // Default axis 1: each batch row of 6 values is one softmax.
  ExpectTensor(Run1(OpKind::kSoftmax, 11, {F32({2, 2, 3}, kSoftmaxInput)}), {2, 2, 3},
               {0.0042697787, 0.011606461, 0.031549633, 0.085760795, 0.6336913, 0.233122, 4.5294484e-05,
                0.00012312317, 0.00033468349, 0.00090976403, 0.00090976403, 0.9976774},
               1e-3);
  // Hardmax at opset 11 picks one 1 per flattened row (the first maximum); at 13, one per last-axis row.
  ExpectTensor(Run1(OpKind::kHardmax, 11, {F32({2, 2, 3}, kSoftmaxInput)}), {2, 2, 3},
               {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1});
  ExpectTensor(Run1(OpKind::kHardmax, 13, {F32({2, 2, 3}, kSoftmaxInput)}), {2, 2, 3},
               {0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1});
  EXPECT_FALSE(RunOp(OpKind::kSoftmax, 13, {F32({2, 2, 3}, kSoftmaxInput)}, [](Attributes& a) {
                 a.Set("axis", int64_t{3});
               }).ok());
}

// ---- Einsum ------------------------------------------------------------------------------------------

Tensor Einsum(const std::string& eq, const std::vector<Tensor>& ins) {
  return Run1(OpKind::kEinsum, 12, ins, [eq](Attributes& a) { a.Set("equation", eq); });
}

TEST(NnEinsumTest, CommonForms) {
  ExpectTensor(Einsum("bij,bjk->bik", {Iota({2, 2, 3}), Iota({2, 3, 2}, -3.f)}), {2, 2, 2},
               {1, 4, -8, 4, 109, 130, 154, 184});
  ExpectTensor(Einsum("ij->", {Iota({3, 3})}), {}, {36});
  ExpectTensor(Einsum("ij->ji", {Iota({3, 3})}), {3, 3}, {0, 3, 6, 1, 4, 7, 2, 5, 8});
  ExpectTensor(Einsum("ii->i", {Iota({3, 3})}), {3}, {0, 4, 8});
  ExpectTensor(Einsum("...ij,...jk->...ik", {Iota({1, 2, 3}), Iota({2, 1, 3, 2})}), {2, 1, 2, 2},
               {10, 13, 28, 40, 28, 31, 100, 112});
  ExpectTensor(Einsum("ba,ac", {Iota({2, 3}), Iota({3, 3})}), {2, 3}, {15, 18, 21, 42, 54, 66});
  // Contraction over the last dims of both, output transposed: out[j][i] = sum_k a[i][k] b[j][k].
  ExpectTensor(Einsum("ik,jk->ji", {F32({2, 2}, {1, 2, 3, 4}), F32({3, 2}, {5, 6, 7, 8, 9, 10})}), {3, 2},
               {17, 39, 23, 53, 29, 67});
  ExpectTensor(Einsum("i,i", {F32({3}, {1, 2, 3}), F32({3}, {4, 5, 6})}), {}, {32});
}

TEST(NnEinsumTest, BadEquations) {
  auto st = [](const std::string& eq, std::vector<Tensor> ins) {
    return RunOp(OpKind::kEinsum, 12, ins, [eq](Attributes& a) { a.Set("equation", eq); }).status();
  };
  EXPECT_FALSE(st("ij,jk->ik", {Iota({2, 3})}).ok());                // two terms, one input
  EXPECT_FALSE(st("ij->k", {Iota({2, 3})}).ok());                    // output label not in the inputs
  EXPECT_FALSE(st("i1->i", {Iota({2, 3})}).ok());                    // bad character
  EXPECT_FALSE(st("ijk->i", {Iota({2, 3})}).ok());                   // rank mismatch
  EXPECT_FALSE(st("ij,jk->ik", {Iota({2, 3}), Iota({2, 3})}).ok());  // j is 3 and 2
}

}  // namespace
}  // namespace kiln
