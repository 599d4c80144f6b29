// Conv and ConvTranspose: im2col / col2im per group around the shared GEMM.
#include <cmath>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/nn_groups.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

// Conv-family attribute checks beyond the window ones.
Status ValidateConvAttrs(const Node& node) {
  KILN_RETURN_IF_ERROR(ValidateWindowAttrs(node));
  const int64_t group = node.attrs().GetInt("group", 1);
  if (group < 1) return InvalidArgument("group " + std::to_string(group) + " must be at least 1");
  return Status::Ok();
}

// The kernel's spatial sizes: from W's static dims, checked against kernel_shape when both are known.
Expected<std::optional<std::vector<int64_t>>> KernelOf(const Attributes& attrs,
                                                       const std::optional<Shape>& w) {
  std::optional<std::vector<int64_t>> from_w;
  if (w && w->rank() >= 2) {
    std::vector<int64_t> k;
    for (size_t d = 2; d < w->rank(); ++d) {
      if (!(*w)[d].is_static()) break;
      k.push_back((*w)[d].value());
    }
    if (k.size() + 2 == w->rank()) from_w = std::move(k);
  }
  if (!attrs.Has("kernel_shape")) return from_w;
  std::vector<int64_t> attr = attrs.GetInts("kernel_shape");
  if (from_w && *from_w != attr) {
    return InvalidArgument("kernel_shape " + SizesToString(attr) +
                           " does not match the weight's spatial dims " + SizesToString(*from_w));
  }
  return std::optional<std::vector<int64_t>>(std::move(attr));
}

// Checks X/W/B ranks and channel counts known at inference time; `transposed` selects ConvTranspose's
// weight layout [C, M/group, k...] over Conv's [M, C/group, k...].
Status CheckConvShapes(const InferContext& ctx, bool transposed) {
  const auto& xs = ctx.input_shape(0);
  const auto& ws = ctx.input_shape(1);
  KILN_RETURN_IF_ERROR(CheckMinRank(xs, 3, "input X"));
  KILN_RETURN_IF_ERROR(CheckMinRank(ws, 3, "weight W"));
  if (xs && ws && xs->rank() != ws->rank()) {
    return InvalidArgument("input X " + xs->ToString() + " and weight W " + ws->ToString() +
                           " have different ranks");
  }
  const int64_t group = ctx.attrs().GetInt("group", 1);
  if (group < 1) return InvalidArgument("group " + std::to_string(group) + " must be at least 1");
  if (xs && ws && (*xs)[1].is_static()) {
    const int64_t c = (*xs)[1].value();
    if (c % group != 0) {
      return InvalidArgument("input channels " + std::to_string(c) + " not divisible by group " +
                             std::to_string(group));
    }
    const Dim& wc = (*ws)[transposed ? 0 : 1];
    const int64_t expect = transposed ? c : c / group;
    if (wc.is_static() && wc.value() != expect) {
      return InvalidArgument("weight W " + ws->ToString() + " does not fit " + std::to_string(c) +
                             " input channels with group " + std::to_string(group));
    }
  }
  if (!transposed && ws && (*ws)[0].is_static() && (*ws)[0].value() % group != 0) {
    return InvalidArgument("output channels " + (*ws)[0].ToString() + " not divisible by group " +
                           std::to_string(group));
  }
  if (ctx.has_input(2) && ctx.input_shape(2) && ws) {
    const Shape& b = *ctx.input_shape(2);
    Dim m = (*ws)[transposed ? 1 : 0];
    if (transposed && m.is_static()) m = Dim(m.value() * group);
    if (b.rank() != 1 || (b[0].is_static() && m.is_static() && b[0] != m)) {
      return InvalidArgument("bias B has shape " + b.ToString() + ", expected [" + m.ToString() + "]");
    }
  }
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input X"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 1, "weight W"));
  return RequireSameDType(ctx, 2, "bias B");
}

