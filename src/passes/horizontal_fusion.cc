// Horizontal fusion: layers that read the same input with constant weights and equal attributes become
// one wider layer whose output a Split hands back to the original consumers:
//   Conv(x, W1, B1), ..., Conv(x, Wk, Bk) -> Split(Conv(x, [W1; ...; Wk], [B1; ...; Bk]), axis 1)
//   (e.g. the 1x1 branches of an Inception block)
//   MatMul/FusedGemm(x, B1, c1), ..., (x, Bk, ck) -> Split(FusedGemm(x, [B1 ... Bk], [c1 ... ck]), last axis)
//   (e.g. the Q, K, V projections of attention)
//   kiln.QMatMul(x, sx, zx, B1, s1, .., c1), ... -> Split(kiln.QMatMul(x, sx, zx, [B1 ... Bk], [s1 ... sk], ..,
//   [c1 ... ck]), last axis)   (8-bit B with zero points 0, f32 outputs; per-tensor scales become per column)
#include <cstring>
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

// Replaces `group` by one `op` node on `inputs` (named `base`) whose output a Split along `axis` hands back
// to the group's consumers, `split` elements each; reports `what` merged.
Status ReplaceWithSplit(Graph& g, const std::vector<Node*>& group, OpKind op, const std::string& base,
                        const std::vector<Value*>& inputs, Attributes attrs, const std::vector<int64_t>& split,
                        int64_t axis, const std::string& what, PassReport& report) {
  std::vector<Value*> outs;
  std::vector<std::string> names;
  for (Node* n : group) {
    outs.push_back(n->output(0));
    names.push_back(NodeName(n));
  }
  Value* merged = g.AddValue(g.UniqueValueName(base), group[0]->output(0)->dtype());
  const int opset = group[0]->opset();
  KILN_ASSIGN_OR_RETURN(Node * m, ReplaceNodes(g, group, op, base, inputs, {merged}, std::move(attrs), opset));
  Value* sizes = NewConstant(g, base + "_split", Tensor::FromVector(split));
  Node* s = g.AddNode(OpKind::kSplit, base + "_split", {merged, sizes}, outs, std::max(13, m->opset()));
  s->attrs().Set("axis", axis);
  Status st = InferNode(s);
  if (!st.ok()) return Internal("horizontal fusion made an invalid Split: " + st.message());
  report.Count(what + " merged", static_cast<int64_t>(group.size()));
  report.Count("Split nodes added");
  report.Fused(m->name(), std::string(m->op_name()), names);
  return Status::Ok();
}

// A kiln.QMatMul with an f32 output: its key names the 8-bit input and its parameters (by value).
std::optional<std::string> QMatMulKey(const Node* n) {
  if (n->op() != OpKind::kQMatMul || n->input(6) || n->input(7) || !n->output(0)->shape()) return std::nullopt;
  const Tensor* b = ConstantOf(n->input(3));
  const Tensor* sa = ConstantOf(n->input(1));
  const Tensor* za = n->input(2) ? ConstantOf(n->input(2)) : nullptr;
  const Tensor* sb = ConstantOf(n->input(4));
  if (!b || b->rank() != 2 || b->dtype() != DType::kInt8 || !sa || sa->numel() != 1 || !sb) return std::nullopt;
  if (n->input(2) && (!za || za->numel() != 1)) return std::nullopt;
  if (sb->dtype() != DType::kFloat32 || (sb->numel() != 1 && sb->numel() != b->size(1))) return std::nullopt;
  if (const Value* zb = n->input(5)) {
    const Tensor* t = ConstantOf(zb);
    if (!t) return std::nullopt;
    for (int64_t i = 0; i < t->numel(); ++i) {
      if (t->GetAsInt64(i) != 0) return std::nullopt;
    }
  }
  if (n->input(8)) {
    const Tensor* c = ConstantOf(n->input(8));
    if (!c || c->rank() != 1 || c->dtype() != DType::kFloat32 || c->size(0) != b->size(1)) return std::nullopt;
  }
  return "qgemm:" + std::to_string(n->input(0)->id()) + ":" + std::to_string(b->size(0)) + ":" +
         std::to_string(sa->GetAsDouble(0)) + ":" + std::to_string(za ? za->GetAsInt64(0) : 0) + ":" +
         std::string(DTypeName(za ? za->dtype() : n->input(0)->dtype())) + AttributesKey(n->attrs());
}

