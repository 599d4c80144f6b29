// Activations: Relu ... ThresholdedRelu, PRelu and Clip. Float math runs in ComputeT<T> (float for the 16-bit
// types); attribute values are floats in ONNX and are converted to the compute type once.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "ops/kernels/ew_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace ew {
namespace {

// Registers a float-only activation; make(attrs) returns the generic lambda applied to each element.
template <typename Make>
void RegisterFloatAct(OpRegistry& r, OpKind op, int min_opset, std::vector<AttrSpec> attrs, Make make,
                      std::function<Status(const Node&)> validate = nullptr) {
  OpSchema s;
  s.op = op;
  s.min_inputs = s.max_inputs = 1;
  s.min_opset = min_opset;
  s.attrs = std::move(attrs);
  s.validate = std::move(validate);
  s.infer = InferUnary(TypeSet::kFloat);
  s.run = [make](KernelContext& ctx) { return RunFloatUnary(ctx, make(ctx.attrs())); };
  r.Register(std::move(s));
}

template <typename C>
C Softplus(C x) {
  // log(1 + e^x) without overflow for large x.
  return x > C(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

// ---- Relu (signed integers allowed since opset 14) ----------------------------------------------------

Status RunRelu(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckTypeIn(x.dtype(), TypeSet::kSigned, OpKind::kRelu));
  Status st;
  VisitNumericDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    st = MapUnary<T, T>(ctx, x, [](T v) {
      const C c = static_cast<C>(v);
      return c < C(0) ? T(C(0)) : v;  // NaN stays NaN
    });
  });
  return st;
}

// ---- PRelu --------------------------------------------------------------------------------------------

Status InferPRelu(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
  const DType t = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(CheckTypeIn(t, TypeSet::kNumeric, OpKind::kPRelu));
  KILN_RETURN_IF_ERROR(CheckSameInputTypes(ctx.node(), t, 0, 1));
  const auto& xs = ctx.input_shape(0);
  const auto& ss = ctx.input_shape(1);
  if (xs && ss) {
    if (ss->rank() > xs->rank()) {
      return InvalidArgument("slope " + ss->ToString() + " does not broadcast to X " + xs->ToString());
    }
    KILN_ASSIGN_OR_RETURN(Shape b, BroadcastShapes(*xs, *ss));
    for (size_t i = 0; i < b.rank(); ++i) {
      if ((*xs)[i].is_static() && b[i].is_static() && (*xs)[i].value() != b[i].value()) {
        return InvalidArgument("slope " + ss->ToString() + " does not broadcast to X " + xs->ToString());
      }
    }
  }
  ctx.set_output(0, t, xs);
  return Status::Ok();
}

Status RunPRelu(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 2));
  const Tensor& x = *ctx.input(0);
  const Tensor& slope = *ctx.input(1);
  KILN_RETURN_IF_ERROR(CheckTypeIn(x.dtype(), TypeSet::kNumeric, OpKind::kPRelu));
  if (slope.dtype() != x.dtype()) {
    return InvalidArgument("slope has dtype " + std::string(DTypeName(slope.dtype())) + ", expected " +
                           std::string(DTypeName(x.dtype())));
  }
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, BroadcastSizes(x.sizes(), slope.sizes()));
  if (sizes != x.sizes()) {
    return InvalidArgument("slope " + SizesToString(slope.sizes()) + " does not broadcast to X " +
                           SizesToString(x.sizes()));
  }
  Status st;
  VisitNumericDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    st = BroadcastBinary<T, T, T>(ctx, x, slope, 0, [](T v, T s) -> T {
      const C c = static_cast<C>(v);
      return c < C(0) ? T(WrapMul(c, static_cast<C>(s))) : v;
    });
  });
  return st;
}

// ---- Clip ---------------------------------------------------------------------------------------------

Status ValidateClip(const Node& n) {
  if (n.opset() >= 11) {
    if (n.attrs().Has("min") || n.attrs().Has("max")) {
      return InvalidArgument("attributes 'min'/'max' were replaced by inputs in opset 11");
    }
  } else if (n.num_inputs() > 1) {
    for (size_t i = 1; i < n.num_inputs(); ++i) {
      if (n.input(i))
        return InvalidArgument("inputs 'min'/'max' need opset 11 (this node has opset " +
                               std::to_string(n.opset()) + ")");
    }
  }
  return Status::Ok();
}

