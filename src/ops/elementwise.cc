// Elementwise binary arithmetic (Add ... Mod), variadic Max/Min/Sum/Mean, comparisons, logic and Where.
// Unary math lives in kernels/ew_unary.cc, Cast/CastLike in kernels/ew_cast.cc.
#include <cmath>
#include <string>

#include "ops/kernels/ew_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace ew {

bool InTypeSet(DType t, TypeSet set) {
  switch (set) {
    case TypeSet::kFloat:
      return IsFloat(t);
    case TypeSet::kSigned:
      return IsFloat(t) || (IsInteger(t) && IsSigned(t));
    case TypeSet::kNumeric:
      return IsFloat(t) || IsInteger(t);
    case TypeSet::kInteger:
      return IsInteger(t);
    case TypeSet::kBool:
      return t == DType::kBool;
    case TypeSet::kAll:
      return t != DType::kUndefined;
  }
  return false;
}

const char* TypeSetName(TypeSet set) {
  switch (set) {
    case TypeSet::kFloat:
      return "float types";
    case TypeSet::kSigned:
      return "float and signed integer types";
    case TypeSet::kNumeric:
      return "numeric types";
    case TypeSet::kInteger:
      return "integer types";
    case TypeSet::kBool:
      return "bool";
    case TypeSet::kAll:
      return "any type";
  }
  return "?";
}

Status CheckTypeIn(DType t, TypeSet set, OpKind op, const char* what) {
  if (InTypeSet(t, set)) return Status::Ok();
  return Unsupported(std::string(OpKindName(op)) + " does not support " + what + " dtype " +
                     std::string(DTypeName(t)) + " (it takes " + TypeSetName(set) + ")");
}

Status RequireInputs(const Node& node, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!node.input(i)) return InvalidArgument("required input " + std::to_string(i) + " is missing");
  }
  return Status::Ok();
}

Status CheckSameInputTypes(const Node& node, DType t, size_t first, size_t last) {
  for (size_t i = first; i <= last && i < node.num_inputs(); ++i) {
    const Value* v = node.input(i);
    if (v && v->dtype() != t) {
      return InvalidArgument("input " + std::to_string(i) + " ('" + v->name() + "') has dtype " +
                             std::string(DTypeName(v->dtype())) + ", expected " + std::string(DTypeName(t)) +
                             " like input " + std::to_string(first));
    }
  }
  return Status::Ok();
}

std::function<Status(InferContext&)> InferUnary(TypeSet set) {
  return [set](InferContext& ctx) -> Status {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
    KILN_RETURN_IF_ERROR(CheckTypeIn(ctx.input_dtype(0), set, ctx.node().op()));
    return InferSameAsInput0(ctx);
  };
}

namespace {

// Kernels see tensors, not values: the same-dtype check again, for graphs run without shape inference.
Status CheckSameTensorTypes(const KernelContext& ctx, size_t first) {
  const DType t = ctx.input(first)->dtype();
  for (size_t i = first + 1; i < ctx.num_inputs(); ++i) {
    const Tensor* in = ctx.input(i);
    if (in && in->dtype() != t) {
      return InvalidArgument("input " + std::to_string(i) + " has dtype " +
                             std::string(DTypeName(in->dtype())) + ", expected " + std::string(DTypeName(t)));
    }
  }
  return Status::Ok();
}

// Shape function of an op whose inputs all share one dtype from `set` and broadcast together; the output
// dtype is that dtype, or `out` when given (comparisons give bool).
std::function<Status(InferContext&)> InferBroadcast(TypeSet set, DType out = DType::kUndefined) {
  return [set, out](InferContext& ctx) -> Status {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
    const DType t = ctx.input_dtype(0);
    KILN_RETURN_IF_ERROR(CheckTypeIn(t, set, ctx.node().op()));
    KILN_RETURN_IF_ERROR(CheckSameInputTypes(ctx.node(), t, 0, ctx.num_inputs() - 1));
    KILN_ASSIGN_OR_RETURN(std::optional<Shape> shape, BroadcastInputShapes(ctx));
    ctx.set_output(0, out == DType::kUndefined ? t : out, std::move(shape));
    return Status::Ok();
  };
}

// Runs f(a, b) on ComputeT values of two same-dtype inputs; the result is stored as T (or bool when
// kBoolOut). `f` is a generic lambda.
template <bool kBoolOut, typename F>
Status RunBinary(KernelContext& ctx, TypeSet set, F f) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(1);
  KILN_RETURN_IF_ERROR(CheckTypeIn(a.dtype(), set, ctx.node().op()));
  KILN_RETURN_IF_ERROR(CheckSameTensorTypes(ctx, 0));
  Status st;
  VisitDType(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    if constexpr (kBoolOut) {
      st = BroadcastBinary<T, T, bool>(
          ctx, a, b, 0, [&](T x, T y) -> bool { return f(static_cast<C>(x), static_cast<C>(y)); });
    } else {
      st = BroadcastBinary<T, T, T>(
          ctx, a, b, 0, [&](T x, T y) -> T { return T(f(static_cast<C>(x), static_cast<C>(y))); });
    }
  });
  return st;
}

