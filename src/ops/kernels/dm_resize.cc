// Resize (opsets 10 to 19): nearest, n-linear and cubic interpolation, separable per axis. Each output
// coordinate of an axis maps to a few input taps with weights; an output element is the sum over the
// product of its axes' taps. The coordinate transforms and coefficient rules follow the ONNX spec.
#include <algorithm>
#include <cmath>

#include "ops/kernels/dm_groups.h"
#include "ops/kernels/dm_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

enum class Mode { kNearest, kLinear, kCubic };
enum class Coord { kHalfPixel, kHalfPixelSymmetric, kPytorchHalfPixel, kAlignCorners, kAsymmetric, kTfCropAndResize };
enum class Nearest { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };

struct ResizeAttrs {
  Mode mode = Mode::kNearest;
  Coord coord = Coord::kHalfPixel;
  Nearest nearest = Nearest::kRoundPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0;
  bool antialias = false;
  std::string keep_aspect = "stretch";
  std::optional<std::vector<int64_t>> axes;
};

Expected<ResizeAttrs> GetResizeAttrs(const Attributes& a, int opset) {
  ResizeAttrs r;
  const std::string mode = a.GetString("mode", "nearest");
  if (mode == "nearest") r.mode = Mode::kNearest;
  else if (mode == "linear" || mode == "bilinear") r.mode = Mode::kLinear;
  else if (mode == "cubic" && opset >= 11) r.mode = Mode::kCubic;
  else return InvalidArgument("unknown Resize mode '" + mode + "'");
  if (opset < 11) {
    r.coord = Coord::kAsymmetric;
    r.nearest = Nearest::kSimple;
    return r;
  }
  const std::string c = a.GetString("coordinate_transformation_mode", "half_pixel");
  if (c == "half_pixel") r.coord = Coord::kHalfPixel;
  else if (c == "half_pixel_symmetric" && opset >= 19) r.coord = Coord::kHalfPixelSymmetric;
  else if (c == "pytorch_half_pixel") r.coord = Coord::kPytorchHalfPixel;
  else if (c == "align_corners") r.coord = Coord::kAlignCorners;
  else if (c == "asymmetric") r.coord = Coord::kAsymmetric;
  else if (c == "tf_crop_and_resize") r.coord = Coord::kTfCropAndResize;
  else return InvalidArgument("unsupported coordinate_transformation_mode '" + c + "'");
  const std::string n = a.GetString("nearest_mode", "round_prefer_floor");
  if (n == "round_prefer_floor") r.nearest = Nearest::kRoundPreferFloor;
  else if (n == "round_prefer_ceil") r.nearest = Nearest::kRoundPreferCeil;
  else if (n == "floor") r.nearest = Nearest::kFloor;
  else if (n == "ceil") r.nearest = Nearest::kCeil;
  else return InvalidArgument("unknown nearest_mode '" + n + "'");
  r.cubic_a = a.GetFloat("cubic_coeff_a", -0.75f);
  r.exclude_outside = a.GetInt("exclude_outside", 0) != 0;
  r.extrapolation = a.GetFloat("extrapolation_value", 0.f);
  r.antialias = a.GetInt("antialias", 0) != 0;
  if (r.antialias && r.mode == Mode::kNearest) return InvalidArgument("antialias does not apply to nearest mode");
  r.keep_aspect = a.GetString("keep_aspect_ratio_policy", "stretch");
  if (r.keep_aspect != "stretch" && r.keep_aspect != "not_larger" && r.keep_aspect != "not_smaller") {
    return InvalidArgument("unknown keep_aspect_ratio_policy '" + r.keep_aspect + "'");
  }
  if (a.Has("axes")) r.axes = a.GetInts("axes");
  return r;
}

// Output sizes, per-axis scales and roi (2 * rank values) of one Resize.
struct ResizeGeometry {
  std::vector<int64_t> out;
  std::vector<double> scales;
  std::vector<double> roi;
};

