#include "build/graph_clone.h"

#include <unordered_map>

#include "ops/infer.h"

namespace kiln::build {

Expected<std::unique_ptr<Graph>> CloneWithInputSizes(
    const Graph& graph, const std::map<std::string, std::vector<int64_t>>& input_sizes,
    std::vector<const Node*>* schedule_out, const std::vector<const Node*>* order_in,
    std::unordered_map<const Value*, const Value*>* original_of) {
  std::vector<const Node*> order;
  if (order_in) {
    if (order_in->size() != graph.num_nodes()) return Internal("the schedule does not list every node");
    order = *order_in;
  } else {
    KILN_ASSIGN_OR_RETURN(std::vector<Node*> topo, graph.TopologicalOrder());
    order.assign(topo.begin(), topo.end());
  }
  auto copy = std::make_unique<Graph>();
  copy->set_name(graph.name());
  std::unordered_map<const Value*, Value*> map;
  for (const Value* v : graph.values()) {
    Value* c = v->is_constant() ? copy->AddConstant(v->name(), v->constant_ptr())
                                : copy->AddValue(v->name(), v->dtype(), v->shape());
    map[v] = c;
    if (original_of) (*original_of)[c] = v;
  }
  for (const Value* in : graph.inputs()) {
    Value* c = map.at(in);
    auto it = input_sizes.find(in->name());
    if (it != input_sizes.end() && !in->is_constant()) {
      if (in->shape() && in->shape()->rank() != it->second.size()) {
        return InvalidArgument("input '" + in->name() + "' has rank " + std::to_string(in->shape()->rank()) +
                               ", shape " + SizesToString(it->second) + " has another");
      }
      c->set_shape(Shape::FromSizes(it->second));
    }
    copy->AddInput(c);
  }
  for (const Node* n : order) {
    std::vector<Value*> ins, outs;
    for (const Value* v : n->inputs()) ins.push_back(v ? map.at(v) : nullptr);
    for (const Value* v : n->outputs()) outs.push_back(v ? map.at(v) : nullptr);
    Node* c = copy->AddNode(n->op(), n->name(), std::move(ins), std::move(outs), n->opset());
    c->attrs() = n->attrs();
    if (schedule_out) schedule_out->push_back(c);
  }
  for (const Value* out : graph.outputs()) copy->AddOutput(map.at(out));
  KILN_RETURN_IF_ERROR(InferShapes(*copy));
  return copy;
}

}  // namespace kiln::build
