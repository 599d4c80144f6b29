// Rebuilds single ops from the formulas exporters decompose them into:
//   0.5 * x * (1 + erf(x / sqrt(2)))                                  -> Gelu(x)
//   0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))           -> Gelu(x, approximate=tanh)
//   (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * gamma + beta  -> LayerNormalization(x, gamma, beta)
//   x * sigmoid(x)                                                    -> kiln.Swish(x)
//   x * HardSigmoid(x; 1/6, 1/2),  x * clip(x + 3, 0, 6) / 6          -> HardSwish(x)
#include <algorithm>
#include <cmath>

#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kSqrt2OverPi = 0.7978845608028654;

// The nodes of a match and the value the replacement produces.
struct Match {
  std::vector<Node*> nodes;
  Value* out = nullptr;
};

// From `one_plus` (= 1 + f(x)) to the end of "0.5 * x * one_plus" in any of the orders exporters emit:
// (x * (1 + f)) * 0.5, (0.5 * x) * (1 + f), ((1 + f) * 0.5) * x.
std::optional<Match> MatchHalfXTimes(Node* one_plus, const Value* x) {
  Node* m1 = SoleConsumer(one_plus->output(0), OpKind::kMul);
  if (!m1) return std::nullopt;
  const int self = m1->input(0) == one_plus->output(0) ? 0 : 1;
  const Value* other = OtherInput(m1, static_cast<size_t>(self));
  if (other == x) {
    Node* m2 = SoleConsumer(m1->output(0), OpKind::kMul);
    if (!m2 || ScalarInput(m2, 0.5) < 0) return std::nullopt;
    return Match{{m1, m2}, m2->output(0)};
  }
  if (Node* half = ProducerOf(other, OpKind::kMul)) {
    const int h = ScalarInput(half, 0.5);
    if (h >= 0 && OtherInput(half, static_cast<size_t>(h)) == x) return Match{{half, m1}, m1->output(0)};
  }
  if (ScalarNear(other, 0.5)) {
    Node* m2 = SoleConsumer(m1->output(0), OpKind::kMul);
    if (!m2) return std::nullopt;
    const int mine = m2->input(0) == m1->output(0) ? 0 : 1;
    if (OtherInput(m2, static_cast<size_t>(mine)) != x) return std::nullopt;
    return Match{{m1, m2}, m2->output(0)};
  }
  return std::nullopt;
}

// erf(x / sqrt(2)) or erf(x * (1 / sqrt(2))): x.
Value* ErfArgument(const Node* erf, Node** scale) {
  const Value* in = erf->input(0);
  if (Node* div = ProducerOf(in, OpKind::kDiv); div && ScalarNear(div->input(1), kSqrt2)) {
    *scale = div;
    return div->input(0);
  }
  if (Node* mul = ProducerOf(in, OpKind::kMul)) {
    const int c = ScalarInput(mul, 1 / kSqrt2);
    if (c >= 0) {
      *scale = mul;
      return OtherInput(mul, static_cast<size_t>(c));
    }
  }
  return nullptr;
}

Expected<bool> FuseGelu(Graph& g, Node* n, PassReport& report) {
  Value* x = nullptr;
  std::vector<Node*> head;
  std::string approximate = "none";
  if (n->op() == OpKind::kErf) {
    Node* scale = nullptr;
    x = ErfArgument(n, &scale);
    if (!x) return false;
    head = {scale, n};
  } else if (n->op() == OpKind::kTanh) {
    // tanh(sqrt(2/pi) * (x + 0.044715 * x^3))
    Node* s = ProducerOf(n->input(0), OpKind::kMul);
    const int c = s ? ScalarInput(s, kSqrt2OverPi, 1e-3) : -1;
    if (c < 0) return false;
    Node* inner = ProducerOf(OtherInput(s, static_cast<size_t>(c)), OpKind::kAdd);
    if (!inner) return false;
    for (size_t i = 0; i < 2 && !x; ++i) {
      Node* cube_scale = ProducerOf(inner->input(1 - i), OpKind::kMul);
      const int k = cube_scale ? ScalarInput(cube_scale, 0.044715, 1e-3) : -1;
      if (k < 0) continue;
      Node* pow = ProducerOf(OtherInput(cube_scale, static_cast<size_t>(k)), OpKind::kPow);
      if (pow && pow->input(0) == inner->input(i) && ScalarNear(pow->input(1), 3.0)) {
        x = inner->input(i);
        head = {pow, cube_scale, inner, s, n};
      }
    }
    if (!x) return false;
    approximate = "tanh";
  } else {
    return false;
  }
  Node* one_plus = SoleConsumer(n->output(0), OpKind::kAdd);
  if (!one_plus || ScalarInput(one_plus, 1.0) < 0) return false;
  auto tail = MatchHalfXTimes(one_plus, x);
  if (!tail) return false;
  std::vector<Node*> nodes = head;
  nodes.push_back(one_plus);
  nodes.insert(nodes.end(), tail->nodes.begin(), tail->nodes.end());
  std::vector<std::string> names;
  for (Node* m : nodes) names.push_back(NodeName(m));
  Attributes attrs;
  if (approximate != "none") attrs.Set("approximate", approximate);
  const std::string name = NodeName(nodes.back());
  const int opset = std::max(20, nodes.back()->opset());
  KILN_ASSIGN_OR_RETURN(Node * gelu,
                        ReplaceNodes(g, nodes, OpKind::kGelu, name, {x}, {tail->out}, std::move(attrs), opset));
  report.Count(approximate == "tanh" ? "Gelu (tanh form) rebuilt" : "Gelu (erf form) rebuilt");
  report.Fused(gelu->name(), "Gelu", names);
  return true;
}

