// Small models for the plan/engine tests: a CNN written as an ONNX file, and hand-built graphs.
#pragma once

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ops/infer.h"

namespace kiln::plan_test {

namespace fs = std::filesystem;

inline std::vector<float> RandomFloats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline void AddFloatInitializer(onnx::GraphProto* g, const std::string& name,
                                const std::vector<int64_t>& dims, uint32_t seed) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  const std::vector<float> values = RandomFloats(static_cast<size_t>(n), seed);
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
}

inline onnx::NodeProto* AddOnnxNode(onnx::GraphProto* g, const std::string& op,
                                    const std::vector<std::string>& in, const std::vector<std::string>& out) {
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(out[0] + "_node");
  for (const auto& i : in) n->add_input(i);
  for (const auto& o : out) n->add_output(o);
  return n;
}

inline void AddIntsAttr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

// x[batch,3,8,8] -> Conv(4,3x3,pad 1) -> Relu -> (+ Conv 1x1 branch) -> MaxPool 2 -> Flatten -> Gemm(64->5)
// -> Softmax = y[batch,5]
inline std::string SmallCnnOnnx() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("small_cnn");
  auto* in = g->add_input();
  in->set_name("x");
  auto* tt = in->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  tt->mutable_shape()->add_dim()->set_dim_param("batch");
  for (int64_t d : {3, 8, 8}) tt->mutable_shape()->add_dim()->set_dim_value(d);
  AddFloatInitializer(g, "w1", {4, 3, 3, 3}, 1);
  AddFloatInitializer(g, "b1", {4}, 2);
  AddFloatInitializer(g, "w2", {4, 3, 1, 1}, 3);
  AddFloatInitializer(g, "wf", {5, 64}, 4);
  AddFloatInitializer(g, "bf", {5}, 5);
  AddIntsAttr(AddOnnxNode(g, "Conv", {"x", "w1", "b1"}, {"c1"}), "pads", {1, 1, 1, 1});
  AddOnnxNode(g, "Relu", {"c1"}, {"r1"});
  AddOnnxNode(g, "Conv", {"x", "w2"}, {"c2"});
  AddOnnxNode(g, "Add", {"r1", "c2"}, {"s"});
  auto* pool = AddOnnxNode(g, "MaxPool", {"s"}, {"p"});
  AddIntsAttr(pool, "kernel_shape", {2, 2});
  AddIntsAttr(pool, "strides", {2, 2});
  AddOnnxNode(g, "Flatten", {"p"}, {"f"});
  auto* gemm = AddOnnxNode(g, "Gemm", {"f", "wf", "bf"}, {"logits"});
  auto* a = gemm->add_attribute();
  a->set_name("transB");
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(1);
  AddOnnxNode(g, "Softmax", {"logits"}, {"y"});
  auto* out = g->add_output();
  out->set_name("y");
  out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  std::string bytes;
  m.SerializeToString(&bytes);
  return bytes;
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("kiln_plan_" + std::to_string(getpid()) + "_" + info->name());
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  std::string Write(const std::string& name, const std::string& bytes) const {
    std::ofstream(File(name), std::ios::binary) << bytes;
    return File(name);
  }

 private:
  fs::path path_;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// y = Relu(x + w) * w2, x[batch,4] with weights; plus attributes of several kinds on a Softmax/Transpose.
inline std::unique_ptr<Graph> SmallGraph() {
  auto g = std::make_unique<Graph>();
  g->set_name("small");
  Value* x = g->AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 4});
  g->AddInput(x);
  Tensor w(DType::kFloat32, {4});
  Tensor w2(DType::kFloat32, {4});
  for (int i = 0; i < 4; ++i) {
    w.data<float>()[i] = 0.5f * static_cast<float>(i) - 1.f;
    w2.data<float>()[i] = static_cast<float>(i + 1);
  }
  Value* wv = g->AddConstant("w", std::move(w));
  Value* w2v = g->AddConstant("w2", std::move(w2));
  Value* a = g->AddValue("a", DType::kFloat32);
  Value* r = g->AddValue("r", DType::kFloat32);
  Value* y = g->AddValue("y", DType::kFloat32);
  Value* t = g->AddValue("t", DType::kFloat32);
  g->AddNode(OpKind::kAdd, "add", {x, wv}, {a}, 13);
  g->AddNode(OpKind::kRelu, "relu", {a}, {r}, 13);
  g->AddNode(OpKind::kMul, "mul", {r, w2v}, {y}, 13);
  Node* tr = g->AddNode(OpKind::kTranspose, "tr", {y}, {t}, 13);
  tr->attrs().Set("perm", std::vector<int64_t>{1, 0});
  g->AddOutput(y);
  g->AddOutput(t);
  EXPECT_TRUE(InferShapes(*g).ok());
  return g;
}

}  // namespace kiln::plan_test
