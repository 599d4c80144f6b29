// Conv and kiln.FusedConv on oneDNN's convolution primitive: Y = act(Conv(X, W, B) + Z), with the
// residual Z as a sum post-op (Z is first copied into Y's memory) and the activation as eltwise post-ops.
// 1-, 2- and 3-D convolutions, groups (depthwise included), strides, dilations, explicit or auto pads.
//
// Weights are reordered once into the primitive's preferred (blocked) layout and kept; primitives are
// created per distinct input shape and cached. Three tactics differ in the activations' layout:
// "onednn.conv_nhwc" runs kiln.ConvNhwc (X, Z, Y channels-last, made by the channels_last pass so that
// activations stay NHWC from layer to layer: no reorders at all); for Conv / kiln.FusedConv on Kiln's
// plain NCHW layout, "onednn.conv" lets oneDNN pick its own activation layout and reorders X, Z and Y on
// every call, and "onednn.conv_nchw" runs on NCHW directly (slow for most shapes); the builder times both.
// "onednn.conv_nhwc_bf16" (BF16 builds, CPUs with BF16 instructions) is kiln.ConvNhwc with X rounded to
// bfloat16 on the way in and the weights packed as bfloat16, accumulating and writing FP32: about twice
// the FP32 kernel's speed on AVX512_BF16. "onednn.conv_nhwc_wino" is kiln.ConvNhwc on oneDNN's Winograd F(4x4, 3x3) kernel (3x3, stride 1, ungrouped):
// 2-3x faster than direct on this class of CPU even with the reorders to and from its blocked layout it
// needs, at the cost of a larger rounding error (about 1e-5 relative to the output's scale instead of
// 1e-6; tests/unit/cpu_kernels_test.cc states the bound). The builder times it against "onednn.conv_nhwc".
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

// Bounds the per-shape primitive cache (a server sees few distinct batch sizes; a fuzzer many).
constexpr size_t kMaxCachedShapes = 16;

// Why the node cannot run on these kernels, or "" when it can.
std::string WhyNotConv(const Node& node) {
  const Value* x = node.input(0);
  const Value* w = node.input(1);
  if (!IsF32(x) || !IsF32(w)) return "X and W must be f32";
  if (node.input(2) && !IsF32(node.input(2))) return "B must be f32";
  if (node.num_outputs() != 1 || !node.output(0)) return "one output expected";
  if (!x->shape() || !w->shape()) return "X and W need known ranks";
  const size_t rank = x->shape()->rank();
  if (rank < 3 || rank > 5 || w->shape()->rank() != rank) return "only 1-D to 3-D convolutions";
  if (node.op() == OpKind::kConvNhwc && rank != 4) return "channels-last convolutions are 2-D";
  if (node.op() == OpKind::kFusedConv || node.op() == OpKind::kConvNhwc) {
    if (const Value* z = node.input(3)) {
      if (!IsF32(z)) return "Z must be f32";
      const auto& ys = node.output(0)->shape();
      if (!z->shape() || !ys || *z->shape() != *ys) return "the residual Z must have Y's shape";
    }
    dnnl::post_ops po;
    if (!AppendActivation(node.attrs(), po)) return "activation not supported";
  }
  return "";
}

// The activations' layout: oneDNN's choice (reordered from and to NCHW), NCHW, or NHWC (kiln.ConvNhwc).
enum class ActLayout { kAny, kNchw, kNhwc };

const char* TacticName(ActLayout l, bool winograd, bool bf16 = false) {
  if (bf16) return "onednn.conv_nhwc_bf16";
  if (winograd) return "onednn.conv_nhwc_wino";
  return l == ActLayout::kAny ? "onednn.conv" : (l == ActLayout::kNchw ? "onednn.conv_nchw" : "onednn.conv_nhwc");
}

// Whether oneDNN's Winograd kernels may take the node: 2-D 3x3, stride 1, no dilation, one group, no
// activation but ReLU (its kernels take no other eltwise post-op; a residual is fine).
bool WinogradShape(const Node& node) {
  const Value* w = node.input(1);
  if (!w->shape() || w->shape()->rank() != 4 || node.attrs().GetInt("group", 1) != 1) return false;
  const std::string act = node.attrs().GetString("activation", "");
  if (!act.empty() && (act != "Relu" || node.attrs().GetFloat("activation_alpha", 0.f) != 0.f)) return false;
  for (size_t d : {2, 3}) {
    if (w->shape()->dims()[d] != Dim(3)) return false;
  }
  for (const char* a : {"strides", "dilations"}) {
    for (int64_t v : node.attrs().GetInts(a)) {
      if (v != 1) return false;
    }
  }
  return true;
}

