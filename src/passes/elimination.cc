// Elimination: nodes that compute nothing, duplicates, and what nothing reads.
//   Identity(x) -> x;  Dropout(x) -> x (inference);  Reshape/Flatten(x) -> x when the shape is unchanged;
//   Transpose(x, identity) -> x;  Transpose(Transpose(x, p), q) -> x when p o q is the identity;
//   Cast(x, to = dtype(x)) -> x;  Concat(x) -> x;  f(a, b) twice -> once (CSE, constants included);
//   nodes whose outputs nothing reads, and weights nothing reads, are removed.
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

bool IsIdentityPerm(const std::vector<int64_t>& p) {
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

// The permutation of a Transpose (default: reversed dims), if the rank is known.
std::optional<std::vector<int64_t>> PermOf(const Node* t) {
  if (t->attrs().Has("perm")) return t->attrs().GetInts("perm");
  const Value* x = t->input(0);
  if (!x || !x->shape()) return std::nullopt;
  std::vector<int64_t> p(x->shape()->rank());
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<int64_t>(p.size() - 1 - i);
  return p;
}

// Whether `n` passes its input 0 through unchanged: the reason, or nullptr.
const char* NoOpReason(const Node* n) {
  const Value* x = n->input(0);
  const Value* y = n->output(0);
  if (!x || !y) return nullptr;
  switch (n->op()) {
    case OpKind::kIdentity: return "Identity removed";
    case OpKind::kDropout: {
      if (n->output(1) && !n->output(1)->uses().empty()) return nullptr;
      if (n->output(1) && n->output(1)->is_graph_output()) return nullptr;
      const Value* training = n->input(2);
      if (training && !(ScalarConstant(training) && *ScalarConstant(training) == 0)) return nullptr;
      return "Dropout removed";
    }
    case OpKind::kReshape:
    case OpKind::kFlatten:
    case OpKind::kSqueeze:
    case OpKind::kUnsqueeze:
      return SameKnownShape(x, y) ? "no-op reshape removed" : nullptr;
    case OpKind::kTranspose: {
      auto p = PermOf(n);
      return p && IsIdentityPerm(*p) ? "no-op Transpose removed" : nullptr;
    }
    case OpKind::kCast:
      return x->dtype() == y->dtype() && x->dtype() != DType::kUndefined ? "no-op Cast removed" : nullptr;
    case OpKind::kConcat:
    case OpKind::kSum:
    case OpKind::kMax:
    case OpKind::kMin:
    case OpKind::kMean:
      return n->num_inputs() == 1 ? "single-input variadic op removed" : nullptr;
    default:
      return nullptr;
  }
}

// Transpose(Transpose(x, p), q) -> x when p[q[i]] == i for all i, else -> Transpose(x, r), r[i] = p[q[i]]
// (when the inner Transpose has no other reader).
Expected<bool> CombineTransposes(Graph& g, Node* outer, PassReport& report) {
  if (outer->op() != OpKind::kTranspose) return false;
  Node* inner = ProducerOf(outer->input(0), OpKind::kTranspose, /*single_use=*/false);
  if (!inner) return false;
  auto p = PermOf(inner), q = PermOf(outer);
  if (!p || !q || p->size() != q->size()) return false;
  std::vector<int64_t> r(q->size());
  for (size_t i = 0; i < q->size(); ++i) {
    const int64_t qi = (*q)[i];
    if (qi < 0 || qi >= static_cast<int64_t>(p->size())) return false;
    r[i] = (*p)[static_cast<size_t>(qi)];
  }
  if (IsIdentityPerm(r)) {
    KILN_ASSIGN_OR_RETURN(bool done, Bypass(g, outer, inner->input(0), outer->output(0)));
    if (done) report.Count("cancelling Transpose pairs removed");
    return done;
  }
  if (!HasSingleUse(inner->output(0))) return false;
  Attributes attrs;
  attrs.Set("perm", r);
  KILN_ASSIGN_OR_RETURN(Node * t, ReplaceNodes(g, {inner, outer}, OpKind::kTranspose, NodeName(outer),
                                               {inner->input(0)}, {outer->output(0)}, std::move(attrs),
                                               outer->opset()));
  (void)t;
  report.Count("Transpose pairs combined into one");
  return true;
}

// Constants with equal dtype, sizes and bytes become one value (so CSE sees equal inputs as equal).
size_t MergeDuplicateConstants(Graph& g) {
  std::map<std::string, Value*> seen;
  size_t merged = 0;
  for (Value* v : g.values()) {
    if (!v->is_constant() || v->is_graph_input() || v->is_graph_output() || v->uses().empty()) continue;
    if (v->constant()->nbytes() > (size_t{1} << 20)) continue;  // weights are rarely duplicated
    auto [it, inserted] = seen.emplace(TensorKey(*v->constant()), v);
    if (!inserted) {
      g.ReplaceAllUsesWith(v, it->second);
      ++merged;
    }
  }
  return merged;
}

// Common-subexpression elimination: a node with the op, attributes and inputs of an earlier one.
Status EliminateCommonSubexpressions(Graph& g, PassReport& report) {
  std::map<std::string, Node*> seen;
  return RewriteSweep(g, [&](Node* n) -> Expected<bool> {
    std::string key = std::string(n->op_name()) + "/" + std::to_string(n->opset()) + "/" +
                      std::to_string(n->num_outputs()) + "(";
    for (const Value* v : n->inputs()) key += (v ? std::to_string(v->id()) : "-") + ",";
    key += ")";
    key += AttributesKey(n->attrs());
    auto [it, inserted] = seen.emplace(key, n);
    if (inserted || it->second == n) return false;
    Node* first = it->second;
    // Outputs that are graph outputs keep their node.
    for (const Value* o : n->outputs()) {
      if (o && o->is_graph_output()) return false;
    }
    for (size_t i = 0; i < n->num_outputs(); ++i) {
      if (n->output(i) && !first->output(i)) return false;
    }
    for (size_t i = 0; i < n->num_outputs(); ++i) {
      if (n->output(i)) g.ReplaceAllUsesWith(n->output(i), first->output(i));
    }
    g.RemoveNode(n);
    report.Count("duplicate nodes merged (CSE)");
    return true;
  });
}

}  // namespace

Status Elimination(Graph& g, PassReport& report) {
  KILN_RETURN_IF_ERROR(RewriteSweep(g, [&](Node* n) -> Expected<bool> {
    if (const char* why = NoOpReason(n)) {
      KILN_ASSIGN_OR_RETURN(bool done, Bypass(g, n, n->input(0), n->output(0)));
      if (done) report.Count(why);
      return done;
    }
    return CombineTransposes(g, n, report);
  }));
  const size_t merged = MergeDuplicateConstants(g);
  if (merged) report.Count("duplicate constants merged", static_cast<int64_t>(merged));
  KILN_RETURN_IF_ERROR(EliminateCommonSubexpressions(g, report));
  const size_t dead = RemoveDeadNodes(g);
  if (dead) report.Count("dead nodes removed", static_cast<int64_t>(dead));
  size_t unused_weights = 0;
  for (const Value* v : g.values()) {
    if (v->is_constant() && v->uses().empty() && !v->is_graph_input() && !v->is_graph_output()) ++unused_weights;
  }
  g.RemoveUnusedValues();
  if (unused_weights) report.Count("unused weights removed", static_cast<int64_t>(unused_weights));
  return Status::Ok();
}

}  // namespace kiln