// Whether `axes` are the last axes.size() dims of a rank-`rank` tensor.
bool TrailingAxes(const std::vector<int64_t>& axes, size_t rank) {
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] != static_cast<int64_t>(rank - axes.size() + i)) return false;
  }
  return !axes.empty();
}

// Whether constant `p` broadcasts onto the trailing `k` dims of x's shape without growing.
bool FitsNormalizedDims(const Tensor* p, const Shape& xs, size_t k) {
  if (!p || p->rank() > k) return false;
  for (size_t d = 0; d < p->rank(); ++d) {
    const Dim& nd = xs[xs.rank() - p->rank() + d];
    if (p->size(d) != 1 && !(nd.is_static() && nd.value() == p->size(d))) return false;
  }
  return true;
}

Expected<bool> FuseLayerNorm(Graph& g, Node* div, PassReport& report) {
  if (div->op() != OpKind::kDiv) return false;
  Value* d = div->input(0);
  Node* sub = ProducerOf(d, OpKind::kSub, /*single_use=*/false);
  if (!sub || d->is_graph_output() || d->uses().size() != 2) return false;
  Value* x = sub->input(0);
  Node* mean = ProducerOf(sub->input(1), OpKind::kReduceMean);
  if (!mean || mean->input(0) != x || !x->shape() || !IsFloat(x->dtype())) return false;
  Node* sqrt = ProducerOf(div->input(1), OpKind::kSqrt);
  Node* add_eps = sqrt ? ProducerOf(sqrt->input(0), OpKind::kAdd) : nullptr;
  const int e = add_eps ? FindInput(add_eps, [](const Value* v) { return ScalarConstant(v).has_value(); }) : -1;
  if (e < 0) return false;
  const double eps = *ScalarConstant(add_eps->input(static_cast<size_t>(e)));
  Node* var = ProducerOf(OtherInput(add_eps, static_cast<size_t>(e)), OpKind::kReduceMean);
  Node* square = var ? var->input(0)->producer() : nullptr;
  if (!square || !HasSingleUse(var->input(0))) return false;
  const bool is_pow = square->op() == OpKind::kPow && square->input(0) == d && ScalarNear(square->input(1), 2.0);
  const bool is_mul = square->op() == OpKind::kMul && square->input(0) == d && square->input(1) == d;
  if (!is_pow && !is_mul) return false;
  auto axes = ReduceAxes(mean);
  auto var_axes = ReduceAxes(var);
  const size_t rank = x->shape()->rank();
  if (!axes || !var_axes || *axes != *var_axes || !TrailingAxes(*axes, rank)) return false;
  if (!AttrIntIs(mean, "keepdims", 1, 1) || !AttrIntIs(var, "keepdims", 1, 1)) return false;
  std::vector<Node*> nodes = {mean, sub, square, var, add_eps, sqrt, div};
  Value* out = div->output(0);
  Value* gamma = nullptr;
  Value* beta = nullptr;
  if (Node* mul = SoleConsumer(out, OpKind::kMul)) {
    const int c = FindInput(mul, [](const Value* v) { return v->is_constant(); });
    if (c >= 0 && FitsNormalizedDims(ConstantOf(mul->input(static_cast<size_t>(c))), *x->shape(), axes->size())) {
      gamma = mul->input(static_cast<size_t>(c));
      nodes.push_back(mul);
      out = mul->output(0);
      if (Node* add = SoleConsumer(out, OpKind::kAdd)) {
        const int b = FindInput(add, [](const Value* v) { return v->is_constant(); });
        if (b >= 0 && FitsNormalizedDims(ConstantOf(add->input(static_cast<size_t>(b))), *x->shape(), axes->size())) {
          beta = add->input(static_cast<size_t>(b));
          nodes.push_back(add);
          out = add->output(0);
        }
      }
    }
  }
  if (gamma && (gamma->dtype() != x->dtype() || (beta && beta->dtype() != x->dtype()))) return false;
  if (!gamma) gamma = NewConstant(g, NodeName(div) + "_ones", FloatTensor(x->dtype(), {1}, {1.0}));
  std::vector<std::string> names;
  for (Node* m : nodes) names.push_back(NodeName(m));
  Attributes attrs;
  attrs.Set("axis", (*axes)[0]);
  attrs.Set("epsilon", static_cast<float>(eps));
  const std::string name = NodeName(nodes.back());
  const int opset = std::max(17, nodes.back()->opset());
  std::vector<Value*> inputs = {x, gamma};
  if (beta) inputs.push_back(beta);
  KILN_ASSIGN_OR_RETURN(Node * ln, ReplaceNodes(g, nodes, OpKind::kLayerNormalization, name, inputs, {out},
                                                std::move(attrs), opset));
  report.Count("LayerNormalization rebuilt");
  report.Fused(ln->name(), "LayerNormalization", names);
  return true;
}

