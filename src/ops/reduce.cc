// Reductions (Reduce*), ArgMax/ArgMin, CumSum and TopK.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {

namespace {

enum class ReduceKind { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

bool ReduceAllowsBool(ReduceKind kind) { return kind == ReduceKind::kMax || kind == ReduceKind::kMin; }

// Accumulator of integer reductions: wide enough that wrapping matches wrapping in T.
template <typename T>
using IntAccT = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;

// Integer sums and products wrap, as in the ONNX types; done in uint64 so that signed overflow is defined.
template <typename Acc>
Acc WrapAdd(Acc a, Acc b) {
  if constexpr (std::is_integral_v<Acc>) {
    return static_cast<Acc>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  } else {
    return a + b;
  }
}
template <typename Acc>
Acc WrapMul(Acc a, Acc b) {
  if constexpr (std::is_integral_v<Acc>) {
    return static_cast<Acc>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
  } else {
    return a * b;
  }
}

// double -> T; for integers NaN gives 0 and out-of-range values saturate (a plain cast would be undefined).
template <typename T>
T SaturateCast(double v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else if constexpr (std::is_integral_v<T>) {
    if (std::isnan(v)) return T(0);
    if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  } else {
    return static_cast<T>(static_cast<ComputeT<T>>(v));
  }
}

Status CheckNumeric(DType t, bool allow_bool, const char* op) {
  if (t == DType::kUndefined || (t == DType::kBool && !allow_bool)) {
    return Unsupported(std::string(op) + " does not accept dtype " + std::string(DTypeName(t)));
  }
  return Status::Ok();
}

// Which axes a Reduce* node reduces, once the rank and axes values are known.
struct ReduceAxes {
  std::vector<bool> reduced;  // per input dim
};

Expected<ReduceAxes> ResolveReduceAxes(const std::optional<std::vector<int64_t>>& axes, bool noop,
                                       int64_t rank) {
  ReduceAxes out;
  out.reduced.assign(static_cast<size_t>(rank), false);
  if (!axes || axes->empty()) {
    if (!noop) std::fill(out.reduced.begin(), out.reduced.end(), true);
    return out;
  }
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> norm, NormalizeAxes(*axes, rank));
  for (int64_t a : norm) out.reduced[static_cast<size_t>(a)] = true;
  return out;
}

// Opset from which Reduce* reads its axes from input 1 instead of the attribute.
int AxesInputOpset(OpKind op) { return op == OpKind::kReduceSum ? 13 : 18; }

Status ValidateReduce(const Node& node) {
  const bool axes_is_input = node.opset() >= AxesInputOpset(node.op());
  if (axes_is_input && node.attrs().Has("axes")) {
    return InvalidArgument("'axes' is an input from opset " + std::to_string(AxesInputOpset(node.op())) +
                           ", not an attribute");
  }
  if (!axes_is_input && node.input(1) != nullptr) {
    return InvalidArgument("'axes' is an attribute before opset " +
                           std::to_string(AxesInputOpset(node.op())) + ", not an input");
  }
  return Status::Ok();
}

Status InferReduce(InferContext& ctx, ReduceKind kind) {
  const DType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(CheckNumeric(dt, ReduceAllowsBool(kind), std::string(ctx.node().op_name()).c_str()));
  const bool keepdims = ctx.attrs().GetInt("keepdims", 1) != 0;
  const bool noop = ctx.attrs().GetInt("noop_with_empty_axes", 0) != 0;
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const int64_t rank = static_cast<int64_t>(in->rank());
  const bool axes_dynamic = ctx.num_inputs() > 1 && ctx.has_input(1) && !ctx.input_constant(1);
  if (axes_dynamic) {
    if (keepdims) {
      std::vector<Dim> dims(in->rank());
      for (size_t d = 0; d < in->rank(); ++d) {
        if ((*in)[d].is_static() && (*in)[d].value() == 1) dims[d] = 1;
      }
      ctx.set_output(0, dt, Shape(std::move(dims)));
      return Status::Ok();
    }
    const auto& axes_shape = ctx.input_shape(1);
    if (axes_shape && axes_shape->rank() == 1 && (*axes_shape)[0].is_static() &&
        (*axes_shape)[0].value() > 0 && (*axes_shape)[0].value() <= rank) {
      ctx.set_output(0, dt, Shape(std::vector<Dim>(static_cast<size_t>(rank - (*axes_shape)[0].value()))));
    } else {
      ctx.set_output(0, dt, std::nullopt);
    }
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(ReduceAxes ra, ResolveReduceAxes(IntsFromInputOrAttr(ctx, 1, "axes"), noop, rank));
  std::vector<Dim> dims;
  for (size_t d = 0; d < in->rank(); ++d) {
    if (!ra.reduced[d])
      dims.push_back((*in)[d]);
    else if (keepdims)
      dims.push_back(1);
  }
  ctx.set_output(0, dt, Shape(std::move(dims)));
  return Status::Ok();
}

template <typename Acc>
Acc ReduceInit(ReduceKind kind, Acc lowest, Acc highest) {
  switch (kind) {
    case ReduceKind::kMax:
      return lowest;
    case ReduceKind::kMin:
      return highest;
    case ReduceKind::kProd:
      return Acc(1);
    case ReduceKind::kSum:
    case ReduceKind::kMean:
    case ReduceKind::kL1:
    case ReduceKind::kL2:
    case ReduceKind::kLogSum:
    case ReduceKind::kLogSumExp:
    case ReduceKind::kSumSquare:
      return Acc(0);
  }
  return Acc(0);
}

template <typename Acc>
void ReduceStep(ReduceKind kind, Acc& acc, Acc x) {
  switch (kind) {
    case ReduceKind::kMax:
      if constexpr (std::is_floating_point_v<Acc>) {
        if (std::isnan(x) || x > acc) acc = x;
      } else {
        if (x > acc) acc = x;
      }
      return;
    case ReduceKind::kMin:
      if constexpr (std::is_floating_point_v<Acc>) {
        if (std::isnan(x) || x < acc) acc = x;
      } else {
        if (x < acc) acc = x;
      }
      return;
    case ReduceKind::kProd:
      acc = WrapMul(acc, x);
      return;
    case ReduceKind::kL1:
      if constexpr (std::is_signed_v<Acc>)
        acc = WrapAdd(acc, x < 0 ? WrapMul(x, Acc(-1)) : x);
      else
        acc = WrapAdd(acc, x);
      return;
    case ReduceKind::kL2:
    case ReduceKind::kSumSquare:
      acc = WrapAdd(acc, WrapMul(x, x));
      return;
    case ReduceKind::kSum:
    case ReduceKind::kMean:
    case ReduceKind::kLogSum:
    case ReduceKind::kLogSumExp:
      acc = WrapAdd(acc, x);
      return;
  }
}

// Reduces src (sizes `in`) into dst, which has one element per position of `out_strides` (0 on reduced dims).
template <typename T, typename Acc>
void ReduceLoop(ReduceKind kind, const T* src, T* dst, const std::vector<int64_t>& in,
                const std::vector<int64_t>& out_strides, int64_t out_numel, int64_t count) {
  using C = ComputeT<T>;
  Acc lowest, highest;
  if constexpr (std::is_floating_point_v<Acc>) {
    lowest = -std::numeric_limits<Acc>::infinity();
    highest = std::numeric_limits<Acc>::infinity();
  } else {
    lowest = static_cast<Acc>(std::numeric_limits<T>::lowest());
    highest = static_cast<Acc>(std::numeric_limits<T>::max());
  }
  const int64_t n = NumElements(in);
  std::vector<Acc> shift(static_cast<size_t>(out_numel), Acc(0));
  if (kind == ReduceKind::kLogSumExp) {
    // log(sum(exp(x))) = m + log(sum(exp(x - m))) with m the maximum, so exp cannot overflow.
    std::vector<Acc> mx(static_cast<size_t>(out_numel), lowest);
    MultiIndexer it(in, {out_strides});
    for (int64_t i = 0; i < n; ++i, it.Next()) {
      ReduceStep(ReduceKind::kMax, mx[static_cast<size_t>(it.offset(0))],
                 static_cast<Acc>(static_cast<C>(src[i])));
    }
    for (size_t o = 0; o < mx.size(); ++o)
      shift[o] = std::isfinite(static_cast<double>(mx[o])) ? mx[o] : Acc(0);
  }
  std::vector<Acc> acc(static_cast<size_t>(out_numel), ReduceInit(kind, lowest, highest));
  MultiIndexer it(in, {out_strides});
  for (int64_t i = 0; i < n; ++i, it.Next()) {
    const size_t o = static_cast<size_t>(it.offset(0));
    Acc x = static_cast<Acc>(static_cast<C>(src[i]));
    if (kind == ReduceKind::kLogSumExp) x = static_cast<Acc>(std::exp(static_cast<double>(x - shift[o])));
    ReduceStep(kind, acc[o], x);
  }
  for (int64_t o = 0; o < out_numel; ++o) {
    const Acc a = acc[static_cast<size_t>(o)];
    Acc r = a;
    switch (kind) {
      case ReduceKind::kMean:
        if constexpr (std::is_floating_point_v<Acc>)
          r = a / static_cast<Acc>(count);
        else
          r = count == 0 ? Acc(0) : static_cast<Acc>(a / static_cast<Acc>(count));
        break;
      case ReduceKind::kL2:
        r = static_cast<Acc>(std::sqrt(static_cast<double>(a)));
        break;
      case ReduceKind::kLogSum:
        r = static_cast<Acc>(std::log(static_cast<double>(a)));
        break;
      case ReduceKind::kLogSumExp:
        r = static_cast<Acc>(std::log(static_cast<double>(a)) +
                             static_cast<double>(shift[static_cast<size_t>(o)]));
        break;
      case ReduceKind::kSum:
      case ReduceKind::kMax:
      case ReduceKind::kMin:
      case ReduceKind::kProd:
      case ReduceKind::kL1:
      case ReduceKind::kSumSquare:
        break;
    }
    if constexpr (std::is_same_v<T, bool>) {
      dst[o] = r != Acc(0);
    } else {
      if constexpr (std::is_floating_point_v<Acc>) {
        dst[o] = SaturateCast<T>(r);
      } else {
        dst[o] = static_cast<T>(r);  // modular, like the wrapped accumulation
      }
    }
  }
}

Status RunReduce(KernelContext& ctx, ReduceKind kind) {
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(
      CheckNumeric(x.dtype(), ReduceAllowsBool(kind), std::string(ctx.node().op_name()).c_str()));
  const bool keepdims = ctx.attrs().GetInt("keepdims", 1) != 0;
  const bool noop = ctx.attrs().GetInt("noop_with_empty_axes", 0) != 0;
  const int64_t rank = static_cast<int64_t>(x.rank());
  const std::optional<std::vector<int64_t>> axes = IntsFromInputOrAttr(ctx, 1, "axes");
  if (noop && (!axes || axes->empty())) {
    // ONNX: the output is the input itself, with no per-element transform (onnxruntime agrees).
    ctx.SetOutput(0, x);
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(ReduceAxes ra, ResolveReduceAxes(axes, noop, rank));
  std::vector<int64_t> keep_sizes = x.sizes(), out_sizes;
  int64_t count = 1;
  for (size_t d = 0; d < x.rank(); ++d) {
    if (ra.reduced[d]) {
      count *= x.size(d);
      keep_sizes[d] = 1;
      if (keepdims) out_sizes.push_back(1);
    } else {
      out_sizes.push_back(x.size(d));
    }
  }
  std::vector<int64_t> out_strides = Strides(keep_sizes);
  for (size_t d = 0; d < x.rank(); ++d) {
    if (ra.reduced[d]) out_strides[d] = 0;
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), out_sizes));
  const int64_t out_numel = y->numel();
  const bool real_valued =
      kind == ReduceKind::kL2 || kind == ReduceKind::kLogSum || kind == ReduceKind::kLogSumExp;
  VisitDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<ComputeT<T>>) {
      ReduceLoop<T, double>(kind, x.data<T>(), y->data<T>(), x.sizes(), out_strides, out_numel, count);
    } else {
      if (real_valued) {
        ReduceLoop<T, double>(kind, x.data<T>(), y->data<T>(), x.sizes(), out_strides, out_numel, count);
      } else {
        ReduceLoop<T, IntAccT<T>>(kind, x.data<T>(), y->data<T>(), x.sizes(), out_strides, out_numel, count);
      }
    }
  });
  return Status::Ok();
}

