// MatMul, Gemm and kiln.FusedGemm on oneDNN's matmul primitive:
//   Y = act(alpha * A' @ B' + beta * C + R),   A' = transA ? A^T : A (last two dims), same for B'.
// Transposes are strides in the memory descriptors; batch dims broadcast as in MatMul (the lower-rank
// operand gets leading 1s). alpha is the primitive's output scale. A C that is a row vector [.., N] with
// alpha = beta = 1 and no R is the primitive's bias; any other C or R is written into Y first
// (beta * C + R, broadcast) and added by a sum post-op. The activation is eltwise post-ops.
// Constant 2-D (or batch-1) weights are reordered once into the layout the primitive prefers.
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"
#include "ops/kernels/nn_common.h"
#include "ops/op_util.h"

namespace kiln::cpu::onednn {
namespace {

using dnnl::memory;

constexpr size_t kMaxCachedShapes = 16;
constexpr size_t kMaxRank = 6;

std::string WhyNotMatMul(const Node& node) {
  const Value* a = node.input(0);
  const Value* b = node.input(1);
  if (!IsF32(a) || !IsF32(b)) return "A and B must be f32";
  if (node.num_outputs() != 1 || !node.output(0)) return "one output expected";
  if (!a->shape() || !b->shape()) return "A and B need known ranks";
  const size_t ra = a->shape()->rank(), rb = b->shape()->rank();
  if (ra < 2 || rb < 2 || ra > kMaxRank || rb > kMaxRank) return "ranks 2 to 6 only";
  if (node.op() == OpKind::kGemm && (ra != 2 || rb != 2)) return "Gemm is 2-D";
  for (size_t i = 2; i < node.num_inputs(); ++i) {
    if (node.input(i) && !IsF32(node.input(i))) return "C and R must be f32";
  }
  if (node.op() == OpKind::kFusedGemm) {
    dnnl::post_ops po;
    if (!AppendActivation(node.attrs(), po)) return "activation not supported";
  }
  return "";
}

// y = beta * c + r (each optional, broadcast to y); when r is y's own memory (in place) it is kept.
void FillAddend(Tensor& y, const Tensor* c, float beta, const Tensor* r) {
  float* dst = y.data<float>();
  const bool r_in_place = r && r->raw_data() == y.raw_data();
  if (r && !r_in_place && r->sizes() == y.sizes()) {
    std::memmove(dst, r->raw_data(), y.nbytes());
  } else if (r && !r_in_place) {
    const float* src = r->data<float>();
    MultiIndexer it(y.sizes(), {BroadcastStrides(r->sizes(), y.sizes())});
    for (int64_t i = 0; i < y.numel(); ++i, it.Next()) dst[i] = src[it.offset(0)];
  } else if (!r) {
    std::fill(dst, dst + y.numel(), 0.f);
  }
  if (c) {
    const float* src = c->data<float>();
    MultiIndexer it(y.sizes(), {BroadcastStrides(c->sizes(), y.sizes())});
    for (int64_t i = 0; i < y.numel(); ++i, it.Next()) dst[i] += beta * src[it.offset(0)];
  }
}

// The logical [batch..., rows, cols] view of `t` (of rank <= r, stored dense) after an optional
// transpose of its last two dims, as dims and strides of rank r.
void LogicalView(const Tensor& t, bool transpose, size_t r, std::vector<int64_t>& dims,
                 std::vector<int64_t>& strides) {
  dims.assign(r - t.rank(), 1);
  dims.insert(dims.end(), t.sizes().begin(), t.sizes().end());
  strides.assign(r, 1);
  for (size_t i = r; i-- > 1;) strides[i - 1] = strides[i] * std::max<int64_t>(dims[i], 1);
  if (transpose) {
    std::swap(dims[r - 1], dims[r - 2]);
    std::swap(strides[r - 1], strides[r - 2]);
  }
}

// "onednn.matmul_bf16" (BF16 builds, CPUs with BF16 instructions, constant weights without batch dims):
// A is rounded to bfloat16 into the kernel's scratch on each call, the weights are packed as bfloat16
// once; the product accumulates and is written in FP32.
class MatMulKernel final : public CpuKernel {
 public:
  MatMulKernel(OpKind op, bool weights_constant, bool bf16)
      : op_(op), weights_constant_(weights_constant), bf16_(bf16) {}

  Status Run(KernelContext& ctx) override {
    return Guard(bf16_ ? "onednn.matmul_bf16" : "onednn.matmul", [&] { return RunImpl(ctx); });
  }

