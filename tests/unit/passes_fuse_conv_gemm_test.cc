#include "passes_test_util.h"

namespace kiln::testing {
namespace {

TEST(FuseConvTest, ResidualAddAndRelu) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 4, 5, 5});
        Value* c = b.Op(OpKind::kConv, "conv", {x, b.Random("w", {4, 4, 3, 3}), b.Random("b", {4})},
                        Attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
        Value* a = b.Op(OpKind::kAdd, "add", {x, c});
        b.Output(b.Op(OpKind::kRelu, "relu", {a}));
      },
      FuseConv, {{"x", RandomInput({2, 4, 5, 5})}}, g);
  ASSERT_EQ(g.num_nodes(), 1u);
  const Node* f = g.nodes()[0];
  EXPECT_EQ(f->op(), OpKind::kFusedConv);
  EXPECT_EQ(f->attrs().GetString("activation"), "Relu");
  EXPECT_EQ(f->input(3)->name(), "x");
  EXPECT_EQ(report.counts["Conv + residual Add fused"], 1);
}

TEST(FuseConvTest, EveryActivation) {
  const std::vector<std::pair<OpKind, Attributes>> acts = {
      {OpKind::kLeakyRelu, Attrs({{"alpha", 0.1f}})},
      {OpKind::kSigmoid, {}},
      {OpKind::kTanh, {}},
      {OpKind::kHardSwish, {}},
      {OpKind::kHardSigmoid, Attrs({{"alpha", 0.3f}, {"beta", 0.4f}})},
      {OpKind::kGelu, {}},
      {OpKind::kSwish, {}},
  };
  for (const auto& act : acts) {
    const OpKind op = act.first;  // clang-14 cannot capture structured bindings in lambdas
    const Attributes& attrs = act.second;
    Graph g;
    CheckPass(
        [&](Builder& b) {
          Value* x = b.Input("x", Shape{1, 2, 4, 4});
          Value* c = b.Op(OpKind::kConv, "conv", {x, b.Random("w", {3, 2, 1, 1})});
          b.Output(b.Op(op, "act", {c}, attrs));
        },
        FuseConv, {{"x", RandomInput({1, 2, 4, 4})}}, g, 1e-4, 20);
    ASSERT_EQ(g.num_nodes(), 1u) << OpKindName(op);
  }
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{1, 2, 4, 4});
        Value* c = b.Op(OpKind::kConv, "conv", {x, b.Random("w", {3, 2, 1, 1}, -4, 4)});
        b.Output(b.Op(OpKind::kClip, "relu6", {c, b.Scalar("lo", 0.f), b.Scalar("hi", 6.f)}));
      },
      FuseConv, {{"x", RandomInput({1, 2, 4, 4})}}, g);
  ASSERT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.nodes()[0]->attrs().GetFloat("activation_beta"), 6.f);
}

TEST(FuseConvTest, ConvOutputReadTwiceIsNotFused) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{1, 2, 3, 3});
        Value* c = b.Op(OpKind::kConv, "conv", {x, b.Random("w", {2, 2, 1, 1})});
        b.Output(b.Op(OpKind::kAdd, "add", {c, b.Op(OpKind::kExp, "exp", {c})}));
      },
      FuseConv, {{"x", RandomInput({1, 2, 3, 3})}}, g);
  EXPECT_EQ(CountOp(g, OpKind::kFusedConv), 0);
}

TEST(FuseGemmTest, MatMulBiasResidualAndGelu) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 3, 8});
        Value* h = b.Op(OpKind::kMatMul, "fc1", {x, b.Random("w1", {8, 16})});
        Value* hb = b.Op(OpKind::kAdd, "fc1_bias", {h, b.Random("b1", {16})});
        Value* act = b.Op(OpKind::kGelu, "gelu", {hb});
        Value* o = b.Op(OpKind::kMatMul, "fc2", {act, b.Random("w2", {16, 8})});
        Value* ob = b.Op(OpKind::kAdd, "fc2_bias", {b.Random("b2", {8}), o});
        b.Output(b.Op(OpKind::kAdd, "residual", {x, ob}));
      },
      FuseGemm, {{"x", RandomInput({2, 3, 8})}}, g, 1e-4, 20);
  ASSERT_EQ(g.num_nodes(), 2u);
  EXPECT_EQ(CountOp(g, OpKind::kFusedGemm), 2);
  EXPECT_EQ(report.counts["MatMul + bias Add fused"], 2);
  EXPECT_EQ(report.counts["kiln.FusedGemm + residual Add fused"], 1);
}

TEST(FuseGemmTest, GemmWithTransposeAndRelu) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{4, 6});
        Value* y = b.Op(OpKind::kGemm, "gemm", {x, b.Random("w", {5, 6}), b.Random("c", {5})},
                        Attrs({{"transB", int64_t{1}}, {"alpha", 0.5f}, {"beta", 2.f}}));
        b.Output(b.Op(OpKind::kRelu, "relu", {y}));
      },
      FuseGemm, {{"x", RandomInput({4, 6})}}, g);
  ASSERT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.nodes()[0]->op(), OpKind::kFusedGemm);
}

}  // namespace
}  // namespace kiln::testing
