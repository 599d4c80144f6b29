// kiln.Attention on Kiln's fused FP16 kernel (tactic kiln.flash_attention, cuda_attention.cu), with the
// head split and merge around it folded into the kernel's strides:
//
//   X [B,S,H*D] -> Reshape [B,S,H,D] -> Transpose (0,2,1,3) -> q or v        (read in place from X)
//   X [B,S,H*D] -> Reshape [B,S,H,D] -> Transpose (0,2,3,1) -> kt           (read in place from X)
//   Y [B,S,3HD] -> Split (last axis) -> the three X above                   (read in place from Y)
//   attention [B,H,S,D] -> Transpose (0,2,1,3) [-> Reshape [B,S,H*D]]       (written in place)
//
// The folded Reshape/Transpose/Split layers stay in the plan but launch nothing (FoldedLayers).
#include <algorithm>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_layers_common.h"
#include "backends/cuda/cuda_program.h"

namespace kiln::cuda {
namespace {

// One operand as the kernel addresses it: element (b, h, s, d) of `value` at
// offset + b * stride[0] + h * stride[1] + s * stride[2] + d.
struct Operand {
  const Value* value = nullptr;
  int64_t offset = 0;
  int64_t stride[3] = {};
};

struct FlashPlan {
  Operand q, k, v, o;
  int64_t batch = 0, heads = 0, sq = 0, sk = 0, d = 0;
  std::vector<const Node*> folded;
};

const Node* SoleUser(const Value* v) {
  if (!v || v->is_graph_output() || v->uses().size() != 1) return nullptr;
  return v->uses().front().node;
}

bool HasPerm(const Node* n, const std::vector<int64_t>& perm) {
  return n && n->op() == OpKind::kTranspose && n->attrs().GetInts("perm") == perm;
}

// `v` = Transpose(perm)(Reshape(X [B,S,H*D]) [B,S,H,D]), used only by `att`: the operand read from X.
// Sets *x to X and appends the Transpose and Reshape to *folded.
bool MatchHeadSplit(const Value* v, const Node& att, const std::vector<int64_t>& perm, Operand* op, const Value** x,
                    std::vector<const Node*>* folded) {
  if (SoleUser(v) != &att) return false;
  const Node* t = v->producer();
  if (!HasPerm(t, perm)) return false;
  const Value* r_out = t->input(0);
  const Node* r = r_out->producer();
  if (SoleUser(r_out) != t || !r || r->op() != OpKind::kReshape) return false;
  const std::vector<int64_t> rs = SizesOf(r_out), xs = SizesOf(r->input(0));
  if (rs.size() != 4 || xs.size() != 3 || xs[0] != rs[0] || xs[1] != rs[1] || xs[2] != rs[2] * rs[3]) return false;
  *x = r->input(0);
  op->value = *x;
  op->offset = 0;
  op->stride[0] = xs[1] * xs[2];
  op->stride[1] = rs[3];
  op->stride[2] = xs[2];
  folded->push_back(t);
  folded->push_back(r);
  return true;
}

// The operand as a plain [B,H,S,D] (or [B,S,D]) tensor.
Operand Contiguous(const Value* v, int64_t heads, int64_t rows, int64_t d) {
  Operand op;
  op.value = v;
  op.stride[2] = d;
  op.stride[1] = rows * d;
  op.stride[0] = heads * rows * d;
  return op;
}

// `half`: the FP16 kernel (head dim 32, 64 or 128) or the FP32 one (head dim 64).
Expected<FlashPlan> PlanFlash(const Node& node, bool half) {
  const std::vector<int64_t> qs = SizesOf(node.input(0)), ks = SizesOf(node.input(1)), vs = SizesOf(node.input(2));
  const std::vector<int64_t> ys = SizesOf(node.output(0));
  const size_t r = qs.size();
  if ((r != 3 && r != 4) || ks.size() != r || vs.size() != r || ys.size() != r) {
    return Unsupported("kiln.flash_attention needs rank-3 or rank-4 operands");
  }
  for (size_t i = 0; i + 2 < r; ++i) {
    if (ks[i] != qs[i] || vs[i] != qs[i] || ys[i] != qs[i]) return Unsupported("kiln.flash_attention with broadcast batch dims");
  }
  FlashPlan p;
  p.batch = qs[0];
  p.heads = r == 4 ? qs[1] : 1;
  p.sq = qs[r - 2], p.d = qs[r - 1], p.sk = ks[r - 1];
  if (ks[r - 2] != p.d || vs[r - 2] != p.sk || vs[r - 1] != p.d) return Unsupported("kiln.flash_attention needs equal head dims");
  const int d = static_cast<int>(p.d);
  if (!(half ? k::FlashAttentionSupports(d) : k::FlashAttentionF32Supports(d))) {
    return Unsupported(std::string("kiln.flash_attention (") + (half ? "FP16" : "FP32") + ") head dim " +
                       std::to_string(d));
  }
  if (p.batch * p.heads > 65535 || p.sq > (int64_t{1} << 30) || p.sk > (int64_t{1} << 30)) {
    return Unsupported("kiln.flash_attention grid too large");
  }
  const Value* xq = nullptr;
  const Value* xk = nullptr;
  const Value* xv = nullptr;
  if (r != 4 || !MatchHeadSplit(node.input(0), node, {0, 2, 1, 3}, &p.q, &xq, &p.folded)) {
    p.q = Contiguous(node.input(0), p.heads, p.sq, p.d);
  }
  if (r != 4 || !MatchHeadSplit(node.input(2), node, {0, 2, 1, 3}, &p.v, &xv, &p.folded)) {
    p.v = Contiguous(node.input(2), p.heads, p.sk, p.d);
  }
  // kt [.., D, Sk] has the keys contiguous; the kernel reads K rows with d contiguous.
  if (r != 4 || !MatchHeadSplit(node.input(1), node, {0, 2, 3, 1}, &p.k, &xk, &p.folded)) {
    if (p.sk != 1) return Unsupported("kiln.flash_attention needs K as a head split of [batch, seq, hidden]");
    p.k = Contiguous(node.input(1), p.heads, p.sk, p.d);
  }
  // A Split along the last axis whose every output feeds this attention through a folded head split:
  // read the three straight from its input.
  const Node* split = xk ? xk->producer() : nullptr;
  if (split && split->op() == OpKind::kSplit) {
    const std::vector<int64_t> in = SizesOf(split->input(0));
    int64_t axis = split->attrs().GetInt("axis", 0);
    if (axis < 0) axis += static_cast<int64_t>(in.size());
    bool all = in.size() == 3 && axis == 2;
    for (const Value* o : split->outputs()) all = all && o && (o == xq || o == xk || o == xv) && SoleUser(o);
    if (all) {
      for (Operand* op : {&p.q, &p.k, &p.v}) {
        if (op->value->producer() != split) continue;
        int64_t offset = 0;
        for (size_t j = 0; j < op->value->producer_output_index(); ++j) offset += SizesOf(split->output(j)).back();
        op->value = split->input(0);
        op->offset = offset;
        op->stride[0] = in[1] * in[2];
        op->stride[2] = in[2];
      }
      p.folded.push_back(split);
    }
  }
  // The output: written as [B,S,H,D] when a Transpose (0,2,1,3) (and a Reshape to [B,S,H*D]) follow.
  p.o = Contiguous(node.output(0), p.heads, p.sq, p.d);
  const Node* t = r == 4 ? SoleUser(node.output(0)) : nullptr;
  if (HasPerm(t, {0, 2, 1, 3})) {
    p.o.value = t->output(0);
    p.o.stride[2] = p.heads * p.d;
    p.o.stride[1] = p.d;
    p.o.stride[0] = p.sq * p.heads * p.d;
    p.folded.push_back(t);
    const Node* rs = SoleUser(t->output(0));
    if (rs && rs->op() == OpKind::kReshape && rs->input(0) == t->output(0)) {
      const std::vector<int64_t> os = SizesOf(rs->output(0));
      if (os.size() == 3 && os[0] == p.batch && os[1] == p.sq && os[2] == p.heads * p.d) {
        p.o.value = rs->output(0);
        p.folded.push_back(rs);
      }
    }
  }
  for (const Operand* op : {&p.q, &p.k, &p.v, &p.o}) {
    if (op->offset % 8 || op->stride[0] % 8 || op->stride[1] % 8 || op->stride[2] % 8) {
      return Unsupported("kiln.flash_attention needs rows aligned to 8 elements");
    }
  }
  return p;
}

bool UsesFlash(const Node& node, const std::string& tactic, bool half) {
  return node.op() == OpKind::kAttention && tactic != "cublaslt.attention" && PlanFlash(node, half).ok();
}

Status LowerFlash(ProgramBuilder& b, const FlashPlan& fp) {
  const Node& node = b.node();
  const bool half = b.half();
  const Repr rep{half, false};
  KILN_ASSIGN_OR_RETURN(int q, b.ValueInput(fp.q.value, rep));
  KILN_ASSIGN_OR_RETURN(int kk, b.ValueInput(fp.k.value, rep));
  KILN_ASSIGN_OR_RETURN(int v, b.ValueInput(fp.v.value, rep));
  int mask = -1;
  int64_t mstride[4] = {};
  if (node.input(3)) {
    KILN_ASSIGN_OR_RETURN(mask, b.Input(3, rep));
    // The mask's strides over the score dims [B, (H,) Sq, Sk], right-aligned, 0 where broadcast.
    const std::vector<int64_t> ms = SizesOf(node.input(3));
    std::vector<int64_t> scores = {fp.batch};
    if (SizesOf(node.input(0)).size() == 4) scores.push_back(fp.heads);
    scores.push_back(fp.sq);
    scores.push_back(fp.sk);
    if (ms.size() > scores.size()) return Unsupported("attention mask of higher rank than the scores");
    std::vector<int64_t> st(scores.size(), 0);
    int64_t stride = 1;
    for (size_t i = scores.size(); i-- > 0;) {
      const int64_t mi = static_cast<int64_t>(i) - static_cast<int64_t>(scores.size() - ms.size());
      const int64_t len = mi >= 0 ? ms[static_cast<size_t>(mi)] : 1;
      if (len != 1 && len != scores[i]) return Unsupported("attention mask does not broadcast to the scores");
      st[i] = len == 1 ? 0 : stride;
      stride *= len;
    }
    if (scores.size() == 4) {
      std::copy(st.begin(), st.end(), mstride);
    } else {
      mstride[0] = st[0], mstride[2] = st[1], mstride[3] = st[2];
    }
  }
  const int y = fp.o.value == node.output(0) ? b.Output(0, rep) : b.ValueOutput(fp.o.value, rep);
  k::AttentionArgs args;
  auto copy3 = [](int64_t* dst, const int64_t* src) { std::copy(src, src + 3, dst); };
  copy3(args.q_stride, fp.q.stride);
  copy3(args.k_stride, fp.k.stride);
  copy3(args.v_stride, fp.v.stride);
  copy3(args.o_stride, fp.o.stride);
  std::copy(mstride, mstride + 4, args.mask_stride);
  args.batch = static_cast<int>(fp.batch), args.heads = static_cast<int>(fp.heads);
  args.sq = static_cast<int>(fp.sq), args.sk = static_cast<int>(fp.sk), args.head_dim = static_cast<int>(fp.d);
  args.scale = node.attrs().GetFloat("scale", 1.f);
  args.block_rows = b.tactic() == "kiln.flash_attention.m128" ? 128 : 64;
  const int64_t esize = half ? 2 : 4;
  const int64_t qo = fp.q.offset * esize, ko = fp.k.offset * esize, vo = fp.v.offset * esize;
  b.Add([=](const Program& p, cudaStream_t st) {
    k::AttentionArgs a = args;
    a.q = static_cast<const char*>(p.ptr(q)) + qo;
    a.k = static_cast<const char*>(p.ptr(kk)) + ko;
    a.v = static_cast<const char*>(p.ptr(v)) + vo;
    a.o = p.ptr(y);
    a.mask = mask >= 0 ? p.ptr(mask) : nullptr;
    return CudaStatus(half ? k::FlashAttention(a, st) : k::FlashAttentionF32(a, st), "flash attention");
  });
  return Status::Ok();
}

}  // namespace

std::unordered_set<const Node*> FoldedLayers(const std::vector<const Node*>& schedule,
                                             const std::vector<std::string>& tactics,
                                             const std::vector<std::string>& precisions) {
  std::unordered_set<const Node*> folded;
  for (size_t i = 0; i < schedule.size() && i < tactics.size() && i < precisions.size(); ++i) {
    for (const Node* n : LayerNormFolds(*schedule[i], precisions[i] == "fp16")) folded.insert(n);
    if (!UsesFlash(*schedule[i], tactics[i], precisions[i] == "fp16")) continue;
    Expected<FlashPlan> fp = PlanFlash(*schedule[i], precisions[i] == "fp16");
    for (const Node* n : fp->folded) folded.insert(n);
  }
  return folded;
}

Status LowerAttentionLayer(ProgramBuilder& b) {
  const Node& node = b.node();
  const std::string& tactic = b.tactic();
  if (tactic.rfind("kiln.flash_attention", 0) == 0 || (tactic != "cublaslt.attention" && !b.tuning())) {
    Expected<FlashPlan> fp = PlanFlash(node, b.half());
    if (fp.ok()) return LowerFlash(b, *fp);
    // Timing a candidate that cannot run is an error (the tuner skips it); a plan run at other sizes
    // falls back to the cuBLASLt form.
    if (b.tuning()) return fp.status();
  }
  return LowerAttention(b);
}

}  // namespace kiln::cuda
