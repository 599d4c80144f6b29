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
  Requantization rq_;
};

Expected<QMatMulKernel::Prepared*> QMatMulKernel::Prepare(const KernelContext& ctx, int64_t rows) {
  if (auto it = cache_.find(rows); it != cache_.end()) return it->second.get();
  if (cache_.size() >= kMaxCachedShapes) cache_.clear();
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(3);
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

  dnnl::primitive_attr attr;
  rq_ = Requantize(ctx, n, attr);
  dnnl::post_ops po;
  if (!AppendActivation(ctx.attrs(), po)) return InvalidArgument("onednn.qmatmul: activation not supported");
  attr.set_post_ops(po);
  const dnnl::matmul::primitive_desc pd(desc, attr, Engine());
  p->matmul = dnnl::matmul(pd);
  p->weights = SharedPackedWeights(b, weights_user, pd.weights_desc());
  p->bias = rq_.BiasMemory(bias_md);
  return cache_.emplace(rows, std::move(p)).first->second.get();
}

Status QMatMulKernel::RunImpl(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireQuantInputs(ctx, "onednn.qmatmul"));
  const bool float_out = !ctx.input(6) && !ctx.input(7);
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
  rq_.AddZeroPoints(args);
  p->matmul.execute(*stream_, args);
  stream_->wait();
  return Status::Ok();
}

}  // namespace

std::vector<CpuTactic> QMatMulTactics(const Node& node) {
  if (node.op() != OpKind::kQMatMul || !HaveInt8Dot() || !WhyNotQMatMul(node).empty()) return {};
  return {CpuTactic{"onednn.qmatmul", [] { return std::unique_ptr<CpuKernel>(new QMatMulKernel()); }, "int8"}};
}

}  // namespace kiln::cpu::onednn
