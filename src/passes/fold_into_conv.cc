// Folds per-output-channel affine maps into the weights and bias of the layer before them:
//   BatchNormalization(Conv(x, W, B)) -> Conv(x, W * a, B * a + b)   a = gamma / sqrt(var + eps),
//                                                                     b = beta - mean * a
//   Mul(Conv(x, W, B), c) -> Conv(x, W * c, B * c);  Add(Conv(x, W, B), c) -> Conv(x, W, B + c)
// for c constant per output channel (or a scalar); likewise after ConvTranspose and Gemm (per column).
#include <cmath>

#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

// Per-channel y -> a * y + b.
struct Affine {
  std::vector<double> a, b;
};

// Output channels of `p` (M) when its weights are constant floats.
std::optional<int64_t> OutputChannels(const Node* p) {
  const Tensor* w = ConstantOf(p->input(1));
  if (!w || !IsFloat(w->dtype()) || w->rank() < 2) return std::nullopt;
  if (p->op() == OpKind::kConv) return w->size(0);
  if (p->op() == OpKind::kConvTranspose) return w->size(1) * p->attrs().GetInt("group", 1);
  return p->attrs().GetInt("transB", 0) ? w->size(0) : w->size(1);  // Gemm
}

// A constant that broadcasts as one value per channel (dim 1 of a rank-`rank` output): its M values.
std::optional<std::vector<double>> PerChannel(const Tensor* c, int64_t m, size_t rank) {
  if (!c || !IsFloat(c->dtype()) || c->rank() > rank) return std::nullopt;
  const size_t lead = rank - c->rank();
  for (size_t d = 0; d < c->rank(); ++d) {
    const size_t out_dim = lead + d;
    if (c->size(d) != 1 && !(out_dim == 1 && c->size(d) == m)) return std::nullopt;
  }
  std::vector<double> v = ToDoubles(*c);
  if (v.size() == 1) v.assign(static_cast<size_t>(m), v[0]);
  if (static_cast<int64_t>(v.size()) != m) return std::nullopt;
  return v;
}

// The affine map node `n` applies per channel to the output of `p`, if it is one.
std::optional<Affine> AffineOf(const Node* n, const Node* p, int64_t m) {
  const size_t rank = p->op() == OpKind::kGemm ? 2 : (ConstantOf(p->input(1))->rank());
  if (n->op() == OpKind::kBatchNormalization) {
    if (n->attrs().GetInt("training_mode", 0) != 0) return std::nullopt;
    for (size_t i = 1; i < n->num_outputs(); ++i) {
      if (n->output(i) && (!n->output(i)->uses().empty() || n->output(i)->is_graph_output())) return std::nullopt;
    }
    std::vector<std::vector<double>> p4;
    for (size_t i = 1; i < 5; ++i) {
      const Tensor* t = ConstantOf(n->input(i));
      if (!t || t->rank() != 1 || t->size(0) != m || !IsFloat(t->dtype())) return std::nullopt;
      p4.push_back(ToDoubles(*t));
    }
    const double eps = n->attrs().GetFloat("epsilon", 1e-5f);
    Affine f{std::vector<double>(static_cast<size_t>(m)), std::vector<double>(static_cast<size_t>(m))};
    for (size_t c = 0; c < static_cast<size_t>(m); ++c) {
      f.a[c] = p4[0][c] / std::sqrt(p4[3][c] + eps);
      f.b[c] = p4[1][c] - p4[2][c] * f.a[c];
    }
    return f;
  }
  if (n->op() != OpKind::kMul && n->op() != OpKind::kAdd) return std::nullopt;
  const size_t self = n->input(0) == p->output(0) ? 0 : 1;
  auto c = PerChannel(ConstantOf(n->input(1 - self)), m, rank);
  if (!c) return std::nullopt;
  if (n->op() == OpKind::kMul) return Affine{*c, std::vector<double>(static_cast<size_t>(m), 0.0)};
  return Affine{std::vector<double>(static_cast<size_t>(m), 1.0), *c};
}

