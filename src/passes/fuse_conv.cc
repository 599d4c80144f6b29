// Vertical fusion around convolutions:
//   Add(Conv(x, W, B), z) -> FusedConv(x, W, B, z)                  (z the residual, same shape as the output)
//   act(Conv(x, W, B [, z])) -> FusedConv(x, W, B [, z], activation=act)
// act: Relu, Clip (Relu6), LeakyRelu, Sigmoid, Tanh, kiln.Swish (SiLU), HardSwish, HardSigmoid, Gelu.
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

bool HasActivation(const Node* n) { return !n->attrs().GetString("activation", "").empty(); }

Attributes ConvAttrs(const Node* conv) {
  Attributes a = conv->attrs();
  return a;
}

Expected<bool> Fuse(Graph& g, Node* conv, PassReport& report) {
  if (conv->op() != OpKind::kConv && conv->op() != OpKind::kFusedConv) return false;
  if (HasActivation(conv) || !IsFloat(conv->output(0)->dtype())) return false;
  Value* y = conv->output(0);
  if (!HasSingleUse(y)) return false;
  Node* next = y->uses()[0].node;
  std::vector<Value*> inputs = {conv->input(0), conv->input(1), conv->input(2), conv->input(3)};
  Attributes attrs = ConvAttrs(conv);
  std::string what;
  if (next->op() == OpKind::kAdd && !conv->input(3)) {
    Value* z = next->input(0) == y ? next->input(1) : next->input(0);
    if (!z || z == y || !SameKnownShape(z, next->output(0)) || !SameKnownShape(y, next->output(0))) return false;
    if (z->dtype() != y->dtype() || DependsOn(z, conv)) return false;
    inputs[3] = z;
    what = "Conv + residual Add fused";
  } else if (FusableActivation(next, attrs)) {
    what = "Conv + " + attrs.GetString("activation") + " fused";
  } else {
    return false;
  }
  while (!inputs.empty() && !inputs.back()) inputs.pop_back();
  const std::vector<std::string> names = {NodeName(conv), NodeName(next)};
  KILN_ASSIGN_OR_RETURN(Node * f, ReplaceNodes(g, {conv, next}, OpKind::kFusedConv, NodeName(conv), inputs,
                                               {next->output(0)}, std::move(attrs), conv->opset()));
  report.Count(what);
  report.Fused(f->name(), "kiln.FusedConv", names);
  return true;
}

}  // namespace

Status FuseConv(Graph& g, PassReport& report) {
  return RewriteSweep(g, [&](Node* n) { return Fuse(g, n, report); });
}

}  // namespace kiln