 private:
  struct Prepared {
    dnnl::matmul matmul;
    memory::desc src, weights_user, weights, dst, bias;
    bool pack = false;                             // constant weights, in the process-wide shared copy
    std::shared_ptr<const memory> packed;
    std::optional<dnnl::reorder> src_in;  // BF16: A -> src_buf
    memory src_buf;
    const void* packed_from = nullptr;
  };

  Status RunImpl(KernelContext& ctx);

  const OpKind op_;
  const bool weights_constant_;
  const bool bf16_;
  std::map<std::vector<int64_t>, std::unique_ptr<Prepared>> cache_;
  std::optional<dnnl::stream> stream_;
};

Status MatMulKernel::RunImpl(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(1);
  const bool is_matmul = op_ == OpKind::kMatMul;
  const float alpha = is_matmul ? 1.f : ctx.attrs().GetFloat("alpha", 1.f);
  const float beta = is_matmul ? 1.f : ctx.attrs().GetFloat("beta", 1.f);
  // Gemm ignores C when beta is 0; so may FusedGemm (0 * C adds nothing to finite values).
  const Tensor* c = !is_matmul && beta != 0 ? ctx.input(2) : nullptr;
  const Tensor* r = op_ == OpKind::kFusedGemm ? ctx.input(3) : nullptr;
  for (const Tensor* t : {&a, &b, c, r}) {
    if (t && t->dtype() != DType::kFloat32) return InvalidArgument("onednn.matmul needs f32 tensors, got " + t->Description());
  }
  if (a.rank() < 2 || b.rank() < 2 || a.rank() > kMaxRank || b.rank() > kMaxRank ||
      (op_ == OpKind::kGemm && (a.rank() != 2 || b.rank() != 2))) {
    return InvalidArgument("A " + a.Description() + " and B " + b.Description() + " have ranks onednn.matmul does not take");
  }
  const bool ta = !is_matmul && ctx.attrs().GetInt("transA", 0) != 0;
  const bool tb = !is_matmul && ctx.attrs().GetInt("transB", 0) != 0;
  const size_t rank = std::max(a.rank(), b.rank());
  std::vector<int64_t> a_dims, a_strides, b_dims, b_strides;
  LogicalView(a, ta, rank, a_dims, a_strides);
  LogicalView(b, tb, rank, b_dims, b_strides);
  const int64_t m = a_dims[rank - 2], k = a_dims[rank - 1], n = b_dims[rank - 1];
  if (b_dims[rank - 2] != k) return InvalidArgument("inner dims differ: " + a.Description() + " x " + b.Description());
  std::vector<int64_t> y_sizes(rank);
  for (size_t i = 0; i + 2 < rank; ++i) {
    if (a_dims[i] != b_dims[i] && a_dims[i] != 1 && b_dims[i] != 1) {
      return InvalidArgument("batch dims of " + a.Description() + " and " + b.Description() + " do not broadcast");
    }
    y_sizes[i] = a_dims[i] == 1 ? b_dims[i] : a_dims[i];
  }
  y_sizes[rank - 2] = m;
  y_sizes[rank - 1] = n;
  for (const Tensor* t : {c, r}) {
    if (!t) continue;
    auto bs = BroadcastSizes(y_sizes, t->sizes());
    if (!bs.ok() || *bs != y_sizes) {
      return InvalidArgument(t->Description() + " does not broadcast to the output " + SizesToString(y_sizes));
    }
  }
  if (NumElements(y_sizes) == 0 || k == 0) return RunReferenceKernel(ctx);

  const bool bias = c && !r && alpha == 1.f && beta == 1.f && c->rank() >= 1 && c->sizes().back() == n &&
                    c->numel() == n;
  const bool addend = (c || r) && !bias;
  // Only weights without batch dims of their own are packed (one matrix, shared by every batch).
  const bool pack = weights_constant_ && NumElements(std::vector<int64_t>(b_dims.begin(), b_dims.end() - 2)) == 1;
  if (bf16_ && !pack) return InvalidArgument("onednn.matmul_bf16 needs constant weights without batch dims");

  std::vector<int64_t> key = a.sizes();
  key.push_back(-1);
  key.insert(key.end(), b.sizes().begin(), b.sizes().end());
  key.push_back(bias ? 1 : addend ? 2 : 0);
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    if (cache_.size() >= kMaxCachedShapes) cache_.clear();
    auto p = std::make_unique<Prepared>();
    // Weights without batch dims of their own and an untransposed (so dense) A: A's leading dims are rows
    // of one 2-D product. oneDNN 2.6 parallelizes a batched matmul over its batch dims only: BERT's
    // [1, 128, 768] x [768, 3072] at batch 1 ran on one of two threads (2.57 ms as 3-D, 1.32 ms as 2-D).
    std::vector<int64_t> sd = a_dims, ss = a_strides, wd = b_dims, ws = b_strides, dd = y_sizes;
    if (pack && !ta && rank > 2) {
      const int64_t rows = NumElements(y_sizes) / n;
      sd = {rows, k};
      ss = {k, 1};
      wd = {k, n};
      ws = {b_strides[rank - 2], b_strides[rank - 1]};
      dd = {rows, n};
    }
    const size_t r = sd.size();
    p->src = StridedDesc(sd, ss);
    p->weights_user = StridedDesc(wd, ws);
    p->dst = PlainDesc(dd);
    const auto wdt = bf16_ ? memory::data_type::bf16 : memory::data_type::f32;
    const memory::desc weights_any(p->weights_user.dims(), wdt, memory::format_tag::any);
    std::vector<int64_t> plain_strides(r, 1);
    for (size_t i = r; i-- > 1;) plain_strides[i - 1] = plain_strides[i] * std::max<int64_t>(sd[i], 1);
    const memory::desc src_bf16(p->src.dims(), memory::data_type::bf16,
                                memory::dims(plain_strides.begin(), plain_strides.end()));
    std::vector<int64_t> bias_dims(r, 1);
    bias_dims[r - 1] = n;
    if (bias) p->bias = PlainDesc(bias_dims);
    const memory::desc& wmd = pack ? weights_any : p->weights_user;
    const memory::desc& smd = bf16_ ? src_bf16 : p->src;
    auto desc = bias ? dnnl::matmul::desc(smd, wmd, p->bias, p->dst) : dnnl::matmul::desc(smd, wmd, p->dst);
    dnnl::primitive_attr attr;
    if (alpha != 1.f) attr.set_output_scales(0, {alpha});
    dnnl::post_ops po;
    if (addend) po.append_sum(1.f);
    if (op_ == OpKind::kFusedGemm && !AppendActivation(ctx.attrs(), po)) return Unsupported("activation not supported");
    attr.set_post_ops(po);
    const dnnl::matmul::primitive_desc pd(desc, attr, Engine());
    p->matmul = dnnl::matmul(pd);
    p->weights = pd.weights_desc();
    p->pack = pack;
    if (bf16_) {
      p->src_buf = memory(src_bf16, Engine());
      p->src_in = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p->src, Engine(), src_bf16));
    }
    it = cache_.emplace(std::move(key), std::move(p)).first;
  }
  Prepared& p = *it->second;
  if (!stream_) stream_.emplace(Engine());
  dnnl::stream& s = *stream_;
  memory weights = Wrap(p.weights_user, b);
  if (p.pack) {
    if (!p.packed || p.packed_from != b.raw_data()) {
      p.packed = SharedPackedWeights(b, p.weights_user, p.weights);
      p.packed_from = b.raw_data();
    }
    weights = *p.packed;
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, DType::kFloat32, y_sizes));
  if (addend) FillAddend(*y, c, beta, r);
  memory src = Wrap(p.src, a);
  if (p.src_in) {
    p.src_in->execute(s, src, p.src_buf);
    src = p.src_buf;
  }
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, Wrap(p.dst, y->raw_data())}};
  if (bias) args.emplace(DNNL_ARG_BIAS, Wrap(p.bias, *c));
  p.matmul.execute(s, args);
  s.wait();
  return Status::Ok();
}

}  // namespace

std::vector<CpuTactic> MatMulTactics(const Node& node) {
  if (!WhyNotMatMul(node).empty()) return {};
  const OpKind op = node.op();
  const Value* b = node.input(1);
  const bool constant = b->is_constant();
  std::vector<CpuTactic> out = {CpuTactic{
      "onednn.matmul", [op, constant] { return std::unique_ptr<CpuKernel>(new MatMulKernel(op, constant, false)); }}};
  if (HaveBf16() && constant && b->constant()->rank() >= 2 && NumElements(std::vector<int64_t>(b->constant()->sizes().begin(), b->constant()->sizes().end() - 2)) == 1) {
    out.push_back(CpuTactic{"onednn.matmul_bf16",
                            [op] { return std::unique_ptr<CpuKernel>(new MatMulKernel(op, true, true)); }, "bf16"});
  }
  return out;
}

}  // namespace kiln::cpu::onednn
