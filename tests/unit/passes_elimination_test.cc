#include "passes_test_util.h"

namespace kiln::testing {
namespace {

TEST(EliminationTest, RemovesNoOpsAndCancellingTransposes) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{2, 3, 4});
        Value* a = b.Op(OpKind::kIdentity, "id", {x});
        Value* d = b.Op(OpKind::kDropout, "drop", {a});
        Value* t1 = b.Op(OpKind::kTranspose, "t1", {d}, Attrs({{"perm", std::vector<int64_t>{1, 2, 0}}}));
        Value* t2 = b.Op(OpKind::kTranspose, "t2", {t1}, Attrs({{"perm", std::vector<int64_t>{2, 0, 1}}}));
        Value* r = b.Op(OpKind::kReshape, "noop_reshape", {t2, b.Ints("shape", {2, 3, 4})});
        Value* c = b.Op(OpKind::kCast, "noop_cast", {r}, Attrs({{"to", int64_t{1}}}));
        b.Output(b.Op(OpKind::kRelu, "relu", {c}));
      },
      Elimination, {{"x", RandomInput({2, 3, 4})}}, g);
  ASSERT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.nodes()[0]->op(), OpKind::kRelu);
  EXPECT_EQ(g.nodes()[0]->input(0)->name(), "x");
  EXPECT_EQ(report.counts["cancelling Transpose pairs removed"], 1);
}

TEST(EliminationTest, KeepsGraphOutputNameWhenBypassing) {
  Graph g;
  CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{4});
        Value* r = b.Op(OpKind::kRelu, "relu", {x});
        b.Output(b.Op(OpKind::kIdentity, "id", {r}));
      },
      Elimination, {{"x", RandomInput({4})}}, g);
  ASSERT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.outputs()[0]->name(), "id_out");
  EXPECT_EQ(g.outputs()[0]->producer()->op(), OpKind::kRelu);
}

TEST(EliminationTest, MergesCommonSubexpressionsAndDropsDeadNodesAndWeights) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{2, 3});
        Value* a1 = b.Op(OpKind::kMul, "a1", {x, b.Scalar("k1", 2.f)});
        Value* a2 = b.Op(OpKind::kMul, "a2", {x, b.Scalar("k2", 2.f)});  // same op, equal constant
        b.Op(OpKind::kExp, "dead", {b.Op(OpKind::kAdd, "dead_add", {x, b.Random("unused_w", {2, 3})})});
        b.Output(b.Op(OpKind::kAdd, "y", {a1, a2}));
      },
      Elimination, {{"x", RandomInput({2, 3})}}, g);
  EXPECT_EQ(g.num_nodes(), 2u);  // one Mul, the Add
  EXPECT_EQ(CountOp(g, OpKind::kMul), 1);
  EXPECT_EQ(g.FindValue("unused_w"), nullptr);
  EXPECT_EQ(report.counts["duplicate nodes merged (CSE)"], 1);
  EXPECT_EQ(report.counts["dead nodes removed"], 2);
}

}  // namespace
}  // namespace kiln::testing
