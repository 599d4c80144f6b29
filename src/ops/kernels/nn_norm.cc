// BatchNormalization (inference form), InstanceNormalization, LayerNormalization. Statistics are computed
// in double whatever the dtype.
#include <cmath>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/nn_groups.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

// Requested outputs beyond the first (null entries are unrequested optional outputs).
size_t CountRequestedOutputs(const Node& node) {
  size_t n = 0;
  for (const Value* v : node.outputs()) n += v != nullptr;
  return n;
}

// ---- BatchNormalization ------------------------------------------------------------------------------

Status ValidateBatchNorm(const Node& node) {
  if (node.attrs().GetInt("training_mode", 0) != 0) {
    return Unsupported(
        "BatchNormalization with training_mode=1 (statistics of the batch, running-stat "
        "outputs) is not supported; Kiln runs inference only (export the model in eval mode)");
  }
  if (CountRequestedOutputs(node) > 1) {
    return Unsupported(
        "BatchNormalization's optional outputs (running mean/var, saved mean/var) exist only "
        "in training mode, which Kiln does not support");
  }
  if (node.attrs().Has("spatial") && node.opset() >= 9) {
    return InvalidArgument("attribute 'spatial' exists only up to opset 8");
  }
  if (node.attrs().Has("training_mode") && node.opset() > 0 && node.opset() < 14) {
    return InvalidArgument("attribute 'training_mode' exists only from opset 14");
  }
  if (node.attrs().GetFloat("epsilon", 1e-5f) < 0) return InvalidArgument("epsilon must not be negative");
  return Status::Ok();
}

bool PerActivation(const Attributes& a) { return a.Has("spatial") && a.GetInt("spatial") == 0; }

Status InferBatchNorm(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 5));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input X"));
  const auto& xs = ctx.input_shape(0);
  KILN_RETURN_IF_ERROR(CheckMinRank(xs, 2, "input X"));
  static const char* const kNames[] = {"", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i) {
    KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(i), kNames[i]));
    const auto& s = ctx.input_shape(i);
    if (!s || !xs || PerActivation(ctx.attrs())) continue;
    if (s->rank() != 1 || (s->dims()[0].is_static() && (*xs)[1].is_static() && s->dims()[0] != (*xs)[1])) {
      return InvalidArgument(std::string(kNames[i]) + " has shape " + s->ToString() + ", expected [" +
                             (*xs)[1].ToString() + "]");
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), xs);
  return Status::Ok();
}

template <typename T>
void AffinePerChannel(const Tensor& x, const std::vector<double>& a, const std::vector<double>& b,
                      int64_t params_per_plane, Tensor& y) {
  // y = x * a[p] + b[p], p the channel (params_per_plane == 1) or the channel's element.
  const int64_t n = x.size(0), c = x.size(1);
  const int64_t inner = (n * c) == 0 ? 0 : x.numel() / (n * c);
  const T* src = x.data<T>();
  T* dst = y.data<T>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const int64_t base = (i * c + ch) * inner;
      for (int64_t j = 0; j < inner; ++j) {
        const size_t p = static_cast<size_t>(params_per_plane == 1 ? ch : ch * inner + j);
        const double v = static_cast<double>(static_cast<ComputeT<T>>(src[base + j]));
        dst[base + j] = T(static_cast<ComputeT<T>>(v * a[p] + b[p]));
      }
    }
  }
}