class ConvKernel final : public CpuKernel {
 public:
  ConvKernel(ActLayout layout, bool winograd, bool bf16, bool fused, bool weights_constant)
      : layout_(layout), winograd_(winograd), bf16_(bf16), fused_(fused), weights_constant_(weights_constant) {}

  Status Run(KernelContext& ctx) override {
    return Guard(TacticName(layout_, winograd_, bf16_), [&] { return RunImpl(ctx); });
  }

 private:
  // Everything that depends on the input shapes.
  struct Prepared {
    dnnl::convolution_forward conv;
    memory::desc src_user, dst_user, weights_user, bias_user;
    memory::desc src, dst, weights;
    std::optional<dnnl::reorder> src_in, dst_in, dst_out;  // set where the layouts differ
    memory src_buf, dst_buf;                               // scratch in the primitive's layouts
    std::vector<int64_t> y_sizes;
  };

  // x_sizes: X's logical (NCHW) sizes.
  Expected<Prepared*> Prepare(const KernelContext& ctx, const std::vector<int64_t>& x_sizes, const Tensor& w,
                              bool bias, bool residual, const WindowGeometry& g, int64_t group);
  Status RunImpl(KernelContext& ctx);
  memory PackedWeights(const Prepared& p, const Tensor& w, dnnl::stream& s);

  const ActLayout layout_;
  const bool winograd_;
  const bool bf16_;
  const bool fused_;
  const bool weights_constant_;
  std::map<std::vector<int64_t>, std::unique_ptr<Prepared>> cache_;
  // Weights in each layout a cached primitive asked for, and the storage they were packed from: constant
  // weights in the process-wide shared copy, others in the kernel's own.
  struct Packed {
    memory::desc desc;
    memory mem;
    const void* from = nullptr;
    std::shared_ptr<const memory> shared;
  };
  std::vector<Packed> packed_;
  std::optional<dnnl::stream> stream_;
};

Expected<ConvKernel::Prepared*> ConvKernel::Prepare(const KernelContext& ctx, const std::vector<int64_t>& x_sizes,
                                                    const Tensor& w, bool bias, bool residual,
                                                    const WindowGeometry& g, int64_t group) {
  std::vector<int64_t> key = x_sizes;
  key.insert(key.end(), w.sizes().begin(), w.sizes().end());
  key.push_back(bias);
  key.push_back(residual);
  if (auto it = cache_.find(key); it != cache_.end()) return it->second.get();
  if (cache_.size() >= kMaxCachedShapes) cache_.clear();

  auto p = std::make_unique<Prepared>();
  const int64_t m = w.size(0);
  p->y_sizes = {x_sizes[0], m};
  p->y_sizes.insert(p->y_sizes.end(), g.out.begin(), g.out.end());
  if (layout_ == ActLayout::kNhwc) {
    p->src_user = memory::desc(x_sizes, memory::data_type::f32, memory::format_tag::nhwc);
    p->dst_user = memory::desc(p->y_sizes, memory::data_type::f32, memory::format_tag::nhwc);
  } else {
    p->src_user = PlainDesc(x_sizes);
    p->dst_user = PlainDesc(p->y_sizes);
  }
  std::vector<int64_t> wdims = w.sizes();
  if (group > 1) {
    wdims[0] = m / group;
    wdims.insert(wdims.begin(), group);
  }
  p->weights_user = PlainDesc(wdims);
  p->bias_user = PlainDesc({m});

  const auto any = memory::format_tag::any;
  const memory::desc src_any(p->src_user.dims(), memory::data_type::f32, any);
  const memory::desc dst_any(p->dst_user.dims(), memory::data_type::f32, any);
  const memory::desc weights_any(p->weights_user.dims(), memory::data_type::f32, any);
  memory::dims strides, dilates, pad_l, pad_r;
  for (size_t d = 0; d < g.in.size(); ++d) {
    strides.push_back(g.strides[d]);
    dilates.push_back(g.dilations[d] - 1);  // oneDNN counts the gaps: 0 is a dense window
    pad_l.push_back(g.pad_begin[d]);
    pad_r.push_back(g.pad_end[d]);
  }
  const auto prop = dnnl::prop_kind::forward_inference;
  const auto alg = winograd_ ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
  const bool any_layout = layout_ == ActLayout::kAny || winograd_;
  // BF16: X in bfloat16 (same layout; reordered in on each call), weights bfloat16, Y stays FP32.
  const memory::desc src_bf16 =
      bf16_ ? memory::desc(p->src_user.dims(), memory::data_type::bf16, memory::format_tag::nhwc) : memory::desc();
  const memory::desc weights_bf16 =
      bf16_ ? memory::desc(p->weights_user.dims(), memory::data_type::bf16, memory::format_tag::any) : memory::desc();
  const memory::desc& src_md = bf16_ ? src_bf16 : any_layout ? src_any : p->src_user;
  const memory::desc& dst_md = any_layout ? dst_any : p->dst_user;
  const memory::desc& weights_md = bf16_ ? weights_bf16 : weights_any;
  auto desc = bias ? dnnl::convolution_forward::desc(prop, alg, src_md, weights_md, p->bias_user, dst_md, strides,
                                                     dilates, pad_l, pad_r)
                   : dnnl::convolution_forward::desc(prop, alg, src_md, weights_md, dst_md, strides, dilates,
                                                     pad_l, pad_r);
  dnnl::post_ops po;
  if (residual) po.append_sum(1.f);
  if (fused_ && !AppendActivation(ctx.attrs(), po)) return Unsupported("activation not supported");
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  const dnnl::convolution_forward::primitive_desc pd(desc, attr, Engine());
  p->conv = dnnl::convolution_forward(pd);
  p->src = pd.src_desc();
  p->dst = pd.dst_desc();
  p->weights = pd.weights_desc();
  if (p->src != p->src_user) {
    p->src_buf = memory(p->src, Engine());
    p->src_in = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p->src_user, Engine(), p->src));
  }
  if (p->dst != p->dst_user) {
    p->dst_buf = memory(p->dst, Engine());
    p->dst_out = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p->dst, Engine(), p->dst_user));
    if (residual) p->dst_in = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p->dst_user, Engine(), p->dst));
  }
  return cache_.emplace(std::move(key), std::move(p)).first->second.get();
}

