#include "ops/kernels/nn_common.h"

#include "ops/registry.h"

namespace kiln {

Expected<AutoPad> ReadAutoPad(const Attributes& attrs) {
  const std::string s = attrs.GetString("auto_pad", "NOTSET");
  if (s == "NOTSET" || s.empty()) return AutoPad::kNotSet;
  if (s == "SAME_UPPER") return AutoPad::kSameUpper;
  if (s == "SAME_LOWER") return AutoPad::kSameLower;
  if (s == "VALID") return AutoPad::kValid;
  return InvalidArgument("auto_pad '" + s + "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
}

namespace {

// Window sizes, strides, dilations and pads above this are refused, so that output-size arithmetic cannot
// overflow.
constexpr int64_t kMaxWindowValue = int64_t{1} << 31;

Status CheckAll(const std::vector<int64_t>& v, int64_t min, const char* name) {
  for (int64_t x : v) {
    if (x > kMaxWindowValue)
      return InvalidArgument(std::string(name) + " " + SizesToString(v) + " has a value too large");
    if (x < min) {
      return InvalidArgument(std::string(name) + " " + SizesToString(v) + " has a value below " +
                             std::to_string(min));
    }
  }
  return Status::Ok();
}

Status CheckLength(const std::vector<int64_t>& v, size_t n, const char* name, const char* against) {
  if (v.size() != n) {
    return InvalidArgument(std::string(name) + " " + SizesToString(v) + " has " + std::to_string(v.size()) +
                           " values, expected " + std::to_string(n) + " (" + against + ")");
  }
  return Status::Ok();
}

}  // namespace

Status ValidateWindowAttrs(const Node& node) {
  const Attributes& a = node.attrs();
  KILN_RETURN_IF_ERROR(ReadAutoPad(a).status());
  std::optional<size_t> rank;
  const char* rank_from = "";
  for (const char* name : {"kernel_shape", "strides", "dilations", "output_padding"}) {
    if (!a.Has(name)) continue;
    const std::vector<int64_t> v = a.GetInts(name);
    KILN_RETURN_IF_ERROR(CheckAll(v, std::string(name) == "output_padding" ? 0 : 1, name));
    if (!rank) {
      rank = v.size();
      rank_from = name;
    } else {
      KILN_RETURN_IF_ERROR(CheckLength(v, *rank, name, rank_from));
    }
  }
  if (a.Has("pads")) {
    const std::vector<int64_t> pads = a.GetInts("pads");
    KILN_RETURN_IF_ERROR(CheckAll(pads, 0, "pads"));
    if (pads.size() % 2 != 0) {
      return InvalidArgument("pads " + SizesToString(pads) + " has an odd number of values");
    }
    if (rank) KILN_RETURN_IF_ERROR(CheckLength(pads, 2 * *rank, "pads", "two per spatial dim"));
  }
  return Status::Ok();
}

Expected<WindowParams> ReadWindowParams(const Attributes& attrs, std::vector<int64_t> kernel) {
  WindowParams p;
  const size_t r = kernel.size();
  KILN_RETURN_IF_ERROR(CheckAll(kernel, 1, "kernel_shape"));
  p.kernel = std::move(kernel);
  p.strides = attrs.GetInts("strides", std::vector<int64_t>(r, 1));
  p.dilations = attrs.GetInts("dilations", std::vector<int64_t>(r, 1));
  p.pads = attrs.GetInts("pads", std::vector<int64_t>(2 * r, 0));
  KILN_RETURN_IF_ERROR(CheckLength(p.strides, r, "strides", "one per spatial dim"));
  KILN_RETURN_IF_ERROR(CheckLength(p.dilations, r, "dilations", "one per spatial dim"));
  KILN_RETURN_IF_ERROR(CheckLength(p.pads, 2 * r, "pads", "two per spatial dim"));
  KILN_RETURN_IF_ERROR(CheckAll(p.strides, 1, "strides"));
  KILN_RETURN_IF_ERROR(CheckAll(p.dilations, 1, "dilations"));
  KILN_RETURN_IF_ERROR(CheckAll(p.pads, 0, "pads"));
  KILN_ASSIGN_OR_RETURN(p.auto_pad, ReadAutoPad(attrs));
  p.ceil_mode = attrs.GetInt("ceil_mode", 0) != 0;
  return p;
}

Expected<WindowDim> ComputeWindowDim(const WindowParams& p, size_t d, int64_t in) {
  // Bounds that keep every product below 2^63 (sizes and pads up to 2^40, kernel, stride and dilation up
  // to 2^20): a damaged plan or model may carry any int64, and no real window comes near them.
  constexpr int64_t kMaxSize = int64_t{1} << 40, kMaxStep = int64_t{1} << 20;
  const int64_t pad_b = p.pads.size() > d ? p.pads[d] : 0;
  const int64_t pad_e = p.pads.size() > d + p.kernel.size() ? p.pads[d + p.kernel.size()] : 0;
  if (in < 0 || in > kMaxSize || pad_b > kMaxSize || pad_e > kMaxSize || p.kernel[d] > kMaxStep ||
      p.strides[d] > kMaxStep || p.dilations[d] > kMaxStep) {
    return InvalidArgument("spatial dim " + std::to_string(d) + ": size " + std::to_string(in) + ", kernel " +
                           std::to_string(p.kernel[d]) + ", stride " + std::to_string(p.strides[d]) + ", dilation " +
                           std::to_string(p.dilations[d]) + " or pads are out of range");
  }
  const int64_t s = p.strides[d];
  const int64_t eff = (p.kernel[d] - 1) * p.dilations[d] + 1;
  WindowDim w;
  switch (p.auto_pad) {
    case AutoPad::kSameUpper:
    case AutoPad::kSameLower: {
      w.out = (in + s - 1) / s;
      const int64_t total = std::max<int64_t>(0, (w.out - 1) * s + eff - in);
      w.pad_begin = p.auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
      w.pad_end = total - w.pad_begin;
      return w;
    }
    case AutoPad::kValid:
    case AutoPad::kNotSet: {
      if (p.auto_pad == AutoPad::kNotSet) {
        w.pad_begin = p.pads[d];
        w.pad_end = p.pads[d + p.kernel.size()];
      }
      const int64_t padded = in + w.pad_begin + w.pad_end;
      if (padded < eff) {
        return InvalidArgument("spatial dim " + std::to_string(d) + " of size " + std::to_string(in) +
                               " (padded: " + std::to_string(padded) + ") is smaller than the window (" +
                               std::to_string(eff) + ")");
      }
      if (p.ceil_mode) {
        w.out = (padded - eff + s - 1) / s + 1;
        // The last window must start inside the input or its begin padding (as PyTorch and ORT do).
        if ((w.out - 1) * s >= in + w.pad_begin) --w.out;
      } else {
        w.out = (padded - eff) / s + 1;
      }
      return w;
    }
  }
  return Internal("bad auto_pad");
}

Expected<WindowGeometry> ComputeWindowGeometry(const WindowParams& p, const std::vector<int64_t>& in) {
  if (in.size() != p.kernel.size()) {
    return InvalidArgument("input has " + std::to_string(in.size()) + " spatial dims but the kernel has " +
                           std::to_string(p.kernel.size()));
  }
  WindowGeometry g;
  g.in = in;
  g.kernel = p.kernel;
  g.strides = p.strides;
  g.dilations = p.dilations;
  for (size_t d = 0; d < in.size(); ++d) {
    KILN_ASSIGN_OR_RETURN(WindowDim w, ComputeWindowDim(p, d, in[d]));
    g.out.push_back(w.out);
    g.pad_begin.push_back(w.pad_begin);
    g.pad_end.push_back(w.pad_end);
  }
  return g;
}

Status CheckMinRank(const std::optional<Shape>& s, size_t min_rank, const char* what) {
  if (s && s->rank() < min_rank) {
    return InvalidArgument(std::string(what) + " has shape " + s->ToString() + ", expected at least " +
                           std::to_string(min_rank) + " dims");
  }
  return Status::Ok();
}

Status RequireFloat(DType t, const char* what) {
  if (!IsFloat(t)) {
    return Unsupported(std::string(what) + " has dtype " + std::string(DTypeName(t)) +
                       "; expected f16, bf16, f32 or f64");
  }
  return Status::Ok();
}

Status RequireInputs(const InferContext& ctx, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (i >= ctx.num_inputs() || !ctx.has_input(i))
      return InvalidArgument("input " + std::to_string(i) + " is missing");
  }
  return Status::Ok();
}

Status RequireInputs(const KernelContext& ctx, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!ctx.input(i)) return InvalidArgument("input " + std::to_string(i) + " is missing");
  }
  return Status::Ok();
}

Status RequireSameDType(const InferContext& ctx, size_t i, const char* what) {
  if (ctx.has_input(i) && ctx.input_dtype(i) != ctx.input_dtype(0)) {
    return InvalidArgument(std::string(what) + " has dtype " + std::string(DTypeName(ctx.input_dtype(i))) +
                           " but input 0 has " + std::string(DTypeName(ctx.input_dtype(0))));
  }
  return Status::Ok();
}

}  // namespace kiln