void RegisterReduce(OpRegistry& r, OpKind op, ReduceKind kind) {
  OpSchema s;
  s.op = op;
  s.min_inputs = 1;
  s.max_inputs = 2;
  s.attrs = {
      {"axes", AttrKind::kInts}, {"keepdims", AttrKind::kInt}, {"noop_with_empty_axes", AttrKind::kInt}};
  s.validate = ValidateReduce;
  s.infer = [kind](InferContext& ctx) { return InferReduce(ctx, kind); };
  s.run = [kind](KernelContext& ctx) { return RunReduce(ctx, kind); };
  r.Register(std::move(s));
}

// ---- ArgMax / ArgMin ----

Status InferArg(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckNumeric(ctx.input_dtype(0), false, std::string(ctx.node().op_name()).c_str()));
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, DType::kInt64, std::nullopt);
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(in->rank())));
  if (in->rank() == 0) return ctx.Error("input must have rank >= 1");
  std::vector<Dim> dims = in->dims();
  if (ctx.attrs().GetInt("keepdims", 1) != 0) {
    dims[static_cast<size_t>(axis)] = 1;
  } else {
    dims.erase(dims.begin() + axis);
  }
  ctx.set_output(0, DType::kInt64, Shape(std::move(dims)));
  return Status::Ok();
}

