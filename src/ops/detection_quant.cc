// NonMaxSuppression, QuantizeLinear and DequantizeLinear.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {

namespace {

// ---- NonMaxSuppression ----

Status ValidateNms(const Node& node) {
  const int64_t cpb = node.attrs().GetInt("center_point_box", 0);
  if (cpb != 0 && cpb != 1)
    return InvalidArgument("center_point_box must be 0 or 1, is " + std::to_string(cpb));
  return Status::Ok();
}

Status InferNms(InferContext& ctx) {
  if (!IsFloat(ctx.input_dtype(0)) || !IsFloat(ctx.input_dtype(1))) {
    return ctx.Error("boxes and scores must be float tensors");
  }
  const auto& bs = ctx.input_shape(0);
  const auto& ss = ctx.input_shape(1);
  if (bs && (bs->rank() != 3 || ((*bs)[2].is_static() && (*bs)[2].value() != 4))) {
    return ctx.Error("boxes must have shape [batches, boxes, 4], has " + bs->ToString());
  }
  if (ss && ss->rank() != 3)
    return ctx.Error("scores must have shape [batches, classes, boxes], has " + ss->ToString());
  ctx.set_output(0, DType::kInt64, Shape{Dim(), 3});
  return Status::Ok();
}

struct Box {
  double y1, x1, y2, x2;
};

double Iou(const Box& a, const Box& b) {
  const double area_a = (a.y2 - a.y1) * (a.x2 - a.x1);
  const double area_b = (b.y2 - b.y1) * (b.x2 - b.x1);
  if (area_a <= 0 || area_b <= 0) return 0;
  const double ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  const double iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  if (ih <= 0 || iw <= 0) return 0;
  const double inter = ih * iw;
  const double uni = area_a + area_b - inter;
  return uni > 0 ? inter / uni : 0;
}

Status RunNms(KernelContext& ctx) {
  const Tensor& boxes = *ctx.input(0);
  const Tensor& scores = *ctx.input(1);
  if (!IsFloat(boxes.dtype()) || !IsFloat(scores.dtype()))
    return ctx.Error("boxes and scores must be float tensors");
  if (boxes.rank() != 3 || boxes.size(2) != 4) {
    return ctx.Error("boxes must have shape [batches, boxes, 4], has " + SizesToString(boxes.sizes()));
  }
  if (scores.rank() != 3 || scores.size(0) != boxes.size(0) || scores.size(2) != boxes.size(1)) {
    return ctx.Error("scores has shape " + SizesToString(scores.sizes()) + ", expected [" +
                     std::to_string(boxes.size(0)) + ", classes, " + std::to_string(boxes.size(1)) + "]");
  }
  auto scalar = [&](size_t i, const char* name) -> Expected<std::optional<double>> {
    const Tensor* t = ctx.input(i);
    if (!t) return std::optional<double>();
    if (t->numel() != 1)
      return ctx.Error(std::string(name) + " must hold one value, has " + t->Description());
    return std::optional<double>(t->GetAsDouble(0));
  };
  int64_t max_out = 0;
  if (const Tensor* t = ctx.input(2)) {
    if (t->numel() != 1 || !IsInteger(t->dtype()))
      return ctx.Error("max_output_boxes_per_class must be one integer");
    max_out = t->GetAsInt64(0);
  }
  KILN_ASSIGN_OR_RETURN(std::optional<double> iou_t, scalar(3, "iou_threshold"));
  KILN_ASSIGN_OR_RETURN(std::optional<double> score_t, scalar(4, "score_threshold"));
  const double iou_threshold = iou_t.value_or(0.0);
  if (iou_threshold < 0 || iou_threshold > 1) return ctx.Error("iou_threshold must be in [0, 1]");
  const bool center = ctx.attrs().GetInt("center_point_box", 0) == 1;

  const int64_t num_batches = boxes.size(0), num_boxes = boxes.size(1), num_classes = scores.size(1);
  std::vector<int64_t> selected;  // triples
  std::vector<Box> bx;
  std::vector<int64_t> order;
  std::vector<int64_t> kept;
  for (int64_t b = 0; b < num_batches && max_out > 0; ++b) {
    bx.resize(static_cast<size_t>(num_boxes));  // here, where boxes is known to hold them
    for (int64_t i = 0; i < num_boxes; ++i) {
      double v[4];
      for (int k = 0; k < 4; ++k) v[k] = boxes.GetAsDouble((b * num_boxes + i) * 4 + k);
      Box& box = bx[static_cast<size_t>(i)];
      if (center) {
        // [x_center, y_center, width, height]
        box = {v[1] - v[3] / 2, v[0] - v[2] / 2, v[1] + v[3] / 2, v[0] + v[2] / 2};
      } else {
        // [y1, x1, y2, x2], either corner first
        box = {std::min(v[0], v[2]), std::min(v[1], v[3]), std::max(v[0], v[2]), std::max(v[1], v[3])};
      }
    }
    for (int64_t c = 0; c < num_classes; ++c) {
      const int64_t base = (b * num_classes + c) * num_boxes;
      order.clear();
      for (int64_t i = 0; i < num_boxes; ++i) {
        const double s = scores.GetAsDouble(base + i);
        if (std::isnan(s)) continue;
        if (!score_t || s > *score_t) order.push_back(i);
      }
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t z) {
        return scores.GetAsDouble(base + a) > scores.GetAsDouble(base + z);
      });
      kept.clear();
      for (int64_t i : order) {
        if (static_cast<int64_t>(kept.size()) >= max_out) break;
        bool suppressed = false;
        for (int64_t k : kept) {
          if (Iou(bx[static_cast<size_t>(i)], bx[static_cast<size_t>(k)]) > iou_threshold) {
            suppressed = true;
            break;
          }
        }
        if (suppressed) continue;
        kept.push_back(i);
        selected.insert(selected.end(), {b, c, i});
      }
    }
  }
  KILN_ASSIGN_OR_RETURN(Tensor * out,
                        ctx.AllocateOutput(0, DType::kInt64, {static_cast<int64_t>(selected.size() / 3), 3}));
  std::copy(selected.begin(), selected.end(), out->data<int64_t>());
  return Status::Ok();
}

