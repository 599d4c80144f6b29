#include <algorithm>
#include <set>

#include "ir/graph.h"

namespace kiln {

Status VerifyGraph(const Graph& graph) {
  std::set<std::string> names;
  std::set<const Value*> known;
  for (const Value* v : graph.values()) {
    known.insert(v);
    if (!v->name().empty() && !names.insert(v->name()).second) {
      return InvalidArgument("value name '" + v->name() + "' is defined more than once");
    }
    for (const Use& u : v->uses()) {
      if (u.node->input(u.input_index) != v) {
        return Internal("value '" + v->name() + "': use list disagrees with " + u.node->Label());
      }
    }
  }
  std::set<const Node*> nodes;
  for (const Node* n : graph.nodes()) nodes.insert(n);
  for (const Node* n : graph.nodes()) {
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      const Value* v = n->input(i);
      if (!v) continue;
      if (!known.count(v)) return Internal(n->Label() + ": input " + std::to_string(i) + " is not in the graph");
      const auto& uses = v->uses();
      if (std::find(uses.begin(), uses.end(), Use{const_cast<Node*>(n), i}) == uses.end()) {
        return Internal(n->Label() + ": input '" + v->name() + "' does not list this use");
      }
      if (!v->producer() && !v->is_constant() && !v->is_graph_input()) {
        return InvalidArgument(n->Label() + ": input '" + v->name() +
                               "' is not produced by any node, nor a graph input or initializer");
      }
      if (v->producer() && !nodes.count(v->producer())) {
        return Internal(n->Label() + ": input '" + v->name() + "' is produced by a removed node");
      }
    }
    for (size_t i = 0; i < n->num_outputs(); ++i) {
      const Value* o = n->output(i);
      if (!o) continue;
      if (o->producer() != n || o->producer_output_index() != i) {
        return InvalidArgument("value '" + o->name() + "' is produced by more than one node (" + n->Label() + ")");
      }
      if (o->is_graph_input() || o->is_constant()) {
        return InvalidArgument(n->Label() + ": output '" + o->name() + "' is also a graph input or initializer");
      }
    }
  }
  for (const Value* o : graph.outputs()) {
    if (!o->producer() && !o->is_constant() && !o->is_graph_input()) {
      return InvalidArgument("graph output '" + o->name() + "' is not produced by any node");
    }
  }
  auto order = graph.TopologicalOrder();
  if (!order.ok()) return order.status();
  return Status::Ok();
}

}  // namespace kiln
