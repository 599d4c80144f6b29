// Recurrent layers: RNN, GRU and LSTM (ONNX opsets 7 and 14), with a single reference driver.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>
#include <vector>

#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {

namespace {

enum class CellKind { kRnn, kGru, kLstm };

int64_t GatesOf(CellKind k) {
  switch (k) {
    case CellKind::kRnn:
      return 1;
    case CellKind::kGru:
      return 3;
    case CellKind::kLstm:
      return 4;
  }
  return 1;
}

size_t ActivationsPerDirection(CellKind k) {
  switch (k) {
    case CellKind::kRnn:
      return 1;
    case CellKind::kGru:
      return 2;
    case CellKind::kLstm:
      return 3;
  }
  return 1;
}

enum class ActKind {
  kSigmoid,
  kTanh,
  kRelu,
  kAffine,
  kLeakyRelu,
  kThresholdedRelu,
  kScaledTanh,
  kHardSigmoid,
  kElu,
  kSoftsign,
  kSoftplus
};

struct Activation {
  ActKind kind = ActKind::kSigmoid;
  double alpha = 0;
  double beta = 0;

  double Apply(double x) const {
    switch (kind) {
      case ActKind::kSigmoid:
        return 1.0 / (1.0 + std::exp(-x));
      case ActKind::kTanh:
        return std::tanh(x);
      case ActKind::kRelu:
        return x > 0 ? x : 0.0;
      case ActKind::kAffine:
        return alpha * x + beta;
      case ActKind::kLeakyRelu:
        return x >= 0 ? x : alpha * x;
      case ActKind::kThresholdedRelu:
        return x > alpha ? x : 0.0;
      case ActKind::kScaledTanh:
        return alpha * std::tanh(beta * x);
      case ActKind::kHardSigmoid:
        return std::max(0.0, std::min(1.0, alpha * x + beta));
      case ActKind::kElu:
        return x >= 0 ? x : alpha * (std::exp(x) - 1.0);
      case ActKind::kSoftsign:
        return x / (1.0 + std::fabs(x));
      case ActKind::kSoftplus:
        return x > 30 ? x : std::log1p(std::exp(x));
    }
    return x;
  }
};

struct ActInfo {
  const char* name;
  ActKind kind;
  int num_params;      // how many of (alpha, beta) it reads from the attribute lists
  double alpha, beta;  // defaults, those of the ONNX operator of the same name
};

constexpr ActInfo kActivations[] = {
    {"sigmoid", ActKind::kSigmoid, 0, 0, 0},
    {"tanh", ActKind::kTanh, 0, 0, 0},
    {"relu", ActKind::kRelu, 0, 0, 0},
    {"affine", ActKind::kAffine, 2, 1.0, 0.0},
    {"leakyrelu", ActKind::kLeakyRelu, 1, 0.01, 0},
    {"thresholdedrelu", ActKind::kThresholdedRelu, 1, 1.0, 0},
    {"scaledtanh", ActKind::kScaledTanh, 2, 1.0, 1.0},
    {"hardsigmoid", ActKind::kHardSigmoid, 2, 0.2, 0.5},
    {"elu", ActKind::kElu, 1, 1.0, 0},
    {"softsign", ActKind::kSoftsign, 0, 0, 0},
    {"softplus", ActKind::kSoftplus, 0, 0, 0},
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Expected<int64_t> NumDirections(const Attributes& attrs) {
  const std::string dir = attrs.GetString("direction", "forward");
  if (dir == "forward" || dir == "reverse") return 1;
  if (dir == "bidirectional") return 2;
  return InvalidArgument("direction '" + dir + "' is not forward, reverse or bidirectional");
}

// The activations of every direction, in order (f, g[, h]) per direction. Alphas and betas are consumed in
// order by the activations that take them; missing ones take the operator's defaults.
Expected<std::vector<Activation>> ParseActivations(const Attributes& attrs, CellKind cell, int64_t num_dir) {
  const size_t per_dir = ActivationsPerDirection(cell);
  std::vector<std::string> names;
  if (attrs.Has("activations")) {
    names = attrs.GetStrings("activations");
    if (names.size() == per_dir && num_dir == 2) {
      names.insert(names.end(), names.begin(), names.end());
    }
    if (names.size() != per_dir * static_cast<size_t>(num_dir)) {
      return InvalidArgument("activations has " + std::to_string(names.size()) + " entries, expected " +
                             std::to_string(per_dir * static_cast<size_t>(num_dir)));
    }
  } else {
    const std::vector<std::string> defaults = cell == CellKind::kRnn ? std::vector<std::string>{"Tanh"}
                                              : cell == CellKind::kGru
                                                  ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                  : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
    for (int64_t d = 0; d < num_dir; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  }
  const std::vector<float> alphas = attrs.GetFloats("activation_alpha");
  const std::vector<float> betas = attrs.GetFloats("activation_beta");
  size_t next_alpha = 0, next_beta = 0;
  std::vector<Activation> out;
  for (const std::string& name : names) {
    const std::string low = Lower(name);
    const ActInfo* info = nullptr;
    for (const ActInfo& a : kActivations) {
      if (low == a.name) info = &a;
    }
    if (!info) return Unsupported("activation '" + name + "' is not supported");
    Activation act{info->kind, info->alpha, info->beta};
    if (info->num_params >= 1 && next_alpha < alphas.size()) act.alpha = alphas[next_alpha++];
    if (info->num_params >= 2 && next_beta < betas.size()) act.beta = betas[next_beta++];
    out.push_back(act);
  }
  return out;
}

Status ValidateRecurrent(const Node& node, CellKind cell) {
  KILN_ASSIGN_OR_RETURN(int64_t num_dir, NumDirections(node.attrs()));
  KILN_RETURN_IF_ERROR(ParseActivations(node.attrs(), cell, num_dir).status());
  if (node.attrs().Has("hidden_size") && node.attrs().GetInt("hidden_size") <= 0) {
    return InvalidArgument("hidden_size must be positive");
  }
  const int64_t layout = node.attrs().GetInt("layout", 0);
  if (layout != 0 && layout != 1)
    return InvalidArgument("layout must be 0 or 1, is " + std::to_string(layout));
  if (layout != 0 && node.opset() < 14) return InvalidArgument("attribute 'layout' exists from opset 14");
  if (node.attrs().Has("clip") && !(node.attrs().GetFloat("clip") > 0)) {
    return InvalidArgument("clip must be positive");
  }
  return Status::Ok();
}

// Output indices: Y, Y_h and (LSTM) Y_c.
Status InferRecurrent(InferContext& ctx, CellKind cell) {
  const DType dt = ctx.input_dtype(0);
  if (!IsFloat(dt)) return Unsupported("input X must be a float tensor, is " + std::string(DTypeName(dt)));
  for (size_t i : {1, 2}) {
    if (ctx.input_dtype(i) != dt) return ctx.Error("W and R must have the dtype of X");
  }
  KILN_ASSIGN_OR_RETURN(int64_t num_dir, NumDirections(ctx.attrs()));
  const bool batch_first = ctx.attrs().GetInt("layout", 0) == 1;
  Dim hidden;
  if (ctx.attrs().Has("hidden_size")) {
    hidden = ctx.attrs().GetInt("hidden_size");
  } else if (const auto& rs = ctx.input_shape(2); rs && rs->rank() == 3) {
    hidden = (*rs)[2];
  }
  Dim seq, batch;
  if (const auto& xs = ctx.input_shape(0)) {
    if (xs->rank() != 3) return ctx.Error("X must have rank 3, has shape " + xs->ToString());
    seq = (*xs)[batch_first ? 1 : 0];
    batch = (*xs)[batch_first ? 0 : 1];
  }
  const Shape y = batch_first ? Shape{batch, seq, num_dir, hidden} : Shape{seq, num_dir, batch, hidden};
  const Shape yh = batch_first ? Shape{batch, num_dir, hidden} : Shape{num_dir, batch, hidden};
  ctx.set_output(0, dt, y);
  ctx.set_output(1, dt, yh);
  if (cell == CellKind::kLstm) ctx.set_output(2, dt, yh);
  return Status::Ok();
}

std::vector<double> ToDoubles(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  VisitDType(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.data<T>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(static_cast<ComputeT<T>>(p[i]));
  });
  return out;
}

void StoreDoubles(const std::vector<double>& v, Tensor& t) {
  VisitFloatDType(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<T>(static_cast<ComputeT<T>>(v[i]));
  });
}

Status CheckSizes(const Tensor& t, const std::vector<int64_t>& want, const char* name) {
  if (t.sizes() != want) {
    return InvalidArgument(std::string(name) + " has shape " + SizesToString(t.sizes()) + ", expected " +
                           SizesToString(want));
  }
  return Status::Ok();
}

Status RunRecurrent(KernelContext& ctx, CellKind cell) {
  const Tensor& xt = *ctx.input(0);
  const Tensor& wt = *ctx.input(1);
  const Tensor& rt = *ctx.input(2);
  if (!IsFloat(xt.dtype())) return Unsupported("input X must be a float tensor");
  if (wt.dtype() != xt.dtype() || rt.dtype() != xt.dtype())
    return ctx.Error("W and R must have the dtype of X");
  KILN_ASSIGN_OR_RETURN(int64_t num_dir, NumDirections(ctx.attrs()));
  KILN_ASSIGN_OR_RETURN(std::vector<Activation> acts, ParseActivations(ctx.attrs(), cell, num_dir));
  const std::string direction = ctx.attrs().GetString("direction", "forward");
  const bool batch_first = ctx.attrs().GetInt("layout", 0) == 1;
  const double clip = ctx.attrs().Has("clip") ? ctx.attrs().GetFloat("clip") : 0.0;
  const bool linear_before_reset = ctx.attrs().GetInt("linear_before_reset", 0) != 0;
  const bool input_forget = ctx.attrs().GetInt("input_forget", 0) != 0;
  const int64_t G = GatesOf(cell);

  if (xt.rank() != 3) return ctx.Error("X must have rank 3, has shape " + SizesToString(xt.sizes()));
  if (rt.rank() != 3) return ctx.Error("R must have rank 3, has shape " + SizesToString(rt.sizes()));
  const int64_t S = xt.size(batch_first ? 1 : 0);
  const int64_t N = xt.size(batch_first ? 0 : 1);
  const int64_t I = xt.size(2);
  const int64_t H = ctx.attrs().Has("hidden_size") ? ctx.attrs().GetInt("hidden_size") : rt.size(2);
  if (H <= 0) return ctx.Error("hidden_size must be positive");
  KILN_RETURN_IF_ERROR(CheckSizes(wt, {num_dir, G * H, I}, "W"));
  if (!CheckedNumElements({num_dir, G, H, H}))
    return ctx.Error("hidden_size " + std::to_string(H) + " is too large");
  KILN_RETURN_IF_ERROR(CheckSizes(rt, {num_dir, G * H, H}, "R"));
  // X may be empty whatever its other dims; the buffers below are sized from them, so bound them first.
  constexpr int64_t kMaxElements = int64_t{1} << 32;
  const auto y_numel = CheckedNumElements({S, num_dir, N, H});
  if (!y_numel || *y_numel > kMaxElements || N * num_dir * H > kMaxElements) {
    return ctx.Error("output of " + SizesToString({S, num_dir, N, H}) +
                     " is too large for the reference kernel");
  }

  const std::vector<double> X = ToDoubles(xt), W = ToDoubles(wt), R = ToDoubles(rt);
  std::vector<double> B(static_cast<size_t>(num_dir * 2 * G * H), 0.0);
  if (const Tensor* b = ctx.input(3)) {
    KILN_RETURN_IF_ERROR(CheckSizes(*b, {num_dir, 2 * G * H}, "B"));
    B = ToDoubles(*b);
  }
  std::vector<int64_t> lens(static_cast<size_t>(N), S);
  if (const Tensor* sl = ctx.input(4)) {
    if (!IsInteger(sl->dtype())) return ctx.Error("sequence_lens must be an integer tensor");
    KILN_RETURN_IF_ERROR(CheckSizes(*sl, {N}, "sequence_lens"));
    lens = sl->ToInt64Vector();
    for (int64_t l : lens) {
      if (l < 0 || l > S) {
        return ctx.Error("sequence_lens value " + std::to_string(l) + " is outside [0, " + std::to_string(S) +
                         "]");
      }
    }
  }
  const std::vector<int64_t> state_sizes =
      batch_first ? std::vector<int64_t>{N, num_dir, H} : std::vector<int64_t>{num_dir, N, H};
  // States are kept as [num_dir][N][H] whatever the layout.
  auto read_state = [&](size_t index, const char* name, std::vector<double>& out) -> Status {
    out.assign(static_cast<size_t>(num_dir * N * H), 0.0);
    const Tensor* t = ctx.input(index);
    if (!t) return Status::Ok();
    if (t->dtype() != xt.dtype()) return ctx.Error(std::string(name) + " must have the dtype of X");
    KILN_RETURN_IF_ERROR(CheckSizes(*t, state_sizes, name));
    const std::vector<double> v = ToDoubles(*t);
    for (int64_t d = 0; d < num_dir; ++d) {
      for (int64_t n = 0; n < N; ++n) {
        const int64_t src = batch_first ? (n * num_dir + d) * H : (d * N + n) * H;
        std::copy_n(v.begin() + src, H, out.begin() + (d * N + n) * H);
      }
    }
    return Status::Ok();
  };
  std::vector<double> h_state, c_state, P(static_cast<size_t>(num_dir * 3 * H), 0.0);
  KILN_RETURN_IF_ERROR(read_state(5, "initial_h", h_state));
  if (cell == CellKind::kLstm) {
    KILN_RETURN_IF_ERROR(read_state(6, "initial_c", c_state));
    if (const Tensor* p = ctx.input(7)) {
      KILN_RETURN_IF_ERROR(CheckSizes(*p, {num_dir, 3 * H}, "P"));
      P = ToDoubles(*p);
    }
  }

  // Y as [S][num_dir][N][H]; steps past a sequence's length stay zero.
  std::vector<double> Y(static_cast<size_t>(S * num_dir * N * H), 0.0);
  auto x_at = [&](int64_t t, int64_t n) {
    return X.data() + (batch_first ? (n * S + t) * I : (t * N + n) * I);
  };
  auto clipped = [&](double v) { return clip > 0 ? std::max(-clip, std::min(clip, v)) : v; };
  std::vector<double> xw(static_cast<size_t>(G * H)), hr(static_cast<size_t>(G * H)),
      h_new(static_cast<size_t>(H));

  for (int64_t d = 0; d < num_dir; ++d) {
    const bool reverse = direction == "reverse" || d == 1;
    const double* Wd = W.data() + d * G * H * I;
    const double* Rd = R.data() + d * G * H * H;
    const double* Wb = B.data() + d * 2 * G * H;
    const double* Rb = Wb + G * H;
    const double* Pd = P.data() + d * 3 * H;
    const Activation* act = acts.data() + static_cast<size_t>(d) * ActivationsPerDirection(cell);
    for (int64_t n = 0; n < N; ++n) {
      double* h = h_state.data() + (d * N + n) * H;
      double* c = cell == CellKind::kLstm ? c_state.data() + (d * N + n) * H : nullptr;
      const int64_t len = lens[static_cast<size_t>(n)];
      for (int64_t step = 0; step < len; ++step) {
        const int64_t t = reverse ? len - 1 - step : step;
        const double* x = x_at(t, n);
        for (int64_t g = 0; g < G * H; ++g) {
          double a = Wb[g], b = Rb[g];
          for (int64_t k = 0; k < I; ++k) a += x[k] * Wd[g * I + k];
          for (int64_t k = 0; k < H; ++k) b += h[k] * Rd[g * H + k];
          xw[static_cast<size_t>(g)] = a;
          hr[static_cast<size_t>(g)] = b;
        }
        switch (cell) {
          case CellKind::kRnn:
            for (int64_t j = 0; j < H; ++j) h_new[j] = act[0].Apply(clipped(xw[j] + hr[j]));
            break;
          case CellKind::kGru: {
            // Gate order z, r, h.
            std::vector<double> z(static_cast<size_t>(H)), r(static_cast<size_t>(H));
            for (int64_t j = 0; j < H; ++j) {
              z[j] = act[0].Apply(clipped(xw[j] + hr[j]));
              r[j] = act[0].Apply(clipped(xw[H + j] + hr[H + j]));
            }
            for (int64_t j = 0; j < H; ++j) {
              double rec;
              if (linear_before_reset) {
                rec = r[j] * hr[2 * H + j];
              } else {
                rec = Rb[2 * H + j];
                for (int64_t k = 0; k < H; ++k) rec += r[k] * h[k] * Rd[(2 * H + j) * H + k];
              }
              const double hh = act[1].Apply(clipped(xw[2 * H + j] + rec));
              h_new[j] = (1.0 - z[j]) * hh + z[j] * h[j];
            }
            break;
          }
          case CellKind::kLstm:
            // Gate order i, o, f, c; peepholes P in order i, o, f.
            for (int64_t j = 0; j < H; ++j) {
              const double i = act[0].Apply(clipped(xw[j] + hr[j] + Pd[j] * c[j]));
              const double f =
                  input_forget ? 1.0 - i
                               : act[0].Apply(clipped(xw[2 * H + j] + hr[2 * H + j] + Pd[2 * H + j] * c[j]));
              const double cc = act[1].Apply(clipped(xw[3 * H + j] + hr[3 * H + j]));
              c[j] = f * c[j] + i * cc;
              const double o = act[0].Apply(clipped(xw[H + j] + hr[H + j] + Pd[H + j] * c[j]));
              h_new[j] = o * act[2].Apply(c[j]);
            }
            break;
        }
        std::copy(h_new.begin(), h_new.end(), h);
        std::copy(h_new.begin(), h_new.end(), Y.begin() + ((t * num_dir + d) * N + n) * H);
      }
    }
  }

  if (ctx.output_requested(0)) {
    const std::vector<int64_t> y_sizes =
        batch_first ? std::vector<int64_t>{N, S, num_dir, H} : std::vector<int64_t>{S, num_dir, N, H};
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, xt.dtype(), y_sizes));
    if (batch_first) {
      std::vector<double> yb(Y.size());
      for (int64_t t = 0; t < S; ++t) {
        for (int64_t d = 0; d < num_dir; ++d) {
          for (int64_t n = 0; n < N; ++n) {
            std::copy_n(Y.begin() + ((t * num_dir + d) * N + n) * H, H,
                        yb.begin() + ((n * S + t) * num_dir + d) * H);
          }
        }
      }
      StoreDoubles(yb, *y);
    } else {
      StoreDoubles(Y, *y);
    }
  }
  auto write_state = [&](size_t index, const std::vector<double>& state) -> Status {
    if (!ctx.output_requested(index)) return Status::Ok();
    KILN_ASSIGN_OR_RETURN(Tensor * out, ctx.AllocateOutput(index, xt.dtype(), state_sizes));
    if (!batch_first) {
      StoreDoubles(state, *out);
      return Status::Ok();
    }
    std::vector<double> v(state.size());
    for (int64_t d = 0; d < num_dir; ++d) {
      for (int64_t n = 0; n < N; ++n) {
        std::copy_n(state.begin() + (d * N + n) * H, H, v.begin() + (n * num_dir + d) * H);
      }
    }
    StoreDoubles(v, *out);
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(write_state(1, h_state));
  if (cell == CellKind::kLstm) KILN_RETURN_IF_ERROR(write_state(2, c_state));
  return Status::Ok();
}

}  // namespace

