// Ops that move elements by index arithmetic: Concat, Split, Slice, Gather, Transpose, Expand, Tile.
#include <algorithm>
#include <cstring>
#include <limits>

#include "ops/kernels/dm_groups.h"
#include "ops/kernels/dm_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

using dm::ConstInts;
using dm::Input;

int64_t Prod(const std::vector<int64_t>& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// ---- Concat -------------------------------------------------------------------------------------------

Status InferConcat(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  std::optional<Shape> ref;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.Error("Concat input " + std::to_string(i) + " is missing");
    if (ctx.input_dtype(i) != dt) return ctx.Error("Concat inputs must share one dtype");
    const auto& s = ctx.input_shape(i);
    if (!s) continue;
    if (ref && ref->rank() != s->rank()) {
      return ctx.Error("Concat inputs have different ranks: " + ref->ToString() + " and " + s->ToString());
    }
    if (!ref) ref = *s;
  }
  if (!ref) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const int64_t rank = static_cast<int64_t>(ref->rank());
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), rank));
  std::vector<Dim> out = ref->dims();
  std::vector<Dim> along;
  bool all_known = true;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const auto& s = ctx.input_shape(i);
    if (!s) {
      all_known = false;
      continue;
    }
    along.push_back((*s)[static_cast<size_t>(axis)]);
    for (size_t d = 0; d < out.size(); ++d) {
      if (static_cast<int64_t>(d) == axis) continue;
      auto m = dm::MergeDims(out[d], (*s)[d]);
      if (!m.ok()) return ctx.Error("Concat inputs differ on axis " + std::to_string(d) + ": " + m.status().message());
      out[d] = *m;
    }
  }
  out[static_cast<size_t>(axis)] = all_known ? dm::SumDims(along) : Dim();
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunConcat(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* first, Input(ctx, 0, "inputs"));
  const int64_t rank = static_cast<int64_t>(first->rank());
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), rank));
  const size_t a = static_cast<size_t>(axis);
  std::vector<int64_t> out_sizes = first->sizes();
  out_sizes[a] = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    KILN_ASSIGN_OR_RETURN(const Tensor* t, Input(ctx, i, "inputs"));
    if (t->dtype() != first->dtype()) return ctx.Error("Concat inputs must share one dtype");
    if (t->rank() != first->rank()) return ctx.Error("Concat inputs have different ranks");
    for (size_t d = 0; d < t->rank(); ++d) {
      if (d != a && t->size(d) != first->size(d)) {
        return ctx.Error("Concat inputs " + first->Description() + " and " + t->Description() + " differ on axis " +
                         std::to_string(d));
      }
    }
    out_sizes[a] += t->size(a);
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, first->dtype(), out_sizes));
  const int64_t es = static_cast<int64_t>(DTypeSize(first->dtype()));
  const int64_t outer = Prod(out_sizes, 0, a);
  const int64_t inner = Prod(out_sizes, a + 1, out_sizes.size()) * es;
  const int64_t out_row = out_sizes[a] * inner;
  char* dst = static_cast<char*>(y->raw_data());
  int64_t col = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor* t = ctx.input(i);
    const int64_t row = t->size(a) * inner;
    const char* src = static_cast<const char*>(t->raw_data());
    if (row > 0) {
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * out_row + col, src + o * row, static_cast<size_t>(row));
    }
    col += row;
  }
  return Status::Ok();
}

// ---- Split --------------------------------------------------------------------------------------------

Status ValidateSplit(const Node& node) {
  if (node.opset() >= 13 && node.attrs().Has("split")) return InvalidArgument("'split' is an input from opset 13");
  if (node.opset() < 13 && node.input(1)) return InvalidArgument("'split' is an attribute before opset 13");
  if (node.attrs().Has("num_outputs") &&
      node.attrs().GetInt("num_outputs") != static_cast<int64_t>(node.num_outputs())) {
    return InvalidArgument("num_outputs is " + std::to_string(node.attrs().GetInt("num_outputs")) + " but the node has " +
                           std::to_string(node.num_outputs()) + " outputs");
  }
  if (node.attrs().Has("num_outputs") && (node.attrs().Has("split") || node.input(1))) {
    return InvalidArgument("Split takes either 'split' or 'num_outputs', not both");
  }
  return Status::Ok();
}