// x * sigmoid(x) -> Swish(x)
Expected<bool> FuseSwish(Graph& g, Node* mul, PassReport& report) {
  if (mul->op() != OpKind::kMul) return false;
  for (size_t i = 0; i < 2; ++i) {
    Node* sig = ProducerOf(mul->input(i), OpKind::kSigmoid);
    if (!sig || sig->input(0) != mul->input(1 - i)) continue;
    std::vector<std::string> names = {NodeName(sig), NodeName(mul)};
    KILN_ASSIGN_OR_RETURN(Node * sw, ReplaceNodes(g, {sig, mul}, OpKind::kSwish, NodeName(mul), {sig->input(0)},
                                                  {mul->output(0)}, {}, mul->opset()));
    report.Count("Swish (x * sigmoid(x)) rebuilt");
    report.Fused(sw->name(), "kiln.Swish", names);
    return true;
  }
  return false;
}

// x * HardSigmoid(x; 1/6, 1/2) -> HardSwish(x);  x * clip(x + 3, 0, 6) / 6 (either order) -> HardSwish(x)
Expected<bool> FuseHardSwish(Graph& g, Node* n, PassReport& report) {
  std::vector<Node*> nodes;
  Value* x = nullptr;
  Value* out = nullptr;
  if (n->op() == OpKind::kMul) {
    for (size_t i = 0; i < 2 && !x; ++i) {
      Node* hs = ProducerOf(n->input(i), OpKind::kHardSigmoid);
      if (hs && hs->input(0) == n->input(1 - i) && std::fabs(hs->attrs().GetFloat("alpha", 0.2f) - 1.0 / 6) < 1e-4 &&
          std::fabs(hs->attrs().GetFloat("beta", 0.5f) - 0.5) < 1e-6) {
        x = hs->input(0);
        nodes = {hs, n};
        out = n->output(0);
      }
    }
  } else if (n->op() == OpKind::kClip) {
    const auto bounds = ClipBounds(n);
    if (!bounds || bounds->first != 0 || bounds->second != 6) return false;
    Node* add = ProducerOf(n->input(0), OpKind::kAdd);
    const int c = add ? ScalarInput(add, 3.0) : -1;
    if (c < 0) return false;
    x = OtherInput(add, static_cast<size_t>(c));
    auto is_div6 = [](const Node* m) {
      return m && ((m->op() == OpKind::kDiv && ScalarNear(m->input(1), 6.0)) ||
                   (m->op() == OpKind::kMul && ScalarInput(m, 1.0 / 6) >= 0));
    };
    Node* c1 = HasSingleUse(n->output(0)) ? n->output(0)->uses()[0].node : nullptr;
    Node* c2 = c1 && HasSingleUse(c1->output(0)) ? c1->output(0)->uses()[0].node : nullptr;
    auto times_x = [&](const Node* m, const Value* v) {
      return m && m->op() == OpKind::kMul && ((m->input(0) == v && m->input(1) == x) || (m->input(1) == v && m->input(0) == x));
    };
    if (!c1 || !c2) return false;
    if (!((is_div6(c1) && times_x(c2, c1->output(0))) || (times_x(c1, n->output(0)) && is_div6(c2)))) return false;
    nodes = {add, n, c1, c2};
    out = c2->output(0);
  }
  if (!x) return false;
  std::vector<std::string> names;
  for (Node* m : nodes) names.push_back(NodeName(m));
  const std::string name = NodeName(nodes.back());
  KILN_ASSIGN_OR_RETURN(Node * hs, ReplaceNodes(g, nodes, OpKind::kHardSwish, name, {x}, {out}, {},
                                                std::max(14, nodes.back()->opset())));
  report.Count("HardSwish rebuilt");
  report.Fused(hs->name(), "HardSwish", names);
  return true;
}

}  // namespace

Status FuseDecomposed(Graph& g, PassReport& report) {
  return RewriteSweep(g, [&](Node* n) -> Expected<bool> {
    for (auto* fuse : {FuseGelu, FuseLayerNorm, FuseHardSwish, FuseSwish}) {
      KILN_ASSIGN_OR_RETURN(bool done, fuse(g, n, report));
      if (done) return true;
    }
    return false;
  });
}

}  // namespace kiln