Status RunBatchNorm(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 5));
  const Tensor& x = *ctx.input(0);
  if (x.rank() < 2) return InvalidArgument("input X " + x.Description() + " needs at least 2 dims");
  const int64_t c = x.size(1);
  const int64_t inner = x.size(0) * c == 0 ? 0 : x.numel() / (x.size(0) * c);
  const bool per_act = PerActivation(ctx.attrs());
  const int64_t want = per_act ? c * inner : c;
  for (size_t i = 1; i < 5; ++i) {
    if (ctx.input(i)->numel() != want || !IsFloat(ctx.input(i)->dtype())) {
      return InvalidArgument("parameter input " + std::to_string(i) + " " + ctx.input(i)->Description() +
                             " does not hold " + std::to_string(want) + " float values");
    }
  }
  const double eps = ctx.attrs().GetFloat("epsilon", 1e-5f);
  std::vector<double> a(static_cast<size_t>(want)), b(static_cast<size_t>(want));
  for (int64_t p = 0; p < want; ++p) {
    const double scale = ctx.input(1)->GetAsDouble(p), bias = ctx.input(2)->GetAsDouble(p);
    const double mean = ctx.input(3)->GetAsDouble(p), var = ctx.input(4)->GetAsDouble(p);
    a[static_cast<size_t>(p)] = scale / std::sqrt(var + eps);
    b[static_cast<size_t>(p)] = bias - mean * a[static_cast<size_t>(p)];
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), x.sizes()));
  if (!VisitFloatDType(
          x.dtype(), [&](auto tag) { AffinePerChannel<decltype(tag)>(x, a, b, per_act ? inner : 1, *y); })) {
    return RequireFloat(x.dtype(), "input X");
  }
  return Status::Ok();
}

// ---- InstanceNormalization ---------------------------------------------------------------------------

Status InferInstanceNorm(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 3));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input X"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 1, "scale"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 2, "B"));
  const auto& xs = ctx.input_shape(0);
  KILN_RETURN_IF_ERROR(CheckMinRank(xs, 3, "input X"));
  for (size_t i = 1; i < 3; ++i) {
    const auto& s = ctx.input_shape(i);
    if (s && xs && (s->rank() != 1 || ((*s)[0].is_static() && (*xs)[1].is_static() && (*s)[0] != (*xs)[1]))) {
      return InvalidArgument(std::string(i == 1 ? "scale" : "B") + " has shape " + s->ToString() +
                             ", expected [" + (*xs)[1].ToString() + "]");
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), xs);
  return Status::Ok();
}

Status RunInstanceNorm(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 3));
  const Tensor& x = *ctx.input(0);
  if (x.rank() < 3) return InvalidArgument("input X " + x.Description() + " needs at least 3 dims");
  const int64_t n = x.size(0), c = x.size(1);
  const int64_t inner = n * c == 0 ? 0 : x.numel() / (n * c);
  for (size_t i = 1; i < 3; ++i) {
    if (ctx.input(i)->numel() != c || ctx.input(i)->dtype() != x.dtype()) {
      return InvalidArgument("input " + std::to_string(i) + " " + ctx.input(i)->Description() + " needs " +
                             std::to_string(c) + " values of the input's dtype");
    }
  }
  const double eps = ctx.attrs().GetFloat("epsilon", 1e-5f);
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), x.sizes()));
  if (!VisitFloatDType(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* dst = y->data<T>();
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t ch = 0; ch < c; ++ch) {
            const T* s = src + (i * c + ch) * inner;
            T* d = dst + (i * c + ch) * inner;
            double mean = 0, var = 0;
            for (int64_t j = 0; j < inner; ++j) mean += static_cast<double>(static_cast<ComputeT<T>>(s[j]));
            mean /= static_cast<double>(inner);
            for (int64_t j = 0; j < inner; ++j) {
              const double dv = static_cast<double>(static_cast<ComputeT<T>>(s[j])) - mean;
              var += dv * dv;
            }
            var /= static_cast<double>(inner);
            const double a = ctx.input(1)->GetAsDouble(ch) / std::sqrt(var + eps);
            const double b = ctx.input(2)->GetAsDouble(ch) - mean * a;
            for (int64_t j = 0; j < inner; ++j) {
              d[j] = T(static_cast<ComputeT<T>>(static_cast<double>(static_cast<ComputeT<T>>(s[j])) * a + b));
            }
          }
        }
      })) {
    return RequireFloat(x.dtype(), "input X");
  }
  return Status::Ok();
}