// Checks run-time tensors: ranks, dtypes, channels against group, bias length.
Status CheckConvTensors(const KernelContext& ctx, bool transposed) {
  const Tensor& x = *ctx.input(0);
  const Tensor& w = *ctx.input(1);
  if (x.rank() < 3 || w.rank() != x.rank()) {
    return InvalidArgument("input X " + x.Description() + " and weight W " + w.Description() +
                           " must have the same rank, at least 3");
  }
  if (w.dtype() != x.dtype()) return InvalidArgument("weight W dtype differs from input X's");
  const int64_t group = ctx.attrs().GetInt("group", 1);
  if (group < 1) return InvalidArgument("group " + std::to_string(group) + " must be at least 1");
  const int64_t c = x.size(1);
  const int64_t w_in = transposed ? w.size(0) : w.size(1) * group;
  if (c % group != 0 || c != w_in) {
    return InvalidArgument("input X " + x.Description() + " and weight W " + w.Description() +
                           " do not agree on input channels with group " + std::to_string(group));
  }
  const int64_t m = transposed ? w.size(1) * group : w.size(0);
  if (m % group != 0) {
    return InvalidArgument("output channels " + std::to_string(m) + " not divisible by group " +
                           std::to_string(group));
  }
  if (const Tensor* b = ctx.input(2)) {
    if (b->rank() != 1 || b->size(0) != m || b->dtype() != x.dtype()) {
      return InvalidArgument("bias B " + b->Description() + " does not match " + std::to_string(m) +
                             " output channels");
    }
  }
  return Status::Ok();
}

std::vector<int64_t> SpatialSizes(const Tensor& t) { return {t.sizes().begin() + 2, t.sizes().end()}; }

// Elements a scratch buffer of `parts` may hold, refusing products that overflow or exceed the limit.
Expected<size_t> ScratchElements(const std::vector<int64_t>& parts) {
  const auto n = CheckedNumElements(parts);
  if (!n || *n > (int64_t{1} << 32))
    return OutOfRange("scratch buffer of " + SizesToString(parts) + " is too large");
  return static_cast<size_t>(*n);
}

// ---- Conv ------------------------------------------------------------------------------------------

Status InferConv(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(CheckConvShapes(ctx, false));
  const auto& xs = ctx.input_shape(0);
  const auto& ws = ctx.input_shape(1);
  const DType dt = ctx.input_dtype(0);
  if (!xs && !ws) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const size_t rank = xs ? xs->rank() : ws->rank();
  std::vector<Dim> out(rank);
  if (xs) out[0] = (*xs)[0];
  if (ws) out[1] = (*ws)[0];
  KILN_ASSIGN_OR_RETURN(auto kernel, KernelOf(ctx.attrs(), ws));
  if (kernel && kernel->size() != rank - 2) {
    return InvalidArgument("kernel has " + std::to_string(kernel->size()) + " dims, input has " +
                           std::to_string(rank - 2) + " spatial dims");
  }
  if (kernel && xs) {
    KILN_ASSIGN_OR_RETURN(WindowParams p, ReadWindowParams(ctx.attrs(), *kernel));
    for (size_t d = 0; d + 2 < rank; ++d) {
      if (!(*xs)[d + 2].is_static()) continue;
      KILN_ASSIGN_OR_RETURN(WindowDim w, ComputeWindowDim(p, d, (*xs)[d + 2].value()));
      out[d + 2] = w.out;
    }
  }
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

template <typename T>
void ConvKernel(const Tensor& x, const Tensor& w, const Tensor* b, const WindowGeometry& g, int64_t group,
                Tensor& y) {
  using C = ComputeT<T>;
  ComputeInput<T> xv(x), wv(w);
  ComputeOutput<T> yv(y);
  const int64_t n_batch = x.size(0), c_in = x.size(1), m_out = w.size(0);
  const int64_t cg = c_in / group, mg = m_out / group;
  const int64_t in_n = NumElements(g.in), out_n = NumElements(g.out), kprod = NumElements(g.kernel);
  const int64_t k_dim = cg * kprod;
  bool identity = true;  // 1x1 kernel, stride 1, no padding: the columns are the image itself
  for (size_t d = 0; d < g.in.size(); ++d) {
    identity = identity && g.kernel[d] == 1 && g.strides[d] == 1 && g.pad_begin[d] == 0 && g.pad_end[d] == 0;
  }
  std::vector<C> col(identity ? 0 : static_cast<size_t>(k_dim * out_n));
  std::vector<C> bias(static_cast<size_t>(m_out), C(0));
  if (b) {
    ComputeInput<T> bv(*b);
    std::copy(bv.data(), bv.data() + m_out, bias.begin());
  }
  C* yp = yv.data();
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t gi = 0; gi < group; ++gi) {
      const C* xg = xv.data() + (n * c_in + gi * cg) * in_n;
      const C* cols = xg;
      if (!identity) {
        Im2Col(xg, cg, g, col.data());
        cols = col.data();
      }
      C* yg = yp + (n * m_out + gi * mg) * out_n;
      for (int64_t m = 0; m < mg; ++m) std::fill(yg + m * out_n, yg + (m + 1) * out_n, bias[gi * mg + m]);
      GemmAccumulate<C>(mg, out_n, k_dim, wv.data() + gi * mg * k_dim, k_dim, 1, cols, out_n, yg, out_n);
    }
  }
  yv.Store();
}