Status InferClip(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  const DType t = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(
      CheckTypeIn(t, ctx.opset() >= 11 ? TypeSet::kNumeric : TypeSet::kFloat, OpKind::kClip));
  KILN_RETURN_IF_ERROR(CheckSameInputTypes(ctx.node(), t, 0, 2));
  for (size_t i = 1; i < 3 && i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    const auto& s = ctx.input_shape(i);
    if (s && s->numel() && *s->numel() != 1) {
      return InvalidArgument(std::string(i == 1 ? "min" : "max") + " must be a scalar, got shape " +
                             s->ToString());
    }
  }
  return InferSameAsInput0(ctx);
}

Status RunClip(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx.node(), 1));
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(CheckTypeIn(x.dtype(), TypeSet::kNumeric, OpKind::kClip));
  for (size_t i = 1; i < 3; ++i) {
    const Tensor* b = ctx.input(i);
    if (!b) continue;
    const char* name = i == 1 ? "min" : "max";
    if (b->dtype() != x.dtype()) {
      return InvalidArgument(std::string(name) + " has dtype " + std::string(DTypeName(b->dtype())) +
                             ", expected " + std::string(DTypeName(x.dtype())));
    }
    if (b->numel() != 1) {
      return InvalidArgument(std::string(name) + " must be a scalar, got shape " + SizesToString(b->sizes()));
    }
  }
  const bool from_attrs = ctx.opset() < 11;
  Status st;
  VisitNumericDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    C lo = std::numeric_limits<C>::lowest();
    C hi = std::numeric_limits<C>::max();
    if constexpr (std::is_floating_point_v<C>) {
      lo = -std::numeric_limits<C>::infinity();
      hi = std::numeric_limits<C>::infinity();
    }
    if (from_attrs) {
      if (ctx.attrs().Has("min")) lo = static_cast<C>(ctx.attrs().GetFloat("min"));
      if (ctx.attrs().Has("max")) hi = static_cast<C>(ctx.attrs().GetFloat("max"));
    } else {
      if (const Tensor* b = ctx.input(1)) lo = static_cast<C>(b->data<T>()[0]);
      if (const Tensor* b = ctx.input(2)) hi = static_cast<C>(b->data<T>()[0]);
    }
    // When min > max every value becomes max, as ONNX specifies.
    st = MapUnary<T, T>(ctx, x, [lo, hi](T v) {
      C c = static_cast<C>(v);
      c = c < lo ? lo : c;
      c = hi < c ? hi : c;
      return T(c);
    });
  });
  return st;
}

}  // namespace

