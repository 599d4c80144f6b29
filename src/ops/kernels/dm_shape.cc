// Ops that relabel or describe shapes: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Shape, Size,
// and the ops that make tensors from attributes or scalars: Constant, ConstantOfShape, Range.
#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <type_traits>

#include "ops/kernels/dm_groups.h"
#include "ops/kernels/dm_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using dm::ConstInts;
using dm::Input;

// ---- Reshape ------------------------------------------------------------------------------------------

Expected<std::vector<int64_t>> ResolveReshape(const std::vector<int64_t>& in, const std::vector<int64_t>& shape,
                                              bool allowzero) {
  std::vector<int64_t> out(shape.size());
  int64_t infer_at = -1;
  int64_t known = 1;
  bool has_zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t v = shape[i];
    if (v == -1) {
      if (infer_at >= 0) return InvalidArgument("shape " + SizesToString(shape) + " has more than one -1");
      infer_at = static_cast<int64_t>(i);
      continue;
    }
    if (v < -1) return InvalidArgument("shape " + SizesToString(shape) + " has invalid size " + std::to_string(v));
    if (v == 0 && !allowzero) {
      if (i >= in.size()) {
        return InvalidArgument("shape " + SizesToString(shape) + " copies dim " + std::to_string(i) +
                               " (0) but the input " + SizesToString(in) + " has rank " + std::to_string(in.size()));
      }
      v = in[i];
    }
    if (v == 0) has_zero = true;
    out[i] = v;
    if (__builtin_mul_overflow(known, v, &known)) return InvalidArgument("shape " + SizesToString(shape) + " overflows");
  }
  const int64_t total = NumElements(in);
  if (infer_at >= 0) {
    if (has_zero && allowzero) return InvalidArgument("shape " + SizesToString(shape) + " has both 0 and -1 with allowzero");
    if (known == 0 || total % known != 0) {
      return InvalidArgument("cannot reshape " + SizesToString(in) + " to " + SizesToString(shape));
    }
    out[static_cast<size_t>(infer_at)] = total / known;
  } else if (known != total) {
    return InvalidArgument("cannot reshape " + SizesToString(in) + " (" + std::to_string(total) + " elements) to " +
                           SizesToString(out));
  }
  return out;
}

// A product of dims kept as a static coefficient times a multiset of symbols.
struct SymProduct {
  int64_t coeff = 1;
  std::multiset<std::string> symbols;
  bool unknown = false;
  void Mul(const Dim& d) {
    if (d.is_static()) {
      if (__builtin_mul_overflow(coeff, d.value(), &coeff)) unknown = true;
    } else if (d.is_symbolic()) {
      symbols.insert(d.symbol());
    } else {
      unknown = true;
    }
  }
};