// The size of each output along the axis, given the axis size and the requested split (if any).
Expected<std::vector<int64_t>> SplitSizes(int64_t dim, const std::optional<std::vector<int64_t>>& split,
                                          size_t num_outputs, bool uneven_ok) {
  const int64_t n = static_cast<int64_t>(num_outputs);
  if (split && !split->empty()) {
    if (split->size() != num_outputs) {
      return InvalidArgument("split has " + std::to_string(split->size()) + " sizes for " + std::to_string(n) +
                             " outputs");
    }
    int64_t sum = 0;
    for (int64_t s : *split) {
      if (s < 0) return InvalidArgument("split " + SizesToString(*split) + " has a negative size");
      sum += s;
    }
    if (sum != dim) {
      return InvalidArgument("split " + SizesToString(*split) + " sums to " + std::to_string(sum) + ", not the axis size " +
                             std::to_string(dim));
    }
    return *split;
  }
  if (n <= 0) return InvalidArgument("Split has no outputs");
  std::vector<int64_t> out(num_outputs);
  if (dim % n == 0) {
    std::fill(out.begin(), out.end(), dim / n);
    return out;
  }
  if (!uneven_ok) {
    return InvalidArgument("axis size " + std::to_string(dim) + " does not split evenly into " + std::to_string(n) +
                           " outputs");
  }
  const int64_t chunk = (dim + n - 1) / n;
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = std::clamp<int64_t>(dim - i * chunk, 0, chunk);
  return out;
}

Status InferSplit(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  const auto& in = ctx.input_shape(0);
  const bool uneven_ok = ctx.attrs().Has("num_outputs");
  const auto split = IntsFromInputOrAttr(ctx, 1, "split");
  if (!in) {
    for (size_t i = 0; i < ctx.num_outputs(); ++i) ctx.set_output(i, dt, std::nullopt);
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(in->rank())));
  const Dim& d = (*in)[static_cast<size_t>(axis)];
  std::optional<std::vector<int64_t>> sizes;
  if (d.is_static()) {
    KILN_ASSIGN_OR_RETURN(sizes, SplitSizes(d.value(), split, ctx.num_outputs(), uneven_ok));
  } else if (split && split->size() == ctx.num_outputs()) {
    sizes = *split;
  }
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    Shape s = *in;
    s[static_cast<size_t>(axis)] = sizes ? Dim((*sizes)[i]) : Dim();
    ctx.set_output(i, dt, std::move(s));
  }
  return Status::Ok();
}

Status RunSplit(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "input"));
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(x->rank())));
  const size_t a = static_cast<size_t>(axis);
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, SplitSizes(x->size(a), IntsFromInputOrAttr(ctx, 1, "split"),
                                                               ctx.num_outputs(), ctx.attrs().Has("num_outputs")));
  const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
  const int64_t outer = Prod(x->sizes(), 0, a);
  const int64_t inner = Prod(x->sizes(), a + 1, x->rank()) * es;
  const int64_t in_row = x->size(a) * inner;
  const char* src = static_cast<const char*>(x->raw_data());
  int64_t col = 0;
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    const int64_t row = sizes[i] * inner;
    if (ctx.output_requested(i)) {
      std::vector<int64_t> os = x->sizes();
      os[a] = sizes[i];
      KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(i, x->dtype(), os));  // every byte copied
      char* dst = static_cast<char*>(y->raw_data());
      if (row > 0) {
        for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * row, src + o * in_row + col, static_cast<size_t>(row));
      }
    }
    col += row;
  }
  return Status::Ok();
}

// ---- Slice --------------------------------------------------------------------------------------------

struct SliceAxis {
  int64_t start = 0;
  int64_t step = 1;
  int64_t count = 0;
};

// Clamps start/end as ONNX specifies and returns the slice of one axis of size `dim`.
SliceAxis ResolveSliceAxis(int64_t dim, int64_t start, int64_t end, int64_t step) {
  SliceAxis s;
  s.step = step;
  if (start < 0) start = start < -dim ? 0 : start + dim;  // avoids overflow near INT64_MIN
  if (end < 0) end = end < -dim ? -1 : end + dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    s.count = end > start ? (end - start + step - 1) / step : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    s.count = (dim > 0 && start > end) ? (start - end + (-step) - 1) / (-step) : 0;
  }
  s.start = start;
  return s;
}