// ---- LayerNormalization ------------------------------------------------------------------------------

Expected<DType> StashDType(const Attributes& a) {
  const int64_t t = a.GetInt("stash_type", 1);
  switch (t) {
    case 1:
      return DType::kFloat32;
    case 10:
      return DType::kFloat16;
    case 11:
      return DType::kFloat64;
    case 16:
      return DType::kBFloat16;
    default:
      break;
  }
  return InvalidArgument("stash_type " + std::to_string(t) + " is not a float type (1, 10, 11 or 16)");
}

Status ValidateLayerNorm(const Node& node) { return StashDType(node.attrs()).status(); }

// Whether a parameter of shape `p` broadcasts onto the normalized dims `norm` (right-aligned).
bool BroadcastsOnto(const Shape& p, const std::vector<Dim>& norm) {
  if (p.rank() > norm.size()) return false;
  const size_t off = norm.size() - p.rank();
  for (size_t i = 0; i < p.rank(); ++i) {
    if (p[i].is_static() && norm[off + i].is_static() && p[i].value() != 1 && p[i] != norm[off + i]) {
      return false;
    }
  }
  return true;
}

Status InferLayerNorm(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input X"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 1, "Scale"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 2, "B"));
  KILN_ASSIGN_OR_RETURN(DType stash, StashDType(ctx.attrs()));
  const auto& xs = ctx.input_shape(0);
  std::optional<Shape> stat_shape;
  if (xs) {
    KILN_ASSIGN_OR_RETURN(int64_t axis,
                          NormalizeAxis(ctx.attrs().GetInt("axis", -1), static_cast<int64_t>(xs->rank())));
    const std::vector<Dim> norm(xs->dims().begin() + axis, xs->dims().end());
    for (size_t i = 1; i < 3; ++i) {
      if (ctx.has_input(i) && ctx.input_shape(i) && !BroadcastsOnto(*ctx.input_shape(i), norm)) {
        return InvalidArgument(std::string(i == 1 ? "Scale " : "B ") + ctx.input_shape(i)->ToString() +
                               " does not broadcast to the normalized dims " + Shape(norm).ToString());
      }
    }
    std::vector<Dim> s(xs->dims().begin(), xs->dims().begin() + axis);
    s.resize(xs->rank(), Dim(1));
    stat_shape = Shape(std::move(s));
  }
  ctx.set_output(0, ctx.input_dtype(0), xs);
  if (ctx.num_outputs() > 1) ctx.set_output(1, stash, stat_shape);
  if (ctx.num_outputs() > 2) ctx.set_output(2, stash, stat_shape);
  return Status::Ok();
}

