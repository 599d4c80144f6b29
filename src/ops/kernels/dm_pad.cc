// Pad, and the layout ops DepthToSpace, SpaceToDepth and Trilu.
#include <algorithm>
#include <cstring>

#include "ops/kernels/dm_groups.h"
#include "ops/kernels/dm_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using dm::ConstInts;
using dm::Input;

// ---- Pad ----------------------------------------------------------------------------------------------

enum class PadMode { kConstant, kReflect, kEdge, kWrap };

Expected<PadMode> GetPadMode(const Attributes& attrs, int opset) {
  const std::string m = attrs.GetString("mode", "constant");
  if (m == "constant") return PadMode::kConstant;
  if (m == "reflect") return PadMode::kReflect;
  if (m == "edge") return PadMode::kEdge;
  if (m == "wrap" && opset >= 19) return PadMode::kWrap;
  return InvalidArgument("unknown Pad mode '" + m + "'");
}

// Per-dim (begin, end) pads for a rank-`rank` input, from the pads list and optional axes.
Expected<std::vector<std::pair<int64_t, int64_t>>> PadsPerDim(const std::vector<int64_t>& pads,
                                                             const std::optional<std::vector<int64_t>>& axes_in,
                                                             int64_t rank) {
  std::vector<int64_t> axes;
  if (axes_in) {
    KILN_ASSIGN_OR_RETURN(axes, NormalizeAxes(*axes_in, rank));
  } else {
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  }
  if (pads.size() != 2 * axes.size()) {
    return InvalidArgument("pads has " + std::to_string(pads.size()) + " values, expected " +
                           std::to_string(2 * axes.size()));
  }
  std::vector<std::pair<int64_t, int64_t>> out(static_cast<size_t>(rank), {0, 0});
  for (size_t i = 0; i < axes.size(); ++i) out[static_cast<size_t>(axes[i])] = {pads[i], pads[i + axes.size()]};
  return out;
}

Status InferPad(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(GetPadMode(ctx.attrs(), ctx.opset()).status());
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const auto pads = ctx.opset() < 11 ? std::optional<std::vector<int64_t>>(ctx.attrs().GetInts("pads"))
                                     : ConstInts(ctx, 1);
  std::optional<std::vector<int64_t>> axes;
  if (ctx.has_input(3)) {
    axes = ConstInts(ctx, 3);
    if (!axes) {
      ctx.set_output(0, dt, dm::UnknownDims(in->rank()));
      return Status::Ok();
    }
  }
  if (!pads) {
    ctx.set_output(0, dt, dm::UnknownDims(in->rank()));
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(auto per_dim, PadsPerDim(*pads, axes, static_cast<int64_t>(in->rank())));
  std::vector<Dim> out = in->dims();
  for (size_t d = 0; d < out.size(); ++d) {
    const auto [b, e] = per_dim[d];
    if (b == 0 && e == 0) continue;
    if (!out[d].is_static()) {
      out[d] = Dim();
      continue;
    }
    const int64_t n = out[d].value() + b + e;
    if (n < 0) return ctx.Error("pads make axis " + std::to_string(d) + " negative");
    out[d] = n;
  }
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

// Input coordinate read for output coordinate `i` (already shifted by the begin pad) on an axis of size n;
// -1 for the constant fill.
int64_t PadSource(int64_t i, int64_t n, PadMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::kConstant:
      return -1;
    case PadMode::kEdge:
      return i < 0 ? 0 : n - 1;
    case PadMode::kWrap:
      return ((i % n) + n) % n;
    case PadMode::kReflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1);
      int64_t k = ((i % period) + period) % period;
      return k < n ? k : period - k;
    }
  }
  return -1;
}