template <typename T>
constexpr bool kIsIntegral = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// ---- Div, Mod, Pow ----------------------------------------------------------------------------------

Status RunDiv(KernelContext& ctx) {
  bool div_by_zero = false;
  Status st = RunBinary<false>(ctx, TypeSet::kNumeric, [&](auto x, auto y) {
    using C = decltype(x);
    if constexpr (kIsIntegral<C>) {
      if (y == 0) {
        div_by_zero = true;
        return C(0);
      }
      if constexpr (std::is_signed_v<C>) {
        if (y == C(-1)) return WrapNeg(x);  // min / -1 overflows
      }
      return static_cast<C>(x / y);
    } else {
      return x / y;
    }
  });
  if (st.ok() && div_by_zero) return InvalidArgument("integer division by zero");
  return st;
}

Status RunMod(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
  const bool fmod = ctx.attrs().GetInt("fmod", 0) != 0;
  if (!fmod && IsFloat(ctx.input(0)->dtype())) {
    return InvalidArgument("Mod of floating-point inputs needs fmod=1");
  }
  bool div_by_zero = false;
  Status st = RunBinary<false>(ctx, TypeSet::kNumeric, [&](auto x, auto y) {
    using C = decltype(x);
    if constexpr (kIsIntegral<C>) {
      if (y == 0) {
        div_by_zero = true;
        return C(0);
      }
      if constexpr (std::is_signed_v<C>) {
        if (y == C(-1)) return C(0);  // min % -1 overflows
        C r = static_cast<C>(x % y);
        // fmod=0 is Python's %: the remainder takes the divisor's sign.
        if (!fmod && r != 0 && ((r < 0) != (y < 0))) r = static_cast<C>(r + y);
        return r;
      } else {
        return static_cast<C>(x % y);
      }
    } else {
      return std::fmod(x, y);
    }
  });
  if (st.ok() && div_by_zero) return InvalidArgument("integer modulo by zero");
  return st;
}

// Integer power by squaring, wrapping on overflow; negative exponents follow C's truncation of 1/x^n.
template <typename T>
T IntPow(T base, int64_t exp) {
  if (exp < 0) {
    if (base == 1) return 1;
    if constexpr (std::is_signed_v<T>) {
      if (base == T(-1)) return (exp % 2 == 0) ? T(1) : T(-1);
    }
    return 0;  // |base| > 1 truncates to 0; 0^-n is inf in floating point, 0 here rather than UB
  }
  T result = 1;
  while (exp > 0) {
    if (exp & 1) result = WrapMul(result, base);
    base = WrapMul(base, base);
    exp >>= 1;
  }
  return result;
}

