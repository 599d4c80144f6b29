// FP16 LayerNormalization with the sums that feed it and an embedding lookup folded in, as BERT's
// embeddings compute it:
//
//   LayerNorm(Add(Add(Gather(table, ids), a0), a1))  ->  one pass: table[ids[row]] + a0[row % p0] + a1[row % p1]
//
// where each addend is contiguous and broadcast only over leading dims ([hidden], [1, S, hidden], or the
// full shape), the Adds and the Gather feed nothing else, and the normalized axis is the last. The folded
// layers launch nothing (FoldedLayers); without a Gather the first term is the tensor itself.
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_layers_common.h"
#include "backends/cuda/cuda_program.h"

namespace kiln::cuda {
namespace {

struct LnFold {
  const Value* main = nullptr;  // the full-shape term (or, with a table, the Gather's indices)
  const Value* table = nullptr;
  int64_t table_rows = 0;
  std::vector<std::pair<const Value*, int64_t>> adds;  // addend, row period
  std::vector<const Node*> folded;
};

bool FeedsOnly(const Value* v, const Node* consumer) {
  return v && !v->is_graph_output() && v->uses().size() == 1 && v->uses().front().node == consumer;
}

// Rows after which `a` repeats when broadcast to `full` ([..., cols]), or 0 if `a` is not contiguous and
// broadcast only over leading dims.
int64_t RowPeriod(const std::vector<int64_t>& a, const std::vector<int64_t>& full) {
  if (a.empty() || a.size() > full.size() || a.back() != full.back()) return 0;
  const size_t off = full.size() - a.size();
  size_t first = 0;  // first dim of `a` that is not a leading 1
  while (first + 1 < a.size() && a[first] == 1 && full[off + first] != 1) ++first;
  int64_t period = 1;
  for (size_t i = first; i + 1 < a.size(); ++i) {
    if (a[i] != full[off + i]) return 0;
    period *= a[i];
  }
  return period;
}

std::optional<LnFold> PlanLnFold(const Node& ln) {
  const std::vector<int64_t> xs = SizesOf(ln.input(0));
  int64_t axis = ln.attrs().GetInt("axis", -1);
  if (axis < 0) axis += static_cast<int64_t>(xs.size());
  if (xs.empty() || axis != static_cast<int64_t>(xs.size()) - 1 || xs.back() % 8 != 0 || xs.back() > 2048) {
    return std::nullopt;
  }
  LnFold f;
  const Value* v = ln.input(0);
  const Node* consumer = &ln;
  while (f.adds.size() < 2) {
    const Node* add = v->producer();
    if (!add || add->op() != OpKind::kAdd || !FeedsOnly(v, consumer)) break;
    const Value* full = nullptr;
    const Value* addend = nullptr;
    int64_t period = 0;
    for (size_t i = 0; i < 2 && !full; ++i) {
      const Value* p = add->input(i);
      const Value* q = add->input(1 - i);
      if (!p || !q || p->dtype() != DType::kFloat32 || q->dtype() != DType::kFloat32 || SizesOf(p) != xs) continue;
      period = RowPeriod(SizesOf(q), xs);
      if (period > 0) full = p, addend = q;
    }
    if (!full) break;
    f.adds.push_back({addend, period});
    f.folded.push_back(add);
    consumer = add;
    v = full;
  }
  f.main = v;
  const Node* g = v->producer();
  if (g && g->op() == OpKind::kGather && FeedsOnly(v, consumer) && g->attrs().GetInt("axis", 0) == 0 &&
      g->input(0)->is_constant() && g->input(0)->dtype() == DType::kFloat32) {
    const std::vector<int64_t> ts = SizesOf(g->input(0));
    const Value* ids = g->input(1);
    if (ts.size() == 2 && ts[1] == xs.back() && ids &&
        (ids->dtype() == DType::kInt64 || ids->dtype() == DType::kInt32)) {
      f.table = g->input(0);
      f.table_rows = ts[0];
      f.main = ids;
      f.folded.push_back(g);
    }
  }
  if (f.folded.empty()) return std::nullopt;
  return f;
}

}  // namespace

std::vector<const Node*> LayerNormFolds(const Node& node, bool half) {
  if (!half || node.op() != OpKind::kLayerNormalization) return {};
  std::optional<LnFold> f = PlanLnFold(node);
  return f ? f->folded : std::vector<const Node*>{};
}

Status LowerFusedLayerNorm(ProgramBuilder& b) {
  const Node& node = b.node();
  std::optional<LnFold> f = PlanLnFold(node);
  if (!f || !b.half()) return Unsupported("no sums or lookup to fold into the layer norm");
  const std::vector<int64_t> xs = SizesOf(node.input(0));
  const int64_t cols = xs.back(), rows = Prod(xs, 0, xs.size() - 1);
  const Repr r{true, false};
  int table = -1, main = -1;
  if (f->table) {
    KILN_ASSIGN_OR_RETURN(table, b.ValueInput(f->table, r));
    KILN_ASSIGN_OR_RETURN(main, b.ValueInput(f->main, Repr{}));
  } else {
    KILN_ASSIGN_OR_RETURN(main, b.ValueInput(f->main, r));
  }
  int adds[2] = {-1, -1};
  int64_t periods[2] = {1, 1};
  for (size_t i = 0; i < f->adds.size(); ++i) {
    KILN_ASSIGN_OR_RETURN(adds[i], b.ValueInput(f->adds[i].first, r));
    periods[i] = f->adds[i].second;
  }
  KILN_ASSIGN_OR_RETURN(int scale, b.Input(1, r));
  if (b.tensor(scale).numel() != cols) return Unsupported("LayerNormalization scale broadcast");
  int bias = -1;
  if (node.input(2)) {
    KILN_ASSIGN_OR_RETURN(bias, b.Input(2, r));
  }
  const int y = b.Output(0, r);
  const float eps = node.attrs().GetFloat("epsilon", 1e-5f);
  const bool ids64 = f->table && f->main->dtype() == DType::kInt64;
  const int64_t table_rows = f->table_rows;
  b.Add([=](const Program& p, cudaStream_t st) {
    k::LayerNormInputs in;
    if (table >= 0) {
      in.table = p.ptr(table);
      in.ids = p.ptr(main);
      in.ids64 = ids64;
      in.table_rows = table_rows;
    } else {
      in.x = p.ptr(main);
    }
    for (int i = 0; i < 2; ++i) {
      in.add[i] = adds[i] >= 0 ? p.ptr(adds[i]) : nullptr;
      in.period[i] = periods[i];
    }
    return CudaStatus(k::LayerNormHalf(in, p.ptr(scale), bias >= 0 ? p.ptr(bias) : nullptr, p.ptr(y), rows, cols, eps, st),
                      "layer norm with folded sums");
  });
  return Status::Ok();
}

}  // namespace kiln::cuda
