// Softmax attention in one node:
//   MatMul(Softmax(MatMul(q, kt) * s [+ mask]), v) -> kiln.Attention(q, kt, v [, mask], scale=s)
// where "* s" is Div by a constant, Mul by a constant, or absent (s = 1), and Softmax runs over the last
// axis. kt is the key as the exported graph feeds it to MatMul ([..., head_dim, seq]).
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

bool SoftmaxOverLastAxis(const Node* sm) {
  const Value* x = sm->input(0);
  if (!x->shape()) return false;
  const int64_t r = static_cast<int64_t>(x->shape()->rank());
  const int64_t axis = sm->attrs().GetInt("axis", sm->opset() >= 13 ? -1 : 1);
  return axis == -1 || axis == r - 1;
}

Expected<bool> Fuse(Graph& g, Node* sm, PassReport& report) {
  if (sm->op() != OpKind::kSoftmax || !SoftmaxOverLastAxis(sm) || !IsFloat(sm->output(0)->dtype())) return false;
  Node* pv = SoleConsumer(sm->output(0), OpKind::kMatMul);
  if (!pv || pv->input(0) != sm->output(0)) return false;
  std::vector<Node*> nodes = {sm, pv};
  Value* scores = sm->input(0);
  Value* mask = nullptr;
  if (Node* add = ProducerOf(scores, OpKind::kAdd)) {
    for (size_t i = 0; i < 2 && !mask; ++i) {
      const Node* p = add->input(i)->producer();
      if (p && (p->op() == OpKind::kMatMul || p->op() == OpKind::kDiv || p->op() == OpKind::kMul) &&
          HasSingleUse(add->input(i)) && CompatibleShapes(add->input(i), add->output(0))) {
        mask = add->input(1 - i);
        scores = add->input(i);
      }
    }
    if (!mask) return false;
    nodes.push_back(add);
  }
  double scale = 1.0;
  if (Node* div = ProducerOf(scores, OpKind::kDiv); div && ScalarConstant(div->input(1)) && *ScalarConstant(div->input(1)) != 0) {
    scale = 1.0 / *ScalarConstant(div->input(1));
    scores = div->input(0);
    nodes.push_back(div);
  } else if (Node* mul = ProducerOf(scores, OpKind::kMul)) {
    const int c = FindInput(mul, [](const Value* v) { return ScalarConstant(v).has_value(); });
    if (c < 0) return false;
    scale = *ScalarConstant(mul->input(static_cast<size_t>(c)));
    scores = OtherInput(mul, static_cast<size_t>(c));
    nodes.push_back(mul);
  }
  Node* qk = ProducerOf(scores, OpKind::kMatMul);
  if (!qk) return false;
  nodes.push_back(qk);
  for (const Value* v : {qk->input(0), qk->input(1), pv->input(1)}) {
    if (!v->shape() || v->shape()->rank() < 2) return false;
  }
  if (mask && DependsOn(mask, qk)) return false;
  std::vector<Value*> inputs = {qk->input(0), qk->input(1), pv->input(1)};
  if (mask) inputs.push_back(mask);
  Attributes attrs;
  attrs.Set("scale", static_cast<float>(scale));
  // In data-flow order: qk, scale, mask add, softmax, pv.
  std::vector<std::string> names;
  for (auto it = nodes.rbegin(); it != nodes.rend() - 2; ++it) names.push_back(NodeName(*it));
  names.push_back(NodeName(sm));
  names.push_back(NodeName(pv));
  KILN_ASSIGN_OR_RETURN(Node * att, ReplaceNodes(g, nodes, OpKind::kAttention, NodeName(sm), inputs,
                                                 {pv->output(0)}, std::move(attrs), pv->opset()));
  report.Count("attention fused");
  report.Fused(att->name(), "kiln.Attention", names);
  return true;
}

}  // namespace

Status FuseAttention(Graph& g, PassReport& report) {
  return RewriteSweep(g, [&](Node* n) { return Fuse(g, n, report); });
}

}  // namespace kiln
