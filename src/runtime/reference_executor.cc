#include "runtime/reference_executor.h"

#include <unordered_map>

namespace kiln {

Status CheckGraphInputs(const Graph& graph, const TensorMap& inputs) {
  std::map<std::string, int64_t> bound;  // symbol -> size
  size_t expected = 0;
  for (const Value* in : graph.inputs()) {
    if (in->is_constant()) continue;
    ++expected;
    auto it = inputs.find(in->name());
    if (it == inputs.end()) return InvalidArgument("input '" + in->name() + "' is missing");
    const Tensor& t = it->second;
    if (t.dtype() != in->dtype()) {
      return InvalidArgument("input '" + in->name() + "' has dtype " + std::string(DTypeName(t.dtype())) +
                             ", expected " + std::string(DTypeName(in->dtype())));
    }
    if (!in->shape()) continue;
    const Shape& s = *in->shape();
    if (t.rank() != s.rank()) {
      return InvalidArgument("input '" + in->name() + "' has shape " + SizesToString(t.sizes()) +
                             ", expected " + s.ToString());
    }
    for (size_t d = 0; d < s.rank(); ++d) {
      const Dim& dim = s[d];
      const int64_t actual = t.size(d);
      if (dim.is_static() && dim.value() != actual) {
        return InvalidArgument("input '" + in->name() + "' has shape " + SizesToString(t.sizes()) +
                               ", expected " + s.ToString());
      }
      if (dim.is_symbolic()) {
        auto [b, inserted] = bound.emplace(dim.symbol(), actual);
        if (!inserted && b->second != actual) {
          return InvalidArgument("input '" + in->name() + "' dim " + std::to_string(d) + " ('" + dim.symbol() +
                                 "') is " + std::to_string(actual) + ", but another input bound '" +
                                 dim.symbol() + "' to " + std::to_string(b->second));
        }
      }
    }
  }
  if (inputs.size() != expected) {
    for (const auto& [name, t] : inputs) {
      const Value* v = graph.FindValue(name);
      if (!v || !v->is_graph_input() || v->is_constant()) {
        return InvalidArgument("'" + name + "' is not an input of the model");
      }
    }
  }
  return Status::Ok();
}

Expected<TensorMap> RunReference(const Graph& graph, const TensorMap& inputs, const ReferenceRunOptions& options) {
  KILN_RETURN_IF_ERROR(CheckGraphInputs(graph, inputs));
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.TopologicalOrder());

  std::unordered_map<const Value*, Tensor> live;
  std::unordered_map<const Value*, size_t> remaining_uses;
  for (const Value* in : graph.inputs()) {
    if (!in->is_constant()) live[in] = inputs.at(in->name());
  }
  for (const Node* n : order) {
    for (const Value* v : n->inputs()) {
      if (v) ++remaining_uses[v];
    }
  }
  auto lookup = [&](const Value* v) -> const Tensor* {
    if (v->is_constant()) return v->constant();
    auto it = live.find(v);
    return it == live.end() ? nullptr : &it->second;
  };

  for (const Node* n : order) {
    const OpSchema* schema = OpRegistry::Global().Find(n->op());
    if (!schema || !schema->run) return Unsupported(n->Label() + ": no reference kernel");
    std::vector<const Tensor*> ins(n->num_inputs(), nullptr);
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      if (const Value* v = n->input(i)) {
        ins[i] = lookup(v);
        if (!ins[i]) return InvalidArgument(n->Label() + ": input '" + v->name() + "' has no value (dangling input)");
      }
    }
    KernelContext ctx(*n, std::move(ins), options.limits);
    Status st;
    try {
      st = schema->run(ctx);
    } catch (const std::bad_alloc&) {
      st = OutOfRange("out of memory");
    }
    if (!st.ok()) return st.WithContext(n->Label());
    for (size_t i = 0; i < n->num_outputs(); ++i) {
      const Value* o = n->output(i);
      if (!o) continue;
      Tensor& t = ctx.outputs()[i];
      if (t.empty()) return Internal(n->Label() + ": kernel did not produce output " + std::to_string(i));
      live[o] = std::move(t);
    }
    for (const Value* v : n->inputs()) {
      if (v && --remaining_uses[v] == 0 && !v->is_graph_output()) live.erase(v);
    }
  }

  TensorMap out;
  for (const Value* o : graph.outputs()) {
    const Tensor* t = lookup(o);
    if (!t) return Internal("graph output '" + o->name() + "' was not computed");
    out[o->name()] = *t;
  }
  return out;
}

}  // namespace kiln
