// Gemm and MatMul on the shared GEMM routine.
#include <cmath>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/nn_groups.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

bool MatMulDTypeOk(DType t) {
  return IsFloat(t) || t == DType::kInt32 || t == DType::kInt64 || t == DType::kUInt32 || t == DType::kUInt64;
}

Status RequireMatMulDType(DType t) {
  if (MatMulDTypeOk(t)) return Status::Ok();
  return Unsupported("dtype " + std::string(DTypeName(t)) +
                     " is not supported (f16, bf16, f32, f64, i32, i64, "
                     "u32, u64 are)");
}

// Calls fn(T{}) for the dtypes MatMulDTypeOk accepts.
template <typename Fn>
void VisitMatMulDType(DType t, Fn&& fn) {
  VisitNumericDType(t, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_integral_v<T> || sizeof(T) >= 4) fn(tag);
  });
}

// ---- Gemm --------------------------------------------------------------------------------------------

Status ValidateGemm(const Node& node) {
  if (node.opset() > 0 && node.opset() < 11 && node.input(2) == nullptr) {
    return InvalidArgument("input C is required before opset 11");
  }
  return Status::Ok();
}

Status InferGemm(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(RequireMatMulDType(ctx.input_dtype(0)));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 1, "input B"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 2, "input C"));
  const bool ta = ctx.attrs().GetInt("transA", 0) != 0, tb = ctx.attrs().GetInt("transB", 0) != 0;
  const auto& as = ctx.input_shape(0);
  const auto& bs = ctx.input_shape(1);
  if ((as && as->rank() != 2) || (bs && bs->rank() != 2)) {
    return InvalidArgument("A and B must be matrices, got " + (as ? as->ToString() : "?") + " and " +
                           (bs ? bs->ToString() : "?"));
  }
  Dim m, n;
  if (as) m = (*as)[ta ? 1 : 0];
  if (bs) n = (*bs)[tb ? 0 : 1];
  if (as && bs) {
    const Dim ka = (*as)[ta ? 0 : 1], kb = (*bs)[tb ? 1 : 0];
    if (ka.is_static() && kb.is_static() && ka != kb) {
      return InvalidArgument("inner dims differ: A' is " + m.ToString() + "x" + ka.ToString() + ", B' is " +
                             kb.ToString() + "x" + n.ToString());
    }
  }
  const Shape out{m, n};
  if (ctx.has_input(2) && ctx.input_shape(2)) {
    const Shape& cs = *ctx.input_shape(2);
    bool ok = cs.rank() <= 2;
    for (size_t i = 0; ok && i < cs.rank(); ++i) {
      const Dim& want = out[2 - cs.rank() + i];
      ok = !cs[i].is_static() || !want.is_static() || cs[i].value() == 1 || cs[i] == want;
    }
    if (!ok) return InvalidArgument("C " + cs.ToString() + " does not broadcast to " + out.ToString());
  }
  ctx.set_output(0, ctx.input_dtype(0), out);
  return Status::Ok();
}

