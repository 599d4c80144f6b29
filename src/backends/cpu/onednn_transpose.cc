// Transpose: "onednn.transpose" on oneDNN's reorder primitive (the input seen through permuted strides is
// copied into the plain output; f32, rank 1 to 6, reorders cached per input shape), used for the layout
// changes at the edges of channels-last regions (NCHW <-> NHWC); and "kiln.transpose_rows", row copies
// for permutations that keep the last dim (any dtype), which attention's head splits and merges are. The
// builder times both where both apply.
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"

namespace kiln::cpu::onednn {
namespace {

constexpr size_t kMaxCachedShapes = 16;

// The permutation of a rank-`rank` Transpose (default: reversed dims), or nullopt if it is not one.
std::optional<std::vector<int64_t>> PermOf(const Attributes& attrs, size_t rank) {
  std::vector<int64_t> perm = attrs.GetInts("perm");
  if (perm.empty()) {
    for (size_t i = rank; i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  }
  if (perm.size() != rank) return std::nullopt;
  std::vector<bool> seen(rank, false);
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(rank) || seen[static_cast<size_t>(p)]) return std::nullopt;
    seen[static_cast<size_t>(p)] = true;
  }
  return perm;
}

class TransposeKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override { return Guard("onednn.transpose", [&] { return RunImpl(ctx); }); }

 private:
  struct Prepared {
    dnnl::memory::desc src, dst;
    dnnl::reorder reorder;
    std::vector<int64_t> y_sizes;
  };

  Status RunImpl(KernelContext& ctx) {
    if (!ctx.input(0)) return InvalidArgument("Transpose needs an input");
    const Tensor& x = *ctx.input(0);
    if (x.dtype() != DType::kFloat32 || x.rank() < 1 || x.rank() > 6) {
      return InvalidArgument("onednn.transpose needs an f32 input of rank 1 to 6, got " + x.Description());
    }
    if (x.numel() == 0) return RunReferenceKernel(ctx);
    auto it = cache_.find(x.sizes());
    if (it == cache_.end()) {
      const std::optional<std::vector<int64_t>> perm = PermOf(ctx.attrs(), x.rank());
      if (!perm) return InvalidArgument("perm is not a permutation of the input's " + std::to_string(x.rank()) + " dims");
      if (cache_.size() >= kMaxCachedShapes) cache_.clear();
      std::vector<int64_t> in_strides(x.rank(), 1);
      for (size_t i = x.rank(); i-- > 1;) in_strides[i - 1] = in_strides[i] * x.size(i);
      auto p = std::make_unique<Prepared>();
      std::vector<int64_t> strides;
      for (int64_t d : *perm) {
        p->y_sizes.push_back(x.size(static_cast<size_t>(d)));
        strides.push_back(in_strides[static_cast<size_t>(d)]);
      }
      p->src = StridedDesc(p->y_sizes, strides);
      p->dst = PlainDesc(p->y_sizes);
      p->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), p->src, Engine(), p->dst));
      it = cache_.emplace(x.sizes(), std::move(p)).first;
    }
    Prepared& p = *it->second;
    if (!stream_) stream_.emplace(Engine());
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, DType::kFloat32, p.y_sizes));
    dnnl::memory src = Wrap(p.src, x);
    dnnl::memory dst = Wrap(p.dst, y->raw_data());
    p.reorder.execute(*stream_, src, dst);
    stream_->wait();
    return Status::Ok();
  }

  std::map<std::vector<int64_t>, std::unique_ptr<Prepared>> cache_;
  std::optional<dnnl::stream> stream_;
};

// A Transpose that keeps the last dim in place moves whole rows: one memcpy per output row, the source
// offset stepped like an odometer over the permuted strides ("kiln.transpose_rows"; attention's head
// splits and merges, [B, S, H, D] <-> [B, H, S, D], are this kind).
class RowTransposeKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override {
    if (!ctx.input(0)) return InvalidArgument("Transpose needs an input");
    const Tensor& x = *ctx.input(0);
    const size_t r = x.rank();
    const std::optional<std::vector<int64_t>> perm = PermOf(ctx.attrs(), r);
    if (r < 2 || !perm || perm->back() != static_cast<int64_t>(r - 1)) {
      return InvalidArgument("kiln.transpose_rows needs a permutation that keeps the last of at least 2 dims");
    }
    std::vector<int64_t> in_strides(r, 1);
    for (size_t i = r; i-- > 1;) in_strides[i - 1] = in_strides[i] * x.size(i);
    std::vector<int64_t> y_sizes, strides;
    for (int64_t d : *perm) {
      y_sizes.push_back(x.size(static_cast<size_t>(d)));
      strides.push_back(in_strides[static_cast<size_t>(d)]);
    }
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, x.dtype(), y_sizes));
    const int64_t rows = NumElements(std::vector<int64_t>(y_sizes.begin(), y_sizes.end() - 1));
    const size_t es = DTypeSize(x.dtype());
    const size_t row_bytes = static_cast<size_t>(y_sizes.back()) * es;
    if (rows == 0 || row_bytes == 0) return Status::Ok();
    const char* src = static_cast<const char*>(x.raw_data());
    char* dst = static_cast<char*>(y->raw_data());
    std::vector<int64_t> idx(r - 1, 0);
    int64_t off = 0;
    for (int64_t row = 0; row < rows; ++row) {
      std::memcpy(dst + static_cast<size_t>(row) * row_bytes, src + static_cast<size_t>(off) * es, row_bytes);
      for (size_t k = r - 1; k-- > 0;) {
        off += strides[k];
        if (++idx[k] < y_sizes[k]) break;
        off -= strides[k] * y_sizes[k];
        idx[k] = 0;
      }
    }
    return Status::Ok();
  }
};

}  // namespace

std::vector<CpuTactic> TransposeTactics(const Node& node) {
  const Value* x = node.input(0);
  if (!x || !x->shape() || x->shape()->rank() < 1 || x->shape()->rank() > 6 || !node.output(0)) return {};
  const size_t rank = x->shape()->rank();
  const std::optional<std::vector<int64_t>> perm = PermOf(node.attrs(), rank);
  if (!perm) return {};
  std::vector<CpuTactic> out;
  if (IsF32(x)) out.push_back({"onednn.transpose", [] { return std::unique_ptr<CpuKernel>(new TransposeKernel()); }});
  if (rank >= 2 && perm->back() == static_cast<int64_t>(rank - 1) && DTypeSize(x->dtype()) > 0) {
    out.push_back({"kiln.transpose_rows", [] { return std::unique_ptr<CpuKernel>(new RowTransposeKernel()); }});
  }
  return out;
}

}  // namespace kiln::cpu::onednn
