#include "ir/graph.h"

#include <algorithm>
#include <queue>
#include <set>

namespace kiln {

std::string_view AttrKindName(AttrKind kind) {
  switch (kind) {
    case AttrKind::kInt: return "int";
    case AttrKind::kFloat: return "float";
    case AttrKind::kString: return "string";
    case AttrKind::kInts: return "ints";
    case AttrKind::kFloats: return "floats";
    case AttrKind::kStrings: return "strings";
    case AttrKind::kTensor: return "tensor";
  }
  return "?";
}

AttrKind KindOf(const AttrValue& v) { return static_cast<AttrKind>(v.index()); }

const AttrValue* Attributes::Find(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

namespace {
template <typename T>
const T* Get(const Attributes& a, const std::string& name) {
  const AttrValue* v = a.Find(name);
  return v ? std::get_if<T>(v) : nullptr;
}
}  // namespace

int64_t Attributes::GetInt(const std::string& name, int64_t fallback) const {
  const auto* v = Get<int64_t>(*this, name);
  return v ? *v : fallback;
}
float Attributes::GetFloat(const std::string& name, float fallback) const {
  const auto* v = Get<float>(*this, name);
  return v ? *v : fallback;
}
std::string Attributes::GetString(const std::string& name, const std::string& fallback) const {
  const auto* v = Get<std::string>(*this, name);
  return v ? *v : fallback;
}
std::vector<int64_t> Attributes::GetInts(const std::string& name, std::vector<int64_t> fallback) const {
  const auto* v = Get<std::vector<int64_t>>(*this, name);
  return v ? *v : fallback;
}
std::vector<float> Attributes::GetFloats(const std::string& name, std::vector<float> fallback) const {
  const auto* v = Get<std::vector<float>>(*this, name);
  return v ? *v : fallback;
}
std::vector<std::string> Attributes::GetStrings(const std::string& name) const {
  const auto* v = Get<std::vector<std::string>>(*this, name);
  return v ? *v : std::vector<std::string>{};
}
const Tensor* Attributes::GetTensor(const std::string& name) const { return Get<Tensor>(*this, name); }

std::string Value::TypeString() const {
  std::string s(DTypeName(dtype_));
  return s + (shape_ ? shape_->ToString() : std::string("[?rank]"));
}

namespace {
void RemoveUse(Value* v, Node* n, size_t i) {
  if (!v) return;
  auto& uses = const_cast<std::vector<Use>&>(v->uses());
  auto it = std::find(uses.begin(), uses.end(), Use{n, i});
  if (it != uses.end()) uses.erase(it);
}
}  // namespace

void Node::SetInput(size_t i, Value* v) {
  if (i >= inputs_.size()) inputs_.resize(i + 1, nullptr);
  if (inputs_[i]) {
    auto& uses = inputs_[i]->uses_;
    auto it = std::find(uses.begin(), uses.end(), Use{this, i});
    if (it != uses.end()) uses.erase(it);
  }
  inputs_[i] = v;
  if (v) v->uses_.push_back({this, i});
}

void Node::AddInput(Value* v) { SetInput(inputs_.size(), v); }

std::string Node::Label() const {
  return "node " + (name_.empty() ? "#" + std::to_string(id_) : name_) + " (" + std::string(op_name()) + ")";
}

Value* Graph::AddValue(std::string name, DType dtype, std::optional<Shape> shape) {
  auto v = std::make_unique<Value>();
  v->id_ = next_value_id_++;
  v->name_ = std::move(name);
  v->dtype_ = dtype;
  v->shape_ = std::move(shape);
  Value* raw = v.get();
  if (!raw->name_.empty()) by_name_.emplace(raw->name_, raw);
  values_.push_back(std::move(v));
  return raw;
}

Value* Graph::AddConstant(std::string name, Tensor data) {
  return AddConstant(std::move(name), std::make_shared<const Tensor>(std::move(data)));
}

Value* Graph::AddConstant(std::string name, std::shared_ptr<const Tensor> data) {
  Value* v = AddValue(std::move(name), DType::kUndefined);
  SetConstant(v, std::move(data));
  return v;
}

void Graph::SetConstant(Value* v, std::shared_ptr<const Tensor> data) {
  v->dtype_ = data->dtype();
  v->shape_ = Shape::FromSizes(data->sizes());
  v->constant_ = std::move(data);
}

Node* Graph::AddNode(OpKind op, std::string name, std::vector<Value*> inputs, std::vector<Value*> outputs,
                     int opset) {
  auto n = std::make_unique<Node>();
  n->id_ = next_node_id_++;
  n->op_ = op;
  n->name_ = std::move(name);
  n->opset_ = opset;
  Node* raw = n.get();
  for (Value* v : inputs) raw->AddInput(v);
  raw->outputs_ = std::move(outputs);
  for (size_t i = 0; i < raw->outputs_.size(); ++i) {
    if (Value* o = raw->outputs_[i]) {
      o->producer_ = raw;
      o->producer_index_ = i;
    }
  }
  nodes_.push_back(std::move(n));
  return raw;
}

void Graph::RemoveNode(Node* node) {
  for (size_t i = 0; i < node->inputs_.size(); ++i) RemoveUse(node->inputs_[i], node, i);
  for (Value* o : node->outputs_) {
    if (o && o->producer_ == node) o->producer_ = nullptr;
  }
  auto it = std::find_if(nodes_.begin(), nodes_.end(), [&](const auto& p) { return p.get() == node; });
  if (it != nodes_.end()) nodes_.erase(it);
}

size_t Graph::RemoveUnusedValues() {
  size_t before = values_.size();
  std::erase_if(values_, [&](const std::unique_ptr<Value>& v) {
    const bool dead = v->uses_.empty() && v->producer_ == nullptr && !v->is_graph_input_ && !v->is_graph_output_;
    if (dead && !v->name_.empty()) {
      auto it = by_name_.find(v->name_);
      if (it != by_name_.end() && it->second == v.get()) by_name_.erase(it);
    }
    return dead;
  });
  return before - values_.size();
}

void Graph::ReplaceAllUsesWith(Value* from, Value* to) {
  std::vector<Use> uses = from->uses_;
  for (const Use& u : uses) u.node->SetInput(u.input_index, to);
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (outputs_[i] == from) SetOutput(i, to);
  }
}

void Graph::AddInput(Value* v) {
  v->is_graph_input_ = true;
  inputs_.push_back(v);
}

void Graph::AddOutput(Value* v) {
  v->is_graph_output_ = true;
  outputs_.push_back(v);
}

void Graph::SetOutput(size_t i, Value* v) {
  Value* old = outputs_[i];
  outputs_[i] = v;
  v->is_graph_output_ = true;
  if (std::find(outputs_.begin(), outputs_.end(), old) == outputs_.end()) old->is_graph_output_ = false;
}

std::vector<Node*> Graph::nodes() const {
  std::vector<Node*> out;
  out.reserve(nodes_.size());
  for (const auto& n : nodes_) out.push_back(n.get());
  return out;
}

std::vector<Value*> Graph::values() const {
  std::vector<Value*> out;
  out.reserve(values_.size());
  for (const auto& v : values_) out.push_back(v.get());
  return out;
}

Value* Graph::FindValue(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Expected<std::vector<Node*>> Graph::TopologicalOrder() const {
  // Kahn's algorithm over insertion order; a min-heap on insertion position keeps the order stable.
  std::map<const Node*, size_t> position;
  for (size_t i = 0; i < nodes_.size(); ++i) position[nodes_[i].get()] = i;
  std::vector<size_t> pending(nodes_.size(), 0);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    for (const Value* in : nodes_[i]->inputs_) {
      if (in && in->producer_ && position.count(in->producer_)) ++pending[i];
    }
  }
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (pending[i] == 0) ready.push(i);
  }
  std::vector<Node*> order;
  order.reserve(nodes_.size());
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    Node* n = nodes_[i].get();
    order.push_back(n);
    for (const Value* out : n->outputs_) {
      if (!out) continue;
      for (const Use& u : out->uses_) {
        auto it = position.find(u.node);
        if (it != position.end() && --pending[it->second] == 0) ready.push(it->second);
      }
    }
  }
  if (order.size() != nodes_.size()) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (pending[i] != 0) {
        return InvalidArgument("graph has a cycle through " + nodes_[i]->Label());
      }
    }
  }
  return order;
}

std::string Graph::UniqueValueName(const std::string& base) const {
  if (!by_name_.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string name = base + "_" + std::to_string(i);
    if (!by_name_.count(name)) return name;
  }
}

}  // namespace kiln
