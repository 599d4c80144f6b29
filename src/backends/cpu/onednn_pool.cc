// Pooling (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool) and Softmax / LogSoftmax over the
// last axis on oneDNN primitives, with Kiln's plain layouts at the boundary, or NHWC for kiln.PoolNhwc
// ("onednn.pool_nhwc"). f32, and u8 / i8 for the max pools (quantized models: the max of 8-bit values is
// exact). Primitives are cached per input shape. Declined: MaxPool's Indices output, dilated windows, ranks outside 3..5 (pools) or 1..6
// (softmax), softmax over any axis but the last.
#include <map>
#include <memory>
#include <optional>

#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"
#include "ops/kernels/nn_common.h"
#include "ops/op_util.h"

namespace kiln::cpu::onednn {
namespace {

using dnnl::memory;

constexpr size_t kMaxCachedShapes = 16;

bool IsGlobal(OpKind op) { return op == OpKind::kGlobalAveragePool || op == OpKind::kGlobalMaxPool; }
bool IsMax(OpKind op) { return op == OpKind::kMaxPool || op == OpKind::kGlobalMaxPool; }

// The pool a node computes: its op, or for kiln.PoolNhwc the one its `pool` attribute names.
std::optional<OpKind> PoolOf(const Node& node) {
  if (node.op() != OpKind::kPoolNhwc) return node.op();
  return OpKindFromName(node.attrs().GetString("pool", ""));
}

std::string WhyNotPool(const Node& node) {
  const Value* x = node.input(0);
  const std::optional<OpKind> op = PoolOf(node);
  if (!x || (!IsF32(x) && !(Is8BitInteger(x->dtype()) && op && IsMax(*op)))) return "X must be f32 (or 8-bit for max pools)";
  if (!x->shape() || x->shape()->rank() < 3 || x->shape()->rank() > 5) return "1-D to 3-D pools only";
  if (!node.output(0)) return "Y must be requested";
  if (node.num_outputs() > 1 && node.output(1)) return "MaxPool's Indices output is not produced";
  for (int64_t d : node.attrs().GetInts("dilations")) {
    if (d != 1) return "dilated windows";
  }
  return "";
}

class PoolKernel final : public CpuKernel {
 public:
  PoolKernel(OpKind op, bool nhwc) : op_(op), nhwc_(nhwc) {}
  Status Run(KernelContext& ctx) override {
    return Guard(nhwc_ ? "onednn.pool_nhwc" : "onednn.pool", [&] { return RunImpl(ctx); });
  }

 private:
  Status RunImpl(KernelContext& ctx);
  struct Prepared {
    dnnl::pooling_forward pool;
    memory::desc src, dst;
    memory workspace;  // oneDNN may want one even for inference
    std::vector<int64_t> y_sizes;
  };
  const OpKind op_;
  const bool nhwc_;
  std::map<std::vector<int64_t>, std::unique_ptr<Prepared>> cache_;
  std::optional<dnnl::stream> stream_;
};

Status PoolKernel::RunImpl(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  const Tensor& x = *ctx.input(0);
  if ((x.dtype() != DType::kFloat32 && !(Is8BitInteger(x.dtype()) && IsMax(op_))) || x.rank() < 3 || x.rank() > 5) {
    return InvalidArgument("onednn.pool needs an f32 (max pools: or 8-bit) input of rank 3 to 5, got " +
                           x.Description());
  }
  const memory::data_type dt = DataTypeOf(x.dtype());
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) return InvalidArgument("onednn.pool has no Indices output");
  if (nhwc_ && x.rank() != 4) return InvalidArgument("onednn.pool_nhwc needs a rank-4 input, got " + x.Description());
  // X's sizes in NCHW order (oneDNN's dims are logical; the memory format says the layout).
  const std::vector<int64_t> xs = nhwc_ ? std::vector<int64_t>{x.size(0), x.size(3), x.size(1), x.size(2)} : x.sizes();
  const std::vector<int64_t> spatial(xs.begin() + 2, xs.end());
  WindowGeometry g;
  bool include_pad = false;
  if (IsGlobal(op_)) {
    g.in = g.kernel = spatial;
    g.out.assign(spatial.size(), 1);
    g.strides.assign(spatial.size(), 1);
    g.dilations.assign(spatial.size(), 1);
    g.pad_begin.assign(spatial.size(), 0);
    g.pad_end.assign(spatial.size(), 0);
  } else {
    KILN_ASSIGN_OR_RETURN(WindowParams p, ReadWindowParams(ctx.attrs(), ctx.attrs().GetInts("kernel_shape")));
    for (int64_t d : p.dilations) {
      if (d != 1) return InvalidArgument("onednn.pool does not take dilated windows");
    }
    KILN_ASSIGN_OR_RETURN(g, ComputeWindowGeometry(p, spatial));
    include_pad = op_ == OpKind::kAveragePool && ctx.attrs().GetInt("count_include_pad", 0) != 0;
  }
  std::vector<int64_t> y_sizes = {xs[0], xs[1]};
  y_sizes.insert(y_sizes.end(), g.out.begin(), g.out.end());
  if (NumElements(xs) == 0 || NumElements(y_sizes) == 0) return RunReferenceKernel(ctx);
  const std::vector<int64_t> y_stored =
      nhwc_ ? std::vector<int64_t>{y_sizes[0], y_sizes[2], y_sizes[3], y_sizes[1]} : y_sizes;