// ---- QuantizeLinear / DequantizeLinear ----

// ONNX TensorProto data type numbers of the quantized types Kiln stores (for output_dtype).
std::optional<DType> QuantTypeFromOnnx(int64_t v) {
  switch (v) {
    case 2:
      return DType::kUInt8;
    case 3:
      return DType::kInt8;
    case 4:
      return DType::kUInt16;
    case 5:
      return DType::kInt16;
    default:
      return std::nullopt;
  }
}

bool IsQuantType(DType t) {
  return t == DType::kUInt8 || t == DType::kInt8 || t == DType::kUInt16 || t == DType::kInt16;
}

Status ValidateQdq(const Node& node) {
  if (node.attrs().GetInt("block_size", 0) < 0) return InvalidArgument("block_size must not be negative");
  if (node.op() == OpKind::kQuantizeLinear && node.attrs().Has("output_dtype")) {
    const int64_t od = node.attrs().GetInt("output_dtype");
    if (od != 0 && !QuantTypeFromOnnx(od)) {
      return Unsupported("output_dtype " + std::to_string(od) +
                         " is not supported (Kiln quantizes to u8, i8, u16, i16)");
    }
  }
  return Status::Ok();
}

Expected<DType> QuantizeOutputType(const Attributes& attrs, std::optional<DType> zero_point) {
  const int64_t od = attrs.GetInt("output_dtype", 0);
  std::optional<DType> from_attr = od != 0 ? QuantTypeFromOnnx(od) : std::nullopt;
  if (od != 0 && !from_attr) return Unsupported("output_dtype " + std::to_string(od) + " is not supported");
  if (zero_point) {
    if (!IsQuantType(*zero_point)) {
      return Unsupported("zero point dtype " + std::string(DTypeName(*zero_point)) + " is not supported");
    }
    if (from_attr && *from_attr != *zero_point)
      return InvalidArgument("output_dtype disagrees with y_zero_point");
    return *zero_point;
  }
  return from_attr.value_or(DType::kUInt8);
}

Status InferQuantize(InferContext& ctx) {
  const DType xt = ctx.input_dtype(0);
  if (!IsFloat(xt) && xt != DType::kInt32)
    return Unsupported("QuantizeLinear of " + std::string(DTypeName(xt)));
  std::optional<DType> zp;
  if (ctx.num_inputs() > 2 && ctx.has_input(2)) zp = ctx.input_dtype(2);
  KILN_ASSIGN_OR_RETURN(DType out, QuantizeOutputType(ctx.attrs(), zp));
  ctx.set_output(0, out, ctx.input_shape(0));
  return Status::Ok();
}

