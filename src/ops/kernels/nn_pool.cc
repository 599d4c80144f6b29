// MaxPool (with Indices), AveragePool, GlobalAveragePool, GlobalMaxPool.
#include <cmath>
#include <limits>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/nn_groups.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

Status ValidatePool(const Node& node) {
  KILN_RETURN_IF_ERROR(ValidateWindowAttrs(node));
  if (node.op() == OpKind::kMaxPool) {
    const int64_t order = node.attrs().GetInt("storage_order", 0);
    if (order != 0 && order != 1) {
      return InvalidArgument("storage_order " + std::to_string(order) + " must be 0 or 1");
    }
  }
  if (node.op() == OpKind::kAveragePool && node.attrs().Has("dilations") && node.opset() > 0 &&
      node.opset() < 19) {
    return InvalidArgument("AveragePool has no dilations attribute before opset 19");
  }
  return Status::Ok();
}

bool PoolDTypeOk(OpKind op, DType t) {
  if (IsFloat(t)) return true;
  return op == OpKind::kMaxPool && (t == DType::kInt8 || t == DType::kUInt8);
}

Status InferPool(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  const OpKind op = ctx.node().op();
  const DType dt = ctx.input_dtype(0);
  if (!PoolDTypeOk(op, dt)) {
    return Unsupported("input X has dtype " + std::string(DTypeName(dt)) + ", not supported by " +
                       std::string(OpKindName(op)));
  }
  const std::vector<int64_t> kernel = ctx.attrs().GetInts("kernel_shape");
  KILN_ASSIGN_OR_RETURN(WindowParams p, ReadWindowParams(ctx.attrs(), kernel));
  const auto& xs = ctx.input_shape(0);
  std::optional<Shape> out;
  if (xs) {
    if (xs->rank() != kernel.size() + 2) {
      return InvalidArgument("input X has shape " + xs->ToString() + " but kernel_shape has " +
                             std::to_string(kernel.size()) + " dims (expected rank " +
                             std::to_string(kernel.size() + 2) + ")");
    }
    std::vector<Dim> dims = {(*xs)[0], (*xs)[1]};
    for (size_t d = 0; d < kernel.size(); ++d) {
      if (!(*xs)[d + 2].is_static()) {
        dims.emplace_back();
        continue;
      }
      KILN_ASSIGN_OR_RETURN(WindowDim w, ComputeWindowDim(p, d, (*xs)[d + 2].value()));
      dims.emplace_back(w.out);
    }
    out = Shape(std::move(dims));
  }
  ctx.set_output(0, dt, out);
  if (ctx.num_outputs() > 1) ctx.set_output(1, DType::kInt64, out);
  return Status::Ok();
}

// For each spatial dim d and output coordinate o: the input coordinates its window reads (in bounds).
struct WindowTables {
  std::vector<std::vector<std::vector<int64_t>>> taps;  // [d][o] -> input coords
};

WindowTables BuildTables(const WindowGeometry& g) {
  WindowTables t;
  const size_t r = g.in.size();
  t.taps.resize(r);
  for (size_t d = 0; d < r; ++d) {
    t.taps[d].resize(static_cast<size_t>(g.out[d]));
    for (int64_t o = 0; o < g.out[d]; ++o) {
      for (int64_t k = 0; k < g.kernel[d]; ++k) {
        const int64_t i = o * g.strides[d] + k * g.dilations[d] - g.pad_begin[d];
        if (i >= 0 && i < g.in[d]) t.taps[d][o].push_back(i);
      }
    }
  }
  return t;
}

