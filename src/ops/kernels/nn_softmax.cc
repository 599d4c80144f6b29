// Softmax, LogSoftmax, Hardmax. Before opset 13 the input is viewed as a matrix [prod(dims < axis),
// prod(dims >= axis)] (default axis 1) and each row is normalized; from 13 on the op runs along one axis
// (default -1).
#include <cmath>
#include <limits>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/nn_groups.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

int64_t DefaultAxis(int opset) { return opset >= 13 ? -1 : 1; }

Status InferSoftmax(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input"));
  const auto& xs = ctx.input_shape(0);
  if (xs) {
    const int64_t rank = static_cast<int64_t>(xs->rank());
    KILN_RETURN_IF_ERROR(NormalizeAxis(ctx.attrs().GetInt("axis", DefaultAxis(ctx.opset())), rank).status());
  }
  ctx.set_output(0, ctx.input_dtype(0), xs);
  return Status::Ok();
}

// One softmax-family row: n elements at stride `stride`, computed in double.
template <typename T>
void SoftmaxRow(OpKind op, const T* src, T* dst, int64_t n, int64_t stride, std::vector<double>& buf) {
  double mx = -std::numeric_limits<double>::infinity();
  int64_t arg = 0;
  for (int64_t i = 0; i < n; ++i) {
    buf[static_cast<size_t>(i)] = static_cast<double>(static_cast<ComputeT<T>>(src[i * stride]));
    if (buf[static_cast<size_t>(i)] > mx) {
      mx = buf[static_cast<size_t>(i)];
      arg = i;
    }
  }
  if (op == OpKind::kHardmax) {
    for (int64_t i = 0; i < n; ++i) dst[i * stride] = T(static_cast<ComputeT<T>>(i == arg ? 1 : 0));
    return;
  }
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(buf[static_cast<size_t>(i)] - mx);
  const double log_sum = std::log(sum);
  for (int64_t i = 0; i < n; ++i) {
    const double shifted = buf[static_cast<size_t>(i)] - mx;
    const double v = op == OpKind::kSoftmax ? std::exp(shifted) / sum : shifted - log_sum;
    dst[i * stride] = T(static_cast<ComputeT<T>>(v));
  }
}

Status RunSoftmax(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  const Tensor& x = *ctx.input(0);
  const OpKind op = ctx.node().op();
  const int64_t rank = static_cast<int64_t>(x.rank());
  KILN_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(ctx.attrs().GetInt("axis", DefaultAxis(ctx.opset())), rank));
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t s = x.size(static_cast<size_t>(d));
    if (d < axis) {
      outer *= s;
    } else if (d == axis || ctx.opset() < 13) {
      n *= s;
    } else {
      inner *= s;
    }
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), x.sizes()));
  if (x.numel() == 0) return Status::Ok();
  std::vector<double> buf(static_cast<size_t>(n));
  if (!VisitFloatDType(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* dst = y->data<T>();
        for (int64_t o = 0; o < outer; ++o) {
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t base = o * n * inner + i;
            SoftmaxRow<T>(op, src + base, dst + base, n, inner, buf);
          }
        }
      })) {
    return RequireFloat(x.dtype(), "input");
  }
  return Status::Ok();
}

}  // namespace

void RegisterNnSoftmaxOps(OpRegistry& r) {
  for (OpKind op : {OpKind::kSoftmax, OpKind::kLogSoftmax, OpKind::kHardmax}) {
    r.Register(OpSchema{.op = op,
                        .min_inputs = 1,
                        .max_inputs = 1,
                        .attrs = {{"axis", AttrKind::kInt}},
                        .validate = nullptr,
                        .infer = InferSoftmax,
                        .run = RunSoftmax});
  }
}

}  // namespace kiln
