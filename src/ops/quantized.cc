// Kiln's quantized ops, made by the fuse_qdq pass (src/passes/fuse_qdq.cc) from the QuantizeLinear /
// DequantizeLinear ("QDQ") form that quantization tools (onnxruntime's quantize_static, TensorRT's and
// NNCF's exporters) write around each layer. Each op is defined as the QDQ sub-graph it replaces, and its
// reference kernel computes exactly that sub-graph (dequantize, the float op, quantize):
//   kiln.QConv  Y = Q(act(Conv(DQ(X, x_scale, x_zero_point), DQ(W, w_scale, w_zero_point), B)),
//                     y_scale, y_zero_point)
//               inputs X, x_scale, x_zero_point?, W, w_scale, w_zero_point?, y_scale?, y_zero_point?, B?
//               X and Y 8-bit (u8 or i8; Y's type is y_zero_point's), W i8 or u8, B float, scales float.
//               Without y_scale and y_zero_point (a convolution whose output the model keeps in float,
//               as TensorRT's and NNCF's Q/DQ placement leaves most of them) Y is f32: no final Q.
//               x_scale, x_zero_point, y_scale and y_zero_point are per tensor (one element); w_scale and
//               w_zero_point per tensor or per output channel ([M], axis 0). Attributes: Conv's, the fused
//               activation (`activation` Relu or Clip, as kiln.FusedConv), and `channels_last` (1: X and Y
//               are NHWC, as the channels_last pass makes them; W keeps its [M, C/group, KH, KW] layout).
//   kiln.QMatMul Y = Q(MatMul(DQ(A, a_scale, a_zero_point), DQ(B, b_scale, b_zero_point)) + Bias,
//                     y_scale, y_zero_point)
//               inputs as kiln.QConv's: A, a_scale, a_zero_point?, B, b_scale, b_zero_point?, y_scale?,
//               y_zero_point?, Bias?. A 8-bit of rank >= 2 (per tensor); B a 2-D [K, N] 8-bit constant,
//               per tensor or per column (b_scale [N]: DequantizeLinear's axis 1, as onnxruntime writes a
//               MatMul's per-channel weights); Bias f32 [N]. Without y_scale and y_zero_point Y is f32 (the
//               form onnxruntime writes when only MatMuls are quantized: the float ops after it stay float).
//               Attribute `activation` (as kiln.FusedGemm's, applied after the bias, before any Q).
//   kiln.QAdd   Y = Q(act(DQ(A, a_scale, a_zero_point) + DQ(B, b_scale, b_zero_point)), y_scale, y_zero_point)
//               inputs A, a_scale, a_zero_point?, B, b_scale, b_zero_point?, y_scale, y_zero_point; every
//               scale and zero point per tensor; A and B broadcast as Add's. `activation`: "" or Relu.
// Quantization follows QuantizeLinear: the float value divided by the scale, rounded half to even, plus
// the zero point, saturated to the output type. The fast kernels (src/backends/cpu) compute the integer
// form (an i32 accumulation, one requantization) and may differ from the reference by one step where the
// float value falls within rounding error of a half step.
#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>

#include "ops/kernels/nn_common.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

const std::vector<int64_t> kToNchw = {0, 3, 1, 2};
const std::vector<int64_t> kToNhwc = {0, 2, 3, 1};


// The inputs both ops require (the zero points of X / A and W / B, inputs 2 and 5, are optional; so are
// kiln.QConv's y_scale and y_zero_point, together).
constexpr size_t kRequired[] = {0, 1, 3, 4, 6, 7};

bool FloatOutput(const Node& node) {
  return (node.op() == OpKind::kQConv || node.op() == OpKind::kQMatMul) && !node.input(6) && !node.input(7);
}

Status CheckRequired(const Node& node) {
  for (size_t i : kRequired) {
    if ((i == 6 || i == 7) && FloatOutput(node)) continue;
    if (!node.input(i)) return InvalidArgument(std::string(node.op_name()) + ": required input " + std::to_string(i) + " is missing");
  }
  return Status::Ok();
}
Status CheckRequired(const KernelContext& ctx) {
  for (size_t i : kRequired) {
    if ((i == 6 || i == 7) && FloatOutput(ctx.node())) continue;
    if (!ctx.input(i)) return ctx.Error(std::string(ctx.node().op_name()) + ": input " + std::to_string(i) + " is missing");
  }
  return Status::Ok();
}