Status RunLayerNorm(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  const Tensor& x = *ctx.input(0);
  KILN_ASSIGN_OR_RETURN(DType stash, StashDType(ctx.attrs()));
  KILN_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(ctx.attrs().GetInt("axis", -1), static_cast<int64_t>(x.rank())));
  const std::vector<int64_t> norm(x.sizes().begin() + axis, x.sizes().end());
  const int64_t inner = NumElements(norm);
  const int64_t outer = inner == 0 ? 0 : x.numel() / inner;
  std::vector<std::vector<int64_t>> pstrides(3);
  for (size_t i = 1; i < 3; ++i) {
    const Tensor* p = ctx.input(i);
    if (!p) continue;
    bool ok = p->rank() <= norm.size() && p->dtype() == x.dtype();
    for (size_t d = 0; ok && d < p->rank(); ++d) {
      const int64_t nd = norm[norm.size() - p->rank() + d];
      ok = p->size(d) == 1 || p->size(d) == nd;
    }
    if (!ok) {
      return InvalidArgument(std::string(i == 1 ? "Scale " : "B ") + p->Description() +
                             " does not broadcast to the normalized dims " + SizesToString(norm));
    }
    pstrides[i] = BroadcastStrides(p->sizes(), norm);
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), x.sizes()));
  std::vector<int64_t> stat_sizes(x.sizes().begin(), x.sizes().begin() + axis);
  stat_sizes.resize(x.rank(), 1);
  Tensor mean_t(stash, stat_sizes), inv_t(stash, stat_sizes);
  const double eps = ctx.attrs().GetFloat("epsilon", 1e-5f);
  std::vector<double> scale(static_cast<size_t>(inner), 1.0), bias(static_cast<size_t>(inner), 0.0);
  for (size_t i = 1; i < 3; ++i) {
    if (!ctx.input(i)) continue;
    MultiIndexer it(norm, {pstrides[i]});
    std::vector<double>& dst = i == 1 ? scale : bias;
    for (int64_t j = 0; j < inner; ++j, it.Next())
      dst[static_cast<size_t>(j)] = ctx.input(i)->GetAsDouble(it.offset(0));
  }
  if (!VisitFloatDType(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* dst = y->data<T>();
        for (int64_t o = 0; o < outer; ++o) {
          const T* s = src + o * inner;
          T* d = dst + o * inner;
          double mean = 0, var = 0;
          for (int64_t j = 0; j < inner; ++j) mean += static_cast<double>(static_cast<ComputeT<T>>(s[j]));
          mean /= static_cast<double>(inner);
          for (int64_t j = 0; j < inner; ++j) {
            const double dv = static_cast<double>(static_cast<ComputeT<T>>(s[j])) - mean;
            var += dv * dv;
          }
          const double inv = 1.0 / std::sqrt(var / static_cast<double>(inner) + eps);
          for (int64_t j = 0; j < inner; ++j) {
            const double v = (static_cast<double>(static_cast<ComputeT<T>>(s[j])) - mean) * inv;
            d[j] =
                T(static_cast<ComputeT<T>>(v * scale[static_cast<size_t>(j)] + bias[static_cast<size_t>(j)]));
          }
          VisitFloatDType(stash, [&](auto stag) {
            using S = decltype(stag);
            mean_t.data<S>()[o] = S(static_cast<ComputeT<S>>(mean));
            inv_t.data<S>()[o] = S(static_cast<ComputeT<S>>(inv));
          });
        }
      })) {
    return RequireFloat(x.dtype(), "input X");
  }
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) ctx.SetOutput(1, std::move(mean_t));
  if (ctx.num_outputs() > 2 && ctx.output_requested(2)) ctx.SetOutput(2, std::move(inv_t));
  return Status::Ok();
}

}  // namespace

void RegisterNnNormOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kBatchNormalization,
                      .min_inputs = 5,
                      .max_inputs = 5,
                      .min_outputs = 1,
                      .max_outputs = 5,
                      .attrs = {{"epsilon", AttrKind::kFloat},
                                {"momentum", AttrKind::kFloat},
                                {"spatial", AttrKind::kInt},
                                {"training_mode", AttrKind::kInt}},
                      .validate = ValidateBatchNorm,
                      .infer = InferBatchNorm,
                      .run = RunBatchNorm});
  r.Register(OpSchema{.op = OpKind::kInstanceNormalization,
                      .min_inputs = 3,
                      .max_inputs = 3,
                      .attrs = {{"epsilon", AttrKind::kFloat}},
                      .validate = nullptr,
                      .infer = InferInstanceNorm,
                      .run = RunInstanceNorm});
  r.Register(OpSchema{
      .op = OpKind::kLayerNormalization,
      .min_inputs = 2,
      .max_inputs = 3,
      .min_outputs = 1,
      .max_outputs = 3,
      .attrs = {{"axis", AttrKind::kInt}, {"epsilon", AttrKind::kFloat}, {"stash_type", AttrKind::kInt}},
      .min_opset = 17,
      .validate = ValidateLayerNorm,
      .infer = InferLayerNorm,
      .run = RunLayerNorm});
}

}  // namespace kiln
