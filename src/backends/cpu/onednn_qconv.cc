// kiln.QConv (src/ops/quantized.cc) on oneDNN's 8-bit convolution: "onednn.qconv". X u8 or i8, W i8
// (symmetric: zero points 0, as onnxruntime's and TensorRT's quantizers write weights), Y u8 or i8 (or
// f32 for a kiln.QConv without y_scale: then sy = 1 and zy = 0 below), an
// i32 accumulation on the CPU's VNNI dot-product instructions (vpdpbusd) where it has them. The kernel
// computes Y = saturate(round(act((acc + B / (sx * sw[c])) * sx * sw[c] / sy)) + zy), acc the integer
// convolution of (X - zx) and W: oneDNN 2.x adds the bias before the output scale (per output channel
// here), applies the eltwise post-ops (ReLU, or Clip with its bounds divided by sy) to the scaled value, and
// shifts by the destination zero point last. Zero points of X and Y are passed at run time; oneDNN pads
// with X's zero point (a real 0), as the QDQ graph's float Conv pads with 0.
//
// Layouts: with `channels_last` (the channels_last pass), X and Y are NHWC, the layout oneDNN's 8-bit
// kernels use natively, so nothing is reordered; on NCHW, X and Y are reordered around every call. 2-D
// convolutions only (others run on the reference kernel). Weights are packed once per process (shared).
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"
#include "ops/kernels/nn_common.h"

namespace kiln::cpu::onednn {
namespace {

using dnnl::memory;

constexpr size_t kMaxCachedShapes = 16;

std::string WhyNotQConv(const Node& node) {
  const Value* x = node.input(0);
  const Value* w = node.input(3);
  if (!x || !w || !Is8BitInteger(x->dtype()) || w->dtype() != DType::kInt8) return "X must be 8-bit and W i8";
  if (!x->shape() || x->shape()->rank() != 4) return "only 2-D convolutions";
  const Tensor* wt = ConstantInput(node, 3);
  if (!wt || wt->rank() != 4) return "W must be a rank-4 constant";
  const std::string act = node.attrs().GetString("activation", "");
  if (!act.empty() && act != "Relu" && act != "Clip") return "activation not supported";
  return WhyNotQuantParams(node, wt->size(0));
}

class QConvKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override { return Guard("onednn.qconv", [&] { return RunImpl(ctx); }); }

 private:
  struct Prepared {
    dnnl::convolution_forward conv;
    memory::desc src_user, dst_user, weights_user, src, dst;
    std::optional<dnnl::reorder> src_in, dst_out;
    memory src_buf, dst_buf, bias;
    std::shared_ptr<const memory> weights;
    std::vector<int64_t> y_sizes;  // as stored
  };

  Expected<Prepared*> Prepare(const KernelContext& ctx, const std::vector<int64_t>& xs, const WindowGeometry& g);
  Status RunImpl(KernelContext& ctx);

