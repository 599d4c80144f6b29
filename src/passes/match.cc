#include "passes/match.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include "ops/registry.h"

namespace kiln {

bool HasSingleUse(const Value* v) { return v && v->uses().size() == 1 && !v->is_graph_output(); }

Node* ProducerOf(const Value* v, OpKind op, bool single_use) {
  if (!v || !v->producer() || v->producer()->op() != op) return nullptr;
  if (single_use && !HasSingleUse(v)) return nullptr;
  return v->producer();
}

Node* SoleConsumer(const Value* v, OpKind op) {
  if (!HasSingleUse(v)) return nullptr;
  Node* n = v->uses()[0].node;
  return n->op() == op ? n : nullptr;
}

const Tensor* ConstantOf(const Value* v) { return v ? v->constant() : nullptr; }

std::optional<double> ScalarConstant(const Value* v) {
  const Tensor* t = ConstantOf(v);
  if (!t || t->numel() != 1 || t->dtype() == DType::kUndefined) return std::nullopt;
  return t->GetAsDouble(0);
}

bool ScalarNear(const Value* v, double want, double rel_tol) {
  const auto s = ScalarConstant(v);
  return s && std::fabs(*s - want) <= rel_tol * std::max(1.0, std::fabs(want));
}

int FindInput(const Node* n, const std::function<bool(const Value*)>& pred) {
  for (size_t i = 0; i < n->num_inputs() && i < 2; ++i) {
    if (n->input(i) && pred(n->input(i))) return static_cast<int>(i);
  }
  return -1;
}

int ScalarInput(const Node* n, double want, double rel_tol) {
  return FindInput(n, [&](const Value* v) { return ScalarNear(v, want, rel_tol); });
}

std::optional<std::pair<double, double>> ClipBounds(const Node* clip) {
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  if (clip->opset() > 0 && clip->opset() < 11) {
    if (clip->attrs().Has("min")) lo = clip->attrs().GetFloat("min");
    if (clip->attrs().Has("max")) hi = clip->attrs().GetFloat("max");
    return std::make_pair(lo, hi);
  }
  for (size_t i = 1; i < 3; ++i) {
    const Value* v = clip->input(i);
    if (!v) continue;
    const auto s = ScalarConstant(v);
    if (!s) return std::nullopt;
    (i == 1 ? lo : hi) = *s;
  }
  return std::make_pair(lo, hi);
}

std::optional<std::vector<int64_t>> ReduceAxes(const Node* n) {
  const Value* x = n->input(0);
  if (!x || !x->shape()) return std::nullopt;
  const int64_t r = static_cast<int64_t>(x->shape()->rank());
  std::vector<int64_t> axes;
  if (n->input(1)) {
    const Tensor* t = ConstantOf(n->input(1));
    if (!t) return std::nullopt;
    axes = t->ToInt64Vector();
  } else {
    axes = n->attrs().GetInts("axes");
  }
  if (axes.empty()) {
    if (n->attrs().GetInt("noop_with_empty_axes", 0)) return std::nullopt;
    for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  }
  for (int64_t& a : axes) {
    if (a < -r || a >= r) return std::nullopt;
    if (a < 0) a += r;
  }
  std::sort(axes.begin(), axes.end());
  return axes;
}

bool FusableActivation(const Node* act, Attributes& attrs) {
  if (!act->input(0) || !IsFloat(act->input(0)->dtype())) return false;
  std::string name;
  std::optional<float> alpha, beta;
  switch (act->op()) {
    case OpKind::kRelu: name = "Relu"; break;
    case OpKind::kTanh: name = "Tanh"; break;
    case OpKind::kSigmoid: name = "Sigmoid"; break;
    case OpKind::kHardSwish: name = "HardSwish"; break;
    case OpKind::kGelu: name = act->attrs().GetString("approximate", "none") == "tanh" ? "GeluTanh" : "Gelu"; break;
    case OpKind::kLeakyRelu:
      name = "LeakyRelu";
      alpha = act->attrs().GetFloat("alpha", 0.01f);
      break;
    case OpKind::kHardSigmoid:
      name = "HardSigmoid";
      alpha = act->attrs().GetFloat("alpha", 0.2f);
      beta = act->attrs().GetFloat("beta", 0.5f);
      break;
    case OpKind::kSwish:
      name = "Swish";
      alpha = act->attrs().GetFloat("alpha", 1.f);
      break;
    case OpKind::kClip: {
      const auto b = ClipBounds(act);
      if (!b) return false;
      name = "Clip";
      alpha = static_cast<float>(b->first);
      beta = static_cast<float>(b->second);
      break;
    }
    default:
      return false;
  }
  attrs.Set("activation", name);
  if (alpha) attrs.Set("activation_alpha", *alpha);
  if (beta) attrs.Set("activation_beta", *beta);
  return true;
}

bool DependsOn(const Value* v, const Node* n) {
  std::set<int> seen;
  std::vector<const Node*> stack;
  if (v && v->producer()) stack.push_back(v->producer());
  while (!stack.empty()) {
    const Node* cur = stack.back();
    stack.pop_back();
    if (cur == n) return true;
    if (!seen.insert(cur->id()).second) continue;
    for (const Value* in : cur->inputs()) {
      if (in && in->producer()) stack.push_back(in->producer());
    }
  }
  return false;
}

bool SameKnownShape(const Value* a, const Value* b) {
  if (!a || !b || !a->shape() || !b->shape()) return false;
  for (const Dim& d : a->shape()->dims()) {
    if (d.is_unknown()) return false;
  }
  return *a->shape() == *b->shape();
}

std::string TensorKey(const Tensor& t) {
  std::string key = std::string(DTypeName(t.dtype())) + SizesToString(t.sizes()) + ":";
  key.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  return key;
}

namespace {
std::string AttrKey(const AttrValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) return "i" + std::to_string(x);
        if constexpr (std::is_same_v<T, float>) {
          uint32_t bits;
          std::memcpy(&bits, &x, 4);
          return "f" + std::to_string(bits);
        }
        if constexpr (std::is_same_v<T, std::string>) return "s" + std::to_string(x.size()) + ":" + x;
        if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          std::string s = "I";
          for (int64_t e : x) s += std::to_string(e) + ",";
          return s;
        }
        if constexpr (std::is_same_v<T, std::vector<float>>) {
          std::string s = "F";
          for (float e : x) {
            uint32_t bits;
            std::memcpy(&bits, &e, 4);
            s += std::to_string(bits) + ",";
          }
          return s;
        }
        if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string s = "S";
          for (const auto& e : x) s += std::to_string(e.size()) + ":" + e;
          return s;
        }
        if constexpr (std::is_same_v<T, Tensor>) return "T" + TensorKey(x);
        return "?";
      },
      v);
}

}  // namespace