struct SliceArgs {
  std::vector<int64_t> starts, ends, axes, steps;
};

// Gathers the slice arguments; nullopt when some input is not known (shape inference of dynamic slices).
template <typename Ctx>
Expected<std::optional<SliceArgs>> GetSliceArgs(const Ctx& ctx, int64_t rank,
                                                std::optional<std::vector<int64_t>> (*ints)(const Ctx&, size_t)) {
  SliceArgs a;
  if (ctx.opset() < 10) {
    a.starts = ctx.attrs().GetInts("starts");
    a.ends = ctx.attrs().GetInts("ends");
    a.axes = ctx.attrs().GetInts("axes");
  } else {
    auto st = ints(ctx, 1), en = ints(ctx, 2);
    if (!st || !en) return std::optional<SliceArgs>();
    a.starts = *st;
    a.ends = *en;
    if (ctx.num_inputs() > 3 && ctx.node().input(3)) {
      auto ax = ints(ctx, 3);
      if (!ax) return std::optional<SliceArgs>();
      a.axes = *ax;
    }
    if (ctx.num_inputs() > 4 && ctx.node().input(4)) {
      auto sp = ints(ctx, 4);
      if (!sp) return std::optional<SliceArgs>();
      a.steps = *sp;
    }
  }
  if (a.starts.size() != a.ends.size()) return InvalidArgument("Slice starts and ends differ in length");
  if (a.axes.empty()) {
    for (size_t i = 0; i < a.starts.size(); ++i) a.axes.push_back(static_cast<int64_t>(i));
  }
  if (a.axes.size() != a.starts.size()) return InvalidArgument("Slice axes and starts differ in length");
  if (a.steps.empty()) a.steps.assign(a.starts.size(), 1);
  if (a.steps.size() != a.starts.size()) return InvalidArgument("Slice steps and starts differ in length");
  for (int64_t s : a.steps) {
    if (s == 0) return InvalidArgument("Slice step is 0");
  }
  KILN_ASSIGN_OR_RETURN(a.axes, NormalizeAxes(a.axes, rank));
  return std::optional<SliceArgs>(std::move(a));
}

std::optional<std::vector<int64_t>> InferInts(const InferContext& ctx, size_t i) { return ConstInts(ctx, i); }
std::optional<std::vector<int64_t>> KernelInts(const KernelContext& ctx, size_t i) {
  const Tensor* t = ctx.input(i);
  if (!t) return std::nullopt;
  return t->ToInt64Vector();
}