void RegisterSequenceOps(OpRegistry& r) {
  for (CellKind cell : {CellKind::kRnn, CellKind::kGru, CellKind::kLstm}) {
    OpSchema s;
    s.op = cell == CellKind::kRnn ? OpKind::kRNN : cell == CellKind::kGru ? OpKind::kGRU : OpKind::kLSTM;
    s.min_inputs = 3;
    s.max_inputs = cell == CellKind::kLstm ? 8 : 6;
    s.min_outputs = 0;
    s.max_outputs = cell == CellKind::kLstm ? 3 : 2;
    s.min_opset = 7;
    s.attrs = {{"activation_alpha", AttrKind::kFloats},
               {"activation_beta", AttrKind::kFloats},
               {"activations", AttrKind::kStrings},
               {"clip", AttrKind::kFloat},
               {"direction", AttrKind::kString},
               {"hidden_size", AttrKind::kInt},
               {"layout", AttrKind::kInt}};
    if (cell == CellKind::kGru) s.attrs.push_back({"linear_before_reset", AttrKind::kInt});
    if (cell == CellKind::kLstm) s.attrs.push_back({"input_forget", AttrKind::kInt});
    s.validate = [cell](const Node& node) { return ValidateRecurrent(node, cell); };
    s.infer = [cell](InferContext& ctx) { return InferRecurrent(ctx, cell); };
    s.run = [cell](KernelContext& ctx) { return RunRecurrent(ctx, cell); };
    r.Register(std::move(s));
  }
}

}  // namespace kiln
