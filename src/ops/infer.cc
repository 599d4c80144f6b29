#include "ops/infer.h"

#include <map>

#include "ops/registry.h"

namespace kiln {

Status ValidateGraphOps(const Graph& graph) {
  std::map<std::string, std::vector<std::string>> unsupported;
  for (const Node* n : graph.nodes()) {
    const OpSchema* s = OpRegistry::Global().Find(n->op());
    if (!s || !s->run) unsupported[std::string(n->op_name())].push_back(n->name());
  }
  if (!unsupported.empty()) {
    std::string msg = "unsupported operators: ";
    bool first = true;
    for (const auto& [op, names] : unsupported) {
      if (!first) msg += ", ";
      first = false;
      msg += op + " (" + std::to_string(names.size()) + (names.size() == 1 ? " node: " : " nodes: ");
      for (size_t i = 0; i < names.size() && i < 3; ++i) msg += (i ? ", " : "") + names[i];
      if (names.size() > 3) msg += ", ...";
      msg += ")";
    }
    return Unsupported(msg);
  }
  for (const Node* n : graph.nodes()) KILN_RETURN_IF_ERROR(ValidateNode(*n));
  return Status::Ok();
}

Status InferShapes(Graph& graph) {
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.TopologicalOrder());
  for (Node* n : order) {
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      const Value* v = n->input(i);
      if (v && v->dtype() == DType::kUndefined) {
        return InvalidArgument(n->Label() + ": input '" + v->name() + "' has no type (dangling input?)");
      }
    }
    const OpSchema* s = OpRegistry::Global().Find(n->op());
    if (!s || !s->infer) return Unsupported(n->Label() + ": no shape function");
    InferContext ctx(*n);
    Status st = s->infer(ctx);
    if (!st.ok()) return st.WithContext(n->Label());
    for (size_t i = 0; i < n->num_outputs(); ++i) {
      const Value* o = n->output(i);
      if (o && o->dtype() == DType::kUndefined) {
        return Internal(n->Label() + ": shape function left output " + std::to_string(i) + " untyped");
      }
    }
  }
  return Status::Ok();
}

}  // namespace kiln