Expected<bool> Fold(Graph& g, Node* n, PassReport& report) {
  if (n->op() != OpKind::kBatchNormalization && n->op() != OpKind::kMul && n->op() != OpKind::kAdd) return false;
  Node* p = nullptr;
  for (size_t i = 0; i < (n->op() == OpKind::kBatchNormalization ? 1u : 2u) && !p; ++i) {
    for (OpKind k : {OpKind::kConv, OpKind::kConvTranspose, OpKind::kGemm}) {
      if (!p) p = ProducerOf(n->input(i), k);
    }
  }
  if (!p) return false;
  auto m = OutputChannels(p);
  if (!m) return false;
  const Tensor& w = *ConstantOf(p->input(1));
  const Value* bias_in = p->input(2);
  const Tensor* bias = bias_in ? ConstantOf(bias_in) : nullptr;
  if ((bias_in && !bias) || (n->output(0)->dtype() != w.dtype())) return false;
  auto f = AffineOf(n, p, *m);
  if (!f) return false;
  // Bias as one value per output channel.
  std::vector<double> b(static_cast<size_t>(*m), 0.0);
  double gemm_beta = p->attrs().GetFloat("beta", 1.f);
  if (bias) {
    const size_t rank = p->op() == OpKind::kGemm ? 2 : 2;  // Conv bias is [M]; Gemm's C must be per column
    auto per = p->op() == OpKind::kGemm ? PerChannel(bias, *m, rank) : std::optional(ToDoubles(*bias));
    if (p->op() == OpKind::kGemm && bias->rank() == 2 && bias->size(0) != 1) return false;
    if (!per || static_cast<int64_t>(per->size()) != *m) return false;
    b = *per;
    if (p->op() == OpKind::kGemm) {
      for (double& v : b) v *= gemm_beta;
    }
  }
  std::vector<double> wv = ToDoubles(w);
  const int64_t per_out = w.numel() / w.size(0);
  if (p->op() == OpKind::kConv) {
    for (int64_t o = 0; o < *m; ++o) {
      for (int64_t i = 0; i < per_out; ++i) wv[static_cast<size_t>(o * per_out + i)] *= f->a[static_cast<size_t>(o)];
    }
  } else if (p->op() == OpKind::kConvTranspose) {
    const int64_t group = p->attrs().GetInt("group", 1);
    const int64_t cin = w.size(0), mg = w.size(1), spatial = per_out / mg;
    for (int64_t c = 0; c < cin; ++c) {
      const int64_t grp = c / (cin / group);
      for (int64_t j = 0; j < mg; ++j) {
        for (int64_t s = 0; s < spatial; ++s) {
          wv[static_cast<size_t>((c * mg + j) * spatial + s)] *= f->a[static_cast<size_t>(grp * mg + j)];
        }
      }
    }
  } else {
    const bool tb = p->attrs().GetInt("transB", 0) != 0;
    const int64_t rows = w.size(0), cols = w.size(1);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) wv[static_cast<size_t>(r * cols + c)] *= f->a[static_cast<size_t>(tb ? r : c)];
    }
  }
  for (size_t o = 0; o < b.size(); ++o) b[o] = b[o] * f->a[o] + f->b[o];
  Value* new_w = NewConstant(g, p->input(1)->name() + "_folded", FloatTensor(w.dtype(), w.sizes(), wv));
  Value* new_b = NewConstant(g, (bias_in ? bias_in->name() : NodeName(p) + "_bias") + "_folded",
                             FloatTensor(w.dtype(), {*m}, b));
  Attributes attrs = p->attrs();
  if (p->op() == OpKind::kGemm) attrs.Set("beta", 1.f);
  const std::vector<std::string> names = {NodeName(p), NodeName(n)};
  const std::string what = std::string(n->op_name()) + " folded into " + std::string(p->op_name());
  KILN_ASSIGN_OR_RETURN(Node * q, ReplaceNodes(g, {p, n}, p->op(), NodeName(p), {p->input(0), new_w, new_b},
                                               {n->output(0)}, std::move(attrs), p->opset()));
  report.Count(what);
  report.Fused(q->name(), std::string(q->op_name()), names);
  return true;
}

}  // namespace

Status FoldIntoConv(Graph& g, PassReport& report) {
  return RewriteSweep(g, [&](Node* n) { return Fold(g, n, report); });
}

}  // namespace kiln