Status InferReshape(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  const auto shape_vals = ConstInts(ctx, 1);
  if (!shape_vals) {
    const auto len = dm::StaticLength1D(ctx, 1);
    ctx.set_output(0, dt, len ? std::optional<Shape>(dm::UnknownDims(static_cast<size_t>(*len))) : std::nullopt);
    return Status::Ok();
  }
  const bool allowzero = ctx.attrs().GetInt("allowzero", 0) != 0;
  const auto& in = ctx.input_shape(0);
  if (in && in->is_static()) {
    KILN_ASSIGN_OR_RETURN(std::vector<int64_t> out, ResolveReshape(*in->sizes(), *shape_vals, allowzero));
    ctx.set_output(0, dt, Shape::FromSizes(out));
    return Status::Ok();
  }
  std::vector<Dim> out(shape_vals->size());
  SymProduct in_prod, out_prod;
  if (in) {
    for (const Dim& d : in->dims()) in_prod.Mul(d);
  } else {
    in_prod.unknown = true;
  }
  int64_t infer_at = -1;
  for (size_t i = 0; i < shape_vals->size(); ++i) {
    const int64_t v = (*shape_vals)[i];
    if (v == -1) {
      if (infer_at >= 0) return ctx.Error("shape has more than one -1");
      infer_at = static_cast<int64_t>(i);
      continue;
    }
    if (v < -1) return ctx.Error("shape has invalid size " + std::to_string(v));
    if (v == 0 && !allowzero) {
      if (in && i >= in->rank()) return ctx.Error("shape copies dim " + std::to_string(i) + " beyond the input rank");
      out[i] = in ? (*in)[i] : Dim();
    } else {
      out[i] = v;
    }
    out_prod.Mul(out[i]);
  }
  if (infer_at >= 0 && !in_prod.unknown && !out_prod.unknown) {
    bool ok = true;
    for (const std::string& s : out_prod.symbols) {
      auto it = in_prod.symbols.find(s);
      if (it == in_prod.symbols.end()) {
        ok = false;
        break;
      }
      in_prod.symbols.erase(it);
    }
    if (ok && out_prod.coeff != 0 && in_prod.coeff % out_prod.coeff == 0) {
      const int64_t ratio = in_prod.coeff / out_prod.coeff;
      if (in_prod.symbols.empty()) {
        out[static_cast<size_t>(infer_at)] = ratio;
      } else if (in_prod.symbols.size() == 1 && ratio == 1) {
        out[static_cast<size_t>(infer_at)] = Dim::Symbol(*in_prod.symbols.begin());
      }
    }
  }
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunReshape(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(const Tensor* s, Input(ctx, 1, "shape"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(s->dtype(), "shape"));
  if (s->rank() != 1) return ctx.Error("shape must be 1-D, got " + s->Description());
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> out,
                        ResolveReshape(x->sizes(), s->ToInt64Vector(), ctx.attrs().GetInt("allowzero", 0) != 0));
  ctx.SetOutput(0, x->Reshaped(std::move(out)));
  return Status::Ok();
}

// ---- Flatten ------------------------------------------------------------------------------------------

Expected<int64_t> FlattenAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis > rank) {
    return InvalidArgument("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

Status InferFlatten(InferContext& ctx) {
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, ctx.input_dtype(0), dm::UnknownDims(2));
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(int64_t axis, FlattenAxis(ctx.attrs().GetInt("axis", 1), static_cast<int64_t>(in->rank())));
  const size_t a = static_cast<size_t>(axis);
  ctx.set_output(0, ctx.input_dtype(0), Shape({dm::DimProduct(*in, 0, a), dm::DimProduct(*in, a, in->rank())}));
  return Status::Ok();
}

Status RunFlatten(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "input"));
  KILN_ASSIGN_OR_RETURN(int64_t axis, FlattenAxis(ctx.attrs().GetInt("axis", 1), static_cast<int64_t>(x->rank())));
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->size(static_cast<size_t>(d));
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(axis); d < x->rank(); ++d) inner *= x->size(d);
  ctx.SetOutput(0, x->Reshaped({outer, inner}));
  return Status::Ok();
}

// ---- Squeeze / Unsqueeze ------------------------------------------------------------------------------

Status ValidateAxesForm(const Node& node) {
  const bool is_input = node.opset() >= 13;
  if (is_input && node.attrs().Has("axes")) return InvalidArgument("'axes' is an input from opset 13, not an attribute");
  if (!is_input && node.input(1)) return InvalidArgument("'axes' is an attribute before opset 13, not an input");
  if (node.op() == OpKind::kUnsqueeze && !node.attrs().Has("axes") && !node.input(1)) {
    return InvalidArgument("Unsqueeze needs 'axes'");
  }
  return Status::Ok();
}