Status InferSlice(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(auto args, GetSliceArgs<InferContext>(ctx, static_cast<int64_t>(in->rank()), InferInts));
  if (!args) {
    ctx.set_output(0, dt, dm::UnknownDims(in->rank()));
    return Status::Ok();
  }
  std::vector<Dim> out = in->dims();
  for (size_t i = 0; i < args->axes.size(); ++i) {
    const size_t ax = static_cast<size_t>(args->axes[i]);
    const Dim& d = (*in)[ax];
    if (d.is_static()) {
      out[ax] = ResolveSliceAxis(d.value(), args->starts[i], args->ends[i], args->steps[i]).count;
    } else if (!(args->starts[i] == 0 && args->steps[i] == 1 && args->ends[i] >= (int64_t{1} << 62))) {
      out[ax] = Dim();
    }
  }
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunSlice(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  for (size_t i = 1; i < 5; ++i) {
    if (const Tensor* t = ctx.input(i)) KILN_RETURN_IF_ERROR(dm::RequireIndexDType(t->dtype(), "Slice index input"));
  }
  KILN_ASSIGN_OR_RETURN(auto args, GetSliceArgs<KernelContext>(ctx, static_cast<int64_t>(x->rank()), KernelInts));
  if (!args) return ctx.Error("Slice needs starts and ends");
  std::vector<std::vector<int64_t>> maps(x->rank());
  std::vector<int64_t> out_sizes = x->sizes();
  for (size_t d = 0; d < x->rank(); ++d) {
    maps[d].resize(static_cast<size_t>(x->size(d)));
    for (int64_t k = 0; k < x->size(d); ++k) maps[d][static_cast<size_t>(k)] = k;
  }
  for (size_t i = 0; i < args->axes.size(); ++i) {
    const size_t ax = static_cast<size_t>(args->axes[i]);
    const SliceAxis s = ResolveSliceAxis(x->size(ax), args->starts[i], args->ends[i], args->steps[i]);
    maps[ax].resize(static_cast<size_t>(s.count));
    for (int64_t k = 0; k < s.count; ++k) maps[ax][static_cast<size_t>(k)] = s.start + k * s.step;
    out_sizes[ax] = s.count;
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  if (y->numel() == 0) return Status::Ok();
  dm::GatherByAxisMaps(static_cast<const char*>(x->raw_data()), x->sizes(), maps, DTypeSize(x->dtype()), nullptr,
                       static_cast<char*>(y->raw_data()));
  return Status::Ok();
}

// ---- Gather -------------------------------------------------------------------------------------------

Status InferGather(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(ctx.input_dtype(1), "indices"));
  const auto& data = ctx.input_shape(0);
  const auto& idx = ctx.input_shape(1);
  if (!data || !idx) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  if (data->rank() == 0) return ctx.Error("Gather data must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(data->rank())));
  std::vector<Dim> out(data->dims().begin(), data->dims().begin() + axis);
  out.insert(out.end(), idx->dims().begin(), idx->dims().end());
  out.insert(out.end(), data->dims().begin() + axis + 1, data->dims().end());
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunGather(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(const Tensor* idx, Input(ctx, 1, "indices"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(idx->dtype(), "indices"));
  if (x->rank() == 0) return ctx.Error("Gather data must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int64_t>(x->rank())));
  const size_t a = static_cast<size_t>(axis);
  std::vector<int64_t> out_sizes(x->sizes().begin(), x->sizes().begin() + axis);
  out_sizes.insert(out_sizes.end(), idx->sizes().begin(), idx->sizes().end());
  out_sizes.insert(out_sizes.end(), x->sizes().begin() + axis + 1, x->sizes().end());
  const int64_t dim = x->size(a);
  std::vector<int64_t> index = idx->ToInt64Vector();
  for (int64_t& i : index) {
    if (i < -dim || i >= dim) {
      return OutOfRange("Gather index " + std::to_string(i) + " is out of range for axis " + std::to_string(axis) +
                        " of size " + std::to_string(dim));
    }
    if (i < 0) i += dim;
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
  const int64_t outer = Prod(x->sizes(), 0, a);
  const int64_t inner = Prod(x->sizes(), a + 1, x->rank()) * es;
  if (inner == 0) return Status::Ok();
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i : index) {
      std::memcpy(dst, src + (o * dim + i) * inner, static_cast<size_t>(inner));
      dst += inner;
    }
  }
  return Status::Ok();
}

// ---- Transpose ----------------------------------------------------------------------------------------

Expected<std::vector<int64_t>> TransposePerm(const Attributes& attrs, size_t rank) {
  std::vector<int64_t> perm;
  if (attrs.Has("perm")) {
    perm = attrs.GetInts("perm");
    if (perm.size() != rank) {
      return InvalidArgument("perm " + SizesToString(perm) + " does not match the input rank " + std::to_string(rank));
    }
    std::vector<bool> seen(rank, false);
    for (int64_t p : perm) {
      if (p < 0 || p >= static_cast<int64_t>(rank) || seen[static_cast<size_t>(p)]) {
        return InvalidArgument("perm " + SizesToString(perm) + " is not a permutation");
      }
      seen[static_cast<size_t>(p)] = true;
    }
  } else {
    for (size_t i = rank; i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  }
  return perm;
}

Status InferTranspose(InferContext& ctx) {
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, ctx.input_dtype(0), std::nullopt);
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> perm, TransposePerm(ctx.attrs(), in->rank()));
  std::vector<Dim> out;
  for (int64_t p : perm) out.push_back((*in)[static_cast<size_t>(p)]);
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(out)));
  return Status::Ok();
}

Status RunTranspose(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "data"));
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> perm, TransposePerm(ctx.attrs(), x->rank()));
  std::vector<int64_t> out_sizes, strides;
  const std::vector<int64_t> in_strides = Strides(x->sizes());
  for (int64_t p : perm) {
    out_sizes.push_back(x->size(static_cast<size_t>(p)));
    strides.push_back(in_strides[static_cast<size_t>(p)]);
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  const size_t es = DTypeSize(x->dtype());
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  const int64_t n = y->numel();
  if (n == 0) return Status::Ok();
  // Walk the output in rows of its last dim; each row reads the input at a fixed stride.
  const size_t r = out_sizes.size();
  if (r == 0) {
    dm::CopyElem(dst, src, es);
    return Status::Ok();
  }
  const int64_t row = out_sizes[r - 1];
  const int64_t row_stride = strides[r - 1] * static_cast<int64_t>(es);
  std::vector<int64_t> outer_sizes(out_sizes.begin(), out_sizes.end() - 1);
  std::vector<int64_t> outer_strides(strides.begin(), strides.end() - 1);
  MultiIndexer it(outer_sizes, {outer_strides});
  for (int64_t k = 0; k < n / row; ++k, it.Next()) {
    const char* s = src + it.offset(0) * static_cast<int64_t>(es);
    char* d = dst + k * row * static_cast<int64_t>(es);
    for (int64_t j = 0; j < row; ++j) dm::CopyElem(d + j * static_cast<int64_t>(es), s + j * row_stride, es);
  }
  return Status::Ok();
}

