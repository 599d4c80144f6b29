#include "passes/pipeline.h"

#include "passes_test_util.h"

namespace kiln::testing {
namespace {

// conv -> bn -> relu, twice with a residual: the whole pipeline, structure and numbers.
void BuildResidualBlock(Builder& b) {
  Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 4, 6, 6});
  Attributes pad = Attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  auto bn = [&](Value* v, const std::string& n) {
    return b.Op(OpKind::kBatchNormalization, n,
                {v, b.Random(n + "_g", {4}, 0.5, 1.5), b.Random(n + "_b", {4}), b.Random(n + "_m", {4}),
                 b.Random(n + "_v", {4}, 0.5, 2)});
  };
  Value* c1 = b.Op(OpKind::kConv, "conv1", {x, b.Random("w1", {4, 4, 3, 3})}, pad);
  Value* r1 = b.Op(OpKind::kRelu, "relu1", {bn(c1, "bn1")});
  Value* c2 = b.Op(OpKind::kConv, "conv2", {r1, b.Random("w2", {4, 4, 3, 3})}, pad);
  Value* a = b.Op(OpKind::kAdd, "add", {bn(c2, "bn2"), b.Op(OpKind::kIdentity, "skip", {x})});
  b.Output(b.Op(OpKind::kRelu, "relu2", {a}));
}

TEST(PipelineTest, ResidualBlockBecomesTwoFusedConvs) {
  Graph ref, g;
  Builder b1(ref), b2(g);
  BuildResidualBlock(b1);
  BuildResidualBlock(b2);
  ASSERT_TRUE(InferShapes(ref).ok());
  ASSERT_TRUE(InferShapes(g).ok());
  PipelineOptions opts;
  opts.verify = true;
  auto report = RunPipeline(g, opts);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->layers_before, 8u);
  EXPECT_EQ(report->layers_after, 2u);
  ASSERT_EQ(report->fused.size(), 2u);
  EXPECT_EQ(report->fused[0].sources, (std::vector<std::string>{"conv1", "bn1", "relu1"}));
  EXPECT_EQ(report->fused[1].sources, (std::vector<std::string>{"conv2", "bn2", "add", "relu2"}));
  TensorMap in = {{"x", RandomInput({2, 4, 6, 6})}};
  auto want = RunReference(ref, in);
  auto got = RunReference(g, in);
  ASSERT_TRUE(want.ok() && got.ok());
  const Tensor& w = want->at("relu2_out");
  const Tensor& o = got->at("relu2_out");
  for (int64_t i = 0; i < w.numel(); ++i) ASSERT_NEAR(w.GetAsDouble(i), o.GetAsDouble(i), 1e-4);
}

TEST(PipelineTest, DisabledPassesAndUnknownNames) {
  Graph g;
  Builder b(g);
  BuildResidualBlock(b);
  ASSERT_TRUE(InferShapes(g).ok());
  PipelineOptions opts;
  opts.disabled = {"fuse_conv", "fold_into_conv"};
  auto report = RunPipeline(g, opts);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(CountOp(g, OpKind::kBatchNormalization), 2);
  EXPECT_EQ(report->layers_after, 7u);  // only the Identity went
  opts.disabled = {"no_such_pass"};
  auto bad = RunPipeline(g, opts);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no_such_pass"), std::string::npos);
}

TEST(PipelineTest, Deterministic) {
  std::string first;
  for (int i = 0; i < 2; ++i) {
    Graph g;
    Builder b(g);
    BuildResidualBlock(b);
    ASSERT_TRUE(InferShapes(g).ok());
    ASSERT_TRUE(RunPipeline(g).ok());
    if (i == 0) first = PrintGraph(g);
    else EXPECT_EQ(first, PrintGraph(g));
  }
}

// Hand-computed values for the fused ops' reference kernels.
TEST(FusedOpsTest, FusedConvAndFusedGemmAndSwishByHand) {
  Graph g;
  Builder b(g);
  Value* x = b.Input("x", Shape{1, 1, 1, 2});
  Value* z = b.Input("z", Shape{1, 1, 1, 2});
  Tensor w(DType::kFloat32, {1, 1, 1, 1});
  w.data<float>()[0] = 2.f;
  Value* y = b.Op(OpKind::kFusedConv, "fc", {x, b.Const("w", w), b.Const("b", Tensor::FromVector<float>({1.f})), z},
                  Attrs({{"activation", std::string("Clip")}, {"activation_alpha", 0.f}, {"activation_beta", 6.f}}));
  b.Output(y);
  Value* a = b.Input("a", Shape{1, 2});
  Tensor bm(DType::kFloat32, {1, 2});  // transB: B is [N=1, K=2]
  bm.data<float>()[0] = 1.f;
  bm.data<float>()[1] = -1.f;
  b.Output(b.Op(OpKind::kFusedGemm, "fg", {a, b.Const("bm", bm), b.Const("c", Tensor::FromVector<float>({0.5f}))},
                Attrs({{"transB", int64_t{1}}, {"alpha", 2.f}, {"activation", std::string("LeakyRelu")},
                       {"activation_alpha", 0.1f}})));
  b.Output(b.Op(OpKind::kSwish, "sw", {a}));
  ASSERT_TRUE(InferShapes(g).ok());
  auto out = RunReference(g, {{"x", Tensor::FromVector<float>({1.f, -3.f}).Reshaped({1, 1, 1, 2})},
                              {"z", Tensor::FromVector<float>({4.f, 1.f}).Reshaped({1, 1, 1, 2})},
                              {"a", Tensor::FromVector<float>({1.f, 3.f}).Reshaped({1, 2})}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  // clip(2*1 + 1 + 4, 0, 6) = 6; clip(2*-3 + 1 + 1, 0, 6) = 0
  EXPECT_FLOAT_EQ(out->at("fc_out").data<float>()[0], 6.f);
  EXPECT_FLOAT_EQ(out->at("fc_out").data<float>()[1], 0.f);
  // leaky(2 * (1 - 3) + 0.5) = leaky(-3.5) = -0.35
  EXPECT_NEAR(out->at("fg_out").data<float>()[0], -0.35f, 1e-6);
  // 3 * sigmoid(3) = 2.857722
  EXPECT_NEAR(out->at("sw_out").data<float>()[1], 2.8577223f, 1e-6);
}

}  // namespace
}  // namespace kiln::testing