// Inputs `which` of `ctx` (where given) must hold one element each; `what` names them in the error.
Status RequirePerTensor(const KernelContext& ctx, std::initializer_list<size_t> which, const std::string& what) {
  for (size_t i : which) {
    if (ctx.input(i) && ctx.input(i)->numel() != 1) return ctx.Error(what + " per tensor");
  }
  return Status::Ok();
}

// The QuantizeLinear / DequantizeLinear reference kernel (`op`) on `ins` (x, scale, zero point?) with
// per-axis parameters along `axis`: the ops below are defined by these very kernels, so their reference
// computes the QDQ sub-graph exactly.
Expected<Tensor> RunQdq(OpKind op, std::vector<const Tensor*> ins, int64_t axis) {
  Graph g;
  std::vector<Value*> values;
  for (size_t i = 0; i < ins.size(); ++i) {
    values.push_back(ins[i] ? g.AddValue("in" + std::to_string(i), ins[i]->dtype()) : nullptr);
  }
  Node* n = g.AddNode(op, "qdq", std::move(values), {g.AddValue("out", DType::kUndefined)}, 13);
  n->attrs().Set("axis", axis);
  return RunAs(op, *n, std::move(ins));
}

// Input i of `ctx` dequantized; `what` names it in errors (it must be 8-bit).
Expected<Tensor> Dequantized(const KernelContext& ctx, const Tensor& q, size_t scale, const char* what,
                             int64_t axis = 1) {
  if (!Is8BitInteger(q.dtype())) return ctx.Error(std::string(what) + " must be u8 or i8, got " + q.Description());
  return RunQdq(OpKind::kDequantizeLinear, {&q, ctx.input(scale), ctx.input(scale + 1)}, axis);
}

// `y` quantized with the node's y_scale and y_zero_point (inputs 6 and 7) as output 0.
Status SetQuantizedOutput(KernelContext& ctx, const Tensor& y) {
  KILN_ASSIGN_OR_RETURN(Tensor q, RunQdq(OpKind::kQuantizeLinear, {&y, ctx.input(6), ctx.input(7)}, 1));
  ctx.SetOutput(0, std::move(q));
  return Status::Ok();
}

// ---- kiln.QConv ----------------------------------------------------------------------------------------

bool ChannelsLast(const Attributes& a) { return a.GetInt("channels_last", 0) != 0; }

Status ValidateQConv(const Node& node) {
  const std::string act = node.attrs().GetString("activation", "");
  if (!act.empty() && act != "Relu" && act != "Clip") {
    return InvalidArgument("kiln.QConv fuses Relu or Clip, not '" + act + "'");
  }
  return CheckRequired(node);
}

Status InferQConv(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckRequired(ctx.node()));
  const DType xt = ctx.input_dtype(0);
  const DType yt = FloatOutput(ctx.node()) ? DType::kFloat32 : ctx.input_dtype(7);
  if (!Is8BitInteger(xt) || !Is8BitInteger(ctx.input_dtype(3)) || (!FloatOutput(ctx.node()) && !Is8BitInteger(yt))) {
    return ctx.Error("X, W and y_zero_point must be u8 or i8");
  }
  // The output shape is Conv's on float stand-ins (NCHW).
  Graph g;
  std::optional<Shape> xs = ctx.input_shape(0);
  const bool nhwc = ChannelsLast(ctx.attrs());
  if (xs && nhwc) {
    if (xs->rank() != 4) return ctx.Error("a channels-last X must have rank 4, got " + xs->ToString());
    std::vector<Dim> d;
    for (int64_t p : kToNchw) d.push_back(xs->dims()[static_cast<size_t>(p)]);
    xs = Shape(std::move(d));
  }
  Value* x = g.AddValue("x", DType::kFloat32, xs);
  Value* w = g.AddValue("w", DType::kFloat32, ctx.input_shape(3));
  Value* y = g.AddValue("y", DType::kFloat32);
  Node* conv = g.AddNode(OpKind::kConv, "conv", {x, w}, {y}, 11);
  conv->attrs() = ctx.attrs();
  conv->attrs().Erase("channels_last");
  conv->attrs().Erase("activation");
  conv->attrs().Erase("activation_alpha");
  conv->attrs().Erase("activation_beta");
  const OpSchema* s = OpRegistry::Global().Find(OpKind::kConv);
  if (!s || !s->infer) return Internal("Conv has no shape function");
  InferContext sub(*conv);
  KILN_RETURN_IF_ERROR(s->infer(sub));
  std::optional<Shape> ys = y->shape();
  if (ys && nhwc) {
    std::vector<Dim> d;
    for (int64_t p : kToNhwc) d.push_back(ys->dims()[static_cast<size_t>(p)]);
    ys = Shape(std::move(d));
  }
  ctx.set_output(0, yt, ys);
  return Status::Ok();
}

