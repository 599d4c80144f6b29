#include "passes_test_util.h"

namespace kiln::testing {
namespace {

TEST(FoldIntoConvTest, BatchNormMulAddFoldIntoConv) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 3, 6, 6});
        Value* c = b.Op(OpKind::kConv, "conv", {x, b.Random("w", {4, 3, 3, 3}), b.Random("bias", {4})},
                        Attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
        Value* bn = b.Op(OpKind::kBatchNormalization, "bn",
                         {c, b.Random("gamma", {4}, 0.5, 1.5), b.Random("beta", {4}), b.Random("mean", {4}),
                          b.Random("var", {4}, 0.5, 2)},
                         Attrs({{"epsilon", 1e-3f}}));
        Value* m = b.Op(OpKind::kMul, "mul", {bn, b.Random("scale", {4, 1, 1}, 0.5, 2)});
        b.Output(b.Op(OpKind::kAdd, "add", {b.Random("shift", {1, 4, 1, 1}), m}));
      },
      FoldIntoConv, {{"x", RandomInput({2, 3, 6, 6})}}, g);
  ASSERT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.nodes()[0]->op(), OpKind::kConv);
  EXPECT_EQ(report.counts["BatchNormalization folded into Conv"], 1);
  EXPECT_EQ(report.counts["Mul folded into Conv"], 1);
  EXPECT_EQ(report.counts["Add folded into Conv"], 1);
}

TEST(FoldIntoConvTest, BatchNormFoldsIntoGroupedConvTransposeAndGemm) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{1, 4, 5, 5});
        Value* ct = b.Op(OpKind::kConvTranspose, "convt", {x, b.Random("w", {4, 3, 2, 2})},
                         Attrs({{"group", int64_t{2}}, {"strides", std::vector<int64_t>{2, 2}}}));
        b.Output(b.Op(OpKind::kBatchNormalization, "bn",
                      {ct, b.Random("gamma", {6}), b.Random("beta", {6}), b.Random("mean", {6}),
                       b.Random("var", {6}, 0.5, 2)}));
        Value* a = b.Input("a", Shape{3, 5});
        Value* gm = b.Op(OpKind::kGemm, "gemm", {a, b.Random("gw", {4, 5}), b.Random("gc", {4})},
                         Attrs({{"transB", int64_t{1}}, {"beta", 0.5f}}));
        b.Output(b.Op(OpKind::kMul, "gmul", {gm, b.Random("gs", {4})}));
      },
      FoldIntoConv, {{"x", RandomInput({1, 4, 5, 5})}, {"a", RandomInput({3, 5}, 3)}}, g);
  EXPECT_EQ(g.num_nodes(), 2u);
  EXPECT_EQ(CountOp(g, OpKind::kBatchNormalization), 0);
  EXPECT_EQ(CountOp(g, OpKind::kMul), 0);
}

TEST(FoldIntoConvTest, SharedConvOutputIsNotFolded) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{1, 2, 4, 4});
        Value* c = b.Op(OpKind::kConv, "conv", {x, b.Random("w", {2, 2, 1, 1})});
        b.Output(b.Op(OpKind::kMul, "mul", {c, b.Random("s", {2, 1, 1})}));
        b.Output(c);
      },
      FoldIntoConv, {{"x", RandomInput({1, 2, 4, 4})}}, g);
  EXPECT_EQ(g.num_nodes(), 2u);
}

}  // namespace
}  // namespace kiln::testing
