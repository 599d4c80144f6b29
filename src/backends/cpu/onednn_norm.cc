// LayerNormalization over the last axis on oneDNN's layer normalization primitive, with Scale and B of the
// normalized size ([C], as transformers have them). Taken: f32, axis -1 (or rank - 1), only Y requested
// (not the mean or inverse std outputs), Scale and B constant of C elements. Declined otherwise.
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"
#include "ops/op_util.h"

namespace kiln::cpu::onednn {
namespace {

using dnnl::memory;

constexpr size_t kMaxCachedShapes = 16;

std::string WhyNotLayerNorm(const Node& node) {
  const Value* x = node.input(0);
  if (!IsF32(x) || !x->shape() || x->shape()->rank() < 2 || x->shape()->rank() > 5) return "X must be f32 of rank 2 to 5";
  const int64_t rank = static_cast<int64_t>(x->shape()->rank());
  const int64_t axis = node.attrs().GetInt("axis", -1);
  if (axis != -1 && axis != rank - 1) return "only the last axis";
  for (size_t i = 1; i < node.num_outputs(); ++i) {
    if (node.output(i)) return "Mean and InvStdDev outputs are not produced";
  }
  const Dim& c = x->shape()->dims().back();
  if (!c.is_static()) return "the normalized dim must be static";
  for (size_t i = 1; i < 3; ++i) {
    const Value* p = node.input(i);
    if (!p) {
      if (i == 1) return "Scale is required";
      continue;
    }
    if (!IsF32(p) || !p->is_constant() || p->constant()->numel() != c.value()) return "Scale and B must be constants of C floats";
  }
  return "";
}

class LayerNormKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override { return Guard("onednn.layernorm", [&] { return RunImpl(ctx); }); }

 private:
  struct Prepared {
    dnnl::layer_normalization_forward ln;
    memory::desc data, param;
    memory mean, variance;
  };

  Status RunImpl(KernelContext& ctx) {
    const Tensor* x = ctx.input(0);
    const Tensor* scale = ctx.input(1);
    const Tensor* bias = ctx.input(2);
    if (!x || !scale) return InvalidArgument("LayerNormalization needs X and Scale");
    if (x->dtype() != DType::kFloat32 || x->rank() < 2 || x->rank() > 5) {
      return InvalidArgument("onednn.layernorm needs an f32 input of rank 2 to 5, got " + x->Description());
    }
    const int64_t c = x->sizes().back();
    for (const Tensor* p : {scale, bias}) {
      if (p && (p->dtype() != DType::kFloat32 || p->numel() != c)) {
        return InvalidArgument("Scale and B must hold " + std::to_string(c) + " floats, got " + p->Description());
      }
    }
    if (x->numel() == 0) return RunReferenceKernel(ctx);
    auto it = cache_.find(x->sizes());
    if (it == cache_.end()) {
      if (cache_.size() >= kMaxCachedShapes) cache_.clear();
      auto p = std::make_unique<Prepared>();
      p->data = PlainDesc(x->sizes());
      p->param = PlainDesc({c});
      auto flags = dnnl::normalization_flags::use_scale;
      if (bias) flags |= dnnl::normalization_flags::use_shift;
      const dnnl::layer_normalization_forward::primitive_desc pd(
          dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_inference, p->data,
                                                  ctx.attrs().GetFloat("epsilon", 1e-5f), flags),
          Engine());
      p->ln = dnnl::layer_normalization_forward(pd);
      p->mean = memory(pd.mean_desc(), Engine());
      p->variance = memory(pd.variance_desc(), Engine());
      it = cache_.emplace(x->sizes(), std::move(p)).first;
    }
    Prepared& p = *it->second;
    if (!stream_) stream_.emplace(Engine());
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, DType::kFloat32, x->sizes()));
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, Wrap(p.data, *x)},
                                            {DNNL_ARG_DST, Wrap(p.data, y->raw_data())},
                                            {DNNL_ARG_SCALE, Wrap(p.param, *scale)},
                                            {DNNL_ARG_MEAN, p.mean},
                                            {DNNL_ARG_VARIANCE, p.variance}};
    if (bias) args.emplace(DNNL_ARG_SHIFT, Wrap(p.param, *bias));
    p.ln.execute(*stream_, args);
    stream_->wait();
    return Status::Ok();
  }

  std::map<std::vector<int64_t>, std::unique_ptr<Prepared>> cache_;
  std::optional<dnnl::stream> stream_;
};

}  // namespace

std::vector<CpuTactic> LayerNormTactics(const Node& node) {
  if (!WhyNotLayerNorm(node).empty()) return {};
  return {CpuTactic{"onednn.layernorm", [] { return std::unique_ptr<CpuKernel>(new LayerNormKernel()); }}};
}

}  // namespace kiln::cpu::onednn