  std::map<std::vector<int64_t>, std::unique_ptr<Prepared>> cache_;
  std::optional<dnnl::stream> stream_;
  Requantization rq_;
};

Expected<QConvKernel::Prepared*> QConvKernel::Prepare(const KernelContext& ctx, const std::vector<int64_t>& xs,
                                                      const WindowGeometry& g) {
  if (auto it = cache_.find(xs); it != cache_.end()) return it->second.get();
  if (cache_.size() >= kMaxCachedShapes) cache_.clear();
  const Tensor& x = *ctx.input(0);
  const Tensor& w = *ctx.input(3);
  const bool float_out = !ctx.input(6) && !ctx.input(7);
  const DType yt = float_out ? DType::kFloat32 : ctx.input(7)->dtype();
  const bool nhwc = ctx.attrs().GetInt("channels_last", 0) != 0;
  const int64_t group = ctx.attrs().GetInt("group", 1);
  const int64_t m = w.size(0);

  auto p = std::make_unique<Prepared>();
  std::vector<int64_t> y_nchw = {xs[0], m, g.out[0], g.out[1]};
  p->y_sizes = nhwc ? std::vector<int64_t>{y_nchw[0], y_nchw[2], y_nchw[3], y_nchw[1]} : y_nchw;
  const auto tag = nhwc ? memory::format_tag::nhwc : memory::format_tag::nchw;
  p->src_user = memory::desc(xs, DataTypeOf(x.dtype()), tag);
  p->dst_user = memory::desc(y_nchw, DataTypeOf(yt), tag);
  std::vector<int64_t> wdims = w.sizes();
  if (group > 1) {
    wdims[0] = m / group;
    wdims.insert(wdims.begin(), group);
  }
  p->weights_user = PlainDesc(wdims, memory::data_type::s8);
  const auto any = memory::format_tag::any;
  const memory::desc src_md = nhwc ? p->src_user : memory::desc(xs, DataTypeOf(x.dtype()), any);
  const memory::desc dst_md = nhwc ? p->dst_user : memory::desc(y_nchw, DataTypeOf(yt), any);
  const memory::desc weights_md(wdims, memory::data_type::s8, any);
  const memory::desc bias_md = PlainDesc({m});
  memory::dims strides, dilates, pad_l, pad_r;
  for (size_t d = 0; d < 2; ++d) {
    strides.push_back(g.strides[d]);
    dilates.push_back(g.dilations[d] - 1);
    pad_l.push_back(g.pad_begin[d]);
    pad_r.push_back(g.pad_end[d]);
  }
  const auto prop = dnnl::prop_kind::forward_inference;
  const auto alg = dnnl::algorithm::convolution_direct;
  auto desc = dnnl::convolution_forward::desc(prop, alg, src_md, weights_md, bias_md, dst_md, strides, dilates,
                                              pad_l, pad_r);

  // Scales sx * sw[c] / sy per output channel (the mask names Y's dim 1, grouped or not).
  dnnl::primitive_attr attr;
  rq_ = Requantize(ctx, m, attr);
  const double sy = rq_.out_scale;
  dnnl::post_ops po;
  const std::string act = ctx.attrs().GetString("activation", "");
  if (act == "Relu") po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  if (act == "Clip") {
    const float lo = ctx.attrs().GetFloat("activation_alpha", -INFINITY);
    const float hi = ctx.attrs().GetFloat("activation_beta", INFINITY);
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, static_cast<float>(lo / sy), static_cast<float>(hi / sy));
  }
  attr.set_post_ops(po);
  const dnnl::convolution_forward::primitive_desc pd(desc, attr, Engine());
  p->conv = dnnl::convolution_forward(pd);
  p->src = pd.src_desc();
  p->dst = pd.dst_desc();
  p->weights = SharedPackedWeights(w, p->weights_user, pd.weights_desc());
  p->bias = rq_.BiasMemory(bias_md);
  if (p->src != p->src_user) {
    p->src_buf = memory(p->src, Engine());
    p->src_in = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p->src_user, Engine(), p->src));
  }
  if (p->dst != p->dst_user) {
    p->dst_buf = memory(p->dst, Engine());
    p->dst_out = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p->dst, Engine(), p->dst_user));
  }
  return cache_.emplace(xs, std::move(p)).first->second.get();
}