Status InferSqueeze(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  const auto& in = ctx.input_shape(0);
  const auto axes = IntsFromInputOrAttr(ctx, 1, "axes");
  const bool axes_given = axes.has_value() || ctx.has_input(1);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  if (axes_given && !axes) {
    const auto len = dm::StaticLength1D(ctx, 1);
    ctx.set_output(0, dt, len && *len <= static_cast<int64_t>(in->rank())
                              ? std::optional<Shape>(dm::UnknownDims(in->rank() - static_cast<size_t>(*len)))
                              : std::nullopt);
    return Status::Ok();
  }
  std::vector<Dim> out;
  if (!axes || axes->empty()) {
    for (const Dim& d : in->dims()) {
      if (!d.is_static()) {
        ctx.set_output(0, dt, std::nullopt);
        return Status::Ok();
      }
      if (d.value() != 1) out.push_back(d);
    }
  } else {
    KILN_ASSIGN_OR_RETURN(std::vector<int64_t> norm, NormalizeAxes(*axes, static_cast<int64_t>(in->rank())));
    std::vector<bool> drop(in->rank(), false);
    for (int64_t a : norm) {
      const Dim& d = (*in)[static_cast<size_t>(a)];
      if (d.is_static() && d.value() != 1) {
        return ctx.Error("cannot squeeze axis " + std::to_string(a) + " of size " + d.ToString());
      }
      drop[static_cast<size_t>(a)] = true;
    }
    for (size_t d = 0; d < in->rank(); ++d) {
      if (!drop[d]) out.push_back((*in)[d]);
    }
  }
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunSqueeze(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  const auto axes = IntsFromInputOrAttr(ctx, 1, "axes");
  std::vector<int64_t> out;
  if (!axes || axes->empty()) {
    for (int64_t s : x->sizes()) {
      if (s != 1) out.push_back(s);
    }
  } else {
    KILN_ASSIGN_OR_RETURN(std::vector<int64_t> norm, NormalizeAxes(*axes, static_cast<int64_t>(x->rank())));
    std::vector<bool> drop(x->rank(), false);
    for (int64_t a : norm) {
      if (x->size(static_cast<size_t>(a)) != 1) {
        return ctx.Error("cannot squeeze axis " + std::to_string(a) + " of size " +
                         std::to_string(x->size(static_cast<size_t>(a))));
      }
      drop[static_cast<size_t>(a)] = true;
    }
    for (size_t d = 0; d < x->rank(); ++d) {
      if (!drop[d]) out.push_back(x->size(d));
    }
  }
  ctx.SetOutput(0, x->Reshaped(std::move(out)));
  return Status::Ok();
}

// Output dims of Unsqueeze: `in` with 1s inserted at `axes` (normalized against the output rank).
template <typename D>
Expected<std::vector<D>> UnsqueezeDims(const std::vector<D>& in, const std::vector<int64_t>& axes) {
  const int64_t out_rank = static_cast<int64_t>(in.size() + axes.size());
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> norm, NormalizeAxes(axes, out_rank));
  std::vector<bool> inserted(static_cast<size_t>(out_rank), false);
  for (int64_t a : norm) inserted[static_cast<size_t>(a)] = true;
  std::vector<D> out;
  size_t k = 0;
  for (int64_t d = 0; d < out_rank; ++d) out.push_back(inserted[static_cast<size_t>(d)] ? D(1) : in[k++]);
  return out;
}

Status InferUnsqueeze(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  const auto& in = ctx.input_shape(0);
  const auto axes = IntsFromInputOrAttr(ctx, 1, "axes");
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  if (!axes) {
    const auto len = dm::StaticLength1D(ctx, 1);
    ctx.set_output(0, dt, len ? std::optional<Shape>(dm::UnknownDims(in->rank() + static_cast<size_t>(*len)))
                              : std::nullopt);
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(std::vector<Dim> out, UnsqueezeDims(in->dims(), *axes));
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunUnsqueeze(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  const auto axes = IntsFromInputOrAttr(ctx, 1, "axes");
  if (!axes) return ctx.Error("Unsqueeze needs 'axes'");
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> out, UnsqueezeDims(x->sizes(), *axes));
  ctx.SetOutput(0, x->Reshaped(std::move(out)));
  return Status::Ok();
}

// ---- Identity / Dropout -------------------------------------------------------------------------------

Status RunIdentity(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "input"));
  ctx.SetOutput(0, *x);
  return Status::Ok();
}