// `scales`/`sizes`/`roi` are the input values (empty when absent), given for `axes` (all when unset).
Expected<ResizeGeometry> ResolveGeometry(const ResizeAttrs& a, const std::vector<int64_t>& in,
                                         const std::vector<double>& scales, const std::vector<int64_t>& sizes,
                                         const std::vector<double>& roi) {
  const int64_t r = static_cast<int64_t>(in.size());
  std::vector<int64_t> axes;
  if (a.axes) {
    KILN_ASSIGN_OR_RETURN(axes, NormalizeAxes(*a.axes, r));
  } else {
    for (int64_t d = 0; d < r; ++d) axes.push_back(d);
  }
  const size_t na = axes.size();
  ResizeGeometry g;
  g.out = in;
  g.scales.assign(static_cast<size_t>(r), 1.0);
  g.roi.assign(static_cast<size_t>(2 * r), 0.0);
  for (int64_t d = 0; d < r; ++d) g.roi[static_cast<size_t>(r + d)] = 1.0;
  if (!roi.empty() && a.coord == Coord::kTfCropAndResize) {
    if (roi.size() != 2 * na) return InvalidArgument("roi has " + std::to_string(roi.size()) + " values, expected " + std::to_string(2 * na));
    for (size_t i = 0; i < na; ++i) {
      g.roi[static_cast<size_t>(axes[i])] = roi[i];
      g.roi[static_cast<size_t>(r + axes[i])] = roi[na + i];
    }
  }
  if (!scales.empty() && !sizes.empty()) return InvalidArgument("Resize takes scales or sizes, not both");
  if (!scales.empty()) {
    if (scales.size() != na) return InvalidArgument("scales has " + std::to_string(scales.size()) + " values, expected " + std::to_string(na));
    for (size_t i = 0; i < na; ++i) {
      const double s = scales[i];
      if (!(s > 0) || !std::isfinite(s)) return InvalidArgument("scales must be positive, got " + std::to_string(s));
      const size_t d = static_cast<size_t>(axes[i]);
      g.scales[d] = s;
      const double o = std::floor(static_cast<double>(in[d]) * s);
      if (o > 1e15) return InvalidArgument("Resize output is too large");
      g.out[d] = static_cast<int64_t>(o);
    }
  } else if (!sizes.empty()) {
    if (sizes.size() != na) return InvalidArgument("sizes has " + std::to_string(sizes.size()) + " values, expected " + std::to_string(na));
    for (size_t i = 0; i < na; ++i) {
      const size_t d = static_cast<size_t>(axes[i]);
      if (sizes[i] < 0) return InvalidArgument("sizes must be non-negative");
      if (in[d] == 0) return InvalidArgument("cannot resize an empty axis");
      g.out[d] = sizes[i];
      g.scales[d] = static_cast<double>(sizes[i]) / static_cast<double>(in[d]);
    }
    if (a.keep_aspect != "stretch") {
      double s = g.scales[static_cast<size_t>(axes[0])];
      for (int64_t d : axes) {
        s = a.keep_aspect == "not_larger" ? std::min(s, g.scales[static_cast<size_t>(d)])
                                          : std::max(s, g.scales[static_cast<size_t>(d)]);
      }
      for (int64_t d : axes) {
        g.scales[static_cast<size_t>(d)] = s;
        g.out[static_cast<size_t>(d)] = static_cast<int64_t>(s * static_cast<double>(in[static_cast<size_t>(d)]) + 0.5);
      }
    }
  } else {
    return InvalidArgument("Resize needs scales or sizes");
  }
  return g;
}

struct Tap {
  int64_t index;
  double weight;
};

// Coefficients for the taps at floor index f + 1 - n/2 ... f + n/2, where x = f + ratio with ratio in (0, 1].
std::vector<double> Coefficients(const ResizeAttrs& a, double ratio, double scale) {
  const double A = a.cubic_a;
  switch (a.mode) {
    case Mode::kNearest: {
      if (ratio == 1) return {0, 1};
      switch (a.nearest) {
        case Nearest::kRoundPreferFloor: return {ratio <= 0.5 ? 1.0 : 0.0, ratio > 0.5 ? 1.0 : 0.0};
        case Nearest::kRoundPreferCeil: return {ratio < 0.5 ? 1.0 : 0.0, ratio >= 0.5 ? 1.0 : 0.0};
        case Nearest::kFloor: return {1, 0};
        case Nearest::kCeil: return {0, 1};
        case Nearest::kSimple: return scale < 1 ? std::vector<double>{0, 1} : std::vector<double>{1, 0};
      }
      return {1, 0};
    }
    case Mode::kLinear: {
      if (!a.antialias) return {1 - ratio, ratio};
      const double s = std::min(scale, 1.0);
      const int64_t start = static_cast<int64_t>(std::floor(-1 / s) + 1);
      const int64_t n = 2 - 2 * start;
      std::vector<double> c(static_cast<size_t>(n));
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double x = (static_cast<double>(start + i) - ratio) * s;
        c[static_cast<size_t>(i)] = std::clamp(1 - std::abs(x), 0.0, 1.0);
        sum += c[static_cast<size_t>(i)];
      }
      for (double& v : c) v /= sum;
      return c;
    }
    case Mode::kCubic: {
      auto kernel = [A](double x) {
        x = std::abs(x);
        if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
        if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
        return 0.0;
      };
      if (!a.antialias) return {kernel(ratio + 1), kernel(ratio), kernel(1 - ratio), kernel(2 - ratio)};
      const double s = std::min(scale, 1.0);
      const int64_t start = static_cast<int64_t>(std::floor(-2 / s) + 1);
      const int64_t n = 2 - 2 * start;
      std::vector<double> c(static_cast<size_t>(n));
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        c[static_cast<size_t>(i)] = kernel(s * (static_cast<double>(start + i) - ratio));
        sum += c[static_cast<size_t>(i)];
      }
      for (double& v : c) v /= sum;
      return c;
    }
  }
  return {};
}

