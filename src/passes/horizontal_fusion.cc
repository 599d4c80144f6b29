// Horizontal fusion: layers that read the same input with constant weights and equal attributes become
// one wider layer whose output a Split hands back to the original consumers:
//   Conv(x, W1, B1), ..., Conv(x, Wk, Bk) -> Split(Conv(x, [W1; ...; Wk], [B1; ...; Bk]), axis 1)
//   (e.g. the 1x1 branches of an Inception block)
//   MatMul/FusedGemm(x, B1, c1), ..., (x, Bk, ck) -> Split(FusedGemm(x, [B1 ... Bk], [c1 ... ck]), last axis)
//   (e.g. the Q, K, V projections of attention)
#include <map>

#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

// A conv that may join a group, and the key its siblings must share.
std::optional<std::string> ConvKey(const Node* n) {
  if (n->op() != OpKind::kConv && n->op() != OpKind::kFusedConv) return std::nullopt;
  const Tensor* w = ConstantOf(n->input(1));
  if (!w || w->rank() < 3 || !IsFloat(w->dtype()) || n->attrs().GetInt("group", 1) != 1) return std::nullopt;
  if (n->input(2) && !ConstantOf(n->input(2))) return std::nullopt;
  if (n->input(3) || !n->output(0)->shape()) return std::nullopt;
  std::vector<int64_t> per_out(w->sizes().begin() + 1, w->sizes().end());
  return "conv:" + std::to_string(n->input(0)->id()) + ":" + std::string(n->op_name()) + SizesToString(per_out) +
         AttributesKey(n->attrs());
}

std::optional<std::string> GemmKey(const Node* n) {
  if (n->op() != OpKind::kMatMul && n->op() != OpKind::kFusedGemm) return std::nullopt;
  const Tensor* w = ConstantOf(n->input(1));
  const Value* a = n->input(0);
  if (!w || w->rank() != 2 || !IsFloat(w->dtype()) || !a->shape() || a->shape()->rank() < 2) return std::nullopt;
  if (n->attrs().GetInt("transA", 0) || n->attrs().GetInt("transB", 0) || n->input(3)) return std::nullopt;
  if (n->input(2)) {
    const Tensor* c = ConstantOf(n->input(2));
    if (!c || c->rank() != 1 || c->size(0) != w->size(1)) return std::nullopt;
  }
  if (!n->output(0)->shape()) return std::nullopt;
  // A MatMul joins FusedGemms that have no epilogue beyond a bias.
  Attributes attrs = n->attrs();
  for (const char* k : {"alpha", "beta"}) {
    if (attrs.Has(k) && attrs.GetFloat(k) == 1.f) attrs.Erase(k);
  }
  for (const char* k : {"transA", "transB"}) attrs.Erase(k);
  return "gemm:" + std::to_string(a->id()) + ":" + std::to_string(w->size(0)) + AttributesKey(attrs);
}

// Concatenates the float constants along `axis`, filling absent ones (null) with zeros of `sizes[i]`.
Tensor ConcatConstants(const std::vector<const Tensor*>& parts, const std::vector<std::vector<int64_t>>& sizes,
                       size_t axis, DType dtype) {
  std::vector<int64_t> out_sizes = sizes[0];
  out_sizes[axis] = 0;
  for (const auto& s : sizes) out_sizes[axis] += s[axis];
  int64_t outer = 1;
  for (size_t d = 0; d < axis; ++d) outer *= out_sizes[d];
  std::vector<double> out(static_cast<size_t>(NumElements(out_sizes)), 0.0);
  const int64_t out_row = NumElements(out_sizes) / std::max<int64_t>(outer, 1);
  int64_t col = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const int64_t row = NumElements(sizes[i]) / std::max<int64_t>(outer, 1);
    if (parts[i]) {
      const std::vector<double> v = ToDoubles(*parts[i]);
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t j = 0; j < row; ++j) out[static_cast<size_t>(o * out_row + col + j)] = v[static_cast<size_t>(o * row + j)];
      }
    }
    col += row;
  }
  return FloatTensor(dtype, out_sizes, out);
}

Status Merge(Graph& g, const std::vector<Node*>& group, bool conv, PassReport& report) {
  Node* first = group[0];
  const Tensor& w0 = *ConstantOf(first->input(1));
  const size_t w_axis = conv ? 0 : 1;
  std::vector<const Tensor*> ws, bs;
  std::vector<std::vector<int64_t>> w_sizes, b_sizes;
  std::vector<int64_t> split;
  bool any_bias = false;
  for (Node* n : group) {
    const Tensor* w = ConstantOf(n->input(1));
    ws.push_back(w);
    w_sizes.push_back(w->sizes());
    const int64_t m = w->size(w_axis);
    split.push_back(m);
    bs.push_back(n->input(2) ? ConstantOf(n->input(2)) : nullptr);
    b_sizes.push_back({m});
    any_bias = any_bias || n->input(2);
  }
  const std::string base = NodeName(first) + "_hmerged";
  Value* w = NewConstant(g, base + "_W", ConcatConstants(ws, w_sizes, w_axis, w0.dtype()));
  Value* b = any_bias ? NewConstant(g, base + "_B", ConcatConstants(bs, b_sizes, 0, w0.dtype())) : nullptr;
  std::vector<Value*> outs;
  std::vector<std::string> names;
  for (Node* n : group) {
    outs.push_back(n->output(0));
    names.push_back(NodeName(n));
  }
  const size_t rank = first->output(0)->shape()->rank();
  Value* merged = g.AddValue(g.UniqueValueName(base), first->output(0)->dtype());
  OpKind op = conv ? first->op() : OpKind::kFusedGemm;
  Attributes attrs = first->op() == OpKind::kMatMul ? Attributes() : first->attrs();
  std::vector<Value*> inputs = {first->input(0), w};
  if (b) inputs.push_back(b);
  KILN_ASSIGN_OR_RETURN(Node * m, ReplaceNodes(g, group, op, base, inputs, {merged}, std::move(attrs), first->opset()));
  Value* sizes = NewConstant(g, base + "_split", Tensor::FromVector(split));
  Node* s = g.AddNode(OpKind::kSplit, base + "_split", {merged, sizes}, outs, std::max(13, m->opset()));
  s->attrs().Set("axis", static_cast<int64_t>(conv ? 1 : rank - 1));
  Status st = InferNode(s);
  if (!st.ok()) return Internal("horizontal fusion made an invalid Split: " + st.message());
  report.Count(std::string(conv ? "sibling Convs" : "sibling GEMMs") + " merged", static_cast<int64_t>(group.size()));
  report.Count("Split nodes added");
  report.Fused(m->name(), std::string(m->op_name()), names);
  return Status::Ok();
}

}  // namespace

Status HorizontalFusion(Graph& g, PassReport& report) {
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, g.TopologicalOrder());
  std::vector<std::string> keys;  // first-seen order: deterministic
  std::map<std::string, std::vector<Node*>> groups;
  for (Node* n : order) {
    std::optional<std::string> key = ConvKey(n);
    if (!key) key = GemmKey(n);
    if (!key) continue;
    auto& members = groups[*key];
    if (members.empty()) keys.push_back(*key);
    members.push_back(n);
  }
  for (const std::string& key : keys) {
    const auto& members = groups[key];
    if (members.size() < 2) continue;
    KILN_RETURN_IF_ERROR(Merge(g, members, key.rfind("conv:", 0) == 0, report));
  }
  return Status::Ok();
}

}  // namespace kiln
