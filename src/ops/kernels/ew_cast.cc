// Cast and CastLike between every stored dtype. Float -> integer truncates toward zero and saturates at the
// target's limits (NaN -> 0) so that out-of-range values are never undefined behaviour; integer -> integer
// wraps; see SaturatingCast in ew_util.h. The 'saturate' attribute (opset 19) only concerns float8 types,
// which Kiln does not store: it is accepted and ignored.
// Cast to bfloat16 truncates the float32 bits (keeping NaN a NaN), as ONNX's reference implementation and
// its node tests do; BFloat16's constructor elsewhere rounds to nearest even.
#include <cmath>
#include <cstring>
#include <string>

#include "ops/kernels/ew_util.h"

namespace kiln::ew {
namespace {

// The DType for an ONNX TensorProto.DataType number, or an error naming the type Kiln lacks.
Expected<DType> CastTarget(int64_t to) {
  switch (to) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7:
    case 9:
    case 10:
    case 11:
    case 12:
    case 13:
    case 16:
      return static_cast<DType>(to);
    case 8:
      return Unsupported("Cast to string is not supported");
    case 14:
    case 15:
      return Unsupported("Cast to complex types is not supported");
    case 17:
    case 18:
    case 19:
    case 20:
      return Unsupported("Cast to float8 types is not supported");
    case 21:
    case 22:
      return Unsupported("Cast to 4-bit integer types is not supported");
    case 23:
      return Unsupported("Cast to float4 is not supported");
    default:
      return InvalidArgument("'to' is not a valid data type: " + std::to_string(to));
  }
}

BFloat16 TruncateToBFloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  BFloat16 b;
  b.bits = std::isnan(f) ? static_cast<uint16_t>((u >> 16) | 0x0040) : static_cast<uint16_t>(u >> 16);
  return b;
}

Status ConvertTensor(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  bool ok = VisitDType(src.dtype(), [&](auto from_tag) {
    using From = decltype(from_tag);
    VisitDType(dst.dtype(), [&](auto to_tag) {
      using To = decltype(to_tag);
      const From* s = src.data<From>();
      To* d = dst.data<To>();
      if constexpr (std::is_same_v<To, BFloat16>) {
        for (int64_t i = 0; i < n; ++i) {
          d[i] = TruncateToBFloat16(static_cast<float>(static_cast<ComputeT<From>>(s[i])));
        }
      } else {
        for (int64_t i = 0; i < n; ++i) d[i] = SaturatingCast<To>(s[i]);
      }
    });
  });
  if (!ok) return Unsupported("cast from dtype " + std::string(DTypeName(src.dtype())));
  return Status::Ok();
}

Status RunCastTo(KernelContext& ctx, DType to) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  const Tensor& x = *ctx.input(0);
  if (x.dtype() == to) {
    ctx.SetOutput(0, x);  // tensors are immutable once produced, so sharing storage is safe
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(Tensor * out, ctx.AllocateOutput(0, to, x.sizes()));
  return ConvertTensor(x, *out);
}

Status ValidateSaturate(const Node& n) {
  const int64_t s = n.attrs().GetInt("saturate", 1);
  if (s != 0 && s != 1) return InvalidArgument("saturate must be 0 or 1, got " + std::to_string(s));
  return Status::Ok();
}

}  // namespace

void RegisterEwCastOps(OpRegistry& r) {
  OpSchema cast;
  cast.op = OpKind::kCast;
  cast.min_inputs = cast.max_inputs = 1;
  cast.min_opset = 6;
  cast.attrs = {{"to", AttrKind::kInt, true}, {"saturate", AttrKind::kInt}};
  cast.validate = [](const Node& n) -> Status {
    KILN_RETURN_IF_ERROR(ValidateSaturate(n));
    return CastTarget(n.attrs().GetInt("to")).status();
  };
  cast.infer = [](InferContext& ctx) -> Status {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
    KILN_ASSIGN_OR_RETURN(DType to, CastTarget(ctx.attrs().GetInt("to")));
    ctx.set_output(0, to, ctx.input_shape(0));
    return Status::Ok();
  };
  cast.run = [](KernelContext& ctx) -> Status {
    KILN_ASSIGN_OR_RETURN(DType to, CastTarget(ctx.attrs().GetInt("to")));
    return RunCastTo(ctx, to);
  };
  r.Register(std::move(cast));

  OpSchema like;
  like.op = OpKind::kCastLike;
  like.min_inputs = like.max_inputs = 2;
  like.min_opset = 15;
  like.attrs = {{"saturate", AttrKind::kInt}};
  like.validate = ValidateSaturate;
  like.infer = [](InferContext& ctx) -> Status {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
    ctx.set_output(0, ctx.input_dtype(1), ctx.input_shape(0));
    return Status::Ok();
  };
  like.run = [](KernelContext& ctx) -> Status {
    KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
    return RunCastTo(ctx, ctx.input(1)->dtype());
  };
  r.Register(std::move(like));
}

}  // namespace kiln::ew
