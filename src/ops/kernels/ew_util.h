// Shared machinery of the elementwise and activation ops (elementwise.cc, activation.cc, kernels/ew_*.cc):
// dtype sets with their checks, broadcasting loops, and wrapping integer arithmetic.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln::ew {

// Registration of the op groups split out of elementwise.cc.
void RegisterEwUnaryOps(OpRegistry& r);  // kernels/ew_unary.cc: Neg ... Erf, IsNaN, IsInf, Not
void RegisterEwCastOps(OpRegistry& r);   // kernels/ew_cast.cc: Cast, CastLike

// The dtypes an op accepts.
enum class TypeSet {
  kFloat,    // f16, bf16, f32, f64
  kSigned,   // floats and signed integers
  kNumeric,  // everything but bool
  kInteger,  // integers (signed and unsigned), not bool
  kBool,     // bool only
  kAll,      // every stored dtype
};

bool InTypeSet(DType t, TypeSet set);
const char* TypeSetName(TypeSet set);
// Unsupported error unless `t` is in `set`: "Sqrt does not support dtype i32 (it takes float types)".
Status CheckTypeIn(DType t, TypeSet set, OpKind op, const char* what = "input");
// InvalidArgument error unless inputs 0..n-1 of the node are present (shape functions and kernels may run
// on graphs that were never validated).
Status RequireInputs(const Node& node, size_t n);
// InvalidArgument error unless every present input of the node has dtype `t`.
Status CheckSameInputTypes(const Node& node, DType t, size_t first, size_t last);

// Integer arithmetic that wraps modulo 2^bits instead of overflowing (signed overflow is undefined in C++;
// ONNX Runtime and NumPy wrap). Types narrower than unsigned are widened to unsigned first so that
// uint16 * uint16 does not promote to a signed int that overflows.
template <typename T, bool kNarrow = (sizeof(T) < sizeof(unsigned))>
struct WrapUnsignedOf {
  using type = unsigned;
};
template <typename T>
struct WrapUnsignedOf<T, false> {
  using type = std::make_unsigned_t<T>;
};
template <typename T>
using WrapUnsigned = typename WrapUnsignedOf<T>::type;
template <typename T>
T WrapAdd(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<WrapUnsigned<T>>(a) + static_cast<WrapUnsigned<T>>(b));
  } else {
    return a + b;
  }
}
template <typename T>
T WrapSub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<WrapUnsigned<T>>(a) - static_cast<WrapUnsigned<T>>(b));
  } else {
    return a - b;
  }
}
template <typename T>
T WrapMul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<WrapUnsigned<T>>(a) * static_cast<WrapUnsigned<T>>(b));
  } else {
    return a * b;
  }
}
template <typename T>
T WrapNeg(T a) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(WrapUnsigned<T>(0) - static_cast<WrapUnsigned<T>>(a));
  } else {
    return -a;
  }
}

// Converts a value to `To` the way Kiln's Cast does: float -> integer truncates toward zero and saturates
// at the integer type's limits (NaN -> 0), integer -> integer wraps (as ONNX Runtime and NumPy do),
// anything -> bool is "!= 0", 16-bit floats convert through float.
template <typename To, typename From>
To SaturatingCast(From v) {
  using C = ComputeT<From>;
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    return static_cast<C>(v) != C(0);
  } else if constexpr (std::is_same_v<To, Float16> || std::is_same_v<To, BFloat16>) {
    return To(static_cast<float>(static_cast<C>(v)));
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<C>) {
    const double d = static_cast<double>(static_cast<C>(v));
    if (std::isnan(d)) return To(0);
    constexpr double kLimit = static_cast<double>(uint64_t{1} << (std::numeric_limits<To>::digits - 1)) * 2.0;
    if (d >= kLimit) return std::numeric_limits<To>::max();
    if constexpr (std::is_signed_v<To>) {
      if (d < -kLimit) return std::numeric_limits<To>::min();
    } else {
      if (d <= -1.0) return To(0);
    }
    return static_cast<To>(d);
  } else {
    return static_cast<To>(static_cast<C>(v));
  }
}

// Calls f(o[i], a[ia], b[ib]) for every element of the broadcast result of shape `out_sizes`; `sa`, `sb` are
// the operands' BroadcastStrides against out_sizes. `a` may alias `o` when its strides are Strides(out).
template <typename TA, typename TB, typename TO, typename F>
void BroadcastLoop2(const std::vector<int64_t>& out_sizes, const TA* a, const std::vector<int64_t>& sa,
                    const TB* b, const std::vector<int64_t>& sb, TO* o, F&& f) {
  const int64_t n = NumElements(out_sizes);
  if (n == 0) return;
  const std::vector<int64_t> so = Strides(out_sizes);
  if (sa == so && sb == so) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
    return;
  }
  // Walk the outer dims with a MultiIndexer and run the innermost dim as a strided loop.
  const size_t r = out_sizes.size();
  const int64_t inner = out_sizes[r - 1];
  const int64_t ia = sa[r - 1], ib = sb[r - 1];
  std::vector<int64_t> outer(out_sizes.begin(), out_sizes.end() - 1);
  std::vector<int64_t> oa(sa.begin(), sa.end() - 1), ob(sb.begin(), sb.end() - 1);
  MultiIndexer it(outer, {oa, ob});
  const int64_t n_outer = n / inner;
  for (int64_t k = 0; k < n_outer; ++k, it.Next()) {
    const TA* pa = a + it.offset(0);
    const TB* pb = b + it.offset(1);
    TO* po = o + k * inner;
    for (int64_t j = 0; j < inner; ++j) po[j] = f(pa[j * ia], pb[j * ib]);
  }
}

// out = f(a, b) with NumPy broadcasting; output `out_index` of dtype `out_dtype` (C++ type TO).
template <typename TA, typename TB, typename TO, typename F>
Status BroadcastBinary(KernelContext& ctx, const Tensor& a, const Tensor& b, size_t out_index, F&& f) {
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, BroadcastSizes(a.sizes(), b.sizes()));
  KILN_ASSIGN_OR_RETURN(Tensor * out, ctx.AllocateOutput(out_index, DTypeOf<TO>::value, sizes));
  BroadcastLoop2(sizes, a.data<TA>(), BroadcastStrides(a.sizes(), sizes), b.data<TB>(),
                 BroadcastStrides(b.sizes(), sizes), out->data<TO>(), f);
  return Status::Ok();
}

// out[i] = f(x[i]) into output 0 of dtype TO, same sizes as x.
template <typename TI, typename TO, typename F>
Status MapUnary(KernelContext& ctx, const Tensor& x, F&& f) {
  KILN_ASSIGN_OR_RETURN(Tensor * out, ctx.AllocateOutput(0, DTypeOf<TO>::value, x.sizes()));
  const TI* src = x.data<TI>();
  TO* dst = out->data<TO>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) dst[i] = f(src[i]);
  return Status::Ok();
}

// The reference kernel of a float-only unary op: f maps ComputeT<T> to ComputeT<T> (a generic lambda).
template <typename F>
Status RunFloatUnary(KernelContext& ctx, F f) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckTypeIn(x.dtype(), TypeSet::kFloat, ctx.node().op()));
  Status st;
  VisitFloatDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    st = MapUnary<T, T>(ctx, x, [&](T v) { return T(f(static_cast<ComputeT<T>>(v))); });
  });
  return st;
}

// Shape function of a unary op whose output has input 0's dtype and shape, after checking the dtype.
std::function<Status(InferContext&)> InferUnary(TypeSet set);

}  // namespace kiln::ew