DType DropoutMaskDType(const InferContext& ctx) { return ctx.opset() >= 10 ? DType::kBool : ctx.input_dtype(0); }

Status InferDropout(InferContext& ctx) {
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  if (ctx.num_outputs() > 1) ctx.set_output(1, DropoutMaskDType(ctx), ctx.input_shape(0));
  return Status::Ok();
}

// Uniform [0, 1) doubles drawn as NumPy's legacy RandomState(seed).uniform does (MT19937, 53-bit
// samples from two 32-bit draws), so training-mode masks match ONNX's reference for a given seed.
class NumpyUniform {
 public:
  explicit NumpyUniform(uint32_t seed) : mt_(seed) {}
  double Next() {
    const uint32_t a = static_cast<uint32_t>(mt_()) >> 5, b = static_cast<uint32_t>(mt_()) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }

 private:
  std::mt19937 mt_;
};

Status RunDropout(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  bool training = false;
  if (const Tensor* t = ctx.input(2)) {
    KILN_RETURN_IF_ERROR(dm::RequireScalar(*t, "training_mode"));
    training = t->GetAsDouble(0) != 0;
  }
  double ratio = ctx.attrs().GetFloat("ratio", 0.5f);
  if (const Tensor* r = ctx.input(1)) {
    KILN_RETURN_IF_ERROR(dm::RequireScalar(*r, "ratio"));
    ratio = r->GetAsDouble(0);
  }
  const bool drop = training && ratio != 0;
  if (drop && !(ratio > 0 && ratio < 1)) return ctx.Error("Dropout ratio must be in [0, 1), got " + std::to_string(ratio));
  const bool want_mask = ctx.num_outputs() > 1 && ctx.output_requested(1);
  const DType mdt = ctx.opset() >= 10 ? DType::kBool : x->dtype();
  Tensor* m = nullptr;
  if (want_mask) {
    KILN_ASSIGN_OR_RETURN(m, ctx.AllocateOutput(1, mdt, x->sizes()));
  }
  if (!drop) {
    ctx.SetOutput(0, *x);
    if (m) {
      const Tensor one = dm::ScalarOf(mdt, 1.0);
      const size_t es = DTypeSize(mdt);
      for (int64_t i = 0; i < m->numel(); ++i) {
        dm::CopyElem(static_cast<char*>(m->raw_data()) + i * static_cast<int64_t>(es),
                     static_cast<const char*>(one.raw_data()), es);
      }
    }
    return Status::Ok();
  }
  // Training mode: keep each element with probability 1 - ratio and scale the kept ones by 1 / (1 - ratio).
  NumpyUniform rng(static_cast<uint32_t>(ctx.attrs().GetInt("seed", 0)));
  std::vector<bool> keep(static_cast<size_t>(x->numel()));
  for (size_t i = 0; i < keep.size(); ++i) keep[i] = rng.Next() >= ratio;
  const float scale = 1.0f / (1.0f - static_cast<float>(ratio));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), x->sizes()));
  if (!VisitFloatDType(x->dtype(), [&](auto tag) {
        using T = decltype(tag);
        using C = ComputeT<T>;
        for (size_t i = 0; i < keep.size(); ++i) {
          y->data<T>()[i] = keep[i] ? T(static_cast<C>(static_cast<C>(x->data<T>()[i]) * static_cast<C>(scale))) : T(C(0));
        }
      })) {
    return Unsupported("training-mode Dropout needs a float input, got " + std::string(DTypeName(x->dtype())));
  }
  if (m) {
    const Tensor one = dm::ScalarOf(mdt, 1.0);
    const size_t es = DTypeSize(mdt);
    for (size_t i = 0; i < keep.size(); ++i) {
      if (keep[i]) {
        dm::CopyElem(static_cast<char*>(m->raw_data()) + static_cast<int64_t>(i * es),
                     static_cast<const char*>(one.raw_data()), es);
      }
    }
  }
  return Status::Ok();
}

