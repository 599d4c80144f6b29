// The plan executor against the reference executor: the same kernels, so results must be bit-identical,
// whatever memory the arena layout shares (views, in-place outputs, concat slices, reuse over lifetimes).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "build/builder.h"
#include "ops/infer.h"
#include "runtime/plan_executor.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

Tensor RandomTensor(std::vector<int64_t> sizes, std::mt19937& rng) {
  Tensor t(DType::kFloat32, std::move(sizes));
  std::uniform_real_distribution<float> dist(-2.f, 2.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

bool BitEqual(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.sizes() == b.sizes() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

Expected<plan::Plan> PlanOf(Graph g) {
  BuildOptions options;
  options.optimize = false;       // the graph as built: every op kind the test chose stays
  options.fast_kernels = false;   // the same kernels as the reference executor: results bit-identical
  return build::BuildPlan(std::move(g), options, "test");
}

void ExpectSameAsReference(PlanExecutor& exec, const plan::Plan& plan, const TensorMap& feeds) {
  auto got = exec.Run(feeds);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  auto want = RunReference(*plan.graph, feeds);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  ASSERT_EQ(got->size(), want->size());
  for (const auto& [name, t] : *want) {
    ASSERT_TRUE(got->count(name)) << name;
    EXPECT_TRUE(BitEqual(got->at(name), t)) << name << ": " << got->at(name).Description();
  }
}

// x -> Relu a, Sigmoid b -> Concat(a, b) on channels -> Tanh (in place) -> Reshape (view) -> Softmax.
Graph ConcatGraph() {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 4, 3, 5});
  g.AddInput(x);
  auto v = [&](const std::string& name) { return g.AddValue(name, DType::kFloat32); };
  Value *a = v("a"), *b = v("b"), *c = v("c"), *d = v("d"), *e = v("e"), *y = v("y");
  g.AddNode(OpKind::kRelu, "relu", {x}, {a}, 14);
  g.AddNode(OpKind::kSigmoid, "sigmoid", {x}, {b}, 13);
  g.AddNode(OpKind::kConcat, "concat", {a, b}, {c}, 13)->attrs().Set("axis", int64_t{1});
  g.AddNode(OpKind::kTanh, "tanh", {c}, {d}, 13);
  Value* shape = g.AddConstant("shape", Tensor::FromVector<int64_t>({0, -1}));
  g.AddNode(OpKind::kReshape, "reshape", {d, shape}, {e}, 14);
  g.AddNode(OpKind::kSoftmax, "softmax", {e}, {y}, 13);
  g.AddOutput(y);
  EXPECT_TRUE(InferShapes(g).ok());
  return g;
}

TEST(PlanExecutor, ConcatViewsAndInPlaceMatchReference) {
  auto plan = PlanOf(ConcatGraph());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  PlanExecutor exec(*plan);
  std::mt19937 rng(7);

  // Batch 1: the channel slices are contiguous, so relu and sigmoid write into the concat output.
  TensorMap one = {{"x", RandomTensor({1, 4, 3, 5}, rng)}};
  ExpectSameAsReference(exec, *plan, one);
  ASSERT_NE(exec.last_layout(), nullptr);
  EXPECT_EQ(exec.last_layout()->concats_eliminated, 1);
  EXPECT_EQ(exec.last_layout()->views, 1);
  EXPECT_GE(exec.last_layout()->in_place, 1);

  // Batch 3: slices are strided; the Concat runs as a copy.
  TensorMap three = {{"x", RandomTensor({3, 4, 3, 5}, rng)}};
  ExpectSameAsReference(exec, *plan, three);
  EXPECT_EQ(exec.last_layout()->concats_eliminated, 0);

  // Results outlive the next run (graph outputs never stay in the arena).
  auto first = exec.Run(one);
  ASSERT_TRUE(first.ok());
  const Tensor kept = first->at("y").Clone();
  ASSERT_TRUE(exec.Run({{"x", RandomTensor({1, 4, 3, 5}, rng)}}).ok());
  EXPECT_TRUE(BitEqual(first->at("y"), kept));
}

// Random DAGs of element-wise, view, concat and reducing ops over tensors of one shape family: the
// executor must agree bit for bit with the reference on every one.
Graph RandomDag(std::mt19937& rng, int nodes) {
  Graph g;
  Value* x = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 2, 4});
  g.AddInput(x);
  std::vector<Value*> pool = {x};
  std::vector<bool> used(1, false);
  auto pick = [&]() -> size_t { return std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng); };
  const OpKind unary[] = {OpKind::kRelu, OpKind::kSigmoid, OpKind::kTanh, OpKind::kNeg, OpKind::kAbs,
                          OpKind::kCast, OpKind::kIdentity};
  const OpKind binary[] = {OpKind::kAdd, OpKind::kSub, OpKind::kMul};
  for (int i = 0; i < nodes; ++i) {
    const std::string name = "v" + std::to_string(i);
    Value* out = g.AddValue(name, DType::kFloat32);
    const int kind = std::uniform_int_distribution<int>(0, 4)(rng);
    const size_t a = pick(), b = pick();
    used[a] = true;
    if (kind <= 1) {
      const OpKind op = unary[std::uniform_int_distribution<size_t>(0, std::size(unary) - 1)(rng)];
      Node* n = g.AddNode(op, name, {pool[a]}, {out}, 13);
      if (op == OpKind::kCast) n->attrs().Set("to", int64_t{1});  // f32 -> f32: the kernel aliases
    } else if (kind == 2) {
      used[b] = true;
      g.AddNode(binary[std::uniform_int_distribution<size_t>(0, std::size(binary) - 1)(rng)], name,
                {pool[a], pool[b]}, {out}, 14);
    } else if (kind == 3) {
      // Concat on axis 1 (contiguous slices at batch 1) then Slice back to the family's shape.
      used[b] = true;
      Value* cat = g.AddValue(name + "_cat", DType::kFloat32);
      g.AddNode(OpKind::kConcat, name + "_concat", {pool[a], pool[b]}, {cat}, 13)->attrs().Set("axis", int64_t{1});
      Value* starts = g.AddConstant(name + "_s", Tensor::FromVector<int64_t>({1}));
      Value* ends = g.AddConstant(name + "_e", Tensor::FromVector<int64_t>({3}));
      Value* axes = g.AddConstant(name + "_a", Tensor::FromVector<int64_t>({1}));
      g.AddNode(OpKind::kSlice, name, {cat, starts, ends, axes}, {out}, 13);
    } else {
      // Flatten then Reshape back: two views.
      Value* flat = g.AddValue(name + "_flat", DType::kFloat32);
      g.AddNode(OpKind::kFlatten, name + "_flatten", {pool[a]}, {flat}, 13)->attrs().Set("axis", int64_t{1});
      Value* shape = g.AddConstant(name + "_shape", Tensor::FromVector<int64_t>({-1, 2, 4}));
      g.AddNode(OpKind::kReshape, name, {flat, shape}, {out}, 14);
    }
    pool.push_back(out);
    used.push_back(false);
  }
  // Every value nobody reads is an output, so nothing is dead code.
  for (size_t i = 1; i < pool.size(); ++i) {
    if (!used[i]) g.AddOutput(pool[i]);
  }
  EXPECT_TRUE(InferShapes(g).ok());
  return g;
}

