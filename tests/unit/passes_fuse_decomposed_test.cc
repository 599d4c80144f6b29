#include "passes_test_util.h"

namespace kiln::testing {
namespace {

TEST(FuseDecomposedTest, GeluErfForm) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{2, 8});
        Value* d = b.Op(OpKind::kDiv, "div", {x, b.Scalar("sqrt2", 1.4142135f)});
        Value* e = b.Op(OpKind::kErf, "erf", {d});
        Value* a = b.Op(OpKind::kAdd, "add", {e, b.Scalar("one", 1.f)});
        Value* m = b.Op(OpKind::kMul, "mul", {x, a});
        b.Output(b.Op(OpKind::kMul, "mul_half", {m, b.Scalar("half", 0.5f)}));
      },
      FuseDecomposed, {{"x", RandomInput({2, 8})}}, g, 1e-5);
  ASSERT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.nodes()[0]->op(), OpKind::kGelu);
  ASSERT_EQ(report.groups.size(), 1u);
  EXPECT_EQ(report.groups[0].sources.size(), 5u);
}

TEST(FuseDecomposedTest, GeluTanhForm) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{3, 4});
        Value* p = b.Op(OpKind::kPow, "pow", {x, b.Scalar("three", 3.f)});
        Value* c = b.Op(OpKind::kMul, "cube", {p, b.Scalar("k", 0.044715f)});
        Value* s = b.Op(OpKind::kAdd, "inner", {x, c});
        Value* t = b.Op(OpKind::kTanh, "tanh", {b.Op(OpKind::kMul, "scale", {s, b.Scalar("c", 0.7978845608f)})});
        Value* a = b.Op(OpKind::kAdd, "add", {t, b.Scalar("one", 1.f)});
        Value* h = b.Op(OpKind::kMul, "half_x", {b.Scalar("half", 0.5f), x});
        b.Output(b.Op(OpKind::kMul, "out", {h, a}));
      },
      FuseDecomposed, {{"x", RandomInput({3, 4})}}, g, 1e-5);
  ASSERT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.nodes()[0]->attrs().GetString("approximate"), "tanh");
}

TEST(FuseDecomposedTest, LayerNormalizationAsExportedByOpset13) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 5, 16});
        Attributes ax = Attrs({{"axes", std::vector<int64_t>{-1}}});
        Value* mean = b.Op(OpKind::kReduceMean, "mean", {x}, ax);
        Value* d = b.Op(OpKind::kSub, "sub", {x, mean});
        Value* p = b.Op(OpKind::kPow, "pow", {d, b.Scalar("two", 2.f)});
        Value* v = b.Op(OpKind::kReduceMean, "var", {p}, ax);
        Value* s = b.Op(OpKind::kSqrt, "sqrt", {b.Op(OpKind::kAdd, "add_eps", {v, b.Scalar("eps", 1e-12f)})});
        Value* n = b.Op(OpKind::kDiv, "div", {d, s});
        Value* m = b.Op(OpKind::kMul, "gamma_mul", {n, b.Random("gamma", {16})});
        b.Output(b.Op(OpKind::kAdd, "beta_add", {m, b.Random("beta", {16})}));
      },
      FuseDecomposed, {{"x", RandomInput({2, 5, 16})}}, g, 1e-4, 13);
  ASSERT_EQ(g.num_nodes(), 1u);
  const Node* ln = g.nodes()[0];
  EXPECT_EQ(ln->op(), OpKind::kLayerNormalization);
  EXPECT_EQ(ln->attrs().GetInt("axis"), 2);
  EXPECT_FLOAT_EQ(ln->attrs().GetFloat("epsilon"), 1e-12f);
  EXPECT_EQ(report.groups[0].sources.size(), 9u);
}

TEST(FuseDecomposedTest, SwishAndHardSwish) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{2, 6});
        b.Output(b.Op(OpKind::kMul, "silu", {b.Op(OpKind::kSigmoid, "sig", {x}), x}));
        Value* hs = b.Op(OpKind::kHardSigmoid, "hsig", {x}, Attrs({{"alpha", 1.f / 6}, {"beta", 0.5f}}));
        b.Output(b.Op(OpKind::kMul, "hswish1", {x, hs}));
        Value* c = b.Op(OpKind::kClip, "relu6",
                        {b.Op(OpKind::kAdd, "plus3", {x, b.Scalar("three", 3.f)}), b.Scalar("lo", 0.f),
                         b.Scalar("hi", 6.f)});
        Value* m = b.Op(OpKind::kMul, "times_x", {x, c});
        b.Output(b.Op(OpKind::kDiv, "hswish2", {m, b.Scalar("six", 6.f)}));
      },
      FuseDecomposed, {{"x", RandomInput({2, 6})}}, g, 1e-5);
  EXPECT_EQ(CountOp(g, OpKind::kSwish), 1);
  EXPECT_EQ(CountOp(g, OpKind::kHardSwish), 2);
  EXPECT_EQ(g.num_nodes(), 3u);
}

TEST(FuseDecomposedTest, LeavesOtherConstantsAlone) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{4});
        Value* e = b.Op(OpKind::kErf, "erf", {b.Op(OpKind::kDiv, "div", {x, b.Scalar("c", 2.f)})});  // not sqrt(2)
        Value* a = b.Op(OpKind::kAdd, "add", {e, b.Scalar("one", 1.f)});
        b.Output(b.Op(OpKind::kMul, "mul_half", {b.Op(OpKind::kMul, "mul", {x, a}), b.Scalar("half", 0.5f)}));
      },
      FuseDecomposed, {{"x", RandomInput({4})}}, g);
  EXPECT_EQ(CountOp(g, OpKind::kGelu), 0);
}

}  // namespace
}  // namespace kiln::testing