Status RunArg(KernelContext& ctx, bool is_max) {
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckNumeric(x.dtype(), false, is_max ? "ArgMax" : "ArgMin"));
  if (x.rank() == 0) return ctx.Error("input must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(x.rank())));
  const bool last = ctx.attrs().GetInt("select_last_index", 0) != 0;
  const int64_t len = x.size(static_cast<size_t>(axis));
  std::vector<int64_t> out_sizes = x.sizes();
  if (ctx.attrs().GetInt("keepdims", 1) != 0) {
    out_sizes[static_cast<size_t>(axis)] = 1;
  } else {
    out_sizes.erase(out_sizes.begin() + axis);
  }
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.size(static_cast<size_t>(d));
  for (size_t d = static_cast<size_t>(axis) + 1; d < x.rank(); ++d) inner *= x.size(d);
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, DType::kInt64, out_sizes));
  if (len == 0 && y->numel() > 0)
    return ctx.Error("cannot take the arg of an empty axis " + std::to_string(axis));
  int64_t* dst = y->data<int64_t>();
  VisitDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    const T* src = x.data<T>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        const T* p = src + o * len * inner + in;
        C best = static_cast<C>(p[0]);
        int64_t best_i = 0;
        for (int64_t k = 1; k < len; ++k) {
          const C v = static_cast<C>(p[k * inner]);
          bool take;
          if constexpr (std::is_floating_point_v<C>) {
            // NaN wins over any number, as in NumPy.
            if (std::isnan(best))
              take = last && std::isnan(v);
            else if (std::isnan(v))
              take = true;
            else
              take = is_max ? (v > best || (last && v == best)) : (v < best || (last && v == best));
          } else {
            take = is_max ? (v > best || (last && v == best)) : (v < best || (last && v == best));
          }
          if (take) {
            best = v;
            best_i = k;
          }
        }
        dst[o * inner + in] = best_i;
      }
    }
  });
  return Status::Ok();
}

