// Unary elementwise math: Neg, Abs, Sign, the float functions (Sqrt ... Erf), IsNaN, IsInf and Not.
#include <cmath>
#include <string>

#include "ops/kernels/ew_util.h"

namespace kiln::ew {
namespace {

// Registers a float-only unary op computing f on ComputeT values.
template <typename F>
void RegisterFloatUnary(OpRegistry& r, OpKind op, int min_opset, F f) {
  OpSchema s;
  s.op = op;
  s.min_inputs = 1;
  s.max_inputs = 1;
  s.min_opset = min_opset;
  s.infer = InferUnary(TypeSet::kFloat);
  s.run = [f](KernelContext& ctx) { return RunFloatUnary(ctx, f); };
  r.Register(std::move(s));
}

// Registers a unary op over `set` whose output has the input's dtype; f maps ComputeT<T> to ComputeT<T>.
template <typename F>
void RegisterTypedUnary(OpRegistry& r, OpKind op, int min_opset, TypeSet set, F f) {
  OpSchema s;
  s.op = op;
  s.min_inputs = 1;
  s.max_inputs = 1;
  s.min_opset = min_opset;
  s.infer = InferUnary(set);
  s.run = [f, set, op](KernelContext& ctx) -> Status {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
    const Tensor& x = *ctx.input(0);
    KILN_RETURN_IF_ERROR(CheckTypeIn(x.dtype(), set, op));
    Status st;
    VisitDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      st = MapUnary<T, T>(ctx, x, [&](T v) { return T(f(static_cast<ComputeT<T>>(v))); });
    });
    return st;
  };
  r.Register(std::move(s));
}

// A float -> bool predicate (IsNaN, IsInf).
template <typename F>
Status RunFloatPredicate(KernelContext& ctx, F f) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckTypeIn(x.dtype(), TypeSet::kFloat, ctx.node().op()));
  Status st;
  VisitFloatDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    st = MapUnary<T, bool>(ctx, x, [&](T v) -> bool { return f(static_cast<ComputeT<T>>(v)); });
  });
  return st;
}

Status InferFloatPredicate(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  KILN_RETURN_IF_ERROR(CheckTypeIn(ctx.input_dtype(0), TypeSet::kFloat, ctx.node().op()));
  ctx.set_output(0, DType::kBool, ctx.input_shape(0));
  return Status::Ok();
}

}  // namespace

void RegisterEwUnaryOps(OpRegistry& r) {
  RegisterTypedUnary(r, OpKind::kNeg, 6, TypeSet::kSigned, [](auto x) { return WrapNeg(x); });
  RegisterTypedUnary(r, OpKind::kAbs, 6, TypeSet::kNumeric, [](auto x) {
    using C = decltype(x);
    if constexpr (std::is_unsigned_v<C>) {
      return x;
    } else if constexpr (std::is_integral_v<C>) {
      return x < 0 ? WrapNeg(x) : x;  // Abs(min) wraps to min, as in NumPy
    } else {
      return std::fabs(x);
    }
  });
  RegisterTypedUnary(r, OpKind::kSign, 9, TypeSet::kNumeric, [](auto x) {
    using C = decltype(x);
    if constexpr (std::is_floating_point_v<C>) {
      if (std::isnan(x)) return x;
    }
    return static_cast<C>(x > C(0) ? 1 : (x < C(0) ? -1 : 0));
  });

  RegisterFloatUnary(r, OpKind::kSqrt, 6, [](auto x) { return std::sqrt(x); });
  RegisterFloatUnary(r, OpKind::kExp, 6, [](auto x) { return std::exp(x); });
  RegisterFloatUnary(r, OpKind::kLog, 6, [](auto x) { return std::log(x); });
  RegisterFloatUnary(r, OpKind::kReciprocal, 6, [](auto x) { return decltype(x)(1) / x; });
  RegisterFloatUnary(r, OpKind::kFloor, 6, [](auto x) { return std::floor(x); });
  RegisterFloatUnary(r, OpKind::kCeil, 6, [](auto x) { return std::ceil(x); });
  // nearbyint rounds half to even under the default rounding mode, as ONNX's Round requires.
  RegisterFloatUnary(r, OpKind::kRound, 11, [](auto x) { return std::nearbyint(x); });
  RegisterFloatUnary(r, OpKind::kSin, 7, [](auto x) { return std::sin(x); });
  RegisterFloatUnary(r, OpKind::kCos, 7, [](auto x) { return std::cos(x); });
  RegisterFloatUnary(r, OpKind::kTan, 7, [](auto x) { return std::tan(x); });
  RegisterFloatUnary(r, OpKind::kAsin, 7, [](auto x) { return std::asin(x); });
  RegisterFloatUnary(r, OpKind::kAcos, 7, [](auto x) { return std::acos(x); });
  RegisterFloatUnary(r, OpKind::kAtan, 7, [](auto x) { return std::atan(x); });
  RegisterFloatUnary(r, OpKind::kSinh, 9, [](auto x) { return std::sinh(x); });
  RegisterFloatUnary(r, OpKind::kCosh, 9, [](auto x) { return std::cosh(x); });
  RegisterFloatUnary(r, OpKind::kAsinh, 9, [](auto x) { return std::asinh(x); });
  RegisterFloatUnary(r, OpKind::kAcosh, 9, [](auto x) { return std::acosh(x); });
  RegisterFloatUnary(r, OpKind::kAtanh, 9, [](auto x) { return std::atanh(x); });
  // ONNX lets Erf take integers too; the result is erf's value converted back (0, or +-1 from |x| >= 6).
  RegisterTypedUnary(r, OpKind::kErf, 9, TypeSet::kNumeric, [](auto x) {
    using C = decltype(x);
    if constexpr (std::is_floating_point_v<C>) {
      return std::erf(x);
    } else {
      return static_cast<C>(std::erf(static_cast<double>(x)));
    }
  });

  OpSchema isnan;
  isnan.op = OpKind::kIsNaN;
  isnan.min_inputs = isnan.max_inputs = 1;
  isnan.min_opset = 9;
  isnan.infer = InferFloatPredicate;
  isnan.run = [](KernelContext& ctx) { return RunFloatPredicate(ctx, [](auto x) { return std::isnan(x); }); };
  r.Register(std::move(isnan));

  OpSchema isinf;
  isinf.op = OpKind::kIsInf;
  isinf.min_inputs = isinf.max_inputs = 1;
  isinf.min_opset = 10;
  isinf.attrs = {{"detect_negative", AttrKind::kInt}, {"detect_positive", AttrKind::kInt}};
  isinf.infer = InferFloatPredicate;
  isinf.run = [](KernelContext& ctx) {
    const bool neg = ctx.attrs().GetInt("detect_negative", 1) != 0;
    const bool pos = ctx.attrs().GetInt("detect_positive", 1) != 0;
    return RunFloatPredicate(ctx, [neg, pos](auto x) { return std::isinf(x) && (x > 0 ? pos : neg); });
  };
  r.Register(std::move(isinf));

  RegisterTypedUnary(r, OpKind::kNot, 1, TypeSet::kBool, [](auto x) { return !x; });
}

}  // namespace kiln::ew
