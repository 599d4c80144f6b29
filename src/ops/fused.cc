// Kiln's own ops, made by the optimizer (src/passes/). Each has a reference kernel so that every fusion is
// testable against the unfused graph with RunReference:
//   kiln.FusedConv   Y = act(Conv(X, W, B) + Z)          inputs X, W, B?, Z? (residual, Y's shape)
//   kiln.FusedGemm   Y = act(alpha * A' @ B' + beta * C + R)   A' = transA ? A^T : A over the last two dims,
//                    batched like MatMul; C and R broadcast to Y
//   kiln.Swish       Y = X * sigmoid(alpha * X)
//   kiln.Attention   Y = softmax(scale * Q @ Kt + M) @ V   Q [..., Sq, D], Kt [..., D, Sk] (the key already
//                    transposed, as exporters feed it to MatMul), V [..., Sk, Dv], M? additive mask
//                    broadcast to [..., Sq, Sk]; batch dims broadcast like MatMul. Heads stay in the batch
//                    dims ([batch, heads, seq, head_dim]), as in the exported graphs the pass rewrites.
// The fused activation is named by the string attribute `activation` (empty: none), with parameters
// `activation_alpha` and `activation_beta`:
//   Relu, Tanh, Sigmoid, Gelu (erf), GeluTanh, HardSwish; LeakyRelu (alpha, default 0.01);
//   Clip (alpha = min, beta = max); HardSigmoid (alpha, beta; defaults 0.2, 0.5); Swish (alpha, default 1).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "ops/kernels/nn_common.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

constexpr const char* kActivations[] = {"",          "Relu",    "Tanh",        "Sigmoid", "Gelu",  "GeluTanh",
                                        "HardSwish", "LeakyRelu", "Clip", "HardSigmoid", "Swish"};

Status ValidateActivation(const Node& node) {
  const std::string act = node.attrs().GetString("activation", "");
  for (const char* a : kActivations) {
    if (act == a) return Status::Ok();
  }
  return InvalidArgument("unknown fused activation '" + act + "'");
}

double Sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// Applies the node's fused activation to every element of `y` in place (float dtypes only).
Status ApplyActivation(const Attributes& attrs, Tensor& y) {
  const std::string act = attrs.GetString("activation", "");
  if (act.empty()) return Status::Ok();
  const bool is_clip = act == "Clip";
  const bool is_hsig = act == "HardSigmoid";
  const double alpha = attrs.GetFloat(
      "activation_alpha", is_clip ? -std::numeric_limits<float>::infinity()
                                  : (is_hsig ? 0.2f : (act == "LeakyRelu" ? 0.01f : 1.f)));
  const double beta =
      attrs.GetFloat("activation_beta", is_clip ? std::numeric_limits<float>::infinity() : (is_hsig ? 0.5f : 0.f));
  std::function<double(double)> f;
  if (act == "Relu") f = [](double x) { return x > 0 ? x : 0.0; };
  if (act == "Tanh") f = [](double x) { return std::tanh(x); };
  if (act == "Sigmoid") f = [](double x) { return Sigmoid(x); };
  if (act == "Gelu") f = [](double x) { return 0.5 * x * (1 + std::erf(x * 0.7071067811865476)); };
  if (act == "GeluTanh") {
    f = [](double x) { return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); };
  }
  if (act == "HardSwish") f = [](double x) { return x * std::clamp(x / 6 + 0.5, 0.0, 1.0); };
  if (act == "LeakyRelu") f = [alpha](double x) { return x < 0 ? alpha * x : x; };
  if (act == "Clip") f = [alpha, beta](double x) { return std::min(std::max(x, alpha), beta); };
  if (act == "HardSigmoid") f = [alpha, beta](double x) { return std::clamp(alpha * x + beta, 0.0, 1.0); };
  if (act == "Swish") f = [alpha](double x) { return x * Sigmoid(alpha * x); };
  if (!f) return InvalidArgument("unknown fused activation '" + act + "'");
  const bool ok = VisitFloatDType(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = y.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i) p[i] = T(static_cast<ComputeT<T>>(f(static_cast<double>(p[i]))));
  });
  if (!ok) return InvalidArgument("fused activation needs a float tensor, got " + y.Description());
  return Status::Ok();
}