// ---- CumSum ----

Status InferCumSum(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckNumeric(ctx.input_dtype(0), false, "CumSum"));
  if (!IsInteger(ctx.input_dtype(1))) return ctx.Error("axis must be an integer tensor");
  if (const auto& as = ctx.input_shape(1); as && as->numel() && *as->numel() != 1) {
    return ctx.Error("axis must hold one value, has shape " + as->ToString());
  }
  return InferSameAsInput0(ctx);
}

Status RunCumSum(KernelContext& ctx) {
  const Tensor& x = *ctx.input(0);
  const Tensor& axis_t = *ctx.input(1);
  KILN_RETURN_IF_ERROR(CheckNumeric(x.dtype(), false, "CumSum"));
  if (axis_t.numel() != 1 || !IsInteger(axis_t.dtype())) return ctx.Error("axis must be one integer");
  if (x.rank() == 0) return ctx.Error("input must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_t.GetAsInt64(0), static_cast<int64_t>(x.rank())));
  const bool exclusive = ctx.attrs().GetInt("exclusive", 0) != 0;
  const bool reverse = ctx.attrs().GetInt("reverse", 0) != 0;
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), x.sizes()));
  const int64_t len = x.size(static_cast<size_t>(axis));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.size(static_cast<size_t>(d));
  for (size_t d = static_cast<size_t>(axis) + 1; d < x.rank(); ++d) inner *= x.size(d);
  VisitDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    using Acc = std::conditional_t<std::is_floating_point_v<C>, double, IntAccT<T>>;
    const T* src = x.data<T>();
    T* dst = y->data<T>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        const int64_t base = o * len * inner + in;
        Acc acc = 0;
        for (int64_t j = 0; j < len; ++j) {
          const int64_t k = reverse ? len - 1 - j : j;
          const int64_t at = base + k * inner;
          const Acc v = static_cast<Acc>(static_cast<C>(src[at]));
          if (!exclusive) acc = WrapAdd(acc, v);
          dst[at] = static_cast<T>(static_cast<C>(acc));
          if (exclusive) acc = WrapAdd(acc, v);
        }
      }
    }
  });
  return Status::Ok();
}

