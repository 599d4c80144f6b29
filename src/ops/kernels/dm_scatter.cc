// Indexed reads and writes: GatherElements, GatherND, ScatterND, ScatterElements; and NonZero, OneHot.
// Every index is checked against its dim (negative ones counted from the end) before any access.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "ops/kernels/dm_groups.h"
#include "ops/kernels/dm_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using dm::Input;

int64_t Prod(const std::vector<int64_t>& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end && i < s.size(); ++i) p *= s[i];
  return p;
}

Expected<int64_t> CheckIndex(int64_t v, int64_t size, const char* op) {
  if (v < -size || v >= size) {
    return OutOfRange(std::string(op) + " index " + std::to_string(v) + " is out of range for a dim of size " +
                      std::to_string(size));
  }
  return v < 0 ? v + size : v;
}

// ---- reductions of the scatter ops ----

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

Expected<Reduction> GetReduction(const Attributes& attrs) {
  const std::string s = attrs.GetString("reduction", "none");
  if (s == "none") return Reduction::kNone;
  if (s == "add") return Reduction::kAdd;
  if (s == "mul") return Reduction::kMul;
  if (s == "max") return Reduction::kMax;
  if (s == "min") return Reduction::kMin;
  return InvalidArgument("unknown reduction '" + s + "'");
}

template <typename T>
void Combine(Reduction r, T& dst, T src) {
  using C = ComputeT<T>;
  if (r == Reduction::kNone) {
    dst = src;
    return;
  }
  const C a = static_cast<C>(dst), b = static_cast<C>(src);
  C v = a;
  if constexpr (std::is_same_v<T, bool>) {
    v = (r == Reduction::kAdd || r == Reduction::kMax) ? (a || b) : (a && b);
  } else if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<C>;
    switch (r) {
      case Reduction::kAdd: v = static_cast<C>(static_cast<U>(a) + static_cast<U>(b)); break;
      case Reduction::kMul: v = static_cast<C>(static_cast<U>(a) * static_cast<U>(b)); break;
      case Reduction::kMax: v = std::max(a, b); break;
      case Reduction::kMin: v = std::min(a, b); break;
      case Reduction::kNone: break;
    }
  } else {
    switch (r) {
      case Reduction::kAdd: v = a + b; break;
      case Reduction::kMul: v = a * b; break;
      case Reduction::kMax: v = std::max(a, b); break;
      case Reduction::kMin: v = std::min(a, b); break;
      case Reduction::kNone: break;
    }
  }
  dst = T(v);
}

Status InferSameAsData(InferContext& ctx) {
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  return Status::Ok();
}

// ---- GatherElements / ScatterElements ----

Status InferGatherElements(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(ctx.input_dtype(1), "indices"));
  const auto& d = ctx.input_shape(0);
  const auto& i = ctx.input_shape(1);
  if (d && i && d->rank() != i->rank()) return ctx.Error("data and indices must have the same rank");
  if (d) KILN_RETURN_IF_ERROR(NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(d->rank())).status());
  ctx.set_output(0, ctx.input_dtype(0), i);
  return Status::Ok();
}

// Checks the indices of GatherElements/ScatterElements and returns them normalized.
Expected<std::vector<int64_t>> ElementIndices(const Tensor& data, const Tensor& idx, int64_t axis, const char* op) {
  if (data.rank() != idx.rank()) {
    return InvalidArgument(std::string(op) + ": data " + data.Description() + " and indices " + idx.Description() +
                           " must have the same rank");
  }
  for (size_t d = 0; d < data.rank(); ++d) {
    if (static_cast<int64_t>(d) != axis && idx.size(d) > data.size(d)) {
      return InvalidArgument(std::string(op) + ": indices " + idx.Description() + " exceed data " + data.Description() +
                             " on axis " + std::to_string(d));
    }
  }
  std::vector<int64_t> v = idx.ToInt64Vector();
  const int64_t dim = data.size(static_cast<size_t>(axis));
  for (int64_t& x : v) {
    KILN_ASSIGN_OR_RETURN(x, CheckIndex(x, dim, op));
  }
  return v;
}