  auto it = cache_.find(x.sizes());
  if (it == cache_.end()) {
    if (cache_.size() >= kMaxCachedShapes) cache_.clear();
    auto p = std::make_unique<Prepared>();
    p->y_sizes = y_sizes;
    p->src = nhwc_ ? memory::desc(xs, dt, memory::format_tag::nhwc) : PlainDesc(xs, dt);
    p->dst = nhwc_ ? memory::desc(y_sizes, dt, memory::format_tag::nhwc) : PlainDesc(y_sizes, dt);
    memory::dims strides, kernel, pad_l, pad_r;
    for (size_t d = 0; d < spatial.size(); ++d) {
      strides.push_back(g.strides[d]);
      kernel.push_back(g.kernel[d]);
      pad_l.push_back(g.pad_begin[d]);
      // oneDNN wants the end padding that yields exactly the output size; ceil_mode needs more than the
      // attribute says (those taps read nothing, as in the reference).
      pad_r.push_back(std::max(g.pad_end[d], (g.out[d] - 1) * g.strides[d] + g.kernel[d] - g.in[d] - g.pad_begin[d]));
    }
    const bool is_max = op_ == OpKind::kMaxPool || op_ == OpKind::kGlobalMaxPool;
    const auto alg = is_max        ? dnnl::algorithm::pooling_max
                     : include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                   : dnnl::algorithm::pooling_avg_exclude_padding;
    const dnnl::pooling_forward::desc desc(dnnl::prop_kind::forward_inference, alg, p->src, p->dst, strides, kernel,
                                           pad_l, pad_r);
    const dnnl::pooling_forward::primitive_desc pd(desc, Engine());
    p->pool = dnnl::pooling_forward(pd);
    if (pd.workspace_desc().get_size() > 0) p->workspace = memory(pd.workspace_desc(), Engine());
    it = cache_.emplace(x.sizes(), std::move(p)).first;
  }
  Prepared& p = *it->second;
  if (!stream_) stream_.emplace(Engine());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, x.dtype(), y_stored));
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, Wrap(p.src, x)}, {DNNL_ARG_DST, Wrap(p.dst, y->raw_data())}};
  if (p.workspace) args.emplace(DNNL_ARG_WORKSPACE, p.workspace);
  p.pool.execute(*stream_, args);
  stream_->wait();
  return Status::Ok();
}

// ---- Softmax / LogSoftmax ----------------------------------------------------------------------------

int64_t DefaultSoftmaxAxis(int opset) { return opset >= 13 ? -1 : 1; }