// ---- TopK ----

Status ValidateTopK(const Node& node) {
  if (node.opset() < 10) {
    if (!node.attrs().Has("k")) return InvalidArgument("attribute 'k' is required before opset 10");
    if (node.input(1)) return InvalidArgument("K is an attribute before opset 10, not an input");
  } else {
    if (!node.input(1)) return InvalidArgument("input K is required from opset 10");
    if (node.attrs().Has("k")) return InvalidArgument("'k' is an input from opset 10, not an attribute");
  }
  if (node.opset() < 11 && (node.attrs().Has("largest") || node.attrs().Has("sorted"))) {
    return InvalidArgument("attributes 'largest' and 'sorted' exist from opset 11");
  }
  return Status::Ok();
}

Status InferTopK(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(CheckNumeric(dt, false, "TopK"));
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    ctx.set_output(1, DType::kInt64, std::nullopt);
    return Status::Ok();
  }
  if (in->rank() == 0) return ctx.Error("input must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(ctx.attrs().GetInt("axis", -1), static_cast<int64_t>(in->rank())));
  std::optional<int64_t> k;
  if (ctx.opset() < 10) {
    k = ctx.attrs().GetInt("k", 0);
  } else if (const Tensor* kt = ctx.input_constant(1)) {
    if (kt->numel() != 1) return ctx.Error("K must hold one value, has " + kt->Description());
    k = kt->GetAsInt64(0);
  }
  std::vector<Dim> dims = in->dims();
  if (k) {
    const Dim& len = dims[static_cast<size_t>(axis)];
    if (*k < 0 || (len.is_static() && *k > len.value())) {
      return ctx.Error("k " + std::to_string(*k) + " is out of range for axis of size " + len.ToString());
    }
    dims[static_cast<size_t>(axis)] = *k;
  } else {
    dims[static_cast<size_t>(axis)] = Dim();
  }
  ctx.set_output(0, dt, Shape(dims));
  ctx.set_output(1, DType::kInt64, Shape(dims));
  return Status::Ok();
}