// Taps of every output coordinate of one axis; an empty list marks a tf_crop_and_resize extrapolation.
std::vector<std::vector<Tap>> AxisTaps(const ResizeAttrs& a, int64_t in, int64_t out, double scale, double roi_start,
                                       double roi_end) {
  std::vector<std::vector<Tap>> taps(static_cast<size_t>(out));
  const double in_d = static_cast<double>(in);
  const double out_w = scale * in_d;
  for (int64_t o = 0; o < out; ++o) {
    const double x = static_cast<double>(o);
    double xo = 0;
    switch (a.coord) {
      case Coord::kHalfPixel: xo = (x + 0.5) / scale - 0.5; break;
      case Coord::kHalfPixelSymmetric: {
        const double adjustment = static_cast<double>(out) / out_w;
        xo = in_d / 2 * (1 - adjustment) + (x + 0.5) / scale - 0.5;
        break;
      }
      case Coord::kPytorchHalfPixel: xo = out_w == 1 ? -0.5 : (x + 0.5) / scale - 0.5; break;
      case Coord::kAlignCorners: xo = out_w == 1 ? 0 : x * (in_d - 1) / (out_w - 1); break;
      case Coord::kAsymmetric: xo = x / scale; break;
      case Coord::kTfCropAndResize:
        xo = out_w == 1 ? (roi_end - roi_start) * (in_d - 1) / 2 : x * (roi_end - roi_start) * (in_d - 1) / (out_w - 1);
        xo += roi_start * (in_d - 1);
        if (xo < 0 || xo > in_d - 1) continue;
        break;
    }
    double f = std::floor(xo);
    double ratio = xo - f;
    if (ratio == 0) {
      f -= 1;
      ratio = 1;
    }
    std::vector<double> c = Coefficients(a, ratio, scale);
    const int64_t n = static_cast<int64_t>(c.size());
    const int64_t first = static_cast<int64_t>(f) + 1 - n / 2;
    if (a.exclude_outside) {
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (first + i < 0 || first + i >= in) c[static_cast<size_t>(i)] = 0;
        sum += c[static_cast<size_t>(i)];
      }
      if (sum != 0) {
        for (double& v : c) v /= sum;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (c[static_cast<size_t>(i)] == 0) continue;
      taps[static_cast<size_t>(o)].push_back({std::clamp<int64_t>(first + i, 0, in - 1), c[static_cast<size_t>(i)]});
    }
    if (taps[static_cast<size_t>(o)].empty()) taps[static_cast<size_t>(o)].push_back({std::clamp<int64_t>(first + n / 2, 0, in - 1), 0.0});
  }
  return taps;
}

// Input positions of the scales/sizes/roi inputs by opset.
size_t ScalesInput(int opset) { return opset < 11 ? 1 : 2; }

std::vector<double> DoubleValues(const Tensor* t) {
  std::vector<double> v;
  if (!t) return v;
  for (int64_t i = 0; i < t->numel(); ++i) v.push_back(t->GetAsDouble(i));
  return v;
}

std::vector<int64_t> IntValues(const Tensor* t) { return t ? t->ToInt64Vector() : std::vector<int64_t>{}; }

Status CheckResizeDType(DType t) {
  if (t == DType::kBool || t == DType::kUndefined) return InvalidArgument("Resize does not accept dtype " + std::string(DTypeName(t)));
  return Status::Ok();
}