Status RunPad(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(PadMode mode, GetPadMode(ctx.attrs(), ctx.opset()));
  std::vector<int64_t> pads;
  std::optional<std::vector<int64_t>> axes;
  Tensor fill = dm::ScalarOf(x->dtype(), 0.0);
  if (ctx.opset() < 11) {
    pads = ctx.attrs().GetInts("pads");
    fill = dm::ScalarOf(x->dtype(), ctx.attrs().GetFloat("value", 0.f));
  } else {
    KILN_ASSIGN_OR_RETURN(const Tensor* p, Input(ctx, 1, "pads"));
    KILN_RETURN_IF_ERROR(dm::RequireIndexDType(p->dtype(), "pads"));
    pads = p->ToInt64Vector();
    if (const Tensor* v = ctx.input(2)) {
      if (v->numel() != 1) return ctx.Error("constant_value must hold one element, got " + v->Description());
      if (v->dtype() != x->dtype()) return ctx.Error("constant_value's dtype differs from the data's");
      std::memcpy(fill.raw_data(), v->raw_data(), DTypeSize(x->dtype()));
    }
    if (const Tensor* a = ctx.input(3)) {
      KILN_RETURN_IF_ERROR(dm::RequireIndexDType(a->dtype(), "axes"));
      axes = a->ToInt64Vector();
    }
  }
  KILN_ASSIGN_OR_RETURN(auto per_dim, PadsPerDim(pads, axes, static_cast<int64_t>(x->rank())));
  std::vector<int64_t> out_sizes(x->rank());
  std::vector<std::vector<int64_t>> maps(x->rank());
  for (size_t d = 0; d < x->rank(); ++d) {
    const auto [b, e] = per_dim[d];
    const int64_t n = x->size(d);
    int64_t o;
    if (__builtin_add_overflow(n, b, &o) || __builtin_add_overflow(o, e, &o) || o < 0) {
      return ctx.Error("pads " + SizesToString(pads) + " give an invalid size on axis " + std::to_string(d));
    }
    if (n == 0 && mode != PadMode::kConstant && o > 0) {
      return ctx.Error("cannot pad an empty axis in a non-constant mode");
    }
    out_sizes[d] = o;
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  if (y->numel() == 0) return Status::Ok();
  for (size_t d = 0; d < x->rank(); ++d) {
    maps[d].resize(static_cast<size_t>(out_sizes[d]));
    for (int64_t k = 0; k < out_sizes[d]; ++k) {
      maps[d][static_cast<size_t>(k)] = PadSource(k - per_dim[d].first, x->size(d), mode);
    }
  }
  dm::GatherByAxisMaps(static_cast<const char*>(x->raw_data()), x->sizes(), maps, DTypeSize(x->dtype()),
                       static_cast<const char*>(fill.raw_data()), static_cast<char*>(y->raw_data()));
  return Status::Ok();
}

Status ValidatePad(const Node& node) {
  if (node.opset() < 11 && !node.attrs().Has("pads")) return InvalidArgument("Pad needs 'pads' before opset 11");
  if (node.opset() >= 11 && node.attrs().Has("pads")) return InvalidArgument("'pads' is an input from opset 11");
  if (node.opset() >= 11 && !node.input(1)) return InvalidArgument("Pad needs the 'pads' input from opset 11");
  return Status::Ok();
}

// ---- DepthToSpace / SpaceToDepth ----------------------------------------------------------------------

Expected<int64_t> BlockSize(const Attributes& attrs) {
  const int64_t b = attrs.GetInt("blocksize", 0);
  if (b < 1) return InvalidArgument("blocksize must be >= 1, got " + std::to_string(b));
  return b;
}

Status InferDepthSpace(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(int64_t b, BlockSize(ctx.attrs()));
  const bool to_space = ctx.node().op() == OpKind::kDepthToSpace;
  if (to_space) {
    const std::string mode = ctx.attrs().GetString("mode", "DCR");
    if (mode != "DCR" && mode != "CRD") return ctx.Error("unknown mode '" + mode + "'");
  }
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, ctx.input_dtype(0), dm::UnknownDims(4));
    return Status::Ok();
  }
  if (in->rank() != 4) return ctx.Error("input must be 4-D, got " + in->ToString());
  std::vector<Dim> out = in->dims();
  const Dim& c = (*in)[1];
  if (to_space) {
    if (c.is_static() && c.value() % (b * b) != 0) {
      return ctx.Error("channels " + c.ToString() + " are not divisible by blocksize^2");
    }
    out[1] = c.is_static() ? Dim(c.value() / (b * b)) : Dim();
    out[2] = dm::MulDims((*in)[2], b);
    out[3] = dm::MulDims((*in)[3], b);
  } else {
    for (size_t d = 2; d < 4; ++d) {
      const Dim& s = (*in)[d];
      if (s.is_static() && s.value() % b != 0) return ctx.Error("spatial dims must be divisible by blocksize");
      out[d] = s.is_static() ? Dim(s.value() / b) : Dim();
    }
    out[1] = dm::MulDims(c, b * b);
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(out)));
  return Status::Ok();
}