// Pow's element function: the base's type decides the output's.
template <typename TA, typename TB>
TA PowScalar(TA x, TB y) {
  if constexpr (kIsIntegral<TA> && kIsIntegral<TB>) {
    if constexpr (std::is_same_v<TB, uint64_t>) {
      // x^y mod 2^64 depends on y only modulo 2^62 (and on its parity), so y - 2^63 gives the same result.
      if (y > static_cast<TB>(std::numeric_limits<int64_t>::max())) {
        return IntPow<TA>(x, static_cast<int64_t>(y - (uint64_t{1} << 63)));
      }
    }
    return IntPow<TA>(x, static_cast<int64_t>(y));
  } else if constexpr (std::is_same_v<TA, double> || std::is_same_v<TB, double> || kIsIntegral<TA> ||
                       kIsIntegral<TB>) {
    // A double or an int64 operand does not fit a float: compute in double.
    return SaturatingCast<TA>(std::pow(static_cast<double>(static_cast<ComputeT<TA>>(x)),
                                       static_cast<double>(static_cast<ComputeT<TB>>(y))));
  } else {
    return TA(std::pow(static_cast<float>(x), static_cast<float>(y)));
  }
}

Status RunPow(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
  const Tensor& a = *ctx.input(0);
  const Tensor& b = *ctx.input(1);
  KILN_RETURN_IF_ERROR(CheckTypeIn(a.dtype(), TypeSet::kNumeric, OpKind::kPow, "base"));
  KILN_RETURN_IF_ERROR(CheckTypeIn(b.dtype(), TypeSet::kNumeric, OpKind::kPow, "exponent"));
  Status st;
  VisitNumericDType(a.dtype(), [&](auto ta) {
    using TA = decltype(ta);
    VisitNumericDType(b.dtype(), [&](auto tb) {
      using TB = decltype(tb);
      st = BroadcastBinary<TA, TB, TA>(ctx, a, b, 0, PowScalar<TA, TB>);
    });
  });
  return st;
}

Status InferPow(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
  KILN_RETURN_IF_ERROR(CheckTypeIn(ctx.input_dtype(0), TypeSet::kNumeric, OpKind::kPow, "base"));
  KILN_RETURN_IF_ERROR(CheckTypeIn(ctx.input_dtype(1), TypeSet::kNumeric, OpKind::kPow, "exponent"));
  KILN_ASSIGN_OR_RETURN(std::optional<Shape> shape, BroadcastInputShapes(ctx));
  ctx.set_output(0, ctx.input_dtype(0), std::move(shape));
  return Status::Ok();
}

// ---- Max, Min, Sum, Mean ----------------------------------------------------------------------------

enum class Variadic { kMax, kMin, kSum, kMean };

Status RunVariadic(KernelContext& ctx, Variadic kind, TypeSet set) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  const Tensor& first = *ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckTypeIn(first.dtype(), set, ctx.node().op()));
  KILN_RETURN_IF_ERROR(CheckSameTensorTypes(ctx, 0));
  std::vector<int64_t> sizes = first.sizes();
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    if (!ctx.input(i)) return InvalidArgument("input " + std::to_string(i) + " is missing");
    KILN_ASSIGN_OR_RETURN(sizes, BroadcastSizes(sizes, ctx.input(i)->sizes()));
  }
  KILN_ASSIGN_OR_RETURN(Tensor * out, ctx.AllocateOutput(0, first.dtype(), sizes));
  const std::vector<int64_t> out_strides = Strides(sizes);
  VisitDType(first.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    T* o = out->data<T>();
    BroadcastLoop2(sizes, first.data<T>(), BroadcastStrides(first.sizes(), sizes), first.data<T>(),
                   BroadcastStrides(first.sizes(), sizes), o, [](T x, T) { return x; });
    auto combine = [kind](T acc, T v) -> T {
      const C x = static_cast<C>(acc), y = static_cast<C>(v);
      switch (kind) {
        case Variadic::kMax:
          if constexpr (std::is_floating_point_v<C>) {
            if (std::isnan(x) || std::isnan(y)) return T(std::numeric_limits<C>::quiet_NaN());
          }
          return x < y ? v : acc;
        case Variadic::kMin:
          if constexpr (std::is_floating_point_v<C>) {
            if (std::isnan(x) || std::isnan(y)) return T(std::numeric_limits<C>::quiet_NaN());
          }
          return y < x ? v : acc;
        case Variadic::kSum:
        case Variadic::kMean:
          return T(WrapAdd<C>(x, y));
      }
      return acc;
    };
    for (size_t i = 1; i < ctx.num_inputs(); ++i) {
      const Tensor& in = *ctx.input(i);
      BroadcastLoop2(sizes, o, out_strides, in.data<T>(), BroadcastStrides(in.sizes(), sizes), o, combine);
    }
    if (kind == Variadic::kMean) {
      const int64_t n = out->numel();
      const C count = static_cast<C>(ctx.num_inputs());
      for (int64_t i = 0; i < n; ++i) o[i] = T(static_cast<C>(o[i]) / count);
    }
  });
  return Status::Ok();
}

