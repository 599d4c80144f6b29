// Vertical fusion around matrix products (batched like MatMul):
//   Add(MatMul(a, b), c) -> FusedGemm(a, b, c)          c constant, broadcasting over the output
//   Add(FusedGemm(a, b, c), r) -> FusedGemm(a, b, c, r)  r the residual, same shape as the output
//   act(MatMul | Gemm | FusedGemm(...)) -> FusedGemm(..., activation=act)
//   act(kiln.QMatMul(...) with an f32 output) -> kiln.QMatMul(..., activation=act)
// A Gemm followed by a residual Add or an activation becomes a FusedGemm (same alpha/beta/trans).
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

bool HasActivation(const Node* n) { return !n->attrs().GetString("activation", "").empty(); }

// Constant `c` broadcasts onto shape `y` without growing it.
bool BroadcastsOnto(const Tensor* c, const std::optional<Shape>& y) {
  if (!c || !y || c->rank() > y->rank()) return false;
  for (size_t d = 0; d < c->rank(); ++d) {
    const Dim& yd = (*y)[y->rank() - c->rank() + d];
    if (c->size(d) != 1 && !(yd.is_static() && yd.value() == c->size(d))) return false;
  }
  return true;
}

// act(kiln.QMatMul with a float output) -> kiln.QMatMul(..., activation=act): the 8-bit product's f32
// result goes through the activation in the same kernel.
Expected<bool> FuseQMatMulActivation(Graph& g, Node* mm, PassReport& report) {
  if (mm->op() != OpKind::kQMatMul || HasActivation(mm) || mm->input(6) || mm->input(7)) return false;
  Value* y = mm->output(0);
  if (y->dtype() != DType::kFloat32 || !HasSingleUse(y)) return false;
  Node* next = y->uses()[0].node;
  Attributes attrs = mm->attrs();
  if (!FusableActivation(next, attrs)) return false;
  const std::string what = "kiln.QMatMul + " + attrs.GetString("activation") + " fused";
  const std::vector<std::string> names = {NodeName(mm), NodeName(next)};
  const std::vector<Value*> inputs = mm->inputs();
  KILN_ASSIGN_OR_RETURN(Node * f, ReplaceNodes(g, {mm, next}, OpKind::kQMatMul, NodeName(mm), inputs,
                                               {next->output(0)}, std::move(attrs), mm->opset()));
  report.Count(what);
  report.Fused(f->name(), "kiln.QMatMul", names);
  return true;
}

Expected<bool> Fuse(Graph& g, Node* mm, PassReport& report) {
  const OpKind op = mm->op();
  if (op == OpKind::kQMatMul) return FuseQMatMulActivation(g, mm, report);
  if (op != OpKind::kMatMul && op != OpKind::kGemm && op != OpKind::kFusedGemm) return false;
  Value* y = mm->output(0);
  if (HasActivation(mm) || !IsFloat(y->dtype()) || !HasSingleUse(y)) return false;
  const Value* a = mm->input(0);
  const Value* b = mm->input(1);
  if (!a->shape() || !b->shape() || a->shape()->rank() < 2 || b->shape()->rank() < 2) return false;
  Node* next = y->uses()[0].node;
  std::vector<Value*> inputs = {mm->input(0), mm->input(1), mm->input(2), mm->input(3)};
  Attributes attrs = op == OpKind::kMatMul ? Attributes() : mm->attrs();
  std::string what;
  if (next->op() == OpKind::kAdd) {
    const size_t self = next->input(0) == y ? 0 : 1;
    Value* other = next->input(1 - self);
    if (!other || other == y || other->dtype() != y->dtype()) return false;
    if (op == OpKind::kMatMul && other->is_constant() && BroadcastsOnto(other->constant(), y->shape()) &&
        CompatibleShapes(y, next->output(0))) {
      inputs[2] = other;
      what = "MatMul + bias Add fused";
    } else if (!inputs[3] && !other->is_constant() && CompatibleShapes(other, next->output(0)) &&
               CompatibleShapes(y, next->output(0)) && !DependsOn(other, mm)) {
      inputs[3] = other;
      what = std::string(mm->op_name()) + " + residual Add fused";
    } else {
      return false;
    }
  } else if (FusableActivation(next, attrs)) {
    what = std::string(mm->op_name()) + " + " + attrs.GetString("activation") + " fused";
  } else {
    return false;
  }
  while (!inputs.empty() && !inputs.back()) inputs.pop_back();
  const std::vector<std::string> names = {NodeName(mm), NodeName(next)};
  KILN_ASSIGN_OR_RETURN(Node * f, ReplaceNodes(g, {mm, next}, OpKind::kFusedGemm, NodeName(mm), inputs,
                                               {next->output(0)}, std::move(attrs), mm->opset()));
  report.Count(what);
  report.Fused(f->name(), "kiln.FusedGemm", names);
  return true;
}

}  // namespace

Status FuseGemm(Graph& g, PassReport& report) {
  return RewriteSweep(g, [&](Node* n) { return Fuse(g, n, report); });
}

}  // namespace kiln