Status RunTopK(KernelContext& ctx) {
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckNumeric(x.dtype(), false, "TopK"));
  if (x.rank() == 0) return ctx.Error("input must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(ctx.attrs().GetInt("axis", -1), static_cast<int64_t>(x.rank())));
  int64_t k;
  if (ctx.opset() < 10 || !ctx.input(1)) {
    k = ctx.attrs().GetInt("k", 0);
  } else {
    if (ctx.input(1)->numel() != 1)
      return ctx.Error("K must hold one value, has " + ctx.input(1)->Description());
    k = ctx.input(1)->GetAsInt64(0);
  }
  const int64_t len = x.size(static_cast<size_t>(axis));
  if (k < 0 || k > len) {
    return ctx.Error("k " + std::to_string(k) + " is out of range for axis of size " + std::to_string(len));
  }
  const bool largest = ctx.attrs().GetInt("largest", 1) != 0;
  std::vector<int64_t> out_sizes = x.sizes();
  out_sizes[static_cast<size_t>(axis)] = k;
  KILN_ASSIGN_OR_RETURN(Tensor * values, ctx.AllocateOutput(0, x.dtype(), out_sizes));
  KILN_ASSIGN_OR_RETURN(Tensor * indices, ctx.AllocateOutput(1, DType::kInt64, out_sizes));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.size(static_cast<size_t>(d));
  for (size_t d = static_cast<size_t>(axis) + 1; d < x.rank(); ++d) inner *= x.size(d);
  int64_t* idx_dst = indices->data<int64_t>();
  VisitDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    const T* src = x.data<T>();
    T* val_dst = values->data<T>();
    std::vector<int64_t> order(static_cast<size_t>(x.numel() > 0 ? len : 0));
    // A strict weak order even with NaN (ranked above every number); ties go to the lower index.
    auto before = [&](const T* p, int64_t a, int64_t b) {
      const C va = static_cast<C>(p[a * inner]);
      const C vb = static_cast<C>(p[b * inner]);
      bool na = false, nb = false;
      if constexpr (std::is_floating_point_v<C>) {
        na = std::isnan(va);
        nb = std::isnan(vb);
      }
      if (na || nb) {
        if (na && nb) return a < b;
        return largest ? na : nb;
      }
      if (va != vb) return largest ? va > vb : va < vb;
      return a < b;
    };
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        const T* p = src + o * len * inner + in;
        std::iota(order.begin(), order.end(), int64_t{0});
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](int64_t a, int64_t b) { return before(p, a, b); });
        for (int64_t j = 0; j < k; ++j) {
          const int64_t at = o * k * inner + j * inner + in;
          val_dst[at] = p[order[static_cast<size_t>(j)] * inner];
          idx_dst[at] = order[static_cast<size_t>(j)];
        }
      }
    }
  });
  return Status::Ok();
}

}  // namespace

void RegisterReduceOps(OpRegistry& r) {
  RegisterReduce(r, OpKind::kReduceSum, ReduceKind::kSum);
  RegisterReduce(r, OpKind::kReduceMean, ReduceKind::kMean);
  RegisterReduce(r, OpKind::kReduceMax, ReduceKind::kMax);
  RegisterReduce(r, OpKind::kReduceMin, ReduceKind::kMin);
  RegisterReduce(r, OpKind::kReduceProd, ReduceKind::kProd);
  RegisterReduce(r, OpKind::kReduceL1, ReduceKind::kL1);
  RegisterReduce(r, OpKind::kReduceL2, ReduceKind::kL2);
  RegisterReduce(r, OpKind::kReduceLogSum, ReduceKind::kLogSum);
  RegisterReduce(r, OpKind::kReduceLogSumExp, ReduceKind::kLogSumExp);
  RegisterReduce(r, OpKind::kReduceSumSquare, ReduceKind::kSumSquare);

  for (bool is_max : {true, false}) {
    OpSchema s;
    s.op = is_max ? OpKind::kArgMax : OpKind::kArgMin;
    s.min_inputs = s.max_inputs = 1;
    s.attrs = {{"axis", AttrKind::kInt}, {"keepdims", AttrKind::kInt}, {"select_last_index", AttrKind::kInt}};
    s.infer = InferArg;
    s.run = [is_max](KernelContext& ctx) { return RunArg(ctx, is_max); };
    r.Register(std::move(s));
  }

  OpSchema cumsum;
  cumsum.op = OpKind::kCumSum;
  cumsum.min_inputs = cumsum.max_inputs = 2;
  cumsum.min_opset = 11;
  cumsum.attrs = {{"exclusive", AttrKind::kInt}, {"reverse", AttrKind::kInt}};
  cumsum.infer = InferCumSum;
  cumsum.run = RunCumSum;
  r.Register(std::move(cumsum));

  OpSchema topk;
  topk.op = OpKind::kTopK;
  topk.min_inputs = 1;
  topk.max_inputs = 2;
  topk.min_outputs = topk.max_outputs = 2;
  topk.attrs = {{"axis", AttrKind::kInt},
                {"k", AttrKind::kInt},
                {"largest", AttrKind::kInt},
                {"sorted", AttrKind::kInt}};
  topk.validate = ValidateTopK;
  topk.infer = InferTopK;
  topk.run = RunTopK;
  r.Register(std::move(topk));
}

}  // namespace kiln