// ---- Where ------------------------------------------------------------------------------------------

Status InferWhere(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 3));
  if (ctx.input_dtype(0) != DType::kBool) {
    return InvalidArgument("condition has dtype " + std::string(DTypeName(ctx.input_dtype(0))) +
                           ", expected bool");
  }
  KILN_RETURN_IF_ERROR(CheckSameInputTypes(ctx.node(), ctx.input_dtype(1), 1, 2));
  KILN_ASSIGN_OR_RETURN(std::optional<Shape> shape, BroadcastInputShapes(ctx));
  ctx.set_output(0, ctx.input_dtype(1), std::move(shape));
  return Status::Ok();
}

Status RunWhere(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 3));
  const Tensor& c = *ctx.input(0);
  const Tensor& x = *ctx.input(1);
  const Tensor& y = *ctx.input(2);
  if (c.dtype() != DType::kBool) return InvalidArgument("condition must be bool");
  KILN_RETURN_IF_ERROR(CheckSameTensorTypes(ctx, 1));
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, BroadcastSizes(c.sizes(), x.sizes()));
  KILN_ASSIGN_OR_RETURN(sizes, BroadcastSizes(sizes, y.sizes()));
  KILN_ASSIGN_OR_RETURN(Tensor * out, ctx.AllocateOutput(0, x.dtype(), sizes));
  const int64_t n = out->numel();
  if (n == 0) return Status::Ok();
  VisitDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const bool* pc = c.data<bool>();
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    T* o = out->data<T>();
    MultiIndexer it(sizes, {BroadcastStrides(c.sizes(), sizes), BroadcastStrides(x.sizes(), sizes),
                            BroadcastStrides(y.sizes(), sizes)});
    for (int64_t i = 0; i < n; ++i, it.Next()) o[i] = pc[it.offset(0)] ? px[it.offset(1)] : py[it.offset(2)];
  });
  return Status::Ok();
}

// ---- registration -----------------------------------------------------------------------------------

OpSchema Binary(OpKind op, int min_opset, TypeSet set, std::function<Status(KernelContext&)> run,
                DType out = DType::kUndefined) {
  OpSchema s;
  s.op = op;
  s.min_inputs = 2;
  s.max_inputs = 2;
  s.min_opset = min_opset;
  s.infer = InferBroadcast(set, out);
  s.run = std::move(run);
  return s;
}

OpSchema VariadicSchema(OpKind op, Variadic kind, TypeSet set) {
  OpSchema s;
  s.op = op;
  s.min_inputs = 1;
  s.max_inputs = -1;
  s.min_opset = 6;
  s.infer = InferBroadcast(set);
  s.run = [kind, set](KernelContext& ctx) { return RunVariadic(ctx, kind, set); };
  return s;
}

template <typename F>
std::function<Status(KernelContext&)> Arith(TypeSet set, F f) {
  return [set, f](KernelContext& ctx) { return RunBinary<false>(ctx, set, f); };
}
template <typename F>
std::function<Status(KernelContext&)> Compare(TypeSet set, F f) {
  return [set, f](KernelContext& ctx) { return RunBinary<true>(ctx, set, f); };
}

}  // namespace