TEST(PlanExecutor, RandomDagsMatchReference) {
  std::mt19937 rng(2024);
  int concats = 0, in_place = 0, views = 0;
  for (int trial = 0; trial < 200; ++trial) {
    auto plan = PlanOf(RandomDag(rng, 4 + trial % 12));
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    PlanExecutor exec(*plan);
    for (int64_t batch : {1, 2, 1}) {
      ExpectSameAsReference(exec, *plan, {{"x", RandomTensor({batch, 2, 4}, rng)}});
      if (HasFailure()) {
        std::string slots;
        for (const auto& [v, s] : exec.last_layout() ? exec.last_layout()->slots : decltype(exec.last_layout()->slots){})
          slots += v->name() + "@" + std::to_string(s.offset) + "+" + std::to_string(s.size) + " k" +
                   std::to_string(static_cast<int>(s.kind)) + "\n";
        ADD_FAILURE() << "trial " << trial << " batch " << batch << "\n" << PrintGraph(*plan->graph) << slots;
        return;
      }
      concats += exec.last_layout()->concats_eliminated;
      in_place += exec.last_layout()->in_place;
      views += exec.last_layout()->views;
    }
  }
  // The trials exercised every way of sharing memory (otherwise this test would prove little).
  EXPECT_GT(in_place, 0);
  EXPECT_GT(views, 0);
  EXPECT_GT(concats, 0);
}

}  // namespace
}  // namespace kiln