// ---- Shape / Size -------------------------------------------------------------------------------------

std::pair<int64_t, int64_t> ShapeRange(const Attributes& attrs, int64_t rank) {
  auto clamp = [rank](int64_t v) {
    if (v < 0) v += rank;
    return std::clamp<int64_t>(v, 0, rank);
  };
  const int64_t start = clamp(attrs.GetInt("start", 0));
  const int64_t end = attrs.Has("end") ? clamp(attrs.GetInt("end")) : rank;
  return {start, std::max(start, end)};
}

Status InferShapeOp(InferContext& ctx) {
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, DType::kInt64, dm::UnknownDims(1));
    return Status::Ok();
  }
  const auto [start, end] = ShapeRange(ctx.attrs(), static_cast<int64_t>(in->rank()));
  ctx.set_output(0, DType::kInt64, Shape({end - start}));
  return Status::Ok();
}

Status RunShapeOp(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  const auto [start, end] = ShapeRange(ctx.attrs(), static_cast<int64_t>(x->rank()));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, DType::kInt64, {end - start}));
  for (int64_t i = start; i < end; ++i) y->data<int64_t>()[i - start] = x->size(static_cast<size_t>(i));
  return Status::Ok();
}

Status InferSize(InferContext& ctx) {
  ctx.set_output(0, DType::kInt64, Shape());
  return Status::Ok();
}

Status RunSize(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, DType::kInt64, {}));
  *y->data<int64_t>() = x->numel();
  return Status::Ok();
}

// ---- Constant -----------------------------------------------------------------------------------------

Status ValidateConstant(const Node& node) {
  const auto& all = node.attrs().all();
  if (all.size() != 1) return InvalidArgument("Constant needs exactly one value attribute, got " + std::to_string(all.size()));
  const std::string& name = all.begin()->first;
  if (name == "value_string" || name == "value_strings") return Unsupported("string constants are not supported");
  return Status::Ok();
}

Tensor ConstantValue(const Attributes& attrs) {
  if (const Tensor* t = attrs.GetTensor("value")) return *t;
  if (attrs.Has("value_float")) return Tensor::Scalar<float>(attrs.GetFloat("value_float"));
  if (attrs.Has("value_floats")) return Tensor::FromVector<float>(attrs.GetFloats("value_floats"));
  if (attrs.Has("value_int")) return Tensor::Scalar<int64_t>(attrs.GetInt("value_int"));
  if (attrs.Has("value_ints")) return Tensor::FromVector<int64_t>(attrs.GetInts("value_ints"));
  return Tensor();
}

Status InferConstant(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(ValidateConstant(ctx.node()));
  const Tensor t = ConstantValue(ctx.attrs());
  if (t.empty()) return ctx.Error("Constant has no supported value attribute");
  ctx.set_output(0, t.dtype(), Shape::FromSizes(t.sizes()));
  return Status::Ok();
}

Status RunConstant(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(ValidateConstant(ctx.node()));
  Tensor t = ConstantValue(ctx.attrs());
  if (t.empty()) return ctx.Error("Constant has no supported value attribute");
  ctx.SetOutput(0, std::move(t));
  return Status::Ok();
}

// ---- ConstantOfShape ----------------------------------------------------------------------------------

Expected<Tensor> FillValue(const Attributes& attrs) {
  const Tensor* v = attrs.GetTensor("value");
  if (!v) return Tensor::Scalar<float>(0.f);
  if (v->numel() != 1) return InvalidArgument("'value' must hold one element, got " + v->Description());
  return *v;
}