memory ConvKernel::PackedWeights(const Prepared& p, const Tensor& w, dnnl::stream& s) {
  Packed* slot = nullptr;
  for (Packed& k : packed_) {
    if (k.desc == p.weights) slot = &k;
  }
  if (!slot) {
    packed_.push_back(Packed{p.weights, weights_constant_ ? memory() : memory(p.weights, Engine()), nullptr, nullptr});
    slot = &packed_.back();
  }
  if (weights_constant_) {
    if (!slot->shared || slot->from != w.raw_data()) {
      slot->shared = SharedPackedWeights(w, p.weights_user, p.weights);
      slot->from = w.raw_data();
    }
    return *slot->shared;
  }
  // Weights that are graph inputs may change from run to run: packed again every time.
  memory user = Wrap(p.weights_user, w);
  dnnl::reorder(user, slot->mem).execute(s, user, slot->mem);
  s.wait();
  slot->from = w.raw_data();
  return slot->mem;
}

Status ConvKernel::RunImpl(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  const Tensor& x = *ctx.input(0);
  const Tensor& w = *ctx.input(1);
  const Tensor* b = ctx.input(2);
  const Tensor* z = fused_ ? ctx.input(3) : nullptr;
  const bool nhwc = layout_ == ActLayout::kNhwc;
  for (const Tensor* t : {&x, &w, b, z}) {
    if (t && t->dtype() != DType::kFloat32) return InvalidArgument("onednn.conv needs f32 tensors, got " + t->Description());
  }
  if (x.rank() < 3 || x.rank() > 5 || w.rank() != x.rank()) {
    return InvalidArgument("input X " + x.Description() + " and weight W " + w.Description() +
                           " must have the same rank, 3 to 5");
  }
  if (nhwc && x.rank() != 4) return InvalidArgument("onednn.conv_nhwc needs a rank-4 input, got " + x.Description());
  // X's sizes in NCHW order (oneDNN's dims are always logical NCHW; the memory format says the layout).
  const std::vector<int64_t> xs = nhwc ? std::vector<int64_t>{x.size(0), x.size(3), x.size(1), x.size(2)} : x.sizes();
  const int64_t group = ctx.attrs().GetInt("group", 1);
  const int64_t m = w.size(0);
  if (group < 1 || xs[1] != w.size(1) * group || m % group != 0) {
    return InvalidArgument("input X " + x.Description() + " and weight W " + w.Description() +
                           " do not agree on channels with group " + std::to_string(group));
  }
  if (b && (b->rank() != 1 || b->size(0) != m)) {
    return InvalidArgument("bias B " + b->Description() + " does not match " + std::to_string(m) + " output channels");
  }
  const std::vector<int64_t> kernel(w.sizes().begin() + 2, w.sizes().end());
  if (ctx.attrs().Has("kernel_shape") && ctx.attrs().GetInts("kernel_shape") != kernel) {
    return InvalidArgument("kernel_shape does not match the weight " + w.Description());
  }
  KILN_ASSIGN_OR_RETURN(WindowParams params, ReadWindowParams(ctx.attrs(), kernel));
  KILN_ASSIGN_OR_RETURN(WindowGeometry g,
                        ComputeWindowGeometry(params, std::vector<int64_t>(xs.begin() + 2, xs.end())));
  std::vector<int64_t> y_sizes = {xs[0], m};
  y_sizes.insert(y_sizes.end(), g.out.begin(), g.out.end());
  if (nhwc) y_sizes = {y_sizes[0], y_sizes[2], y_sizes[3], y_sizes[1]};  // Y as stored
  if (z && z->sizes() != y_sizes) {
    return InvalidArgument("residual Z " + z->Description() + " must have the output's sizes " + SizesToString(y_sizes));
  }
  // Empty tensors (no batch, no channels, an empty output image) are the reference kernel's business.
  if (NumElements(x.sizes()) == 0 || NumElements(y_sizes) == 0 || w.size(1) == 0) return RunReferenceKernel(ctx);

  KILN_ASSIGN_OR_RETURN(Prepared * p, Prepare(ctx, xs, w, b != nullptr, z != nullptr, g, group));
  if (!stream_) stream_.emplace(Engine());
  dnnl::stream& s = *stream_;
  memory packed = PackedWeights(*p, w, s);
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, DType::kFloat32, y_sizes));
  memory y_mem = Wrap(p->dst_user, y->raw_data());
  memory dst = p->dst_out ? p->dst_buf : y_mem;
  if (z) {
    // The sum post-op adds what the destination holds. Y may already be Z's memory (in place).
    if (p->dst_in) {
      memory z_mem = Wrap(p->dst_user, *z);
      p->dst_in->execute(s, z_mem, dst);
    } else if (z->raw_data() != y->raw_data()) {
      std::memmove(y->raw_data(), z->raw_data(), z->nbytes());
    }
  }
  memory src = Wrap(p->src_user, x);
  if (p->src_in) {
    p->src_in->execute(s, src, p->src_buf);
    src = p->src_buf;
  }
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, packed}, {DNNL_ARG_DST, dst}};
  if (b) args.emplace(DNNL_ARG_BIAS, Wrap(p->bias_user, *b));
  p->conv.execute(s, args);
  if (p->dst_out) p->dst_out->execute(s, dst, y_mem);
  s.wait();
  return Status::Ok();
}

}  // namespace