Status RunConv(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(CheckConvTensors(ctx, false));
  const Tensor& x = *ctx.input(0);
  const Tensor& w = *ctx.input(1);
  const int64_t group = ctx.attrs().GetInt("group", 1);
  const std::vector<int64_t> kernel = SpatialSizes(w);
  if (ctx.attrs().Has("kernel_shape") && ctx.attrs().GetInts("kernel_shape") != kernel) {
    return InvalidArgument("kernel_shape does not match the weight " + w.Description());
  }
  KILN_ASSIGN_OR_RETURN(WindowParams p, ReadWindowParams(ctx.attrs(), kernel));
  KILN_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindowGeometry(p, SpatialSizes(x)));
  KILN_RETURN_IF_ERROR(
      ScratchElements({x.size(1) / group, NumElements(kernel), NumElements(g.out)}).status());
  std::vector<int64_t> out_sizes = {x.size(0), w.size(0)};
  out_sizes.insert(out_sizes.end(), g.out.begin(), g.out.end());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), out_sizes));
  if (y->numel() == 0) return Status::Ok();
  if (!VisitFloatDType(x.dtype(),
                       [&](auto tag) { ConvKernel<decltype(tag)>(x, w, ctx.input(2), g, group, *y); })) {
    return RequireFloat(x.dtype(), "input X");
  }
  return Status::Ok();
}

// ---- ConvTranspose ---------------------------------------------------------------------------------