Status RunGatherElements(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(const Tensor* idx, Input(ctx, 1, "indices"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(idx->dtype(), "indices"));
  if (x->rank() == 0) return ctx.Error("data must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(x->rank())));
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> index, ElementIndices(*x, *idx, axis, "GatherElements"));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), idx->sizes()));
  if (y->numel() == 0) return Status::Ok();
  const std::vector<int64_t> strides = Strides(x->sizes());
  std::vector<int64_t> walk = strides;
  walk[static_cast<size_t>(axis)] = 0;
  const int64_t axis_stride = strides[static_cast<size_t>(axis)];
  const size_t es = DTypeSize(x->dtype());
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  MultiIndexer it(idx->sizes(), {walk});
  for (int64_t i = 0; i < y->numel(); ++i, it.Next()) {
    dm::CopyElem(dst + i * static_cast<int64_t>(es),
                 src + (it.offset(0) + index[static_cast<size_t>(i)] * axis_stride) * static_cast<int64_t>(es), es);
  }
  return Status::Ok();
}

Status RunScatterElements(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(const Tensor* idx, Input(ctx, 1, "indices"));
  KILN_ASSIGN_OR_RETURN(const Tensor* upd, Input(ctx, 2, "updates"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(idx->dtype(), "indices"));
  KILN_ASSIGN_OR_RETURN(Reduction red, GetReduction(ctx.attrs()));
  if (x->rank() == 0) return ctx.Error("data must have rank >= 1");
  if (upd->sizes() != idx->sizes() || upd->dtype() != x->dtype()) {
    return ctx.Error("updates " + upd->Description() + " must match indices' shape and data's dtype");
  }
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(x->rank())));
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> index, ElementIndices(*x, *idx, axis, "ScatterElements"));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), x->sizes()));
  if (x->nbytes() > 0) std::memcpy(y->raw_data(), x->raw_data(), x->nbytes());
  if (idx->numel() == 0) return Status::Ok();
  const std::vector<int64_t> strides = Strides(x->sizes());
  std::vector<int64_t> walk = strides;
  walk[static_cast<size_t>(axis)] = 0;
  const int64_t axis_stride = strides[static_cast<size_t>(axis)];
  VisitDType(x->dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* u = upd->data<T>();
    T* out = y->data<T>();
    MultiIndexer it(idx->sizes(), {walk});
    for (int64_t i = 0; i < idx->numel(); ++i, it.Next()) {
      Combine<T>(red, out[it.offset(0) + index[static_cast<size_t>(i)] * axis_stride], u[i]);
    }
  });
  return Status::Ok();
}

// ---- GatherND / ScatterND ----

// Flat element offsets into data (per batch) of each index tuple of the last indices dim.
struct NdIndex {
  int64_t batches = 1;          // prod(indices.shape[:batch_dims])
  int64_t tuples = 1;           // tuples per batch
  int64_t block = 1;            // elements per addressed slice: prod(data.shape[batch_dims + k:])
  int64_t data_batch = 1;       // elements of data per batch
  std::vector<int64_t> offsets; // batches * tuples element offsets, relative to the batch's start
};