Status QConvKernel::RunImpl(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireQuantInputs(ctx, "onednn.qconv"));
  const bool float_out = !ctx.input(6) && !ctx.input(7);
  const Tensor& x = *ctx.input(0);
  const Tensor& w = *ctx.input(3);
  const bool nhwc = ctx.attrs().GetInt("channels_last", 0) != 0;
  if (!Is8BitInteger(x.dtype()) || x.rank() != 4 || w.dtype() != DType::kInt8 || w.rank() != 4) {
    return InvalidArgument("onednn.qconv needs a rank-4 8-bit X and i8 W, got " + x.Description() + " and " +
                           w.Description());
  }
  const std::vector<int64_t> xs = nhwc ? std::vector<int64_t>{x.size(0), x.size(3), x.size(1), x.size(2)} : x.sizes();
  const int64_t group = ctx.attrs().GetInt("group", 1);
  if (group < 1 || xs[1] != w.size(1) * group || w.size(0) % group != 0) {
    return InvalidArgument("input X " + x.Description() + " and weight W " + w.Description() +
                           " do not agree on channels with group " + std::to_string(group));
  }
  const std::vector<int64_t> kernel = {w.size(2), w.size(3)};
  KILN_ASSIGN_OR_RETURN(WindowParams params, ReadWindowParams(ctx.attrs(), kernel));
  KILN_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindowGeometry(params, {xs[2], xs[3]}));
  if (NumElements(x.sizes()) == 0 || g.out[0] * g.out[1] == 0 || w.size(1) == 0 || w.size(0) == 0) {
    return RunReferenceKernel(ctx);
  }
  KILN_ASSIGN_OR_RETURN(Prepared * p, Prepare(ctx, xs, g));
  if (!stream_) stream_.emplace(Engine());
  dnnl::stream& s = *stream_;
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(
                                        0, float_out ? DType::kFloat32 : ctx.input(7)->dtype(), p->y_sizes));
  memory y_mem = Wrap(p->dst_user, y->raw_data());
  memory dst = p->dst_out ? p->dst_buf : y_mem;
  memory src = Wrap(p->src_user, x);
  if (p->src_in) {
    p->src_in->execute(s, src, p->src_buf);
    src = p->src_buf;
  }
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *p->weights}, {DNNL_ARG_BIAS, p->bias}, {DNNL_ARG_DST, dst}};
  rq_.AddZeroPoints(args);
  p->conv.execute(s, args);
  if (p->dst_out) p->dst_out->execute(s, dst, y_mem);
  s.wait();
  return Status::Ok();
}

}  // namespace

std::string WhyNotQuantParams(const Node& node, int64_t channels) {
  const bool float_out = !node.input(6) && !node.input(7);
  for (size_t i : {1, 4, 6, 7}) {
    if (float_out && (i == 6 || i == 7)) continue;
    if (!ConstantInput(node, i)) return "scales and zero points must be constants";
  }
  for (size_t i : {1, 2, 6, 7}) {
    const Tensor* t = ConstantInput(node, i);
    if (t && t->numel() != 1) return "input and output parameters are per tensor";
  }
  if (node.input(2) && !ConstantInput(node, 2)) return "the input's zero point must be a constant";
  if (const Tensor* wz = ConstantInput(node, 5)) {
    for (int64_t i = 0; i < wz->numel(); ++i) {
      if (wz->GetAsInt64(i) != 0) return "weights must be symmetric (zero point 0)";
    }
  } else if (node.input(5)) {
    return "the weights' zero point must be a constant";
  }
  const Tensor* ws = ConstantInput(node, 4);
  if (ws->numel() != 1 && ws->numel() != channels) return "the weights' scale must be per tensor or per output channel";
  if (const Value* b = node.input(8); b && (!b->constant() || b->dtype() != DType::kFloat32)) {
    return "the bias must be an f32 constant";
  }
  if (node.output(0) && !float_out && !Is8BitInteger(node.output(0)->dtype())) return "the output must be 8-bit";
  return "";
}

std::vector<CpuTactic> QConvTactics(const Node& node) {
  if (node.op() != OpKind::kQConv || !HaveInt8Dot() || !WhyNotQConv(node).empty()) return {};
  return {CpuTactic{"onednn.qconv", [] { return std::unique_ptr<CpuKernel>(new QConvKernel()); }, "int8"}};
}

bool HasNhwcQConv(const Node& node) {
  return node.op() == OpKind::kQConv && HaveInt8Dot() && WhyNotQConv(node).empty();
}

}  // namespace kiln::cpu::onednn