Status InferConstantOfShape(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(Tensor v, FillValue(ctx.attrs()));
  if (const auto sizes = ConstInts(ctx, 0)) {
    for (int64_t s : *sizes) {
      if (s < 0) return ctx.Error("shape " + SizesToString(*sizes) + " has a negative size");
    }
    ctx.set_output(0, v.dtype(), Shape::FromSizes(*sizes));
    return Status::Ok();
  }
  const auto len = dm::StaticLength1D(ctx, 0);
  ctx.set_output(0, v.dtype(), len ? std::optional<Shape>(dm::UnknownDims(static_cast<size_t>(*len))) : std::nullopt);
  return Status::Ok();
}

Status RunConstantOfShape(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* s, Input(ctx, 0, "input"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(s->dtype(), "shape"));
  if (s->rank() != 1) return ctx.Error("shape must be 1-D, got " + s->Description());
  KILN_ASSIGN_OR_RETURN(Tensor v, FillValue(ctx.attrs()));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, v.dtype(), s->ToInt64Vector()));
  const size_t es = DTypeSize(v.dtype());
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t i = 0; i < y->numel(); ++i) dm::CopyElem(dst + i * static_cast<int64_t>(es), static_cast<const char*>(v.raw_data()), es);
  return Status::Ok();
}

// ---- Range --------------------------------------------------------------------------------------------

bool RangeDType(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat64 || t == DType::kInt16 || t == DType::kInt32 ||
         t == DType::kInt64;
}

// Number of elements of Range(start, limit, delta): max(ceil((limit - start) / delta), 0).
Expected<int64_t> RangeCount(const Tensor& start, const Tensor& limit, const Tensor& delta) {
  double n = 0;
  if (IsFloat(start.dtype())) {
    const double d = delta.GetAsDouble(0);
    if (d == 0) return InvalidArgument("Range delta is 0");
    n = std::ceil((limit.GetAsDouble(0) - start.GetAsDouble(0)) / d);
    if (std::isnan(n)) return InvalidArgument("Range has a NaN bound");
  } else {
    const int64_t s = start.GetAsInt64(0), l = limit.GetAsInt64(0), d = delta.GetAsInt64(0);
    if (d == 0) return InvalidArgument("Range delta is 0");
    const double span = static_cast<double>(l) - static_cast<double>(s);
    // Exact integer ceil division when the span fits.
    int64_t diff;
    if (!__builtin_sub_overflow(l, s, &diff)) {
      int64_t q = diff / d;
      if (diff % d != 0 && ((diff < 0) == (d < 0))) ++q;
      n = static_cast<double>(q);
    } else {
      n = std::ceil(span / static_cast<double>(d));
    }
  }
  if (n <= 0) return int64_t{0};
  if (n > static_cast<double>(int64_t{1} << 40)) return InvalidArgument("Range has too many elements");
  return static_cast<int64_t>(n);
}

Status InferRange(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  if (!RangeDType(dt)) return ctx.Error("Range does not accept dtype " + std::string(DTypeName(dt)));
  for (size_t i = 1; i < 3; ++i) {
    if (ctx.input_dtype(i) != dt) return ctx.Error("Range inputs must share one dtype");
  }
  const Tensor* s = ctx.input_constant(0);
  const Tensor* l = ctx.input_constant(1);
  const Tensor* d = ctx.input_constant(2);
  if (s && l && d && s->numel() == 1 && l->numel() == 1 && d->numel() == 1) {
    KILN_ASSIGN_OR_RETURN(int64_t n, RangeCount(*s, *l, *d));
    ctx.set_output(0, dt, Shape({n}));
  } else {
    ctx.set_output(0, dt, dm::UnknownDims(1));
  }
  return Status::Ok();
}