Expected<NdIndex> ResolveNdIndex(const Tensor& data, const Tensor& idx, int64_t b, const char* op) {
  const int64_t r = static_cast<int64_t>(data.rank()), q = static_cast<int64_t>(idx.rank());
  if (q < 1) return InvalidArgument(std::string(op) + ": indices must have rank >= 1");
  if (b < 0 || b >= q || b >= r) return InvalidArgument(std::string(op) + ": batch_dims " + std::to_string(b) + " is out of range");
  const int64_t k = idx.size(static_cast<size_t>(q - 1));
  if (k < 1 && r - b > 0 && k != 0) return InvalidArgument(std::string(op) + ": bad indices shape");
  if (k > r - b) {
    return InvalidArgument(std::string(op) + ": indices' last dim " + std::to_string(k) + " exceeds data rank " +
                           std::to_string(r) + " minus batch_dims");
  }
  for (int64_t d = 0; d < b; ++d) {
    if (data.size(static_cast<size_t>(d)) != idx.size(static_cast<size_t>(d))) {
      return InvalidArgument(std::string(op) + ": data " + data.Description() + " and indices " + idx.Description() +
                             " differ on batch dim " + std::to_string(d));
    }
  }
  NdIndex nd;
  nd.batches = Prod(idx.sizes(), 0, static_cast<size_t>(b));
  nd.tuples = Prod(idx.sizes(), static_cast<size_t>(b), static_cast<size_t>(q - 1));
  nd.block = Prod(data.sizes(), static_cast<size_t>(b + k), static_cast<size_t>(r));
  nd.data_batch = Prod(data.sizes(), static_cast<size_t>(b), static_cast<size_t>(r));
  const std::vector<int64_t> v = idx.ToInt64Vector();
  const std::vector<int64_t> strides = Strides(data.sizes());
  nd.offsets.resize(static_cast<size_t>(nd.batches * nd.tuples));
  for (size_t t = 0; t < nd.offsets.size(); ++t) {
    int64_t off = 0;
    for (int64_t j = 0; j < k; ++j) {
      const size_t dd = static_cast<size_t>(b + j);
      KILN_ASSIGN_OR_RETURN(int64_t i, CheckIndex(v[t * static_cast<size_t>(k) + static_cast<size_t>(j)], data.size(dd), op));
      off += i * strides[dd];
    }
    nd.offsets[t] = off;
  }
  return nd;
}

Status InferGatherND(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(ctx.input_dtype(1), "indices"));
  const auto& d = ctx.input_shape(0);
  const auto& i = ctx.input_shape(1);
  const int64_t b = ctx.attrs().GetInt("batch_dims", 0);
  if (!d || !i || i->rank() == 0 || !(*i)[i->rank() - 1].is_static()) {
    ctx.set_output(0, ctx.input_dtype(0), std::nullopt);
    return Status::Ok();
  }
  const int64_t k = (*i)[i->rank() - 1].value();
  if (b < 0 || k > static_cast<int64_t>(d->rank()) - b) return ctx.Error("indices' last dim exceeds data rank minus batch_dims");
  std::vector<Dim> out(i->dims().begin(), i->dims().end() - 1);
  out.insert(out.end(), d->dims().begin() + b + k, d->dims().end());
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(out)));
  return Status::Ok();
}

Status RunGatherND(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(const Tensor* idx, Input(ctx, 1, "indices"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(idx->dtype(), "indices"));
  const int64_t b = ctx.attrs().GetInt("batch_dims", 0);
  KILN_ASSIGN_OR_RETURN(NdIndex nd, ResolveNdIndex(*x, *idx, b, "GatherND"));
  const int64_t k = idx->size(idx->rank() - 1);
  std::vector<int64_t> out_sizes(idx->sizes().begin(), idx->sizes().end() - 1);
  out_sizes.insert(out_sizes.end(), x->sizes().begin() + b + k, x->sizes().end());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  const int64_t block = nd.block * es;
  if (block == 0) return Status::Ok();
  for (int64_t bt = 0; bt < nd.batches; ++bt) {
    for (int64_t t = 0; t < nd.tuples; ++t) {
      std::memcpy(dst, src + (bt * nd.data_batch + nd.offsets[static_cast<size_t>(bt * nd.tuples + t)]) * es,
                  static_cast<size_t>(block));
      dst += block;
    }
  }
  return Status::Ok();
}

Status RunScatterND(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(const Tensor* idx, Input(ctx, 1, "indices"));
  KILN_ASSIGN_OR_RETURN(const Tensor* upd, Input(ctx, 2, "updates"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(idx->dtype(), "indices"));
  KILN_ASSIGN_OR_RETURN(Reduction red, GetReduction(ctx.attrs()));
  KILN_ASSIGN_OR_RETURN(NdIndex nd, ResolveNdIndex(*x, *idx, 0, "ScatterND"));
  const int64_t k = idx->size(idx->rank() - 1);
  std::vector<int64_t> want(idx->sizes().begin(), idx->sizes().end() - 1);
  want.insert(want.end(), x->sizes().begin() + k, x->sizes().end());
  if (upd->sizes() != want || upd->dtype() != x->dtype()) {
    return ctx.Error("updates " + upd->Description() + " must be " + std::string(DTypeName(x->dtype())) +
                     SizesToString(want));
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), x->sizes()));
  if (x->nbytes() > 0) std::memcpy(y->raw_data(), x->raw_data(), x->nbytes());
  VisitDType(x->dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* u = upd->data<T>();
    T* out = y->data<T>();
    for (size_t t = 0; t < nd.offsets.size(); ++t) {
      for (int64_t e = 0; e < nd.block; ++e) {
        Combine<T>(red, out[nd.offsets[t] + e], u[static_cast<int64_t>(t) * nd.block + e]);
      }
    }
  });
  return Status::Ok();
}