// y += scale * b, with b broadcast to y's sizes (which must be the broadcast result).
Status AddBroadcast(Tensor& y, const Tensor& b, double scale, const char* what) {
  if (b.dtype() != y.dtype()) return InvalidArgument(std::string(what) + " dtype differs from the output's");
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, BroadcastSizes(y.sizes(), b.sizes()));
  if (sizes != y.sizes()) {
    return InvalidArgument(std::string(what) + " " + b.Description() + " does not broadcast to the output " +
                           y.Description());
  }
  VisitNumericDType(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = ComputeT<T>;
    T* dst = y.data<T>();
    const T* src = b.data<T>();
    MultiIndexer it(y.sizes(), {BroadcastStrides(b.sizes(), y.sizes())});
    for (int64_t i = 0; i < y.numel(); ++i, it.Next()) {
      dst[i] = T(static_cast<C>(static_cast<C>(dst[i]) + static_cast<C>(scale * static_cast<double>(src[it.offset(0)]))));
    }
  });
  return Status::Ok();
}

// Broadcast shape check for shape functions: `b` must broadcast to `y` without changing it.
Status CheckBroadcastsTo(const InferContext& ctx, size_t i, const std::optional<Shape>& y, const char* what) {
  if (!ctx.has_input(i)) return Status::Ok();
  if (ctx.input_dtype(i) != ctx.input_dtype(0)) return InvalidArgument(std::string(what) + " dtype differs from X's");
  const auto& s = ctx.input_shape(i);
  if (!s || !y) return Status::Ok();
  KILN_ASSIGN_OR_RETURN(Shape b, BroadcastShapes(*y, *s));
  if (b.rank() != y->rank()) {
    return InvalidArgument(std::string(what) + " " + s->ToString() + " does not broadcast to " + y->ToString());
  }
  return Status::Ok();
}

// A transposed copy of the last two dims of `t` (rank >= 2).
Tensor TransposeLastTwo(const Tensor& t) {
  std::vector<int64_t> sizes = t.sizes();
  const size_t r = sizes.size();
  const int64_t rows = sizes[r - 2], cols = sizes[r - 1];
  std::swap(sizes[r - 2], sizes[r - 1]);
  Tensor out(t.dtype(), sizes);
  const size_t es = DTypeSize(t.dtype());
  const int64_t mats = rows * cols == 0 ? 0 : t.numel() / (rows * cols);
  const char* src = static_cast<const char*>(t.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t m = 0; m < mats; ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        std::memcpy(dst + ((m * cols + j) * rows + i) * es, src + ((m * rows + i) * cols + j) * es, es);
      }
    }
  }
  return out;
}


// ---- FusedConv -----------------------------------------------------------------------------------------

Status ValidateFusedConv(const Node& node) {
  const OpSchema* conv = OpRegistry::Global().Find(OpKind::kConv);
  if (conv && conv->validate) KILN_RETURN_IF_ERROR(conv->validate(node));
  return ValidateActivation(node);
}

Status InferFusedConv(InferContext& ctx) {
  const OpSchema* conv = OpRegistry::Global().Find(OpKind::kConv);
  if (!conv || !conv->infer) return Unsupported("Conv has no shape function");
  KILN_RETURN_IF_ERROR(conv->infer(ctx));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input X"));
  return CheckBroadcastsTo(ctx, 3, ctx.node().output(0)->shape(), "residual Z");
}

Status RunFusedConv(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_ASSIGN_OR_RETURN(Tensor y, RunAs(OpKind::kConv, ctx.node(), {ctx.input(0), ctx.input(1), ctx.input(2)}));
  if (const Tensor* z = ctx.input(3)) KILN_RETURN_IF_ERROR(AddBroadcast(y, *z, 1.0, "residual Z"));
  KILN_RETURN_IF_ERROR(ApplyActivation(ctx.attrs(), y));
  ctx.SetOutput(0, std::move(y));
  return Status::Ok();
}

// ---- FusedGemm -----------------------------------------------------------------------------------------

Status InferFusedGemm(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input A"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 1, "input B"));
  const auto& as = ctx.input_shape(0);
  const auto& bs = ctx.input_shape(1);
  if (!as || !bs) {
    ctx.set_output(0, ctx.input_dtype(0), std::nullopt);
    return Status::Ok();
  }
  if (as->rank() < 2 || bs->rank() < 2) {
    return InvalidArgument("A " + as->ToString() + " and B " + bs->ToString() + " must have rank >= 2");
  }
  std::vector<Dim> a = as->dims(), b = bs->dims();
  if (ctx.attrs().GetInt("transA", 0)) std::swap(a[a.size() - 1], a[a.size() - 2]);
  if (ctx.attrs().GetInt("transB", 0)) std::swap(b[b.size() - 1], b[b.size() - 2]);
  const Dim& ka = a.back();
  const Dim& kb = b[b.size() - 2];
  if (ka.is_static() && kb.is_static() && ka != kb) {
    return InvalidArgument("inner dims differ: " + as->ToString() + " x " + bs->ToString());
  }
  KILN_ASSIGN_OR_RETURN(Shape batch, BroadcastShapes(Shape(std::vector<Dim>(a.begin(), a.end() - 2)),
                                                     Shape(std::vector<Dim>(b.begin(), b.end() - 2))));
  std::vector<Dim> out = batch.dims();
  out.push_back(a[a.size() - 2]);
  out.push_back(b.back());
  const Shape y(std::move(out));
  KILN_RETURN_IF_ERROR(CheckBroadcastsTo(ctx, 2, y, "bias C"));
  KILN_RETURN_IF_ERROR(CheckBroadcastsTo(ctx, 3, y, "residual R"));
  ctx.set_output(0, ctx.input_dtype(0), y);
  return Status::Ok();
}