// Calls fn(flat offset in the plane, per-dim input coords) for every in-bounds tap of the window at
// output coords `o`.
template <typename Fn>
void ForEachTap(const WindowTables& t, const std::vector<int64_t>& in, const std::vector<int64_t>& o,
                std::vector<size_t>& pos, std::vector<int64_t>& coord, Fn&& fn) {
  const size_t r = in.size();
  for (size_t d = 0; d < r; ++d) {
    if (t.taps[d][o[d]].empty()) return;
    pos[d] = 0;
  }
  while (true) {
    int64_t off = 0;
    for (size_t d = 0; d < r; ++d) {
      coord[d] = t.taps[d][o[d]][pos[d]];
      off = off * in[d] + coord[d];
    }
    fn(off, coord);
    size_t d = r;
    while (d-- > 0) {
      if (++pos[d] < t.taps[d][o[d]].size()) break;
      pos[d] = 0;
    }
    if (d == static_cast<size_t>(-1)) return;
  }
}

template <typename T>
void PoolKernel(OpKind op, const Tensor& x, const WindowGeometry& g, bool count_include_pad,
                int64_t storage_order, Tensor& y, Tensor* indices) {
  using C = ComputeT<T>;
  const size_t r = g.in.size();
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t in_n = NumElements(g.in), out_n = NumElements(g.out);
  const WindowTables tables = BuildTables(g);
  std::vector<int64_t> o(r), coord(r), best_coord(r);
  std::vector<size_t> pos(r);
  const T* src = x.data<T>();
  T* dst = y.data<T>();
  int64_t* idx = indices ? indices->data<int64_t>() : nullptr;
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* sp = src + plane * in_n;
    std::fill(o.begin(), o.end(), 0);
    for (int64_t oi = 0; oi < out_n; ++oi) {
      const int64_t out_at = plane * out_n + oi;
      if (op == OpKind::kMaxPool) {
        C best = std::numeric_limits<C>::lowest();
        if constexpr (std::numeric_limits<C>::has_infinity) best = -std::numeric_limits<C>::infinity();
        int64_t best_off = -1;
        std::fill(best_coord.begin(), best_coord.end(), 0);
        ForEachTap(tables, g.in, o, pos, coord, [&](int64_t off, const std::vector<int64_t>& c) {
          const C v = static_cast<C>(sp[off]);
          if (best_off < 0 || v > best) {
            best = v;
            best_off = off;
            best_coord = c;
          }
        });
        dst[out_at] = T(best);
        if (idx) {
          int64_t flat = best_off;
          if (storage_order == 1) {  // column-major within the plane
            flat = 0;
            for (size_t d = r; d-- > 0;) flat = flat * g.in[d] + best_coord[d];
          }
          idx[out_at] = plane * in_n + std::max<int64_t>(flat, 0);
        }
      } else {
        double sum = 0;
        int64_t count = 0;
        ForEachTap(tables, g.in, o, pos, coord, [&](int64_t off, const std::vector<int64_t>&) {
          sum += static_cast<double>(static_cast<C>(sp[off]));
          ++count;
        });
        // With count_include_pad every tap counts, even those past the end that ceil_mode adds: the ONNX
        // reference (and its node tests) pads the input far enough for the last window. ORT and PyTorch
        // instead leave out the taps past the explicit end padding.
        if (count_include_pad) count = NumElements(g.kernel);
        dst[out_at] = T(static_cast<C>(count > 0 ? sum / static_cast<double>(count) : 0.0));
      }
      for (size_t d = r; d-- > 0;) {
        if (++o[d] < g.out[d]) break;
        o[d] = 0;
      }
    }
  }
}

Status RunPool(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  const OpKind op = ctx.node().op();
  const Tensor& x = *ctx.input(0);
  const std::vector<int64_t> kernel = ctx.attrs().GetInts("kernel_shape");
  if (x.rank() != kernel.size() + 2) {
    return InvalidArgument("input X " + x.Description() + " does not have " + std::to_string(kernel.size()) +
                           " spatial dims as kernel_shape has");
  }
  if (!PoolDTypeOk(op, x.dtype())) {
    return Unsupported("input X has dtype " + std::string(DTypeName(x.dtype())) + ", not supported");
  }
  KILN_ASSIGN_OR_RETURN(WindowParams p, ReadWindowParams(ctx.attrs(), kernel));
  KILN_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindowGeometry(p, {x.sizes().begin() + 2, x.sizes().end()}));
  std::vector<int64_t> out_sizes = {x.size(0), x.size(1)};
  out_sizes.insert(out_sizes.end(), g.out.begin(), g.out.end());
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), out_sizes));
  Tensor* indices = nullptr;
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) {
    KILN_ASSIGN_OR_RETURN(indices, ctx.AllocateOutput(1, DType::kInt64, out_sizes));
  }
  const bool include_pad = ctx.attrs().GetInt("count_include_pad", 0) != 0;
  const int64_t order = ctx.attrs().GetInt("storage_order", 0);
  VisitNumericDType(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t> || !std::is_integral_v<T>) {
      PoolKernel<T>(op, x, g, include_pad, order, *y, indices);
    }
  });
  return Status::Ok();
}

