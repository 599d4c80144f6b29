// kiln.QMatMul (src/ops/quantized.cc) on oneDNN's 8-bit matmul: "onednn.qmatmul". A u8 or i8 (per tensor,
// any rank >= 2: its leading dims are folded into the rows of one 2-D product, which oneDNN spreads over
// every thread), B an i8 constant [K, N] (symmetric: zero points 0, as onnxruntime writes weights), Y f32
// or 8-bit. The i32 accumulation runs on the VNNI dot-product instructions where the CPU has them; the
// kernel computes Y = saturate(round((acc + Bias / (sa * sb[n])) * sa * sb[n] / sy) + zy), acc the integer
// product of (A - za) and B (oneDNN 2.x adds the bias before the output scales, as for kiln.QConv); for an
// f32 Y, sy = 1 and zy = 0, and a fused activation (BERT's GELU) is an eltwise post-op on the real value.
// A's zero point is passed at run time. The weights are packed once per process.
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"

namespace kiln::cpu::onednn {
namespace {

using dnnl::memory;

constexpr size_t kMaxCachedShapes = 16;

std::string WhyNotQMatMul(const Node& node) {
  const Value* a = node.input(0);
  const Value* b = node.input(3);
  if (!a || !b || !Is8BitInteger(a->dtype()) || b->dtype() != DType::kInt8) return "A must be 8-bit and B i8";
  if (!a->shape() || a->shape()->rank() < 2) return "A must have rank >= 2";
  const Tensor* bt = ConstantInput(node, 3);
  if (!bt || bt->rank() != 2) return "B must be a 2-D constant";
  if (!node.attrs().GetString("activation", "").empty()) {
    // The post-op sees the value in Y's units: the real value only for an f32 Y.
    if (node.input(6) || node.input(7)) return "a fused activation needs an f32 Y";
    dnnl::post_ops po;
    if (!AppendActivation(node.attrs(), po)) return "activation not supported";
  }
  return WhyNotQuantParams(node, bt->size(1));
}

class QMatMulKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override { return Guard("onednn.qmatmul", [&] { return RunImpl(ctx); }); }

 private:
  struct Prepared {
    dnnl::matmul matmul;
    memory::desc src, dst;
    memory bias;
    std::shared_ptr<const memory> weights;
  };

  Expected<Prepared*> Prepare(const KernelContext& ctx, int64_t rows);
  Status RunImpl(KernelContext& ctx);