// ---- NonZero ----

Status InferNonZero(InferContext& ctx) {
  const auto& s = ctx.input_shape(0);
  ctx.set_output(0, DType::kInt64,
                 s ? std::optional<Shape>(Shape({static_cast<int64_t>(std::max<size_t>(s->rank(), 1)), Dim()}))
                   : std::optional<Shape>(dm::UnknownDims(2)));
  return Status::Ok();
}

Status RunNonZero(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "X"));
  // A scalar counts as a 1-element vector, as in NumPy.
  const std::vector<int64_t> sizes = x->rank() == 0 ? std::vector<int64_t>{1} : x->sizes();
  std::vector<int64_t> hits;
  VisitDType(x->dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    const T* p = x->data<T>();
    for (int64_t i = 0; i < x->numel(); ++i) {
      if (static_cast<C>(p[i]) != C(0)) hits.push_back(i);
    }
  });
  const int64_t r = static_cast<int64_t>(sizes.size()), n = static_cast<int64_t>(hits.size());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, DType::kInt64, {r, n}));
  const std::vector<int64_t> strides = Strides(sizes);
  int64_t* out = y->data<int64_t>();
  for (int64_t j = 0; j < n; ++j) {
    int64_t rem = hits[static_cast<size_t>(j)];
    for (int64_t d = 0; d < r; ++d) {
      out[d * n + j] = rem / strides[static_cast<size_t>(d)];
      rem %= strides[static_cast<size_t>(d)];
    }
  }
  return Status::Ok();
}

// ---- OneHot ----