std::vector<CpuTactic> ConvTactics(const Node& node) {
  if (!WhyNotConv(node).empty()) return {};
  const bool fused = node.op() != OpKind::kConv;
  const bool constant = node.input(1)->is_constant();
  auto tactic = [fused, constant](ActLayout layout, bool winograd = false, bool bf16 = false) {
    return CpuTactic{TacticName(layout, winograd, bf16),
                     [layout, winograd, bf16, fused, constant] {
                       return std::unique_ptr<CpuKernel>(new ConvKernel(layout, winograd, bf16, fused, constant));
                     },
                     bf16 ? "bf16" : "fp32"};
  };
  if (node.op() == OpKind::kConvNhwc) {
    std::vector<CpuTactic> out = {tactic(ActLayout::kNhwc)};
    if (HaveWinograd() && WinogradShape(node)) out.push_back(tactic(ActLayout::kNhwc, true));
    if (HaveBf16()) out.push_back(tactic(ActLayout::kNhwc, false, true));
    return out;
  }
  return {tactic(ActLayout::kAny), tactic(ActLayout::kNchw)};
}

bool HasNhwcConv(const Node& node) {
  const Value* x = node.input(0);
  return (node.op() == OpKind::kConv || node.op() == OpKind::kFusedConv) && x && x->shape() &&
         x->shape()->rank() == 4 && WhyNotConv(node).empty();
}

}  // namespace kiln::cpu::onednn