Status RunQConv(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckRequired(ctx));
  const bool nhwc = ChannelsLast(ctx.attrs());
  Tensor x_nchw;
  const Tensor* x = ctx.input(0);
  if (nhwc) {
    if (x->rank() != 4) return ctx.Error("a channels-last X must have rank 4, got " + x->Description());
    x_nchw = PermuteRank4(*x, kToNchw);
    x = &x_nchw;
  }
  KILN_RETURN_IF_ERROR(RequirePerTensor(ctx, {1, 2, 6, 7}, "kiln.QConv's x and y parameters are"));
  KILN_ASSIGN_OR_RETURN(Tensor xf, Dequantized(ctx, *x, 1, "X"));
  KILN_ASSIGN_OR_RETURN(Tensor wf, Dequantized(ctx, *ctx.input(3), 4, "W", /*axis=*/0));  // per output channel
  const Tensor* b = ctx.input(8);
  if (b && b->dtype() != DType::kFloat32) return ctx.Error("B must be f32, got " + b->Description());
  KILN_ASSIGN_OR_RETURN(Tensor yf, RunAs(OpKind::kFusedConv, ctx.node(), {&xf, &wf, b}));
  if (nhwc) yf = PermuteRank4(yf, kToNhwc);
  if (FloatOutput(ctx.node())) {
    ctx.SetOutput(0, std::move(yf));
    return Status::Ok();
  }
  return SetQuantizedOutput(ctx, yf);
}

// ---- kiln.QMatMul --------------------------------------------------------------------------------------

Status InferQMatMul(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckRequired(ctx.node()));
  const bool float_out = FloatOutput(ctx.node());
  const DType yt = float_out ? DType::kFloat32 : ctx.input_dtype(7);
  if (!Is8BitInteger(ctx.input_dtype(0)) || !Is8BitInteger(ctx.input_dtype(3)) || (!float_out && !Is8BitInteger(yt))) {
    return ctx.Error("A, B and y_zero_point must be u8 or i8");
  }
  std::optional<Shape> as = ctx.input_shape(0), bs = ctx.input_shape(3);
  if (bs && bs->rank() != 2) return ctx.Error("B must be 2-D [K, N], got " + bs->ToString());
  if (as && as->rank() < 2) return ctx.Error("A must have rank >= 2, got " + as->ToString());
  std::optional<Shape> out;
  if (as && bs) {
    const Dim& k = as->dims().back();
    const Dim& kb = bs->dims()[0];
    if (k.is_static() && kb.is_static() && k.value() != kb.value()) {
      return ctx.Error("A " + as->ToString() + " and B " + bs->ToString() + " disagree on K");
    }
    std::vector<Dim> d = as->dims();
    d.back() = bs->dims()[1];
    out = Shape(std::move(d));
  }
  ctx.set_output(0, yt, out);
  return Status::Ok();
}

Status RunQMatMul(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckRequired(ctx));
  KILN_RETURN_IF_ERROR(RequirePerTensor(ctx, {1, 2, 6, 7}, "kiln.QMatMul's a and y parameters are"));
  const Tensor& b = *ctx.input(3);
  if (b.rank() != 2) return ctx.Error("B must be 2-D [K, N], got " + b.Description());
  KILN_ASSIGN_OR_RETURN(Tensor af, Dequantized(ctx, *ctx.input(0), 1, "A"));
  KILN_ASSIGN_OR_RETURN(Tensor bf, Dequantized(ctx, b, 4, "B", /*axis=*/1));  // per column
  const Tensor* bias = ctx.input(8);
  if (bias && (bias->dtype() != DType::kFloat32 || bias->numel() != b.size(1))) {
    return ctx.Error("Bias must be f32 [" + std::to_string(b.size(1)) + "], got " + bias->Description());
  }
  // kiln.FusedGemm without transposes is MatMul + bias + the fused activation.
  KILN_ASSIGN_OR_RETURN(Tensor yf, RunAs(OpKind::kFusedGemm, ctx.node(), {&af, &bf, bias}));
  if (FloatOutput(ctx.node())) {
    ctx.SetOutput(0, std::move(yf));
    return Status::Ok();
  }
  return SetQuantizedOutput(ctx, yf);
}