std::string AttributesKey(const Attributes& attrs) {
  std::string key;
  for (const auto& [name, v] : attrs.all()) key += name + "=" + AttrKey(v) + ";";
  return key;
}

bool CompatibleShapes(const Value* a, const Value* b) {
  if (!a || !b || !a->shape() || !b->shape() || a->shape()->rank() != b->shape()->rank()) return false;
  for (size_t i = 0; i < a->shape()->rank(); ++i) {
    const Dim& x = (*a->shape())[i];
    const Dim& y = (*b->shape())[i];
    if (!x.is_unknown() && !y.is_unknown() && x != y) return false;
  }
  return true;
}

std::string NodeName(const Node* n) { return n->name().empty() ? "#" + std::to_string(n->id()) : n->name(); }

Status InferNode(Node* n) {
  KILN_RETURN_IF_ERROR(ValidateNode(*n));
  const OpSchema* s = OpRegistry::Global().Find(n->op());
  if (!s || !s->infer) return Unsupported(n->Label() + ": no shape function");
  InferContext ctx(*n);
  Status st = s->infer(ctx);
  if (!st.ok()) return st.WithContext(n->Label());
  return Status::Ok();
}

Expected<Node*> ReplaceNodes(Graph& g, const std::vector<Node*>& old, OpKind op, std::string name,
                             std::vector<Value*> inputs, std::vector<Value*> outputs, Attributes attrs,
                             int opset) {
  std::vector<Node*> unique;
  for (Node* n : old) {
    if (n && std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(n);
  }
  for (Node* n : unique) g.RemoveNode(n);
  Node* fused = g.AddNode(op, std::move(name), std::move(inputs), std::move(outputs), opset);
  fused->attrs() = std::move(attrs);
  Status st = InferNode(fused);
  if (!st.ok()) return Internal("rewrite made an invalid node: " + st.message());
  return fused;
}

Expected<Node*> ReplaceOutputs(Graph& g, Node* n, std::vector<Value*> outputs) {
  const OpKind op = n->op();
  std::string name = n->name();
  std::vector<Value*> inputs = n->inputs();
  Attributes attrs = n->attrs();
  const int opset = n->opset();
  return ReplaceNodes(g, {n}, op, std::move(name), std::move(inputs), std::move(outputs), std::move(attrs), opset);
}

Expected<bool> Bypass(Graph& g, Node* n, Value* in, Value* out) {
  if (!out->is_graph_output()) {
    g.ReplaceAllUsesWith(out, in);
    g.RemoveNode(n);
    return true;
  }
  // `out` must keep its name: let in's producer compute it directly.
  Node* p = in->producer();
  if (!p || in->is_graph_output() || in->is_graph_input() || in->uses().size() != 1) return false;
  g.ReplaceAllUsesWith(out, in);  // `out` has no other readers left
  g.RemoveNode(n);
  std::vector<Value*> outs = p->outputs();
  for (Value*& o : outs) {
    if (o == in) o = out;
  }
  g.ReplaceAllUsesWith(in, out);
  // ReplaceAllUsesWith made `in` the graph output; give the slot back to `out`.
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    if (g.outputs()[i] == in) g.SetOutput(i, out);
  }
  KILN_ASSIGN_OR_RETURN(Node * q, ReplaceOutputs(g, p, std::move(outs)));
  (void)q;
  return true;
}