// ---- global pools ------------------------------------------------------------------------------------

Status InferGlobalPool(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input X"));
  const auto& xs = ctx.input_shape(0);
  KILN_RETURN_IF_ERROR(CheckMinRank(xs, 2, "input X"));
  std::optional<Shape> out;
  if (xs) {
    std::vector<Dim> dims = {(*xs)[0], (*xs)[1]};
    dims.resize(xs->rank(), Dim(1));
    out = Shape(std::move(dims));
  }
  ctx.set_output(0, ctx.input_dtype(0), out);
  return Status::Ok();
}

Status RunGlobalPool(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  const Tensor& x = *ctx.input(0);
  if (x.rank() < 2) return InvalidArgument("input X " + x.Description() + " needs at least 2 dims");
  std::vector<int64_t> out_sizes(x.rank(), 1);
  out_sizes[0] = x.size(0);
  out_sizes[1] = x.size(1);
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, x.dtype(), out_sizes));
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t n = planes == 0 ? 0 : x.numel() / planes;
  const bool is_max = ctx.node().op() == OpKind::kGlobalMaxPool;
  if (!VisitFloatDType(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* src = x.data<T>();
        T* dst = y->data<T>();
        for (int64_t p = 0; p < planes; ++p) {
          const T* s = src + p * n;
          double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
          for (int64_t i = 0; i < n; ++i) {
            const double v = static_cast<double>(static_cast<ComputeT<T>>(s[i]));
            acc = is_max ? (v > acc || std::isnan(v) ? v : acc) : acc + v;
          }
          if (!is_max) acc = n > 0 ? acc / static_cast<double>(n) : 0.0;
          dst[p] = T(static_cast<ComputeT<T>>(acc));
        }
      })) {
    return RequireFloat(x.dtype(), "input X");
  }
  return Status::Ok();
}

}  // namespace

void RegisterNnPoolOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kMaxPool,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .min_outputs = 1,
                      .max_outputs = 2,
                      .attrs = {{"auto_pad", AttrKind::kString},
                                {"ceil_mode", AttrKind::kInt},
                                {"dilations", AttrKind::kInts},
                                {"kernel_shape", AttrKind::kInts, true},
                                {"pads", AttrKind::kInts},
                                {"storage_order", AttrKind::kInt},
                                {"strides", AttrKind::kInts}},
                      .validate = ValidatePool,
                      .infer = InferPool,
                      .run = RunPool});
  r.Register(OpSchema{.op = OpKind::kAveragePool,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"auto_pad", AttrKind::kString},
                                {"ceil_mode", AttrKind::kInt},
                                {"count_include_pad", AttrKind::kInt},
                                {"dilations", AttrKind::kInts},
                                {"kernel_shape", AttrKind::kInts, true},
                                {"pads", AttrKind::kInts},
                                {"strides", AttrKind::kInts}},
                      .validate = ValidatePool,
                      .infer = InferPool,
                      .run = RunPool});
  for (OpKind op : {OpKind::kGlobalAveragePool, OpKind::kGlobalMaxPool}) {
    r.Register(OpSchema{.op = op,
                        .min_inputs = 1,
                        .max_inputs = 1,
                        .attrs = {},
                        .validate = nullptr,
                        .infer = InferGlobalPool,
                        .run = RunGlobalPool});
  }
}

}  // namespace kiln