template <typename T>
void GemmKernel(const Tensor& a, const Tensor& b, const Tensor* c, bool ta, bool tb, double alpha,
                double beta, Tensor& y) {
  using C = ComputeT<T>;
  const int64_t m = y.size(0), n = y.size(1);
  const int64_t k = ta ? a.size(0) : a.size(1);
  ComputeInput<T> av(a), bv(b);
  const C* bp = bv.data();
  std::vector<C> bt;
  if (tb) {  // the GEMM loop wants B row-major [k, n]
    bt.resize(static_cast<size_t>(k * n));
    for (int64_t p = 0; p < k; ++p) {
      for (int64_t j = 0; j < n; ++j) bt[static_cast<size_t>(p * n + j)] = bp[j * k + p];
    }
    bp = bt.data();
  }
  std::vector<C> acc(static_cast<size_t>(m * n), C(0));
  GemmAccumulate<C>(m, n, k, av.data(), ta ? 1 : k, ta ? m : 1, bp, n, acc.data(), n);
  std::vector<int64_t> c_strides;
  const C* cp = nullptr;
  std::optional<ComputeInput<T>> cv;
  if (c && beta != 0) {
    cv.emplace(*c);
    cp = cv->data();
    c_strides = BroadcastStrides(c->sizes(), {m, n});
  }
  T* dst = y.data<T>();
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const C v = acc[static_cast<size_t>(i * n + j)];
      const C cval = cp ? cp[i * c_strides[0] + j * c_strides[1]] : C(0);
      if constexpr (std::is_integral_v<C>) {
        if (alpha == 1 && (beta == 1 || !cp)) {
          dst[i * n + j] = static_cast<T>(static_cast<C>(static_cast<std::make_unsigned_t<C>>(v) +
                                                         static_cast<std::make_unsigned_t<C>>(cval)));
          continue;
        }
        dst[i * n + j] = static_cast<T>(
            std::llround(alpha * static_cast<double>(v) + (cp ? beta * static_cast<double>(cval) : 0.0)));
      } else {
        dst[i * n + j] = T(static_cast<C>(alpha * v + (cp ? beta * cval : 0)));
      }
    }
  }
}

Status RunGemm(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(1);
  const Tensor* c = ctx.input(2);
  if (a.rank() != 2 || b.rank() != 2) {
    return InvalidArgument("A " + a.Description() + " and B " + b.Description() + " must be matrices");
  }
  if (b.dtype() != a.dtype() || (c && c->dtype() != a.dtype())) {
    return InvalidArgument("A, B and C must have one dtype");
  }
  KILN_RETURN_IF_ERROR(RequireMatMulDType(a.dtype()));
  const bool ta = ctx.attrs().GetInt("transA", 0) != 0, tb = ctx.attrs().GetInt("transB", 0) != 0;
  const int64_t m = ta ? a.size(1) : a.size(0), k = ta ? a.size(0) : a.size(1);
  const int64_t kb = tb ? b.size(1) : b.size(0), n = tb ? b.size(0) : b.size(1);
  if (k != kb) {
    return InvalidArgument("inner dims differ: A " + a.Description() + " (transA=" + std::to_string(ta) +
                           "), B " + b.Description() + " (transB=" + std::to_string(tb) + ")");
  }
  if (c) {
    bool ok = c->rank() <= 2;
    for (size_t i = 0; ok && i < c->rank(); ++i) {
      const int64_t want = i + 2 - c->rank() == 0 ? m : n;
      ok = c->size(i) == 1 || c->size(i) == want;
    }
    if (!ok)
      return InvalidArgument("C " + c->Description() + " does not broadcast to [" + std::to_string(m) + "," +
                             std::to_string(n) + "]");
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, a.dtype(), {m, n}));
  const double alpha = ctx.attrs().GetFloat("alpha", 1.f), beta = ctx.attrs().GetFloat("beta", 1.f);
  VisitMatMulDType(a.dtype(), [&](auto tag) { GemmKernel<decltype(tag)>(a, b, c, ta, tb, alpha, beta, *y); });
  return Status::Ok();
}

// ---- MatMul ------------------------------------------------------------------------------------------