  std::map<int64_t, std::unique_ptr<Prepared>> cache_;  // by rows
  std::optional<dnnl::stream> stream_;
  int32_t a_zero_ = 0, y_zero_ = 0;
};

Expected<QMatMulKernel::Prepared*> QMatMulKernel::Prepare(const KernelContext& ctx, int64_t rows) {
  if (auto it = cache_.find(rows); it != cache_.end()) return it->second.get();
  if (cache_.size() >= kMaxCachedShapes) cache_.clear();
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(3);
  const Tensor& bs = *ctx.input(4);
  const Tensor* bias = ctx.input(8);
  const bool float_out = !ctx.input(6) && !ctx.input(7);
  const DType yt = float_out ? DType::kFloat32 : ctx.input(7)->dtype();
  const int64_t k = b.size(0), n = b.size(1);

  auto p = std::make_unique<Prepared>();
  p->src = PlainDesc({rows, k}, DataTypeOf(a.dtype()));
  p->dst = PlainDesc({rows, n}, DataTypeOf(yt));
  const memory::desc weights_user = PlainDesc({k, n}, memory::data_type::s8);
  const memory::desc weights_any({k, n}, memory::data_type::s8, memory::format_tag::any);
  const memory::desc bias_md = PlainDesc({1, n});
  const auto desc = dnnl::matmul::desc(p->src, weights_any, bias_md, p->dst);

  const double sa = ctx.input(1)->GetAsDouble(0);
  const double sy = float_out ? 1.0 : ctx.input(6)->GetAsDouble(0);
  std::vector<float> scales(static_cast<size_t>(n)), bias_acc(static_cast<size_t>(n), 0.f);
  for (int64_t c = 0; c < n; ++c) {
    const double sbc = bs.GetAsDouble(bs.numel() == 1 ? 0 : c);
    scales[static_cast<size_t>(c)] = static_cast<float>(sa * sbc / sy);
    if (bias) bias_acc[static_cast<size_t>(c)] = static_cast<float>(bias->GetAsDouble(c) / (sa * sbc));
  }
  dnnl::primitive_attr attr;
  attr.set_output_scales(1 << 1, scales);
  a_zero_ = ctx.input(2) ? static_cast<int32_t>(ctx.input(2)->GetAsInt64(0)) : 0;
  y_zero_ = float_out ? 0 : static_cast<int32_t>(ctx.input(7)->GetAsInt64(0));
  if (a_zero_ != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  if (y_zero_ != 0) attr.set_zero_points(DNNL_ARG_DST, 0, {DNNL_RUNTIME_S32_VAL});
  dnnl::post_ops po;
  if (!AppendActivation(ctx.attrs(), po)) return InvalidArgument("onednn.qmatmul: activation not supported");
  attr.set_post_ops(po);
  const dnnl::matmul::primitive_desc pd(desc, attr, Engine());
  p->matmul = dnnl::matmul(pd);
  p->weights = SharedPackedWeights(b, weights_user, pd.weights_desc());
  p->bias = memory(bias_md, Engine());
  std::memcpy(p->bias.get_data_handle(), bias_acc.data(), bias_acc.size() * sizeof(float));
  return cache_.emplace(rows, std::move(p)).first->second.get();
}

Status QMatMulKernel::RunImpl(KernelContext& ctx) {
  const bool float_out = !ctx.input(6) && !ctx.input(7);
  for (size_t i : {0, 1, 3, 4, 6, 7}) {
    if (float_out && (i == 6 || i == 7)) continue;
    if (!ctx.input(i)) return InvalidArgument("onednn.qmatmul: input " + std::to_string(i) + " is missing");
  }
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(3);
  if (!Is8BitInteger(a.dtype()) || a.rank() < 2 || b.dtype() != DType::kInt8 || b.rank() != 2) {
    return InvalidArgument("onednn.qmatmul needs an 8-bit A of rank >= 2 and an i8 [K, N] B, got " + a.Description() +
                           " and " + b.Description());
  }
  if (a.size(a.rank() - 1) != b.size(0)) {
    return InvalidArgument("inner dims differ: " + a.Description() + " x " + b.Description());
  }
  std::vector<int64_t> y_sizes = a.sizes();
  y_sizes.back() = b.size(1);
  const int64_t rows = a.numel() / std::max<int64_t>(a.size(a.rank() - 1), 1);
  if (a.numel() == 0 || b.numel() == 0) return RunReferenceKernel(ctx);
  KILN_ASSIGN_OR_RETURN(Prepared * p, Prepare(ctx, rows));
  if (!stream_) stream_.emplace(Engine());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(
                                        0, float_out ? DType::kFloat32 : ctx.input(7)->dtype(), y_sizes));
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, Wrap(p->src, a)},
                                          {DNNL_ARG_WEIGHTS, *p->weights},
                                          {DNNL_ARG_BIAS, p->bias},
                                          {DNNL_ARG_DST, Wrap(p->dst, y->raw_data())}};
  const memory::desc zp_md({1}, memory::data_type::s32, memory::format_tag::a);
  if (a_zero_ != 0) args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, memory(zp_md, Engine(), &a_zero_));
  if (y_zero_ != 0) args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, memory(zp_md, Engine(), &y_zero_));
  p->matmul.execute(*stream_, args);
  stream_->wait();
  return Status::Ok();
}

}  // namespace

std::vector<CpuTactic> QMatMulTactics(const Node& node) {
  if (node.op() != OpKind::kQMatMul || !WhyNotQMatMul(node).empty()) return {};
  return {CpuTactic{"onednn.qmatmul", [] { return std::unique_ptr<CpuKernel>(new QMatMulKernel()); }, "int8"}};
}

}  // namespace kiln::cpu::onednn