Status InferDequantize(InferContext& ctx) {
  const DType xt = ctx.input_dtype(0);
  if (!IsQuantType(xt) && xt != DType::kInt32)
    return Unsupported("DequantizeLinear of " + std::string(DTypeName(xt)));
  if (!IsFloat(ctx.input_dtype(1))) return ctx.Error("x_scale must be a float tensor");
  if (ctx.num_inputs() > 2 && ctx.has_input(2) && ctx.input_dtype(2) != xt) {
    return ctx.Error("x_zero_point must have the dtype of x");
  }
  ctx.set_output(0, ctx.input_dtype(1), ctx.input_shape(0));
  return Status::Ok();
}

// How x's elements map to scale/zero-point elements: x seen as [outer, len, inner] around `axis`; the
// parameter index is (outer * blocks + a / block) * inner + in when blocked, a when per axis, 0 per tensor.
struct QuantLayout {
  enum Mode { kPerTensor, kPerAxis, kBlocked } mode = kPerTensor;
  int64_t outer = 1, len = 1, inner = 1, block = 1, blocks = 1;
  int64_t ParamIndex(int64_t o, int64_t a, int64_t in) const {
    switch (mode) {
      case kPerTensor:
        return 0;
      case kPerAxis:
        return a;
      case kBlocked:
        return (o * blocks + a / block) * inner + in;
    }
    return 0;
  }
};

Expected<QuantLayout> MakeQuantLayout(const KernelContext& ctx, const Tensor& x, const Tensor& scale,
                                      const Tensor* zero_point) {
  if (zero_point && zero_point->sizes() != scale.sizes()) {
    return InvalidArgument("zero point shape " + SizesToString(zero_point->sizes()) +
                           " differs from scale shape " + SizesToString(scale.sizes()));
  }
  QuantLayout q;
  q.outer = x.numel();
  const int64_t block = ctx.attrs().GetInt("block_size", 0);
  const bool scalar_scale = scale.rank() == 0 || (scale.rank() == 1 && scale.numel() == 1 && block == 0);
  if (scalar_scale) {
    if (scale.numel() != 1) return InvalidArgument("scale is empty");
    return q;
  }
  KILN_ASSIGN_OR_RETURN(int64_t axis,
                        NormalizeAxis(ctx.attrs().GetInt("axis", 1), static_cast<int64_t>(x.rank())));
  if (x.rank() == 0) return InvalidArgument("a per-axis scale needs an input of rank >= 1");
  q.outer = 1;
  q.inner = 1;
  for (int64_t d = 0; d < axis; ++d) q.outer *= x.size(static_cast<size_t>(d));
  for (size_t d = static_cast<size_t>(axis) + 1; d < x.rank(); ++d) q.inner *= x.size(d);
  q.len = x.size(static_cast<size_t>(axis));
  if (block == 0) {
    if (scale.rank() != 1 || scale.size(0) != q.len) {
      return InvalidArgument("per-axis scale has shape " + SizesToString(scale.sizes()) + ", expected [" +
                             std::to_string(q.len) + "] (input " + SizesToString(x.sizes()) + ", axis " +
                             std::to_string(axis) + ")");
    }
    q.mode = QuantLayout::kPerAxis;
    return q;
  }
  q.mode = QuantLayout::kBlocked;
  q.block = block;
  q.blocks = (q.len + block - 1) / block;
  std::vector<int64_t> want = x.sizes();
  want[static_cast<size_t>(axis)] = q.blocks;
  if (scale.sizes() != want) {
    return InvalidArgument("blocked scale has shape " + SizesToString(scale.sizes()) + ", expected " +
                           SizesToString(want) + " for block_size " + std::to_string(block));
  }
  return q;
}

template <typename Fn>
void ForEachQuantElement(const QuantLayout& q, Fn&& fn) {
  int64_t i = 0;
  for (int64_t o = 0; o < q.outer; ++o) {
    for (int64_t a = 0; a < q.len; ++a) {
      for (int64_t in = 0; in < q.inner; ++in, ++i) fn(i, q.ParamIndex(o, a, in));
    }
  }
}

