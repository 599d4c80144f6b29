// Helpers for the optimizer pass tests: build small graphs, run a pass, and compare the reference
// outputs of the graph before and after (the unfused ops' kernels are the oracle for the fused ones).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>

#include "ir/graph.h"
#include "ops/infer.h"
#include "passes/pass.h"
#include "runtime/reference_executor.h"

namespace kiln::testing {

class Builder {
 public:
  explicit Builder(Graph& g, int opset = 17) : g_(g), opset_(opset) {}
  Value* Input(const std::string& name, Shape shape, DType t = DType::kFloat32) {
    Value* v = g_.AddValue(name, t, std::move(shape));
    g_.AddInput(v);
    return v;
  }
  Value* Const(const std::string& name, Tensor t) { return g_.AddConstant(name, std::move(t)); }
  Value* Scalar(const std::string& name, float v) { return Const(name, Tensor::Scalar<float>(v)); }
  Value* Ints(const std::string& name, std::vector<int64_t> v) { return Const(name, Tensor::FromVector(v)); }
  // A seeded random float tensor in [lo, hi).
  Value* Random(const std::string& name, std::vector<int64_t> sizes, float lo = -1, float hi = 1) {
    return Const(name, RandomTensor(sizes, lo, hi));
  }
  Tensor RandomTensor(std::vector<int64_t> sizes, float lo = -1, float hi = 1) {
    Tensor t(DType::kFloat32, std::move(sizes));
    std::uniform_real_distribution<float> d(lo, hi);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng_);
    return t;
  }
  // Adds a node named `name` with one output (named after the node).
  Value* Op(OpKind op, const std::string& name, std::vector<Value*> inputs, Attributes attrs = {}) {
    Value* out = g_.AddValue(name + "_out", DType::kUndefined);
    Node* n = g_.AddNode(op, name, std::move(inputs), {out}, opset_);
    n->attrs() = std::move(attrs);
    return out;
  }
  // Adds a node with `n` outputs (named after the node: name_out0, ...).
  std::vector<Value*> OpN(OpKind op, const std::string& name, std::vector<Value*> inputs, size_t n,
                          Attributes attrs = {}) {
    std::vector<Value*> outs;
    for (size_t i = 0; i < n; ++i) outs.push_back(g_.AddValue(name + "_out" + std::to_string(i), DType::kUndefined));
    Node* node = g_.AddNode(op, name, std::move(inputs), outs, opset_);
    node->attrs() = std::move(attrs);
    return outs;
  }
  void Output(Value* v) { g_.AddOutput(v); }

 private:
  Graph& g_;
  int opset_;
  std::mt19937 rng_{1234};
};

inline Attributes Attrs(std::initializer_list<std::pair<const char*, AttrValue>> kv) {
  Attributes a;
  for (const auto& [k, v] : kv) a.Set(k, v);
  return a;
}

inline int CountOp(const Graph& g, OpKind op) {
  int n = 0;
  for (const Node* node : g.nodes()) n += node->op() == op;
  return n;
}

inline Tensor RandomInput(std::vector<int64_t> sizes, unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-2, 2);
  Tensor t(DType::kFloat32, std::move(sizes));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

// Builds the graph twice with `build`, runs `pass` on the second copy, checks that it verifies, and that
// both give the same outputs on `inputs` within `tol` (relative to max(1, |expected|)). Returns the pass's
// report; `optimized` receives the rewritten graph.
inline PassReport CheckPass(const std::function<void(Builder&)>& build,
                            Status (*pass)(Graph&, PassReport&), const TensorMap& inputs, Graph& optimized,
                            double tol = 1e-4, int opset = 17) {
  Graph original;
  Builder b1(original, opset);
  build(b1);
  EXPECT_TRUE(InferShapes(original).ok()) << InferShapes(original).message();
  Builder b2(optimized, opset);
  build(b2);
  EXPECT_TRUE(InferShapes(optimized).ok());
  PassReport report;
  Status st = pass(optimized, report);
  EXPECT_TRUE(st.ok()) << st.message();
  optimized.RemoveUnusedValues();
  Status v = VerifyGraph(optimized);
  EXPECT_TRUE(v.ok()) << v.message() << "\n" << PrintGraph(optimized);
  Status ops = ValidateGraphOps(optimized);
  EXPECT_TRUE(ops.ok()) << ops.message();
  auto want = RunReference(original, inputs);
  EXPECT_TRUE(want.ok()) << want.status().message();
  auto got = RunReference(optimized, inputs);
  EXPECT_TRUE(got.ok()) << got.status().message() << "\n" << PrintGraph(optimized);
  if (!want.ok() || !got.ok()) return report;
  for (const auto& [name, w] : *want) {
    auto it = got->find(name);
    EXPECT_NE(it, got->end()) << "output " << name << " missing after the pass";
    if (it == got->end()) continue;
    const Tensor& t = it->second;
    EXPECT_EQ(t.sizes(), w.sizes()) << name;
    if (t.sizes() != w.sizes()) continue;
    int64_t bad = 0;
    for (int64_t i = 0; i < w.numel() && bad < 5; ++i) {
      const double e = w.GetAsDouble(i), a = t.GetAsDouble(i);
      const bool ok = std::fabs(e - a) <= tol * std::max(1.0, std::fabs(e));
      EXPECT_TRUE(ok) << name << "[" << i << "]: expected " << e << ", got " << a;
      bad += !ok;
    }
  }
  return report;
}

}  // namespace kiln::testing