Status RunDepthSpace(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "input"));
  KILN_ASSIGN_OR_RETURN(int64_t b, BlockSize(ctx.attrs()));
  if (x->rank() != 4) return ctx.Error("input must be 4-D, got " + x->Description());
  const bool to_space = ctx.node().op() == OpKind::kDepthToSpace;
  const bool crd = ctx.attrs().GetString("mode", "DCR") == "CRD";
  const int64_t n = x->size(0), c = x->size(1), h = x->size(2), w = x->size(3);
  // `sc`, `sh`, `sw`: the space-side (depth-free) channel count and spatial sizes.
  int64_t sc, sh, sw;
  if (to_space) {
    if (c % (b * b) != 0) return ctx.Error("channels " + std::to_string(c) + " are not divisible by blocksize^2");
    sc = c / (b * b), sh = h, sw = w;
  } else {
    if (h % b != 0 || w % b != 0) return ctx.Error("spatial dims of " + x->Description() + " are not divisible by blocksize");
    sc = c, sh = h / b, sw = w / b;
  }
  const std::vector<int64_t> out_sizes =
      to_space ? std::vector<int64_t>{n, sc, h * b, w * b} : std::vector<int64_t>{n, c * b * b, sh, sw};
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  // Element (ni, ci, hi, i, wi, j) pairs depth position [ni, depth_c, hi, wi] with space position
  // [ni, ci, hi * b + i, wi * b + j] of a [n, sc, sh * b, sw * b] tensor.
  for (int64_t ni = 0; ni < n; ++ni) {
    for (int64_t ci = 0; ci < sc; ++ci) {
      for (int64_t hi = 0; hi < sh; ++hi) {
        for (int64_t i = 0; i < b; ++i) {
          for (int64_t wi = 0; wi < sw; ++wi) {
            for (int64_t j = 0; j < b; ++j) {
              const int64_t dc = crd ? (ci * b + i) * b + j : (i * b + j) * sc + ci;
              const int64_t depth = ((ni * sc * b * b + dc) * sh + hi) * sw + wi;
              const int64_t space = ((ni * sc + ci) * sh * b + hi * b + i) * sw * b + wi * b + j;
              if (to_space) {
                dm::CopyElem(dst + space * es, src + depth * es, static_cast<size_t>(es));
              } else {
                dm::CopyElem(dst + depth * es, src + space * es, static_cast<size_t>(es));
              }
            }
          }
        }
      }
    }
  }
  return Status::Ok();
}

// ---- Trilu --------------------------------------------------------------------------------------------

Status InferTrilu(InferContext& ctx) {
  const auto& in = ctx.input_shape(0);
  if (in && in->rank() < 2) return ctx.Error("input must have rank >= 2, got " + in->ToString());
  ctx.set_output(0, ctx.input_dtype(0), in);
  return Status::Ok();
}

Status RunTrilu(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "input"));
  if (x->rank() < 2) return ctx.Error("input must have rank >= 2, got " + x->Description());
  int64_t k = 0;
  if (const Tensor* kt = ctx.input(1)) {
    KILN_RETURN_IF_ERROR(dm::RequireScalar(*kt, "k"));
    KILN_RETURN_IF_ERROR(dm::RequireIndexDType(kt->dtype(), "k"));
    k = kt->GetAsInt64(0);
  }
  const bool upper = ctx.attrs().GetInt("upper", 1) != 0;
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), x->sizes()));
  const int64_t rows = x->size(x->rank() - 2), cols = x->size(x->rank() - 1);
  if (y->numel() == 0) return Status::Ok();
  const int64_t mats = x->numel() / (rows * cols);
  const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t m = 0; m < mats; ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        // Compared in double: k may be near the int64 limits.
        const double diff = static_cast<double>(j) - static_cast<double>(i);
        const bool keep = upper ? diff >= static_cast<double>(k) : diff <= static_cast<double>(k);
        if (keep) {
          const int64_t off = ((m * rows + i) * cols + j) * es;
          dm::CopyElem(dst + off, src + off, static_cast<size_t>(es));
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace

void RegisterDmPadOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kPad,
                      .min_inputs = 1,
                      .max_inputs = 4,
                      .attrs = {{"mode", AttrKind::kString}, {"pads", AttrKind::kInts}, {"value", AttrKind::kFloat}},
                      .min_opset = 2,
                      .validate = ValidatePad,
                      .infer = InferPad,
                      .run = RunPad});
  r.Register(OpSchema{.op = OpKind::kDepthToSpace,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"blocksize", AttrKind::kInt, true}, {"mode", AttrKind::kString}},
                      .infer = InferDepthSpace,
                      .run = RunDepthSpace});
  r.Register(OpSchema{.op = OpKind::kSpaceToDepth,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"blocksize", AttrKind::kInt, true}},
                      .infer = InferDepthSpace,
                      .run = RunDepthSpace});
  r.Register(OpSchema{.op = OpKind::kTrilu,
                      .min_inputs = 1,
                      .max_inputs = 2,
                      .attrs = {{"upper", AttrKind::kInt}},
                      .min_opset = 14,
                      .infer = InferTrilu,
                      .run = RunTrilu});
}

}  // namespace kiln