class SoftmaxKernel final : public CpuKernel {
 public:
  explicit SoftmaxKernel(bool log) : log_(log) {}
  Status Run(KernelContext& ctx) override { return Guard("onednn.softmax", [&] { return RunImpl(ctx); }); }

 private:
  Status RunImpl(KernelContext& ctx) {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
    const Tensor& x = *ctx.input(0);
    if (x.dtype() != DType::kFloat32 || x.rank() < 1 || x.rank() > 6) {
      return InvalidArgument("onednn.softmax needs an f32 input of rank 1 to 6, got " + x.Description());
    }
    const int64_t rank = static_cast<int64_t>(x.rank());
    KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", DefaultSoftmaxAxis(ctx.opset())), rank));
    if (axis != rank - 1) return InvalidArgument("onednn.softmax runs over the last axis only");
    if (x.numel() == 0) return RunReferenceKernel(ctx);
    auto it = cache_.find(x.sizes());
    if (it == cache_.end()) {
      if (cache_.size() >= kMaxCachedShapes) cache_.clear();
      const memory::desc md = PlainDesc(x.sizes());
      dnnl::primitive prim;
      if (log_) {
        prim = dnnl::logsoftmax_forward(dnnl::logsoftmax_forward::primitive_desc(
            dnnl::logsoftmax_forward::desc(dnnl::prop_kind::forward_inference, md, static_cast<int>(axis)), Engine()));
      } else {
        prim = dnnl::softmax_forward(dnnl::softmax_forward::primitive_desc(
            dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, md, static_cast<int>(axis)), Engine()));
      }
      it = cache_.emplace(x.sizes(), std::make_pair(md, std::move(prim))).first;
    }
    if (!stream_) stream_.emplace(Engine());
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, DType::kFloat32, x.sizes()));
    const memory::desc& md = it->second.first;
    it->second.second.execute(*stream_, {{DNNL_ARG_SRC, Wrap(md, x)}, {DNNL_ARG_DST, Wrap(md, y->raw_data())}});
    stream_->wait();
    return Status::Ok();
  }

  const bool log_;
  std::map<std::vector<int64_t>, std::pair<memory::desc, dnnl::primitive>> cache_;
  std::optional<dnnl::stream> stream_;
};

}  // namespace

std::vector<CpuTactic> PoolTactics(const Node& node) {
  const std::optional<OpKind> op = PoolOf(node);
  if (!op || !WhyNotPool(node).empty()) return {};
  const bool nhwc = node.op() == OpKind::kPoolNhwc;
  if (nhwc && node.input(0)->shape()->rank() != 4) return {};
  return {CpuTactic{nhwc ? "onednn.pool_nhwc" : "onednn.pool",
                    [op = *op, nhwc] { return std::unique_ptr<CpuKernel>(new PoolKernel(op, nhwc)); }}};
}

bool HasNhwcPool(const Node& node) {
  const Value* x = node.input(0);
  const OpKind op = node.op();
  const bool pool = op == OpKind::kMaxPool || op == OpKind::kAveragePool || op == OpKind::kGlobalAveragePool ||
                    op == OpKind::kGlobalMaxPool;
  return pool && x && x->shape() && x->shape()->rank() == 4 && WhyNotPool(node).empty();
}

std::vector<CpuTactic> SoftmaxTactics(const Node& node) {
  const Value* x = node.input(0);
  if (!IsF32(x) || !x->shape() || x->shape()->rank() < 1 || x->shape()->rank() > 6 || !node.output(0)) return {};
  const int64_t rank = static_cast<int64_t>(x->shape()->rank());
  auto axis = NormalizeAxis(node.attrs().GetInt("axis", DefaultSoftmaxAxis(node.opset())), rank);
  if (!axis.ok() || *axis != rank - 1) return {};
  const bool log = node.op() == OpKind::kLogSoftmax;
  return {CpuTactic{"onednn.softmax", [log] { return std::unique_ptr<CpuKernel>(new SoftmaxKernel(log)); }}};
}

}  // namespace kiln::cpu::onednn
