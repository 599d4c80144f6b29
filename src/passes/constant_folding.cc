// Constant folding: a node whose inputs are all constant is computed now with its reference kernel and
// replaced by constants. Shape sub-graphs fold as far as their dims are static; a symbolic dim (dynamic
// batch, sequence length) stays symbolic, but a Reshape whose target copies symbolic dims of its own
// input gets a constant target that says "copy" (0) for them, so the Shape -> Gather -> Unsqueeze ->
// Concat chain behind it dies.
#include <algorithm>
#include <memory>

#include "ops/infer.h"
#include "ops/op_util.h"
#include "ops/registry.h"
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

// Q/DQ nodes stay: the quantization passes of a later issue read them.
bool NeverFold(OpKind op) { return op == OpKind::kQuantizeLinear || op == OpKind::kDequantizeLinear; }

// The dims a Shape node outputs (its start/end attributes applied), if its input's rank is known.
std::optional<std::vector<Dim>> ShapeNodeDims(const Node* shape) {
  const Value* src = shape->input(0);
  if (!src || !src->shape()) return std::nullopt;
  const auto& dims = src->shape()->dims();
  const int64_t r = static_cast<int64_t>(dims.size());
  auto clamp = [r](int64_t v) { return std::clamp(v < 0 ? v + r : v, int64_t{0}, r); };
  const int64_t start = clamp(shape->attrs().GetInt("start", 0));
  const int64_t end = clamp(shape->attrs().GetInt("end", r));
  if (start >= end) return std::vector<Dim>{};
  return std::vector<Dim>(dims.begin() + start, dims.begin() + end);
}

// One entry of a shape vector under construction: a known size, or dim `index` of value `src`.
struct DimRef {
  int64_t value = -1;
  bool known = false;
  const Value* src = nullptr;
  int64_t index = -1;
};

// The offset a Shape node's output index maps to in its input's dims.
int64_t ShapeStart(const Node* shape) {
  const Value* src = shape->input(0);
  const int64_t r = src && src->shape() ? static_cast<int64_t>(src->shape()->rank()) : 0;
  const int64_t s = shape->attrs().GetInt("start", 0);
  return std::clamp(s < 0 ? s + r : s, int64_t{0}, r);
}

// Resolves a 1-D (or scalar) int64 shape-like value into known sizes and references to dims.
std::optional<std::vector<DimRef>> Resolve(const Value* v, int depth = 0) {
  if (!v || depth > 8) return std::nullopt;
  if (const Tensor* t = ConstantOf(v)) {
    if (t->rank() > 1 || !IsInteger(t->dtype())) return std::nullopt;
    std::vector<DimRef> out;
    for (int64_t i = 0; i < t->numel(); ++i) out.push_back({t->GetAsInt64(i), true});
    return out;
  }
  const Node* p = v->producer();
  if (!p) return std::nullopt;
  switch (p->op()) {
    case OpKind::kShape: {
      auto dims = ShapeNodeDims(p);
      if (!dims) return std::nullopt;
      std::vector<DimRef> out;
      const int64_t start = ShapeStart(p);
      for (size_t i = 0; i < dims->size(); ++i) {
        const Dim& d = (*dims)[i];
        out.push_back(d.is_static() ? DimRef{d.value(), true}
                                    : DimRef{-1, false, p->input(0), start + static_cast<int64_t>(i)});
      }
      return out;
    }
    case OpKind::kGather: {
      if (p->attrs().GetInt("axis", 0) != 0) return std::nullopt;
      const Tensor* idx = ConstantOf(p->input(1));
      if (!idx || idx->rank() > 1) return std::nullopt;
      auto data = Resolve(p->input(0), depth + 1);
      if (!data) return std::nullopt;
      std::vector<DimRef> out;
      const int64_t n = static_cast<int64_t>(data->size());
      for (int64_t i = 0; i < idx->numel(); ++i) {
        int64_t k = idx->GetAsInt64(i);
        if (k < 0) k += n;
        if (k < 0 || k >= n) return std::nullopt;
        out.push_back((*data)[static_cast<size_t>(k)]);
      }
      return out;
    }
    case OpKind::kUnsqueeze:
    case OpKind::kSqueeze: {
      // Only the scalar <-> [1] forms shape code uses.
      auto data = Resolve(p->input(0), depth + 1);
      if (!data || data->size() != 1) return std::nullopt;
      return data;
    }
    case OpKind::kConcat: {
      if (p->attrs().GetInt("axis", 0) != 0 && p->attrs().GetInt("axis", 0) != -1) return std::nullopt;
      std::vector<DimRef> out;
      for (const Value* in : p->inputs()) {
        auto part = Resolve(in, depth + 1);
        if (!part) return std::nullopt;
        out.insert(out.end(), part->begin(), part->end());
      }
      return out;
    }
    case OpKind::kCast: {
      if (p->attrs().GetInt("to", 0) != static_cast<int64_t>(DType::kInt64)) return std::nullopt;
      return Resolve(p->input(0), depth + 1);
    }
    default:
      return std::nullopt;
  }
}

Tensor Int64Tensor(const std::vector<int64_t>& values, bool scalar) {
  Tensor t = Tensor::FromVector(values);
  return scalar ? t.Reshaped({}) : t;
}

// Replaces the node by constants for its outputs.
void ReplaceByConstants(Graph& g, Node* n, std::vector<Tensor> outs) {
  std::vector<Value*> values = n->outputs();
  g.RemoveNode(n);
  for (size_t i = 0; i < values.size() && i < outs.size(); ++i) {
    if (values[i]) g.SetConstant(values[i], std::make_shared<const Tensor>(std::move(outs[i])));
  }
}

