// Kiln's graph IR: a Graph owns Nodes and Values. A Value has a dtype, an optional shape (rank may be
// unknown; dims may be symbolic), at most one producer and a list of uses. Constants (weights) are Values
// holding a Tensor. Import produces a Graph, passes rewrite it, the builder lowers it.
//
// Pass scratch data never lives here: keep it in side tables keyed by Value::id() / Node::id().
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "ir/op_kind.h"
#include "kiln/status.h"

namespace kiln {

class Node;

// An attribute value. Sub-graphs (If/Loop/Scan bodies) are not represented: the importer refuses them.
using AttrValue = std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>,
                               std::vector<std::string>, Tensor>;

enum class AttrKind { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor };
std::string_view AttrKindName(AttrKind kind);
AttrKind KindOf(const AttrValue& v);

class Attributes {
 public:
  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  const AttrValue* Find(const std::string& name) const;
  void Set(const std::string& name, AttrValue v) { values_[name] = std::move(v); }
  void Erase(const std::string& name) { values_.erase(name); }
  const std::map<std::string, AttrValue>& all() const { return values_; }

  // Typed getters return `fallback` when the attribute is absent. A present attribute of another kind is
  // a programming error here: attribute kinds are checked once, against the op's schema, at import.
  int64_t GetInt(const std::string& name, int64_t fallback = 0) const;
  float GetFloat(const std::string& name, float fallback = 0.f) const;
  std::string GetString(const std::string& name, const std::string& fallback = "") const;
  std::vector<int64_t> GetInts(const std::string& name, std::vector<int64_t> fallback = {}) const;
  std::vector<float> GetFloats(const std::string& name, std::vector<float> fallback = {}) const;
  std::vector<std::string> GetStrings(const std::string& name) const;
  const Tensor* GetTensor(const std::string& name) const;

 private:
  std::map<std::string, AttrValue> values_;
};

struct Use {
  Node* node;
  size_t input_index;
  bool operator==(const Use& o) const { return node == o.node && input_index == o.input_index; }
};

class Value {
 public:
  int id() const { return id_; }
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  DType dtype() const { return dtype_; }
  void set_dtype(DType t) { dtype_ = t; }
  // The shape if the rank is known.
  const std::optional<Shape>& shape() const { return shape_; }
  void set_shape(std::optional<Shape> s) { shape_ = std::move(s); }
  // "f32[batch,3,224,224]", "f32[?rank]"
  std::string TypeString() const;

  Node* producer() const { return producer_; }
  size_t producer_output_index() const { return producer_index_; }
  const std::vector<Use>& uses() const { return uses_; }

  bool is_constant() const { return constant_ != nullptr; }
  const Tensor* constant() const { return constant_.get(); }
  std::shared_ptr<const Tensor> constant_ptr() const { return constant_; }
  bool is_graph_input() const { return is_graph_input_; }
  bool is_graph_output() const { return is_graph_output_; }

 private:
  friend class Graph;
  friend class Node;
  int id_ = -1;
  std::string name_;
  DType dtype_ = DType::kUndefined;
  std::optional<Shape> shape_;
  Node* producer_ = nullptr;
  size_t producer_index_ = 0;
  std::vector<Use> uses_;
  std::shared_ptr<const Tensor> constant_;
  bool is_graph_input_ = false;
  bool is_graph_output_ = false;
};

class Node {
 public:
  int id() const { return id_; }
  OpKind op() const { return op_; }
  std::string_view op_name() const { return OpKindName(op_); }
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  // The opset version of the ONNX default domain the node was imported under. Ops whose meaning changed
  // between versions (Softmax's axis, Split's sizes, attributes that became inputs) read it.
  int opset() const { return opset_; }
  void set_opset(int v) { opset_ = v; }

  // Inputs may be null where an optional input is omitted (ONNX's empty name).
  const std::vector<Value*>& inputs() const { return inputs_; }
  Value* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }
  size_t num_inputs() const { return inputs_.size(); }
  // Outputs may be null where an optional output is not requested.
  const std::vector<Value*>& outputs() const { return outputs_; }
  Value* output(size_t i) const { return i < outputs_.size() ? outputs_[i] : nullptr; }
  size_t num_outputs() const { return outputs_.size(); }

  Attributes& attrs() { return attrs_; }
  const Attributes& attrs() const { return attrs_; }

  // Rewires input i to `v` (may be null), keeping use lists right.
  void SetInput(size_t i, Value* v);
  void AddInput(Value* v);
  // "node conv1 (Conv)": the prefix for messages about this node.
  std::string Label() const;

 private:
  friend class Graph;
  int id_ = -1;
  OpKind op_{};
  std::string name_;
  int opset_ = 0;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  Attributes attrs_;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  // A new value with no producer. Names must be unique in the graph (checked by the verifier).
  Value* AddValue(std::string name, DType dtype, std::optional<Shape> shape = std::nullopt);
  // A new constant value holding `data`; dtype and shape come from it.
  Value* AddConstant(std::string name, Tensor data);
  Value* AddConstant(std::string name, std::shared_ptr<const Tensor> data);
  // Makes `v` constant (dtype and shape from data). For constant folding.
  void SetConstant(Value* v, std::shared_ptr<const Tensor> data);
  // A new node reading `inputs` (entries may be null) and producing `outputs` (values without a producer,
  // or null for unrequested optional outputs). The node is appended at the end of the node list.
  Node* AddNode(OpKind op, std::string name, std::vector<Value*> inputs, std::vector<Value*> outputs,
                int opset);
  // Removes a node: its inputs lose the use, its outputs lose their producer (they stay in the graph).
  void RemoveNode(Node* node);
  // Removes values that are not used, produced, constant-referenced or graph inputs/outputs.
  size_t RemoveUnusedValues();
  // Every use of `from` now reads `to`; graph outputs that were `from` become `to`.
  void ReplaceAllUsesWith(Value* from, Value* to);

  void AddInput(Value* v);
  void AddOutput(Value* v);
  void SetOutput(size_t i, Value* v);
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }

  // Nodes in insertion order (not necessarily topological).
  std::vector<Node*> nodes() const;
  size_t num_nodes() const { return nodes_.size(); }
  std::vector<Value*> values() const;
  Value* FindValue(const std::string& name) const;
  // Nodes in a topological order (stable: ties broken by insertion order), or an error naming a node on
  // a cycle.
  Expected<std::vector<Node*>> TopologicalOrder() const;
  // A name not yet used by any value, made from `base`.
  std::string UniqueValueName(const std::string& base) const;

 private:
  std::string name_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Value>> values_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::map<std::string, Value*> by_name_;
  int next_value_id_ = 0;
  int next_node_id_ = 0;
};

// Checks the graph's structural invariants: unique value names, use lists consistent with node inputs,
// producers consistent with node outputs, every node input produced or a graph input or constant, no
// cycles, graph outputs computed. Returns the first problem, naming the node or value at fault. (Op-level
// checks are ValidateGraphOps in src/ops/infer.h.)
Status VerifyGraph(const Graph& graph);

// A readable listing: inputs, constants (summarized), nodes in topological order with attributes and
// typed outputs, outputs.
std::string PrintGraph(const Graph& graph);

}  // namespace kiln