Status InferMatMul(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(RequireMatMulDType(ctx.input_dtype(0)));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 1, "input B"));
  const auto& as = ctx.input_shape(0);
  const auto& bs = ctx.input_shape(1);
  if ((as && as->rank() == 0) || (bs && bs->rank() == 0)) return InvalidArgument("MatMul of a scalar");
  if (!as || !bs) {
    ctx.set_output(0, ctx.input_dtype(0), std::nullopt);
    return Status::Ok();
  }
  std::vector<Dim> a = as->dims(), b = bs->dims();
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), Dim(1));
  if (b_vec) b.push_back(Dim(1));
  const Dim& ka = a[a.size() - 1];
  const Dim& kb = b[b.size() - 2];
  if (ka.is_static() && kb.is_static() && ka != kb) {
    return InvalidArgument("inner dims differ: " + as->ToString() + " x " + bs->ToString());
  }
  KILN_ASSIGN_OR_RETURN(Shape batch, BroadcastShapes(Shape(std::vector<Dim>(a.begin(), a.end() - 2)),
                                                     Shape(std::vector<Dim>(b.begin(), b.end() - 2))));
  std::vector<Dim> out = batch.dims();
  if (!a_vec) out.push_back(a[a.size() - 2]);
  if (!b_vec) out.push_back(b[b.size() - 1]);
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(out)));
  return Status::Ok();
}

template <typename T>
void MatMulKernel(const Tensor& a, const Tensor& b, const std::vector<int64_t>& a3,
                  const std::vector<int64_t>& b3, const std::vector<int64_t>& batch, Tensor& y) {
  using C = ComputeT<T>;
  // a3/b3: the operands as [batch..., rows, cols] after 1-D promotion.
  const int64_t m = a3[a3.size() - 2], k = a3.back(), n = b3.back();
  const std::vector<int64_t> a_batch(a3.begin(), a3.end() - 2), b_batch(b3.begin(), b3.end() - 2);
  MultiIndexer it(batch, {BroadcastStrides(a_batch, batch), BroadcastStrides(b_batch, batch)});
  ComputeInput<T> av(a), bv(b);
  ComputeOutput<T> yv(y);
  const int64_t nb = NumElements(batch);
  for (int64_t i = 0; i < nb; ++i, it.Next()) {
    GemmAccumulate<C>(m, n, k, av.data() + it.offset(0) * m * k, k, 1, bv.data() + it.offset(1) * k * n, n,
                      yv.data() + i * m * n, n);
  }
  yv.Store();
}

Status RunMatMul(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(1);
  if (a.rank() == 0 || b.rank() == 0) return InvalidArgument("MatMul of a scalar");
  if (a.dtype() != b.dtype()) return InvalidArgument("A and B have different dtypes");
  KILN_RETURN_IF_ERROR(RequireMatMulDType(a.dtype()));
  std::vector<int64_t> a3 = a.sizes(), b3 = b.sizes();
  if (a3.size() == 1) a3.insert(a3.begin(), 1);
  if (b3.size() == 1) b3.push_back(1);
  if (a3.back() != b3[b3.size() - 2]) {
    return InvalidArgument("inner dims differ: " + a.Description() + " x " + b.Description());
  }
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> batch,
                        BroadcastSizes({a3.begin(), a3.end() - 2}, {b3.begin(), b3.end() - 2}));
  std::vector<int64_t> out = batch;
  if (a.rank() > 1) out.push_back(a3[a3.size() - 2]);
  if (b.rank() > 1) out.push_back(b3.back());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, a.dtype(), out));
  if (y->numel() == 0) return Status::Ok();
  VisitMatMulDType(a.dtype(), [&](auto tag) { MatMulKernel<decltype(tag)>(a, b, a3, b3, batch, *y); });
  return Status::Ok();
}

}  // namespace

void RegisterNnMatMulOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kGemm,
                      .min_inputs = 2,
                      .max_inputs = 3,
                      .attrs = {{"alpha", AttrKind::kFloat},
                                {"beta", AttrKind::kFloat},
                                {"transA", AttrKind::kInt},
                                {"transB", AttrKind::kInt}},
                      .validate = ValidateGemm,
                      .infer = InferGemm,
                      .run = RunGemm});
  r.Register(OpSchema{.op = OpKind::kMatMul,
                      .min_inputs = 2,
                      .max_inputs = 2,
                      .attrs = {},
                      .validate = nullptr,
                      .infer = InferMatMul,
                      .run = RunMatMul});
}

}  // namespace kiln