// Folds shape-like nodes whose values are known although their inputs are not constant.
bool FoldShapeNode(Graph& g, Node* n) {
  if (n->op() == OpKind::kSize) {
    const Value* src = n->input(0);
    if (!src || !src->shape() || !src->shape()->numel()) return false;
    ReplaceByConstants(g, n, {Tensor::Scalar<int64_t>(*src->shape()->numel())});
    return true;
  }
  if (n->op() != OpKind::kShape && n->op() != OpKind::kGather) return false;
  if (n->op() == OpKind::kGather && (!n->input(0) || !n->input(0)->producer() ||
                                     n->input(0)->producer()->op() != OpKind::kShape)) {
    return false;
  }
  auto refs = Resolve(n->output(0));
  if (!refs) return false;
  std::vector<int64_t> values;
  for (const DimRef& r : *refs) {
    if (!r.known) return false;
    values.push_back(r.value);
  }
  const Tensor* idx = n->op() == OpKind::kGather ? ConstantOf(n->input(1)) : nullptr;
  ReplaceByConstants(g, n, {Int64Tensor(values, idx && idx->rank() == 0)});
  return true;
}

bool SameDim(const Value* a, int64_t ia, const Value* b, int64_t ib) {
  if (a == b && ia == ib) return true;
  if (!a->shape() || !b->shape()) return false;
  if (ia < 0 || ib < 0 || ia >= static_cast<int64_t>(a->shape()->rank()) ||
      ib >= static_cast<int64_t>(b->shape()->rank())) {
    return false;
  }
  const Dim& da = (*a->shape())[static_cast<size_t>(ia)];
  const Dim& db = (*b->shape())[static_cast<size_t>(ib)];
  return !da.is_unknown() && da == db;
}

// Reshape(x, target built from x's own dims) -> Reshape(x, constant with 0 = "copy dim").
bool FoldReshapeTarget(Graph& g, Node* n, PassReport& report) {
  if (n->op() != OpKind::kReshape || n->attrs().GetInt("allowzero", 0) != 0) return false;
  Value* data = n->input(0);
  Value* target = n->input(1);
  if (!data || !target || target->is_constant()) return false;
  auto refs = Resolve(target);
  if (!refs) return false;
  std::vector<int64_t> values;
  int unresolved = -1;
  bool has_minus_one = false;
  for (size_t p = 0; p < refs->size(); ++p) {
    const DimRef& r = (*refs)[p];
    if (r.known) {
      has_minus_one = has_minus_one || r.value == -1;
      values.push_back(r.value);
    } else if (SameDim(data, static_cast<int64_t>(p), r.src, r.index)) {
      values.push_back(0);
    } else if (unresolved < 0) {
      unresolved = static_cast<int>(p);
      values.push_back(-1);
    } else {
      return false;
    }
  }
  // One dim we cannot name may become -1: the element count determines it, as it did before.
  if (unresolved >= 0 && has_minus_one) return false;
  n->SetInput(1, NewConstant(g, n->name() + "_shape", Tensor::FromVector(values)));
  report.Count("Reshape targets made constant");
  // The output shape can now be inferred (symbolic dims carried over).
  Status st = InferNode(n);
  if (!st.ok()) report.notes.push_back("shape inference after folding failed: " + st.message());
  return true;
}

Expected<bool> FoldConstantNode(Graph& g, Node* n, PassReport& report) {
  if (NeverFold(n->op()) || n->num_inputs() == 0) return false;
  std::vector<const Tensor*> ins;
  size_t in_bytes = 0;
  for (const Value* v : n->inputs()) {
    if (v && !v->is_constant()) return false;
    ins.push_back(v ? v->constant() : nullptr);
    if (v) in_bytes += v->constant()->nbytes();
  }
  const OpSchema* s = OpRegistry::Global().Find(n->op());
  if (!s || !s->run) return false;
  const KernelLimits limits;
  KernelContext ctx(*n, ins, limits);
  Status st;
  try {
    st = s->run(ctx);
  } catch (const std::bad_alloc&) {
    st = OutOfRange("out of memory");
  }
  if (!st.ok()) {
    report.notes.push_back("not folded: " + n->Label() + ": " + st.message());
    return false;
  }
  // Folding must not blow up the weights (Expand/Tile/ConstantOfShape of large shapes stay run-time work).
  size_t out_bytes = 0;
  for (size_t i = 0; i < n->num_outputs(); ++i) {
    if (n->output(i) && ctx.outputs()[i].empty()) return false;
    out_bytes += ctx.outputs()[i].nbytes();
  }
  if (out_bytes > std::max<size_t>(size_t{1} << 20, 2 * in_bytes)) return false;
  report.Count(std::string(n->op_name()) + " folded");
  ReplaceByConstants(g, n, std::move(ctx.outputs()));
  return true;
}

}  // namespace

Status ConstantFolding(Graph& g, PassReport& report) {
  KILN_RETURN_IF_ERROR(RewriteSweep(g, [&](Node* n) -> Expected<bool> {
    if (FoldShapeNode(g, n)) {
      report.Count("static shape values folded");
      return true;
    }
    if (FoldReshapeTarget(g, n, report)) return true;
    return FoldConstantNode(g, n, report);
  }));
  const size_t dead = RemoveDeadNodes(g);
  if (dead) report.Count("shape-computation nodes left unused", static_cast<int64_t>(dead));
  // Constant Reshape targets make downstream shapes known: infer them again for the passes that follow.
  return InferShapes(g);
}

}  // namespace kiln