// Output sizes and pads of ConvTranspose for input spatial sizes `in` (entries < 0: unknown, giving an
// unknown output dim).
Expected<std::vector<WindowDim>> ConvTransposeDims(const Attributes& attrs, const WindowParams& p,
                                                   const std::vector<int64_t>& in) {
  const size_t r = p.kernel.size();
  const std::vector<int64_t> out_pad = attrs.GetInts("output_padding", std::vector<int64_t>(r, 0));
  if (out_pad.size() != r) {
    return InvalidArgument("output_padding " + SizesToString(out_pad) + " needs one value per spatial dim");
  }
  std::vector<int64_t> out_shape = attrs.GetInts("output_shape");
  if (out_shape.size() == r + 2) out_shape.erase(out_shape.begin(), out_shape.begin() + 2);
  if (!out_shape.empty() && out_shape.size() != r) {
    return InvalidArgument("output_shape " + SizesToString(out_shape) + " needs one value per spatial dim");
  }
  std::vector<WindowDim> dims(r);
  for (size_t d = 0; d < r; ++d) {
    WindowDim& w = dims[d];
    if (in[d] < 0) {
      w.out = -1;
      if (!out_shape.empty()) w.out = out_shape[d];
      continue;
    }
    const int64_t s = p.strides[d];
    const int64_t eff = (p.kernel[d] - 1) * p.dilations[d] + 1;
    const int64_t full = s * (in[d] - 1) + out_pad[d] + eff;
    const bool same = p.auto_pad == AutoPad::kSameUpper || p.auto_pad == AutoPad::kSameLower;
    if (!out_shape.empty() || same) {
      w.out = out_shape.empty() ? in[d] * s : out_shape[d];
      // An output larger than the full result gets its extra positions at the end (as ONNX Runtime does;
      // the ONNX reference agrees for the node tests' shapes), so only a positive total padding is split.
      const int64_t total = std::max<int64_t>(0, full - w.out);
      w.pad_begin = p.auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
      w.pad_end = full - w.out - w.pad_begin;
    } else {
      if (p.auto_pad == AutoPad::kNotSet) {
        w.pad_begin = p.pads[d];
        w.pad_end = p.pads[d + r];
      }
      w.out = full - w.pad_begin - w.pad_end;
    }
    if (w.out < 0) {
      return InvalidArgument("spatial dim " + std::to_string(d) + " of the output would have size " +
                             std::to_string(w.out));
    }
  }
  return dims;
}

Status InferConvTranspose(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(CheckConvShapes(ctx, true));
  const auto& xs = ctx.input_shape(0);
  const auto& ws = ctx.input_shape(1);
  const DType dt = ctx.input_dtype(0);
  if (!xs && !ws) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const int64_t group = ctx.attrs().GetInt("group", 1);
  const size_t rank = xs ? xs->rank() : ws->rank();
  std::vector<Dim> out(rank);
  if (xs) out[0] = (*xs)[0];
  if (ws && (*ws)[1].is_static()) out[1] = (*ws)[1].value() * group;
  KILN_ASSIGN_OR_RETURN(auto kernel, KernelOf(ctx.attrs(), ws));
  if (kernel && kernel->size() != rank - 2) {
    return InvalidArgument("kernel has " + std::to_string(kernel->size()) + " dims, input has " +
                           std::to_string(rank - 2) + " spatial dims");
  }
  if (kernel && xs) {
    KILN_ASSIGN_OR_RETURN(WindowParams p, ReadWindowParams(ctx.attrs(), *kernel));
    std::vector<int64_t> in(rank - 2, -1);
    for (size_t d = 0; d + 2 < rank; ++d) {
      if ((*xs)[d + 2].is_static()) in[d] = (*xs)[d + 2].value();
    }
    KILN_ASSIGN_OR_RETURN(std::vector<WindowDim> dims, ConvTransposeDims(ctx.attrs(), p, in));
    for (size_t d = 0; d + 2 < rank; ++d) {
      if (dims[d].out >= 0) out[d + 2] = dims[d].out;
    }
  }
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

template <typename T>
void ConvTransposeKernel(const Tensor& x, const Tensor& w, const Tensor* b, const WindowGeometry& g,
                         int64_t group, Tensor& y) {
  using C = ComputeT<T>;
  ComputeInput<T> xv(x), wv(w);
  ComputeOutput<T> yv(y);
  const int64_t n_batch = x.size(0), c_in = x.size(1), m_out = y.size(1);
  const int64_t cg = c_in / group, mg = m_out / group;
  // g describes the conv whose adjoint this is: g.in is Y's spatial size, g.out is X's.
  const int64_t x_n = NumElements(g.out), y_n = NumElements(g.in), kprod = NumElements(g.kernel);
  const int64_t rows = mg * kprod;
  std::vector<C> col(static_cast<size_t>(rows * x_n));
  C* yp = yv.data();
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t gi = 0; gi < group; ++gi) {
      const C* xg = xv.data() + (n * c_in + gi * cg) * x_n;
      const C* wg = wv.data() + gi * cg * rows;  // [cg, rows]; read transposed
      std::fill(col.begin(), col.end(), C(0));
      GemmAccumulate<C>(rows, x_n, cg, wg, 1, rows, xg, x_n, col.data(), x_n);
      Col2ImAdd(col.data(), mg, g, yp + (n * m_out + gi * mg) * y_n);
    }
  }
  if (b) {
    ComputeInput<T> bv(*b);
    for (int64_t n = 0; n < n_batch; ++n) {
      for (int64_t m = 0; m < m_out; ++m) {
        C* row = yp + (n * m_out + m) * y_n;
        for (int64_t i = 0; i < y_n; ++i) row[i] += bv.data()[m];
      }
    }
  }
  yv.Store();
}