// ---- Expand -------------------------------------------------------------------------------------------

Status InferExpand(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(ctx.input_dtype(1), "shape"));
  const auto& in = ctx.input_shape(0);
  const auto shape = ConstInts(ctx, 1);
  if (!shape) {
    const auto len = dm::StaticLength1D(ctx, 1);
    if (in && len) {
      ctx.set_output(0, dt, dm::UnknownDims(std::max(in->rank(), static_cast<size_t>(*len))));
    } else {
      ctx.set_output(0, dt, std::nullopt);
    }
    return Status::Ok();
  }
  for (int64_t s : *shape) {
    if (s < 0) return ctx.Error("shape " + SizesToString(*shape) + " has a negative size");
  }
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(Shape out, BroadcastShapes(*in, Shape::FromSizes(*shape)));
  ctx.set_output(0, dt, std::move(out));
  return Status::Ok();
}

// Input sizes right-aligned to `rank` with leading 1s.
std::vector<int64_t> PadRank(const std::vector<int64_t>& s, size_t rank) {
  std::vector<int64_t> out(rank - s.size(), 1);
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

Status RunExpand(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "input"));
  KILN_ASSIGN_OR_RETURN(const Tensor* s, Input(ctx, 1, "shape"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(s->dtype(), "shape"));
  if (s->rank() != 1) return ctx.Error("shape must be 1-D, got " + s->Description());
  const std::vector<int64_t> shape = s->ToInt64Vector();
  for (int64_t v : shape) {
    if (v < 0) return ctx.Error("shape " + SizesToString(shape) + " has a negative size");
  }
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> out_sizes, BroadcastSizes(x->sizes(), shape));
  const std::vector<int64_t> in_sizes = PadRank(x->sizes(), out_sizes.size());
  std::vector<std::vector<int64_t>> maps(out_sizes.size());
  for (size_t d = 0; d < out_sizes.size(); ++d) {
    maps[d].resize(static_cast<size_t>(out_sizes[d]));
    for (int64_t k = 0; k < out_sizes[d]; ++k) maps[d][static_cast<size_t>(k)] = in_sizes[d] == 1 ? 0 : k;
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  if (y->numel() == 0) return Status::Ok();
  dm::GatherByAxisMaps(static_cast<const char*>(x->raw_data()), in_sizes, maps, DTypeSize(x->dtype()), nullptr,
                       static_cast<char*>(y->raw_data()));
  return Status::Ok();
}

// ---- Tile ---------------------------------------------------------------------------------------------

Status InferTile(InferContext& ctx) {
  const DType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(ctx.input_dtype(1), "repeats"));
  const auto& in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status::Ok();
  }
  const auto reps = ConstInts(ctx, 1);
  if (!reps) {
    ctx.set_output(0, dt, dm::UnknownDims(in->rank()));
    return Status::Ok();
  }
  if (reps->size() != in->rank()) {
    return ctx.Error("repeats has " + std::to_string(reps->size()) + " values for rank " + std::to_string(in->rank()));
  }
  std::vector<Dim> out;
  for (size_t d = 0; d < in->rank(); ++d) {
    if ((*reps)[d] < 0) return ctx.Error("repeats " + SizesToString(*reps) + " has a negative value");
    out.push_back(dm::MulDims((*in)[d], (*reps)[d]));
  }
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