Status RunFusedGemm(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 2));
  const Tensor* a = ctx.input(0);
  const Tensor* b = ctx.input(1);
  if (a->rank() < 2 || b->rank() < 2) {
    return InvalidArgument("A " + a->Description() + " and B " + b->Description() + " must have rank >= 2");
  }
  KILN_RETURN_IF_ERROR(RequireFloat(a->dtype(), "input A"));
  Tensor at, bt;
  if (ctx.attrs().GetInt("transA", 0)) a = &(at = TransposeLastTwo(*a));
  if (ctx.attrs().GetInt("transB", 0)) b = &(bt = TransposeLastTwo(*b));
  KILN_ASSIGN_OR_RETURN(Tensor y, RunAs(OpKind::kMatMul, ctx.node(), {a, b}));
  const double alpha = ctx.attrs().GetFloat("alpha", 1.f), beta = ctx.attrs().GetFloat("beta", 1.f);
  if (alpha != 1.0) {
    VisitFloatDType(y.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* p = y.data<T>();
      for (int64_t i = 0; i < y.numel(); ++i) p[i] = T(static_cast<ComputeT<T>>(alpha * static_cast<double>(p[i])));
    });
  }
  if (const Tensor* c = ctx.input(2)) KILN_RETURN_IF_ERROR(AddBroadcast(y, *c, beta, "bias C"));
  if (const Tensor* r = ctx.input(3)) KILN_RETURN_IF_ERROR(AddBroadcast(y, *r, 1.0, "residual R"));
  KILN_RETURN_IF_ERROR(ApplyActivation(ctx.attrs(), y));
  ctx.SetOutput(0, std::move(y));
  return Status::Ok();
}

// ---- Swish ---------------------------------------------------------------------------------------------

Status InferSwish(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input X"));
  return InferSameAsInput0(ctx);
}

Status RunSwish(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  const Tensor& x = *ctx.input(0);
  KILN_RETURN_IF_ERROR(RequireFloat(x.dtype(), "input X"));
  Tensor y = x.Clone();
  Attributes act;
  act.Set("activation", std::string("Swish"));
  act.Set("activation_alpha", ctx.attrs().GetFloat("alpha", 1.f));
  KILN_RETURN_IF_ERROR(ApplyActivation(act, y));
  ctx.SetOutput(0, std::move(y));
  return Status::Ok();
}

// ---- Attention -----------------------------------------------------------------------------------------

Status InferAttention(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 3));
  KILN_RETURN_IF_ERROR(RequireFloat(ctx.input_dtype(0), "input Q"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 1, "input K"));
  KILN_RETURN_IF_ERROR(RequireSameDType(ctx, 2, "input V"));
  const auto& q = ctx.input_shape(0);
  const auto& k = ctx.input_shape(1);
  const auto& v = ctx.input_shape(2);
  if (!q || !k || !v) {
    ctx.set_output(0, ctx.input_dtype(0), std::nullopt);
    return Status::Ok();
  }
  if (q->rank() < 2 || k->rank() < 2 || v->rank() < 2) return InvalidArgument("Q, K and V must have rank >= 2");
  const Dim& dq = (*q)[q->rank() - 1];
  const Dim& dk = (*k)[k->rank() - 2];
  const Dim& sk = (*k)[k->rank() - 1];
  const Dim& sv = (*v)[v->rank() - 2];
  if ((dq.is_static() && dk.is_static() && dq != dk) || (sk.is_static() && sv.is_static() && sk != sv)) {
    return InvalidArgument("Q " + q->ToString() + ", K " + k->ToString() + " (transposed) and V " + v->ToString() +
                           " do not agree");
  }
  auto batch_of = [](const Shape& s) { return Shape(std::vector<Dim>(s.dims().begin(), s.dims().end() - 2)); };
  KILN_ASSIGN_OR_RETURN(Shape batch, BroadcastShapes(batch_of(*q), batch_of(*k)));
  KILN_ASSIGN_OR_RETURN(batch, BroadcastShapes(batch, batch_of(*v)));
  std::vector<Dim> out = batch.dims();
  out.push_back((*q)[q->rank() - 2]);
  out.push_back((*v)[v->rank() - 1]);
  std::vector<Dim> scores = batch.dims();
  scores.push_back((*q)[q->rank() - 2]);
  scores.push_back(sk);
  KILN_RETURN_IF_ERROR(CheckBroadcastsTo(ctx, 3, Shape(scores), "mask"));
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(out)));
  return Status::Ok();
}