Status RunConvTranspose(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(CheckConvTensors(ctx, true));
  const Tensor& x = *ctx.input(0);
  const Tensor& w = *ctx.input(1);
  const int64_t group = ctx.attrs().GetInt("group", 1);
  const std::vector<int64_t> kernel = SpatialSizes(w);
  if (ctx.attrs().Has("kernel_shape") && ctx.attrs().GetInts("kernel_shape") != kernel) {
    return InvalidArgument("kernel_shape does not match the weight " + w.Description());
  }
  KILN_ASSIGN_OR_RETURN(WindowParams p, ReadWindowParams(ctx.attrs(), kernel));
  KILN_ASSIGN_OR_RETURN(std::vector<WindowDim> dims, ConvTransposeDims(ctx.attrs(), p, SpatialSizes(x)));
  WindowGeometry g;
  g.out = SpatialSizes(x);
  g.kernel = kernel;
  g.strides = p.strides;
  g.dilations = p.dilations;
  for (const WindowDim& d : dims) {
    g.in.push_back(d.out);
    g.pad_begin.push_back(d.pad_begin);
    g.pad_end.push_back(d.pad_end);
  }
  const int64_t m_out = w.size(1) * group;
  KILN_RETURN_IF_ERROR(ScratchElements({w.size(1), NumElements(kernel), NumElements(g.out)}).status());
  std::vector<int64_t> out_sizes = {x.size(0), m_out};
  out_sizes.insert(out_sizes.end(), g.in.begin(), g.in.end());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), out_sizes));
  if (y->numel() == 0) return Status::Ok();
  if (!VisitFloatDType(x.dtype(), [&](auto tag) {
        ConvTransposeKernel<decltype(tag)>(x, w, ctx.input(2), g, group, *y);
      })) {
    return RequireFloat(x.dtype(), "input X");
  }
  return Status::Ok();
}

}  // namespace

void RegisterNnConvOps(OpRegistry& r) {
  const std::vector<AttrSpec> conv_attrs = {
      {"auto_pad", AttrKind::kString},   {"dilations", AttrKind::kInts}, {"group", AttrKind::kInt},
      {"kernel_shape", AttrKind::kInts}, {"pads", AttrKind::kInts},      {"strides", AttrKind::kInts}};
  r.Register(OpSchema{.op = OpKind::kConv,
                      .min_inputs = 2,
                      .max_inputs = 3,
                      .attrs = conv_attrs,
                      .validate = ValidateConvAttrs,
                      .infer = InferConv,
                      .run = RunConv});
  std::vector<AttrSpec> convt_attrs = conv_attrs;
  convt_attrs.push_back({"output_padding", AttrKind::kInts});
  convt_attrs.push_back({"output_shape", AttrKind::kInts});
  r.Register(OpSchema{.op = OpKind::kConvTranspose,
                      .min_inputs = 2,
                      .max_inputs = 3,
                      .attrs = convt_attrs,
                      .validate = ValidateConvAttrs,
                      .infer = InferConvTranspose,
                      .run = RunConvTranspose});
}

}  // namespace kiln