// kiln.QMatMuls of one key as one: B side by side (i8 [K, sum N]), per-column scales and biases.
Status MergeQMatMul(Graph& g, const std::vector<Node*>& group, PassReport& report) {
  Node* first = group[0];
  const int64_t k = ConstantOf(first->input(3))->size(0);
  int64_t total = 0;
  std::vector<int64_t> split;
  bool any_bias = false;
  for (Node* n : group) {
    split.push_back(ConstantOf(n->input(3))->size(1));
    total += split.back();
    any_bias = any_bias || n->input(8);
  }
  Tensor b(DType::kInt8, {k, total}), sb(DType::kFloat32, {total}), bias(DType::kFloat32, {total});
  int64_t col = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    const Tensor& bi = *ConstantOf(group[i]->input(3));
    const Tensor& si = *ConstantOf(group[i]->input(4));
    const Tensor* ci = group[i]->input(8) ? ConstantOf(group[i]->input(8)) : nullptr;
    const int64_t n = split[i];
    for (int64_t r = 0; r < k; ++r) {
      std::memcpy(b.data<int8_t>() + r * total + col, bi.data<int8_t>() + r * n, static_cast<size_t>(n));
    }
    for (int64_t j = 0; j < n; ++j) {
      sb.data<float>()[col + j] = si.data<float>()[si.numel() == 1 ? 0 : j];
      bias.data<float>()[col + j] = ci ? ci->data<float>()[j] : 0.f;
    }
    col += n;
  }
  const std::string base = NodeName(first) + "_hmerged";
  std::vector<Value*> inputs = {first->input(0),
                                first->input(1),
                                first->input(2),
                                NewConstant(g, base + "_B", std::move(b)),
                                NewConstant(g, base + "_b_scale", std::move(sb)),
                                nullptr,
                                nullptr,
                                nullptr,
                                any_bias ? NewConstant(g, base + "_bias", std::move(bias)) : nullptr};
  while (!inputs.back()) inputs.pop_back();
  const auto axis = static_cast<int64_t>(first->output(0)->shape()->rank() - 1);
  return ReplaceWithSplit(g, group, OpKind::kQMatMul, base, inputs, first->attrs(), split, axis,
                          "sibling 8-bit GEMMs", report);
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
  const size_t rank = first->output(0)->shape()->rank();
  OpKind op = conv ? first->op() : OpKind::kFusedGemm;
  Attributes attrs = first->op() == OpKind::kMatMul ? Attributes() : first->attrs();
  std::vector<Value*> inputs = {first->input(0), w};
  if (b) inputs.push_back(b);
  return ReplaceWithSplit(g, group, op, base, inputs, std::move(attrs), split,
                          static_cast<int64_t>(conv ? 1 : rank - 1), conv ? "sibling Convs" : "sibling GEMMs", report);
}

}  // namespace

Status HorizontalFusion(Graph& g, PassReport& report) {
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, g.TopologicalOrder());
  std::vector<std::string> keys;  // first-seen order: deterministic
  std::map<std::string, std::vector<Node*>> groups;
  for (Node* n : order) {
    std::optional<std::string> key = ConvKey(n);
    if (!key) key = GemmKey(n);
    if (!key) key = QMatMulKey(n);
    if (!key) continue;
    auto& members = groups[*key];
    if (members.empty()) keys.push_back(*key);
    members.push_back(n);
  }
  for (const std::string& key : keys) {
    const auto& members = groups[key];
    if (members.size() < 2) continue;
    if (key.rfind("qgemm:", 0) == 0) {
      KILN_RETURN_IF_ERROR(MergeQMatMul(g, members, report));
      continue;
    }
    KILN_RETURN_IF_ERROR(Merge(g, members, key.rfind("conv:", 0) == 0, report));
  }
  return Status::Ok();
}

}  // namespace kiln