size_t RemoveDeadNodes(Graph& g) {
  size_t removed = 0;
  for (bool again = true; again;) {
    again = false;
    for (Node* n : g.nodes()) {
      bool used = false;
      for (const Value* o : n->outputs()) {
        if (o && (!o->uses().empty() || o->is_graph_output())) used = true;
      }
      if (!used) {
        g.RemoveNode(n);
        ++removed;
        again = true;
      }
    }
  }
  return removed;
}

Status RewriteSweep(Graph& g, const std::function<Expected<bool>(Node*)>& fn) {
  constexpr int kMaxSweeps = 32;
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, g.TopologicalOrder());
    std::vector<int> ids;
    for (Node* n : order) ids.push_back(n->id());
    std::map<int, Node*> live;
    auto refresh = [&] {
      live.clear();
      for (Node* n : g.nodes()) live[n->id()] = n;
    };
    refresh();
    bool changed = false;
    for (int id : ids) {
      auto it = live.find(id);
      if (it == live.end()) continue;
      KILN_ASSIGN_OR_RETURN(bool c, fn(it->second));
      if (c) {
        changed = true;
        refresh();
      }
    }
    if (!changed) break;
  }
  return Status::Ok();
}

Value* NewConstant(Graph& g, const std::string& base, Tensor t) {
  return g.AddConstant(g.UniqueValueName(base), std::move(t));
}

Tensor FloatTensor(DType dtype, const std::vector<int64_t>& sizes, const std::vector<double>& values) {
  Tensor t(dtype, sizes);
  VisitFloatDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size() && static_cast<int64_t>(i) < t.numel(); ++i) {
      p[i] = T(static_cast<ComputeT<T>>(values[i]));
    }
  });
  return t;
}

std::vector<double> ToDoubles(const Tensor& t) {
  std::vector<double> out;
  if (!IsFloat(t.dtype())) return out;
  out.resize(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) out[static_cast<size_t>(i)] = t.GetAsDouble(i);
  return out;
}

}  // namespace kiln
