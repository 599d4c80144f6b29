// kiln.Attention, Y = softmax(scale * Q @ Kt + M) @ V, on oneDNN: a batched matmul with the scale as its
// output scale writes the scores into the kernel's scratch, the mask is added row by row, oneDNN's
// softmax normalizes them in place, and a second batched matmul multiplies by V into Y. The score matrix
// is materialized (batch * Sq * Sk floats, 0.75 MiB for BERT-base at sequence 128 per sample), which is
// what the CPU's caches handle well at these sizes.
//
// Taken: f32, Q, Kt and V of one rank (3 to 6) with equal batch dims (the heads-in-batch form the
// optimizer's pass makes from exported graphs); a mask of any shape that broadcasts to the scores.
// Declined otherwise (the reference kernel runs, also for batch dims that turn out to broadcast at run
// time).
#include <cstring>
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

std::string WhyNotAttention(const Node& node) {
  for (size_t i = 0; i < 3; ++i) {
    const Value* v = node.input(i);
    if (!IsF32(v) || !v->shape()) return "Q, K and V must be f32 of known rank";
    if (v->shape()->rank() < 3 || v->shape()->rank() > 6) return "ranks 3 to 6 only";
    if (v->shape()->rank() != node.input(0)->shape()->rank()) return "Q, K and V must have one rank";
  }
  const std::vector<Dim>& qd = node.input(0)->shape()->dims();
  for (size_t i = 1; i < 3; ++i) {
    const std::vector<Dim>& od = node.input(i)->shape()->dims();
    for (size_t k = 0; k + 2 < qd.size(); ++k) {
      if (qd[k].is_static() && od[k].is_static() && qd[k] != od[k]) return "batch dims broadcast";
    }
  }
  if (node.input(3) && !IsF32(node.input(3))) return "the mask must be f32";
  if (!node.output(0)) return "Y must be requested";
  return "";
}

class AttentionKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override { return Guard("onednn.attention", [&] { return RunImpl(ctx); }); }

 private:
  struct Prepared {
    dnnl::matmul qk, pv;
    dnnl::softmax_forward softmax;
    memory::desc q, kt, v, s, y;
    std::vector<float> scores;
    std::vector<int64_t> y_sizes;
  };

  Status RunImpl(KernelContext& ctx) {
    const Tensor* q = ctx.input(0);
    const Tensor* kt = ctx.input(1);
    const Tensor* v = ctx.input(2);
    const Tensor* mask = ctx.input(3);
    if (!q || !kt || !v) return InvalidArgument("Attention needs Q, K and V");
    for (const Tensor* t : {q, kt, v, mask}) {
      if (t && t->dtype() != DType::kFloat32) return InvalidArgument("onednn.attention needs f32 tensors, got " + t->Description());
    }
    const size_t r = q->rank();
    if (r < 3 || r > 6 || kt->rank() != r || v->rank() != r) {
      return InvalidArgument("onednn.attention needs Q, K and V of one rank, 3 to 6: got " + q->Description() + ", " +
                             kt->Description() + ", " + v->Description());
    }
    const std::vector<int64_t> batch(q->sizes().begin(), q->sizes().end() - 2);
    if (std::vector<int64_t>(kt->sizes().begin(), kt->sizes().end() - 2) != batch ||
        std::vector<int64_t>(v->sizes().begin(), v->sizes().end() - 2) != batch) {
      return RunReferenceKernel(ctx);  // broadcast batch dims (dims the build did not know)
    }
    const int64_t sq = q->size(r - 2), d = q->size(r - 1), sk = kt->size(r - 1), dv = v->size(r - 1);
    if (kt->size(r - 2) != d || v->size(r - 2) != sk) {
      return InvalidArgument("Q " + q->Description() + ", K " + kt->Description() + " and V " + v->Description() +
                             " do not chain");
    }
    std::vector<int64_t> s_sizes = batch;
    s_sizes.push_back(sq);
    s_sizes.push_back(sk);
    if (mask) {
      auto b = BroadcastSizes(s_sizes, mask->sizes());
      if (!b.ok() || *b != s_sizes) {
        return InvalidArgument("mask " + mask->Description() + " does not broadcast to the scores " + SizesToString(s_sizes));
      }
    }
    if (q->numel() == 0 || kt->numel() == 0 || v->numel() == 0) return RunReferenceKernel(ctx);

    std::vector<int64_t> key = q->sizes();
    key.push_back(sk);
    key.push_back(dv);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      if (cache_.size() >= kMaxCachedShapes) cache_.clear();
      auto p = std::make_unique<Prepared>();
      p->q = PlainDesc(q->sizes());
      p->kt = PlainDesc(kt->sizes());
      p->v = PlainDesc(v->sizes());
      p->s = PlainDesc(s_sizes);
      p->y_sizes = batch;
      p->y_sizes.push_back(sq);
      p->y_sizes.push_back(dv);
      p->y = PlainDesc(p->y_sizes);
      dnnl::primitive_attr scaled;
      scaled.set_output_scales(0, {ctx.attrs().GetFloat("scale", 1.f)});
      p->qk = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->q, p->kt, p->s), scaled, Engine()));
      p->pv = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->s, p->v, p->y), Engine()));
      p->softmax = dnnl::softmax_forward(dnnl::softmax_forward::primitive_desc(
          dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, p->s, static_cast<int>(r - 1)), Engine()));
      p->scores.resize(static_cast<size_t>(NumElements(s_sizes)));
      it = cache_.emplace(std::move(key), std::move(p)).first;
    }
    Prepared& p = *it->second;
    if (!stream_) stream_.emplace(Engine());
    dnnl::stream& s = *stream_;
    memory scores = Wrap(p.s, p.scores.data());
    p.qk.execute(s, {{DNNL_ARG_SRC, Wrap(p.q, *q)}, {DNNL_ARG_WEIGHTS, Wrap(p.kt, *kt)}, {DNNL_ARG_DST, scores}});
    s.wait();
    if (mask) AddMask(*mask, s_sizes, p.scores.data());
    p.softmax.execute(s, {{DNNL_ARG_SRC, scores}, {DNNL_ARG_DST, scores}});
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, DType::kFloat32, p.y_sizes));
    p.pv.execute(s, {{DNNL_ARG_SRC, scores}, {DNNL_ARG_WEIGHTS, Wrap(p.v, *v)}, {DNNL_ARG_DST, Wrap(p.y, y->raw_data())}});
    s.wait();
    return Status::Ok();
  }

  // scores[row, :] += mask broadcast, one contiguous row of Sk at a time.
  static void AddMask(const Tensor& mask, const std::vector<int64_t>& s_sizes, float* scores) {
    const std::vector<int64_t> strides = BroadcastStrides(mask.sizes(), s_sizes);
    const int64_t sk = s_sizes.back();
    const int64_t col_stride = strides.back();
    const int64_t rows = sk == 0 ? 0 : NumElements(s_sizes) / sk;
    const std::vector<int64_t> row_sizes(s_sizes.begin(), s_sizes.end() - 1);
    const std::vector<int64_t> row_strides(strides.begin(), strides.end() - 1);
    const float* m = mask.data<float>();
    std::vector<int64_t> idx(row_sizes.size(), 0);
    for (int64_t row = 0; row < rows; ++row) {
      int64_t off = 0;
      for (size_t k = 0; k < idx.size(); ++k) off += idx[k] * row_strides[k];
      float* dst = scores + row * sk;
      const float* src = m + off;
      if (col_stride == 1) {
        for (int64_t j = 0; j < sk; ++j) dst[j] += src[j];
      } else {
        for (int64_t j = 0; j < sk; ++j) dst[j] += src[0];
      }
      for (size_t k = idx.size(); k-- > 0;) {
        if (++idx[k] < row_sizes[k]) break;
        idx[k] = 0;
      }
    }
  }

  std::map<std::vector<int64_t>, std::unique_ptr<Prepared>> cache_;
  std::optional<dnnl::stream> stream_;
};

}  // namespace

std::vector<CpuTactic> AttentionTactics(const Node& node) {
  if (!WhyNotAttention(node).empty()) return {};
  return {CpuTactic{"onednn.attention", [] { return std::unique_ptr<CpuKernel>(new AttentionKernel()); }}};
}

}  // namespace kiln::cpu::onednn