Status RunQuantize(KernelContext& ctx) {
  const Tensor& x = *ctx.input(0);
  const Tensor& scale = *ctx.input(1);
  const Tensor* zp = ctx.input(2);
  if (!IsFloat(x.dtype()) && x.dtype() != DType::kInt32)
    return Unsupported("QuantizeLinear of " + x.Description());
  if (!IsFloat(scale.dtype())) return ctx.Error("y_scale must be a float tensor");
  KILN_ASSIGN_OR_RETURN(DType out_type,
                        QuantizeOutputType(ctx.attrs(), zp ? std::optional(zp->dtype()) : std::nullopt));
  KILN_ASSIGN_OR_RETURN(QuantLayout q, MakeQuantLayout(ctx, x, scale, zp));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, out_type, x.sizes()));
  const std::vector<double> scales = [&] {
    std::vector<double> v(static_cast<size_t>(scale.numel()));
    for (int64_t i = 0; i < scale.numel(); ++i) v[static_cast<size_t>(i)] = scale.GetAsDouble(i);
    return v;
  }();
  VisitDType(out_type, [&](auto tag) {
    using Q = decltype(tag);
    if constexpr (std::is_integral_v<Q> && !std::is_same_v<Q, bool>) {
      Q* dst = y->data<Q>();
      const double lo = static_cast<double>(std::numeric_limits<Q>::lowest());
      const double hi = static_cast<double>(std::numeric_limits<Q>::max());
      ForEachQuantElement(q, [&](int64_t i, int64_t p) {
        // The quotient is rounded to x's type (float, or the 16-bit float) as ONNX's reference computes it;
        // nearbyint then rounds half to even.
        float v = static_cast<float>(x.GetAsDouble(i)) / static_cast<float>(scales[static_cast<size_t>(p)]);
        if (x.dtype() == DType::kFloat16) v = static_cast<float>(Float16(v));
        if (x.dtype() == DType::kBFloat16) v = static_cast<float>(BFloat16(v));
        double r = static_cast<double>(std::nearbyint(v)) + (zp ? zp->GetAsDouble(p) : 0.0);
        if (std::isnan(r)) r = 0;
        dst[i] = static_cast<Q>(std::clamp(r, lo, hi));
      });
    }
  });
  return Status::Ok();
}

Status RunDequantize(KernelContext& ctx) {
  const Tensor& x = *ctx.input(0);
  const Tensor& scale = *ctx.input(1);
  const Tensor* zp = ctx.input(2);
  if (!IsQuantType(x.dtype()) && x.dtype() != DType::kInt32)
    return Unsupported("DequantizeLinear of " + x.Description());
  if (!IsFloat(scale.dtype())) return ctx.Error("x_scale must be a float tensor");
  if (zp && zp->dtype() != x.dtype()) return ctx.Error("x_zero_point must have the dtype of x");
  KILN_ASSIGN_OR_RETURN(QuantLayout q, MakeQuantLayout(ctx, x, scale, zp));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, scale.dtype(), x.sizes()));
  VisitFloatDType(scale.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = y->data<T>();
    ForEachQuantElement(q, [&](int64_t i, int64_t p) {
      const int64_t diff = x.GetAsInt64(i) - (zp ? zp->GetAsInt64(p) : 0);
      const float v = static_cast<float>(diff) * static_cast<float>(scale.GetAsDouble(p));
      dst[i] = static_cast<T>(static_cast<ComputeT<T>>(v));
    });
  });
  return Status::Ok();
}

}  // namespace

void RegisterDetectionQuantOps(OpRegistry& r) {
  OpSchema nms;
  nms.op = OpKind::kNonMaxSuppression;
  nms.min_inputs = 2;
  nms.max_inputs = 5;
  nms.min_opset = 10;
  nms.attrs = {{"center_point_box", AttrKind::kInt}};
  nms.validate = ValidateNms;
  nms.infer = InferNms;
  nms.run = RunNms;
  r.Register(std::move(nms));

  OpSchema q;
  q.op = OpKind::kQuantizeLinear;
  q.min_inputs = 2;
  q.max_inputs = 3;
  q.min_opset = 10;
  q.attrs = {{"axis", AttrKind::kInt},
             {"saturate", AttrKind::kInt},
             {"block_size", AttrKind::kInt},
             {"output_dtype", AttrKind::kInt}};
  q.validate = ValidateQdq;
  q.infer = InferQuantize;
  q.run = RunQuantize;
  r.Register(std::move(q));

  OpSchema dq;
  dq.op = OpKind::kDequantizeLinear;
  dq.min_inputs = 2;
  dq.max_inputs = 3;
  dq.min_opset = 10;
  dq.attrs = {{"axis", AttrKind::kInt}, {"block_size", AttrKind::kInt}};
  dq.validate = ValidateQdq;
  dq.infer = InferDequantize;
  dq.run = RunDequantize;
  r.Register(std::move(dq));
}

}  // namespace kiln