void RegisterActivation(OpRegistry& r) {
  OpSchema relu;
  relu.op = OpKind::kRelu;
  relu.min_inputs = relu.max_inputs = 1;
  relu.min_opset = 6;
  relu.infer = InferUnary(TypeSet::kSigned);
  relu.run = RunRelu;
  r.Register(std::move(relu));

  RegisterFloatAct(r, OpKind::kLeakyRelu, 6, {{"alpha", AttrKind::kFloat}}, [](const Attributes& a) {
    const double alpha = a.GetFloat("alpha", 0.01f);
    return [alpha](auto x) {
      using C = decltype(x);
      return x < C(0) ? static_cast<C>(alpha) * x : x;
    };
  });
  RegisterFloatAct(r, OpKind::kSigmoid, 6, {}, [](const Attributes&) {
    return [](auto x) {
      using C = decltype(x);
      if (x >= C(0)) return C(1) / (C(1) + std::exp(-x));
      const C e = std::exp(x);
      return e / (C(1) + e);
    };
  });
  RegisterFloatAct(r, OpKind::kTanh, 6, {},
                   [](const Attributes&) { return [](auto x) { return std::tanh(x); }; });
  RegisterFloatAct(r, OpKind::kHardSigmoid, 6, {{"alpha", AttrKind::kFloat}, {"beta", AttrKind::kFloat}},
                   [](const Attributes& a) {
                     const double alpha = a.GetFloat("alpha", 0.2f), beta = a.GetFloat("beta", 0.5f);
                     return [alpha, beta](auto x) {
                       using C = decltype(x);
                       const C y = static_cast<C>(alpha) * x + static_cast<C>(beta);
                       return std::max(C(0), std::min(C(1), y));
                     };
                   });
  RegisterFloatAct(r, OpKind::kHardSwish, 14, {}, [](const Attributes&) {
    return [](auto x) {
      using C = decltype(x);
      return x * std::max(C(0), std::min(C(1), x / C(6) + C(0.5)));
    };
  });
  RegisterFloatAct(r, OpKind::kElu, 6, {{"alpha", AttrKind::kFloat}}, [](const Attributes& a) {
    const double alpha = a.GetFloat("alpha", 1.0f);
    return [alpha](auto x) {
      using C = decltype(x);
      return x < C(0) ? static_cast<C>(alpha) * std::expm1(x) : x;
    };
  });
  RegisterFloatAct(r, OpKind::kSelu, 6, {{"alpha", AttrKind::kFloat}, {"gamma", AttrKind::kFloat}},
                   [](const Attributes& a) {
                     const double alpha = a.GetFloat("alpha", 1.67326319217681884765625f);
                     const double gamma = a.GetFloat("gamma", 1.05070102214813232421875f);
                     return [alpha, gamma](auto x) {
                       using C = decltype(x);
                       const C g = static_cast<C>(gamma);
                       return x > C(0) ? g * x
                                       : g * (static_cast<C>(alpha) * std::exp(x) - static_cast<C>(alpha));
                     };
                   });
  RegisterFloatAct(r, OpKind::kCelu, 12, {{"alpha", AttrKind::kFloat}}, [](const Attributes& a) {
    const double alpha = a.GetFloat("alpha", 1.0f);
    return [alpha](auto x) {
      using C = decltype(x);
      const C al = static_cast<C>(alpha);
      return std::max(C(0), x) + std::min(C(0), al * std::expm1(x / al));
    };
  });
  RegisterFloatAct(r, OpKind::kSoftplus, 1, {},
                   [](const Attributes&) { return [](auto x) { return Softplus(x); }; });
  RegisterFloatAct(r, OpKind::kSoftsign, 1, {}, [](const Attributes&) {
    return [](auto x) { return x / (decltype(x)(1) + std::fabs(x)); };
  });
  RegisterFloatAct(r, OpKind::kMish, 18, {},
                   [](const Attributes&) { return [](auto x) { return x * std::tanh(Softplus(x)); }; });
  RegisterFloatAct(r, OpKind::kThresholdedRelu, 10, {{"alpha", AttrKind::kFloat}}, [](const Attributes& a) {
    const double alpha = a.GetFloat("alpha", 1.0f);
    return [alpha](auto x) {
      using C = decltype(x);
      return x > static_cast<C>(alpha) ? x : C(0);
    };
  });

  RegisterFloatAct(
      r, OpKind::kGelu, 20, {{"approximate", AttrKind::kString}},
      [](const Attributes& a) {
        const bool tanh_approx = a.GetString("approximate", "none") == "tanh";
        return [tanh_approx](auto x) {
          using C = decltype(x);
          if (tanh_approx) {
            const C k = static_cast<C>(0.7978845608028654);  // sqrt(2 / pi)
            return C(0.5) * x * (C(1) + std::tanh(k * (x + C(0.044715) * x * x * x)));
          }
          return C(0.5) * x * (C(1) + std::erf(x * static_cast<C>(0.7071067811865476)));  // erf(x / sqrt(2))
        };
      },
      [](const Node& n) -> Status {
        const std::string approx = n.attrs().GetString("approximate", "none");
        if (approx != "none" && approx != "tanh") {
          return InvalidArgument("approximate must be 'none' or 'tanh', got '" + approx + "'");
        }
        return Status::Ok();
      });

  OpSchema prelu;
  prelu.op = OpKind::kPRelu;
  prelu.min_inputs = prelu.max_inputs = 2;
  prelu.min_opset = 7;
  prelu.infer = InferPRelu;
  prelu.run = RunPRelu;
  r.Register(std::move(prelu));

  OpSchema clip;
  clip.op = OpKind::kClip;
  clip.min_inputs = 1;
  clip.max_inputs = 3;
  clip.min_opset = 6;
  clip.attrs = {{"min", AttrKind::kFloat}, {"max", AttrKind::kFloat}};
  clip.validate = ValidateClip;
  clip.infer = InferClip;
  clip.run = RunClip;
  r.Register(std::move(clip));
}

}  // namespace ew

void RegisterActivationOps(OpRegistry& r) { ew::RegisterActivation(r); }

}  // namespace kiln
