// Concat elimination (analysis): a Concat whose every input is produced by a node, read only by this
// Concat and not a graph output, can have its producers write straight into their slices of its output,
// so no copy is made. The pass records such Concats in the report's side table (keyed by value id) for
// the memory planner of a later issue; it does not change the graph, so the Concats still count as layers.
#include "ops/op_util.h"
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

// Ops whose output may alias their input (views) cannot write into someone else's buffer.
bool IsView(OpKind op) {
  return op == OpKind::kReshape || op == OpKind::kFlatten || op == OpKind::kSqueeze || op == OpKind::kUnsqueeze ||
         op == OpKind::kIdentity;
}

}  // namespace

Status ConcatElimination(Graph& g, PassReport& report) {
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, g.TopologicalOrder());
  int64_t total = 0;
  for (const Node* n : order) {
    if (n->op() != OpKind::kConcat) continue;
    ++total;
    const Value* out = n->output(0);
    if (!out->shape()) continue;
    auto axis = NormalizeAxis(n->attrs().GetInt("axis", 0), static_cast<int64_t>(out->shape()->rank()));
    if (!axis.ok()) continue;
    InPlaceConcat c;
    c.output_value_id = out->id();
    c.concat = NodeName(n);
    c.axis = *axis;
    for (int64_t d = 0; d < *axis; ++d) {
      const Dim& dim = (*out->shape())[static_cast<size_t>(d)];
      if (!(dim.is_static() && dim.value() == 1)) c.strided = true;
    }
    bool ok = true;
    int64_t offset = 0;
    for (size_t i = 0; i < n->num_inputs() && ok; ++i) {
      const Value* in = n->input(i);
      ok = in && HasSingleUse(in) && in->producer() && !in->is_graph_input() && !IsView(in->producer()->op()) &&
           in->shape();
      if (!ok) break;
      const Dim& extent = (*in->shape())[static_cast<size_t>(*axis)];
      c.slices.push_back({in->id(), NodeName(in->producer()), offset, extent.is_static() ? extent.value() : -1});
      offset = offset >= 0 && extent.is_static() ? offset + extent.value() : -1;
    }
    if (!ok) continue;
    report.in_place_concats.push_back(std::move(c));
  }
  const int64_t found = static_cast<int64_t>(report.in_place_concats.size());
  if (total) {
    report.notes.push_back(std::to_string(found) + " of " + std::to_string(total) +
                           " Concats can be written in place by their producers (recorded for the memory "
                           "planner; not realized yet, so they still count as layers)");
  }
  if (found) report.Count("Concats that can be written in place (recorded, not realized)", found);
  return Status::Ok();
}

}  // namespace kiln