Status RunRange(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* s, Input(ctx, 0, "start"));
  KILN_ASSIGN_OR_RETURN(const Tensor* l, Input(ctx, 1, "limit"));
  KILN_ASSIGN_OR_RETURN(const Tensor* d, Input(ctx, 2, "delta"));
  KILN_RETURN_IF_ERROR(dm::RequireScalar(*s, "start"));
  KILN_RETURN_IF_ERROR(dm::RequireScalar(*l, "limit"));
  KILN_RETURN_IF_ERROR(dm::RequireScalar(*d, "delta"));
  if (!RangeDType(s->dtype()) || l->dtype() != s->dtype() || d->dtype() != s->dtype()) {
    return ctx.Error("Range inputs must share one of the dtypes f32, f64, i16, i32, i64");
  }
  KILN_ASSIGN_OR_RETURN(int64_t n, RangeCount(*s, *l, *d));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, s->dtype(), {n}));
  VisitNumericDType(s->dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_arithmetic_v<T>) {
      const T start = *s->data<T>();
      const T delta = *d->data<T>();
      T* out = y->data<T>();
      for (int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_integral_v<T>) {
          out[i] = static_cast<T>(static_cast<uint64_t>(start) + static_cast<uint64_t>(i) * static_cast<uint64_t>(delta));
        } else {
          out[i] = static_cast<T>(start + static_cast<T>(i) * delta);
        }
      }
    }
  });
  return Status::Ok();
}

}  // namespace

void RegisterDmShapeOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kReshape,
                      .min_inputs = 2,
                      .max_inputs = 2,
                      .attrs = {{"allowzero", AttrKind::kInt}},
                      .min_opset = 5,
                      .infer = InferReshape,
                      .run = RunReshape});
  r.Register(OpSchema{.op = OpKind::kFlatten,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"axis", AttrKind::kInt}},
                      .infer = InferFlatten,
                      .run = RunFlatten});
  r.Register(OpSchema{.op = OpKind::kSqueeze,
                      .min_inputs = 1,
                      .max_inputs = 2,
                      .attrs = {{"axes", AttrKind::kInts}},
                      .validate = ValidateAxesForm,
                      .infer = InferSqueeze,
                      .run = RunSqueeze});
  r.Register(OpSchema{.op = OpKind::kUnsqueeze,
                      .min_inputs = 1,
                      .max_inputs = 2,
                      .attrs = {{"axes", AttrKind::kInts}},
                      .validate = ValidateAxesForm,
                      .infer = InferUnsqueeze,
                      .run = RunUnsqueeze});
  r.Register(OpSchema{.op = OpKind::kIdentity,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .infer = InferSameAsInput0,
                      .run = RunIdentity});
  r.Register(OpSchema{.op = OpKind::kDropout,
                      .min_inputs = 1,
                      .max_inputs = 3,
                      .min_outputs = 1,
                      .max_outputs = 2,
                      .attrs = {{"ratio", AttrKind::kFloat}, {"seed", AttrKind::kInt}},
                      .min_opset = 7,
                      .infer = InferDropout,
                      .run = RunDropout});
  r.Register(OpSchema{.op = OpKind::kShape,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"start", AttrKind::kInt}, {"end", AttrKind::kInt}},
                      .infer = InferShapeOp,
                      .run = RunShapeOp});
  r.Register(OpSchema{.op = OpKind::kSize, .min_inputs = 1, .max_inputs = 1, .infer = InferSize, .run = RunSize});
  r.Register(OpSchema{.op = OpKind::kConstant,
                      .min_inputs = 0,
                      .max_inputs = 0,
                      .attrs = {{"value", AttrKind::kTensor},
                                {"value_float", AttrKind::kFloat},
                                {"value_floats", AttrKind::kFloats},
                                {"value_int", AttrKind::kInt},
                                {"value_ints", AttrKind::kInts},
                                {"value_string", AttrKind::kString},
                                {"value_strings", AttrKind::kStrings}},
                      .validate = ValidateConstant,
                      .infer = InferConstant,
                      .run = RunConstant});
  r.Register(OpSchema{.op = OpKind::kConstantOfShape,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"value", AttrKind::kTensor}},
                      .infer = InferConstantOfShape,
                      .run = RunConstantOfShape});
  r.Register(OpSchema{.op = OpKind::kRange,
                      .min_inputs = 3,
                      .max_inputs = 3,
                      .infer = InferRange,
                      .run = RunRange});
}

}  // namespace kiln