// ---- kiln.QAdd -----------------------------------------------------------------------------------------

Status ValidateQAdd(const Node& node) {
  const std::string act = node.attrs().GetString("activation", "");
  if (!act.empty() && act != "Relu") return InvalidArgument("kiln.QAdd fuses Relu only, not '" + act + "'");
  return CheckRequired(node);
}

Status InferQAdd(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckRequired(ctx.node()));
  if (!Is8BitInteger(ctx.input_dtype(0)) || !Is8BitInteger(ctx.input_dtype(3)) || !Is8BitInteger(ctx.input_dtype(7))) {
    return ctx.Error("A, B and y_zero_point must be u8 or i8");
  }
  std::optional<Shape> out;
  if (ctx.input_shape(0) && ctx.input_shape(3)) {
    KILN_ASSIGN_OR_RETURN(Shape s, BroadcastShapes(*ctx.input_shape(0), *ctx.input_shape(3)));
    out = std::move(s);
  }
  ctx.set_output(0, ctx.input_dtype(7), out);
  return Status::Ok();
}

Status RunQAdd(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(CheckRequired(ctx));
  KILN_RETURN_IF_ERROR(RequirePerTensor(ctx, {1, 2, 4, 5, 6, 7}, "kiln.QAdd's scales and zero points are"));
  KILN_ASSIGN_OR_RETURN(Tensor af, Dequantized(ctx, *ctx.input(0), 1, "A"));
  KILN_ASSIGN_OR_RETURN(Tensor bf, Dequantized(ctx, *ctx.input(3), 4, "B"));
  KILN_ASSIGN_OR_RETURN(Tensor sum, RunAs(OpKind::kAdd, ctx.node(), {&af, &bf}));
  if (ctx.attrs().GetString("activation", "") == "Relu") {
    float* p = sum.data<float>();
    for (int64_t i = 0; i < sum.numel(); ++i) p[i] = p[i] > 0.f ? p[i] : 0.f;
  }
  return SetQuantizedOutput(ctx, sum);
}

}  // namespace

void RegisterQuantizedOps(OpRegistry& r) {
  std::vector<AttrSpec> conv_attrs = {{"channels_last", AttrKind::kInt}};
  if (const OpSchema* fused = r.Find(OpKind::kFusedConv)) {
    conv_attrs.insert(conv_attrs.end(), fused->attrs.begin(), fused->attrs.end());
  }
  r.Register(OpSchema{.op = OpKind::kQConv,
                      .min_inputs = 2,
                      .max_inputs = 9,
                      .attrs = conv_attrs,
                      .validate = ValidateQConv,
                      .infer = InferQConv,
                      .run = RunQConv});
  // kiln.QMatMul's activation is kiln.FusedGemm's: its attributes, checked by its validation.
  std::vector<AttrSpec> act_attrs;
  std::function<Status(const Node&)> validate_act;
  if (const OpSchema* fused = r.Find(OpKind::kFusedGemm)) {
    for (const AttrSpec& a : fused->attrs) {
      if (a.name.rfind("activation", 0) == 0) act_attrs.push_back(a);
    }
    validate_act = fused->validate;
  }
  r.Register(OpSchema{.op = OpKind::kQMatMul,
                      .min_inputs = 2,
                      .max_inputs = 9,
                      .attrs = act_attrs,
                      .validate = [validate_act](const Node& n) {
                        KILN_RETURN_IF_ERROR(CheckRequired(n));
                        return validate_act ? validate_act(n) : Status::Ok();
                      },
                      .infer = InferQMatMul,
                      .run = RunQMatMul});
  r.Register(OpSchema{.op = OpKind::kQAdd,
                      .min_inputs = 2,
                      .max_inputs = 8,
                      .attrs = {{"activation", AttrKind::kString}},
                      .validate = ValidateQAdd,
                      .infer = InferQAdd,
                      .run = RunQAdd});
}

}  // namespace kiln