void RegisterElementwise(OpRegistry& r) {
  constexpr TypeSet kNum = TypeSet::kNumeric;
  r.Register(Binary(OpKind::kAdd, 7, kNum, Arith(kNum, [](auto x, auto y) { return WrapAdd(x, y); })));
  r.Register(Binary(OpKind::kSub, 7, kNum, Arith(kNum, [](auto x, auto y) { return WrapSub(x, y); })));
  r.Register(Binary(OpKind::kMul, 7, kNum, Arith(kNum, [](auto x, auto y) { return WrapMul(x, y); })));
  r.Register(Binary(OpKind::kDiv, 7, kNum, RunDiv));

  OpSchema mod = Binary(OpKind::kMod, 10, kNum, RunMod);
  mod.attrs = {{"fmod", AttrKind::kInt}};
  mod.validate = [](const Node& n) -> Status {
    const int64_t f = n.attrs().GetInt("fmod", 0);
    if (f != 0 && f != 1) return InvalidArgument("fmod must be 0 or 1, got " + std::to_string(f));
    return Status::Ok();
  };
  mod.infer = [](InferContext& ctx) -> Status {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
    if (IsFloat(ctx.input_dtype(0)) && ctx.attrs().GetInt("fmod", 0) == 0) {
      return InvalidArgument("Mod of floating-point inputs needs fmod=1");
    }
    return InferBroadcast(TypeSet::kNumeric)(ctx);
  };
  r.Register(std::move(mod));

  OpSchema pow = Binary(OpKind::kPow, 7, kNum, RunPow);
  pow.infer = InferPow;
  r.Register(std::move(pow));

  r.Register(VariadicSchema(OpKind::kMax, Variadic::kMax, kNum));
  r.Register(VariadicSchema(OpKind::kMin, Variadic::kMin, kNum));
  r.Register(VariadicSchema(OpKind::kSum, Variadic::kSum, kNum));
  r.Register(VariadicSchema(OpKind::kMean, Variadic::kMean, TypeSet::kFloat));

  constexpr DType kB = DType::kBool;
  r.Register(Binary(OpKind::kEqual, 7, TypeSet::kAll,
                    Compare(TypeSet::kAll, [](auto x, auto y) { return x == y; }), kB));
  r.Register(Binary(OpKind::kLess, 7, kNum, Compare(kNum, [](auto x, auto y) { return x < y; }), kB));
  r.Register(Binary(OpKind::kGreater, 7, kNum, Compare(kNum, [](auto x, auto y) { return x > y; }), kB));
  r.Register(
      Binary(OpKind::kLessOrEqual, 12, kNum, Compare(kNum, [](auto x, auto y) { return x <= y; }), kB));
  r.Register(
      Binary(OpKind::kGreaterOrEqual, 12, kNum, Compare(kNum, [](auto x, auto y) { return x >= y; }), kB));
  constexpr TypeSet kBoolSet = TypeSet::kBool;
  r.Register(Binary(OpKind::kAnd, 7, kBoolSet, Arith(kBoolSet, [](auto x, auto y) { return x && y; })));
  r.Register(Binary(OpKind::kOr, 7, kBoolSet, Arith(kBoolSet, [](auto x, auto y) { return x || y; })));
  r.Register(Binary(OpKind::kXor, 7, kBoolSet, Arith(kBoolSet, [](auto x, auto y) { return x != y; })));

  OpSchema where;
  where.op = OpKind::kWhere;
  where.min_inputs = 3;
  where.max_inputs = 3;
  where.min_opset = 9;
  where.infer = InferWhere;
  where.run = RunWhere;
  r.Register(std::move(where));

  RegisterEwUnaryOps(r);
  RegisterEwCastOps(r);
}

}  // namespace ew

void RegisterElementwiseOps(OpRegistry& r) { ew::RegisterElementwise(r); }

}  // namespace kiln
