#include <gtest/gtest.h>

#include "ir/graph.h"
#include "core/dtype.h"

namespace kiln {
namespace {

TEST(GraphTest, TopologicalOrderDetectsCycle) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{2});
  g.AddInput(x);
  Value* a = g.AddValue("a", DType::kFloat32);
  Value* b = g.AddValue("b", DType::kFloat32);
  Node* n1 = g.AddNode(OpKind::kAdd, "n1", {x, nullptr}, {a}, 13);
  g.AddNode(OpKind::kRelu, "n2", {a}, {b}, 13);
  n1->SetInput(1, b);  // a = x + b, b = relu(a): a cycle
  g.AddOutput(b);
  auto order = g.TopologicalOrder();
  ASSERT_FALSE(order.ok());
  EXPECT_NE(order.status().message().find("cycle"), std::string::npos);
  EXPECT_FALSE(VerifyGraph(g).ok());
}

TEST(GraphTest, ReplaceAllUsesWithKeepsUseLists) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 4});
  g.AddInput(x);
  Value* a = g.AddValue("a", DType::kFloat32);
  Value* b = g.AddValue("b", DType::kFloat32);
  g.AddNode(OpKind::kIdentity, "id", {x}, {a}, 13);
  g.AddNode(OpKind::kRelu, "relu", {a}, {b}, 13);
  g.AddOutput(b);
  g.ReplaceAllUsesWith(a, x);
  EXPECT_TRUE(a->uses().empty());
  EXPECT_EQ(x->uses().size(), 2u);
  ASSERT_TRUE(VerifyGraph(g).ok()) << VerifyGraph(g).message();
  EXPECT_NE(PrintGraph(g).find("f32[batch,4]"), std::string::npos);
}

TEST(DTypeTest, Float16RoundTrip) {
  for (float f : {0.f, 1.f, -2.5f, 65504.f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f}) {
    EXPECT_EQ(static_cast<float>(Float16(f)), f) << f;
  }
  EXPECT_EQ(Float16(1e6f).bits, 0x7c00);
  EXPECT_EQ(Float16(1.0f + 1.0f / 4096).bits, Float16(1.0f).bits);  // ties to even
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f)), 1.0f);
}

}  // namespace
}  // namespace kiln