Status RunTile(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Tensor* x, Input(ctx, 0, "input"));
  KILN_ASSIGN_OR_RETURN(const Tensor* r, Input(ctx, 1, "repeats"));
  KILN_RETURN_IF_ERROR(dm::RequireIndexDType(r->dtype(), "repeats"));
  const std::vector<int64_t> reps = r->ToInt64Vector();
  if (reps.size() != x->rank()) {
    return ctx.Error("repeats has " + std::to_string(reps.size()) + " values for rank " + std::to_string(x->rank()));
  }
  std::vector<int64_t> out_sizes(x->rank());
  for (size_t d = 0; d < x->rank(); ++d) {
    if (reps[d] < 0) return ctx.Error("repeats " + SizesToString(reps) + " has a negative value");
    if (__builtin_mul_overflow(x->size(d), reps[d], &out_sizes[d])) return ctx.Error("Tile output size overflows");
  }
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x->dtype(), out_sizes));
  if (y->numel() == 0) return Status::Ok();
  std::vector<std::vector<int64_t>> maps(x->rank());
  for (size_t d = 0; d < x->rank(); ++d) {
    maps[d].resize(static_cast<size_t>(out_sizes[d]));
    for (int64_t k = 0; k < out_sizes[d]; ++k) maps[d][static_cast<size_t>(k)] = k % x->size(d);
  }
  dm::GatherByAxisMaps(static_cast<const char*>(x->raw_data()), x->sizes(), maps, DTypeSize(x->dtype()), nullptr,
                       static_cast<char*>(y->raw_data()));
  return Status::Ok();
}

}  // namespace

void RegisterDmIndexOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kConcat,
                      .min_inputs = 1,
                      .max_inputs = -1,
                      .attrs = {{"axis", AttrKind::kInt, true}},
                      .min_opset = 4,
                      .infer = InferConcat,
                      .run = RunConcat});
  r.Register(OpSchema{.op = OpKind::kSplit,
                      .min_inputs = 1,
                      .max_inputs = 2,
                      .min_outputs = 1,
                      .max_outputs = -1,
                      .attrs = {{"axis", AttrKind::kInt}, {"split", AttrKind::kInts}, {"num_outputs", AttrKind::kInt}},
                      .validate = ValidateSplit,
                      .infer = InferSplit,
                      .run = RunSplit});
  r.Register(OpSchema{.op = OpKind::kSlice,
                      .min_inputs = 1,
                      .max_inputs = 5,
                      .attrs = {{"starts", AttrKind::kInts}, {"ends", AttrKind::kInts}, {"axes", AttrKind::kInts}},
                      .validate =
                          [](const Node& node) {
                            if (node.opset() < 10 && (!node.attrs().Has("starts") || !node.attrs().Has("ends"))) {
                              return InvalidArgument("Slice needs 'starts' and 'ends' attributes before opset 10");
                            }
                            if (node.opset() >= 10 && (!node.input(1) || !node.input(2))) {
                              return InvalidArgument("Slice needs 'starts' and 'ends' inputs from opset 10");
                            }
                            return Status::Ok();
                          },
                      .infer = InferSlice,
                      .run = RunSlice});
  r.Register(OpSchema{.op = OpKind::kGather,
                      .min_inputs = 2,
                      .max_inputs = 2,
                      .attrs = {{"axis", AttrKind::kInt}},
                      .infer = InferGather,
                      .run = RunGather});
  r.Register(OpSchema{.op = OpKind::kTranspose,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"perm", AttrKind::kInts}},
                      .infer = InferTranspose,
                      .run = RunTranspose});
  r.Register(OpSchema{.op = OpKind::kExpand,
                      .min_inputs = 2,
                      .max_inputs = 2,
                      .infer = InferExpand,
                      .run = RunExpand});
  r.Register(OpSchema{.op = OpKind::kTile,
                      .min_inputs = 2,
                      .max_inputs = 2,
                      .min_opset = 6,
                      .infer = InferTile,
                      .run = RunTile});
}

}  // namespace kiln