Status InferResize(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(CheckResizeDType(dt));
  KILN_ASSIGN_OR_RETURN(ResizeAttrs a, GetResizeAttrs(ctx.attrs(), ctx.opset()));
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const size_t si = ScalesInput(ctx.opset());
  const bool scales_dyn = ctx.has_input(si) && !ctx.input_constant(si);
  const bool sizes_dyn = ctx.opset() >= 11 && ctx.has_input(3) && !ctx.input_constant(3);
  const bool roi_dyn = ctx.opset() >= 11 && ctx.has_input(1) && !ctx.input_constant(1);
  if (scales_dyn || sizes_dyn || roi_dyn || !in->is_static()) {
    // Sizes given as a constant still fix the resized dims.
    const Tensor* sz = ctx.opset() >= 11 ? ctx.input_constant(3) : nullptr;
    std::vector<Dim> out = in->dims();
    if (sz && sz->numel() > 0 && !a.axes && a.keep_aspect == "stretch" &&
        sz->numel() == static_cast<int64_t>(in->rank())) {
      for (size_t d = 0; d < out.size(); ++d) out[d] = sz->GetAsInt64(static_cast<int64_t>(d));
    } else {
      out = dm::UnknownDims(in->rank()).dims();
    }
    ctx.set_output(0, dt, Shape(std::move(out)));
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(ResizeGeometry g,
                        ResolveGeometry(a, *in->sizes(), DoubleValues(ctx.input_constant(si)),
                                        ctx.opset() >= 11 ? IntValues(ctx.input_constant(3)) : std::vector<int64_t>{},
                                        ctx.opset() >= 11 ? DoubleValues(ctx.input_constant(1)) : std::vector<double>{}));
  ctx.set_output(0, dt, Shape::FromSizes(g.out));
  return Status::Ok();
}

void Accumulate(const std::vector<double>& x, const std::vector<int64_t>& strides,
                const std::vector<const std::vector<Tap>*>& taps, size_t d, int64_t off, double w, double& acc) {
  if (d == taps.size()) {
    acc += w * x[static_cast<size_t>(off)];
    return;
  }
  for (const Tap& t : *taps[d]) Accumulate(x, strides, taps, d + 1, off + t.index * strides[d], w * t.weight, acc);
}

Status RunResize(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, dm::Input(ctx, 0, "X"));
  KILN_RETURN_IF_ERROR(CheckResizeDType(x->dtype()));
  KILN_ASSIGN_OR_RETURN(ResizeAttrs a, GetResizeAttrs(ctx.attrs(), ctx.opset()));
  const size_t si = ScalesInput(ctx.opset());
  KILN_ASSIGN_OR_RETURN(ResizeGeometry g,
                        ResolveGeometry(a, x->sizes(), DoubleValues(ctx.input(si)),
                                        ctx.opset() >= 11 ? IntValues(ctx.input(3)) : std::vector<int64_t>{},
                                        ctx.opset() >= 11 ? DoubleValues(ctx.input(1)) : std::vector<double>{}));
  const size_t r = x->rank();
  for (size_t d = 0; d < r; ++d) {
    if (x->size(d) == 0 && g.out[d] > 0) return ctx.Error("cannot resize an empty axis");
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), g.out));
  if (y->numel() == 0) return Status::Ok();
  std::vector<std::vector<std::vector<Tap>>> taps(r);
  for (size_t d = 0; d < r; ++d) {
    taps[d] = AxisTaps(a, x->size(d), g.out[d], g.scales[d], g.roi[d], g.roi[r + d]);
  }
  std::vector<double> xv(static_cast<size_t>(x->numel()));
  for (int64_t i = 0; i < x->numel(); ++i) xv[static_cast<size_t>(i)] = x->GetAsDouble(i);
  const std::vector<int64_t> strides = Strides(x->sizes());
  std::vector<int64_t> idx(r, 0);
  std::vector<const std::vector<Tap>*> cur(r);
  VisitNumericDType(x->dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* out = y->data<T>();
    for (int64_t i = 0; i < y->numel(); ++i) {
      bool extrapolate = false;
      for (size_t d = 0; d < r; ++d) {
        cur[d] = &taps[d][static_cast<size_t>(idx[d])];
        if (cur[d]->empty()) extrapolate = true;
      }
      double acc = 0;
      if (extrapolate) {
        acc = a.extrapolation;
      } else {
        Accumulate(xv, strides, cur, 0, 0, 1.0, acc);
      }
      out[i] = ConvertScalar<T>(acc);
      for (size_t d = r; d-- > 0;) {
        if (++idx[d] < g.out[d]) break;
        idx[d] = 0;
      }
    }
  });
  return Status::Ok();
}

Status ValidateResize(const Node& node) {
  KILN_RETURN_IF_ERROR(GetResizeAttrs(node.attrs(), node.opset()).status());
  const size_t si = ScalesInput(node.opset());
  if (node.opset() < 13 && !node.input(si)) return InvalidArgument("Resize needs the 'scales' input before opset 13");
  if (node.opset() >= 11 && !node.input(si) && !node.input(3)) return InvalidArgument("Resize needs scales or sizes");
  return Status::Ok();
}

}  // namespace

void RegisterDmResizeOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kResize,
                      .min_inputs = 1,
                      .max_inputs = 4,
                      .attrs = {{"mode", AttrKind::kString},
                                {"coordinate_transformation_mode", AttrKind::kString},
                                {"cubic_coeff_a", AttrKind::kFloat},
                                {"exclude_outside", AttrKind::kInt},
                                {"extrapolation_value", AttrKind::kFloat},
                                {"nearest_mode", AttrKind::kString},
                                {"antialias", AttrKind::kInt},
                                {"axes", AttrKind::kInts},
                                {"keep_aspect_ratio_policy", AttrKind::kString}},
                      .min_opset = 10,
                      .validate = ValidateResize,
                      .infer = InferResize,
                      .run = RunResize});
}

}  // namespace kiln