Status RunAttention(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 3));
  const Tensor& q = *ctx.input(0);
  KILN_RETURN_IF_ERROR(RequireFloat(q.dtype(), "input Q"));
  if (q.rank() < 2 || ctx.input(1)->rank() < 2 || ctx.input(2)->rank() < 2) {
    return InvalidArgument("Q, K and V must have rank >= 2");
  }
  KILN_ASSIGN_OR_RETURN(Tensor s, RunAs(OpKind::kMatMul, ctx.node(), {&q, ctx.input(1)}));
  const double scale = ctx.attrs().GetFloat("scale", 1.f);
  VisitFloatDType(s.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = s.data<T>();
    for (int64_t i = 0; i < s.numel(); ++i) p[i] = T(static_cast<ComputeT<T>>(scale * static_cast<double>(p[i])));
  });
  if (const Tensor* m = ctx.input(3)) KILN_RETURN_IF_ERROR(AddBroadcast(s, *m, 1.0, "mask"));
  const int64_t cols = s.sizes().back();
  const int64_t rows = cols == 0 ? 0 : s.numel() / cols;
  VisitFloatDType(s.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = s.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      T* row = p + r * cols;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, static_cast<double>(row[j]));
      double sum = 0;
      std::vector<double> e(static_cast<size_t>(cols));
      for (int64_t j = 0; j < cols; ++j) sum += (e[j] = std::exp(static_cast<double>(row[j]) - mx));
      for (int64_t j = 0; j < cols; ++j) row[j] = T(static_cast<ComputeT<T>>(e[j] / sum));
    }
  });
  KILN_ASSIGN_OR_RETURN(Tensor y, RunAs(OpKind::kMatMul, ctx.node(), {&s, ctx.input(2)}));
  ctx.SetOutput(0, std::move(y));
  return Status::Ok();
}

}  // namespace

void RegisterFusedOps(OpRegistry& r) {
  const std::vector<AttrSpec> act_attrs = {{"activation", AttrKind::kString},
                                           {"activation_alpha", AttrKind::kFloat},
                                           {"activation_beta", AttrKind::kFloat}};
  std::vector<AttrSpec> conv_attrs = {
      {"auto_pad", AttrKind::kString},   {"dilations", AttrKind::kInts}, {"group", AttrKind::kInt},
      {"kernel_shape", AttrKind::kInts}, {"pads", AttrKind::kInts},      {"strides", AttrKind::kInts}};
  conv_attrs.insert(conv_attrs.end(), act_attrs.begin(), act_attrs.end());
  r.Register(OpSchema{.op = OpKind::kFusedConv,
                      .min_inputs = 2,
                      .max_inputs = 4,
                      .attrs = conv_attrs,
                      .validate = ValidateFusedConv,
                      .infer = InferFusedConv,
                      .run = RunFusedConv});
  std::vector<AttrSpec> gemm_attrs = {{"alpha", AttrKind::kFloat},
                                      {"beta", AttrKind::kFloat},
                                      {"transA", AttrKind::kInt},
                                      {"transB", AttrKind::kInt}};
  gemm_attrs.insert(gemm_attrs.end(), act_attrs.begin(), act_attrs.end());
  r.Register(OpSchema{.op = OpKind::kFusedGemm,
                      .min_inputs = 2,
                      .max_inputs = 4,
                      .attrs = gemm_attrs,
                      .validate = ValidateActivation,
                      .infer = InferFusedGemm,
                      .run = RunFusedGemm});
  r.Register(OpSchema{.op = OpKind::kSwish,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .attrs = {{"alpha", AttrKind::kFloat}},
                      .validate = nullptr,
                      .infer = InferSwish,
                      .run = RunSwish});
  r.Register(OpSchema{.op = OpKind::kAttention,
                      .min_inputs = 3,
                      .max_inputs = 4,
                      .attrs = {{"scale", AttrKind::kFloat}},
                      .validate = nullptr,
                      .infer = InferAttention,
                      .run = RunAttention});
}

}  // namespace kiln