Status InferOneHot(InferContext& ctx) {
  const DType dt = ctx.input_dtype(2);
  const auto& s = ctx.input_shape(0);
  if (!s) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const int64_t r = static_cast<int64_t>(s->rank());
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", -1), r + 1));
  Dim depth;
  if (const Tensor* d = ctx.input_constant(1); d && d->numel() == 1) {
    const double v = d->GetAsDouble(0);
    if (!(v >= 1) || v > 1e15) return ctx.Error("depth must be positive");
    depth = static_cast<int64_t>(v);
  }
  std::vector<Dim> out = s->dims();
  out.insert(out.begin() + axis, depth);
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunOneHot(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* idx, Input(ctx, 0, "indices"));
  KILN_ASSIGN_OR_RETURN(const Tensor* dep, Input(ctx, 1, "depth"));
  KILN_ASSIGN_OR_RETURN(const Tensor* vals, Input(ctx, 2, "values"));
  KILN_RETURN_IF_ERROR(dm::RequireScalar(*dep, "depth"));
  if (vals->numel() != 2 || vals->rank() != 1) return ctx.Error("values must be [off_value, on_value], got " + vals->Description());
  if (idx->dtype() == DType::kBool || dep->dtype() == DType::kBool) return ctx.Error("indices and depth must be numeric");
  const double dv = dep->GetAsDouble(0);
  if (!(dv >= 1) || dv > 1e15) return ctx.Error("depth must be positive, got " + std::to_string(dv));
  const int64_t depth = static_cast<int64_t>(dv);
  const int64_t r = static_cast<int64_t>(idx->rank());
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", -1), r + 1));
  std::vector<int64_t> out_sizes = idx->sizes();
  out_sizes.insert(out_sizes.begin() + axis, depth);
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, vals->dtype(), out_sizes));
  const int64_t outer = Prod(idx->sizes(), 0, static_cast<size_t>(axis));
  const int64_t inner = Prod(idx->sizes(), static_cast<size_t>(axis), idx->rank());
  const size_t es = DTypeSize(vals->dtype());
  const char* off = static_cast<const char*>(vals->raw_data());
  const char* on = off + es;
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t i = 0; i < y->numel(); ++i) dm::CopyElem(dst + i * static_cast<int64_t>(es), off, es);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      const double v = idx->GetAsDouble(o * inner + in);
      if (std::isnan(v) || v < -static_cast<double>(depth) || v >= static_cast<double>(depth)) continue;
      int64_t k = static_cast<int64_t>(v);
      if (k < 0) k += depth;
      if (k < 0 || k >= depth) continue;
      dm::CopyElem(dst + ((o * depth + k) * inner + in) * static_cast<int64_t>(es), on, es);
    }
  }
  return Status::Ok();
}

Status ValidateReduction(const Node& node) {
  KILN_ASSIGN_OR_RETURN(Reduction r, GetReduction(node.attrs()));
  if ((r == Reduction::kAdd || r == Reduction::kMul) && node.opset() < 16) {
    return InvalidArgument("reduction add/mul needs opset 16");
  }
  if ((r == Reduction::kMax || r == Reduction::kMin) && node.opset() < 18) {
    return InvalidArgument("reduction max/min needs opset 18");
  }
  return Status::Ok();
}

}  // namespace

void RegisterDmScatterOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kGatherElements,
                      .min_inputs = 2,
                      .max_inputs = 2,
                      .attrs = {{"axis", AttrKind::kInt}},
                      .min_opset = 11,
                      .infer = InferGatherElements,
                      .run = RunGatherElements});
  r.Register(OpSchema{.op = OpKind::kScatterElements,
                      .min_inputs = 3,
                      .max_inputs = 3,
                      .attrs = {{"axis", AttrKind::kInt}, {"reduction", AttrKind::kString}},
                      .min_opset = 11,
                      .validate = ValidateReduction,
                      .infer = InferSameAsData,
                      .run = RunScatterElements});
  r.Register(OpSchema{.op = OpKind::kGatherND,
                      .min_inputs = 2,
                      .max_inputs = 2,
                      .attrs = {{"batch_dims", AttrKind::kInt}},
                      .min_opset = 11,
                      .infer = InferGatherND,
                      .run = RunGatherND});
  r.Register(OpSchema{.op = OpKind::kScatterND,
                      .min_inputs = 3,
                      .max_inputs = 3,
                      .attrs = {{"reduction", AttrKind::kString}},
                      .min_opset = 11,
                      .validate = ValidateReduction,
                      .infer = InferSameAsData,
                      .run = RunScatterND});
  r.Register(OpSchema{.op = OpKind::kNonZero,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .min_opset = 9,
                      .infer = InferNonZero,
                      .run = RunNonZero});
  r.Register(OpSchema{.op = OpKind::kOneHot,
                      .min_inputs = 3,
                      .max_inputs = 3,
                      .attrs = {{"axis", AttrKind::kInt}},
                      .min_opset = 9,
                      .infer = InferOneHot,
                      .run = RunOneHot});
}

}  // namespace kiln
