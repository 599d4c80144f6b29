#include "passes_test_util.h"

namespace kiln::testing {
namespace {

// scores = q @ kt / sqrt(d) + mask; softmax; @ v, with [batch, heads, seq, dim] operands.
TEST(FuseAttentionTest, ScaledMaskedSoftmaxAttention) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* q = b.Input("q", Shape{Dim::Symbol("batch"), 2, 5, 4});
        Value* kt = b.Input("kt", Shape{Dim::Symbol("batch"), 2, 4, 5});
        Value* v = b.Input("v", Shape{Dim::Symbol("batch"), 2, 5, 3});
        Value* mask = b.Input("mask", Shape{Dim::Symbol("batch"), 1, 1, 5});
        Value* s = b.Op(OpKind::kMatMul, "qk", {q, kt});
        Value* sd = b.Op(OpKind::kDiv, "scale", {s, b.Scalar("sqrt_d", 2.f)});
        Value* sm = b.Op(OpKind::kAdd, "mask_add", {sd, mask});
        Value* p = b.Op(OpKind::kSoftmax, "softmax", {sm}, Attrs({{"axis", int64_t{-1}}}));
        b.Output(b.Op(OpKind::kMatMul, "pv", {p, v}));
      },
      FuseAttention,
      {{"q", RandomInput({2, 2, 5, 4}, 1)},
       {"kt", RandomInput({2, 2, 4, 5}, 2)},
       {"v", RandomInput({2, 2, 5, 3}, 3)},
       {"mask", RandomInput({2, 1, 1, 5}, 4)}},
      g);
  ASSERT_EQ(g.num_nodes(), 1u);
  const Node* a = g.nodes()[0];
  EXPECT_EQ(a->op(), OpKind::kAttention);
  EXPECT_FLOAT_EQ(a->attrs().GetFloat("scale"), 0.5f);
  EXPECT_EQ(a->num_inputs(), 4u);
  EXPECT_EQ(report.groups[0].sources, (std::vector<std::string>{"qk", "scale", "mask_add", "softmax", "pv"}));
}

TEST(FuseAttentionTest, SoftmaxOverAnotherAxisIsLeft) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* q = b.Input("q", Shape{3, 4});
        Value* kt = b.Input("kt", Shape{4, 3});
        Value* v = b.Input("v", Shape{3, 2});
        Value* p = b.Op(OpKind::kSoftmax, "softmax", {b.Op(OpKind::kMatMul, "qk", {q, kt})},
                        Attrs({{"axis", int64_t{0}}}));
        b.Output(b.Op(OpKind::kMatMul, "pv", {p, v}));
      },
      FuseAttention, {{"q", RandomInput({3, 4}, 1)}, {"kt", RandomInput({4, 3}, 2)}, {"v", RandomInput({3, 2}, 3)}},
      g);
  EXPECT_EQ(CountOp(g, OpKind::kAttention), 0);
}

TEST(HorizontalFusionTest, InceptionStyleSiblingConvs) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 4, 5, 5});
        Value* c1 = b.Op(OpKind::kConv, "b1", {x, b.Random("w1", {3, 4, 1, 1}), b.Random("bias1", {3})});
        Value* c2 = b.Op(OpKind::kConv, "b2", {x, b.Random("w2", {2, 4, 1, 1})});
        Value* c3 = b.Op(OpKind::kConv, "b3", {x, b.Random("w3", {5, 4, 1, 1}), b.Random("bias3", {5})});
        Value* c4 = b.Op(OpKind::kConv, "other", {x, b.Random("w4", {2, 4, 3, 3})},
                         Attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));  // other kernel: alone
        b.Output(b.Op(OpKind::kConcat, "cat", {c1, b.Op(OpKind::kRelu, "r2", {c2}), c3, c4},
                      Attrs({{"axis", int64_t{1}}})));
      },
      HorizontalFusion, {{"x", RandomInput({2, 4, 5, 5})}}, g);
  EXPECT_EQ(CountOp(g, OpKind::kConv), 2);
  EXPECT_EQ(CountOp(g, OpKind::kSplit), 1);
  ASSERT_EQ(report.groups.size(), 1u);
  EXPECT_EQ(report.groups[0].sources, (std::vector<std::string>{"b1", "b2", "b3"}));
}

TEST(HorizontalFusionTest, QkvProjections) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 3, 8});
        for (const char* n : {"q", "k", "v"}) {
          Value* w = b.Random(std::string(n) + "_w", {8, 8});
          Value* c = b.Random(std::string(n) + "_b", {8});
          Value* y = b.Op(OpKind::kFusedGemm, n, {x, w, c});
          b.Output(y);
        }
      },
      HorizontalFusion, {{"x", RandomInput({2, 3, 8})}}, g);
  EXPECT_EQ(CountOp(g, OpKind::kFusedGemm), 1);
  EXPECT_EQ(CountOp(g, OpKind::kSplit), 1);
  EXPECT_EQ(g.outputs()[1]->name(), "k_out");
}

TEST(ConcatEliminationTest, RecordsConcatsWhoseInputsAreSingleUse) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{1, 2, 3, 3});
        Value* a = b.Op(OpKind::kRelu, "a", {x});
        Value* c = b.Op(OpKind::kSigmoid, "c", {x});
        b.Output(b.Op(OpKind::kConcat, "cat_ok", {a, c}, Attrs({{"axis", int64_t{1}}})));
        Value* d = b.Op(OpKind::kTanh, "d", {x});
        b.Output(d);  // d is also a graph output: cannot live inside the concat
        b.Output(b.Op(OpKind::kConcat, "cat_no", {d, x}, Attrs({{"axis", int64_t{1}}})));
      },
      ConcatElimination, {{"x", RandomInput({1, 2, 3, 3})}}, g);
  ASSERT_EQ(report.in_place_concats.size(), 1u);
  const InPlaceConcat& c = report.in_place_concats[0];
  EXPECT_EQ(c.concat, "cat_ok");
  EXPECT_FALSE(c.strided);
  ASSERT_EQ(c.slices.size(), 2u);
  EXPECT_EQ(c.slices[1].offset, 2);
  EXPECT_EQ(g.num_nodes(), 5u);  // analysis only
}

}  // namespace
}  // namespace kiln::testing
