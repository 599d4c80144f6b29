#include "passes_test_util.h"

namespace kiln::testing {
namespace {

TEST(ConstantFoldingTest, FoldsConstantSubgraphAndKeepsInputs) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{2, 3});
        Value* c = b.Op(OpKind::kAdd, "c_add", {b.Scalar("one", 1.f), b.Scalar("two", 2.f)});  // 3
        Value* c2 = b.Op(OpKind::kMul, "c_mul", {c, b.Scalar("four", 4.f)});                  // 12
        b.Output(b.Op(OpKind::kAdd, "y", {x, c2}));
      },
      ConstantFolding, {{"x", RandomInput({2, 3})}}, g);
  EXPECT_EQ(g.num_nodes(), 1u);
  const Node* y = g.nodes()[0];
  ASSERT_TRUE(y->input(1)->is_constant());
  EXPECT_EQ(y->input(1)->constant()->GetAsDouble(0), 12.0);  // (1 + 2) * 4
  EXPECT_EQ(report.counts["Add folded"], 1);
}

// Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [12])) with a symbolic batch: the batch stays symbolic,
// the target becomes the constant [0, 12] ("copy dim 0"), and the Shape chain dies.
TEST(ConstantFoldingTest, ShapeChainWithSymbolicBatchBecomesCopyDim) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 3, 4});
        Value* s = b.Op(OpKind::kShape, "shape", {x});
        Value* n = b.Op(OpKind::kGather, "gather0", {s, b.Const("i0", Tensor::Scalar<int64_t>(0))});
        Value* c = b.Op(OpKind::kGather, "gather1", {s, b.Const("i1", Tensor::Scalar<int64_t>(1))});  // static: 3
        Value* nu = b.Op(OpKind::kUnsqueeze, "unsq", {n, b.Ints("axes", {0})});
        Value* target = b.Op(OpKind::kConcat, "concat", {nu, b.Ints("rest", {12})}, Attrs({{"axis", int64_t{0}}}));
        b.Output(b.Op(OpKind::kReshape, "reshape", {x, target}));
        b.Output(b.Op(OpKind::kMul, "scaled", {x, b.Op(OpKind::kCast, "cast", {c}, Attrs({{"to", int64_t{1}}}))}));
      },
      ConstantFolding, {{"x", RandomInput({5, 3, 4})}}, g);
  EXPECT_EQ(CountOp(g, OpKind::kShape), 0);
  EXPECT_EQ(CountOp(g, OpKind::kGather), 0);
  EXPECT_EQ(CountOp(g, OpKind::kConcat), 0);
  EXPECT_EQ(CountOp(g, OpKind::kCast), 0);  // Cast(Gather(Shape(x), 1)) = 3.0: static dim folded
  for (const Node* n : g.nodes()) {
    if (n->op() != OpKind::kReshape) continue;
    ASSERT_TRUE(n->input(1)->is_constant());
    EXPECT_EQ(n->input(1)->constant()->ToInt64Vector(), (std::vector<int64_t>{0, 12}));
    EXPECT_TRUE((*n->output(0)->shape())[0].is_symbolic());
  }
}

TEST(ConstantFoldingTest, ShapeOfSymbolicDimIsNotFolded) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 3});
        Value* s = b.Op(OpKind::kShape, "shape", {x});
        b.Output(b.Op(OpKind::kGather, "gather0", {s, b.Const("i0", Tensor::Scalar<int64_t>(0))}));
      },
      ConstantFolding, {{"x", RandomInput({4, 3})}}, g);
  EXPECT_EQ(CountOp(g, OpKind::kShape), 1);
  EXPECT_EQ(CountOp(g, OpKind::kGather), 1);
}

}  // namespace
}  // namespace kiln::testing
