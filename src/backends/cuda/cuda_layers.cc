// Per-op lowering for the CUDA backend: which ops and attributes the GPU supports, each layer's candidate
// tactics, and the launches of a layer (cuDNN convolutions, cuBLASLt GEMMs, Kiln's own kernels).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>
#include <type_traits>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_layers_common.h"
#include "backends/cuda/cuda_program.h"
#include "ops/kernels/nn_common.h"

namespace kiln::cuda {

Expected<k::ActParams> FusedActivation(const Attributes& a) {
  const std::string act = a.GetString("activation", "");
  k::ActParams p;
  const float inf = std::numeric_limits<float>::infinity();
  const bool clip = act == "Clip", hsig = act == "HardSigmoid";
  p.alpha = a.GetFloat("activation_alpha", clip ? -inf : (hsig ? 0.2f : (act == "LeakyRelu" ? 0.01f : 1.f)));
  p.beta = a.GetFloat("activation_beta", clip ? inf : (hsig ? 0.5f : 0.f));
  if (act.empty()) p.act = k::Act::kNone;
  else if (act == "Relu") p.act = k::Act::kRelu;
  else if (act == "Tanh") p.act = k::Act::kTanh;
  else if (act == "Sigmoid") p.act = k::Act::kSigmoid;
  else if (act == "Gelu") p.act = k::Act::kGelu;
  else if (act == "GeluTanh") p.act = k::Act::kGeluTanh;
  else if (act == "HardSwish") p.act = k::Act::kHardSwish;
  else if (act == "LeakyRelu") p.act = k::Act::kLeakyRelu;
  else if (clip) p.act = k::Act::kClip;
  else if (hsig) p.act = k::Act::kHardSigmoid;
  else if (act == "Swish") p.act = k::Act::kSwish;
  else return Unsupported("fused activation '" + act + "'");
  return p;
}

Expected<k::ActParams> LayerActivation(const ProgramBuilder& b) {
  KILN_ASSIGN_OR_RETURN(k::ActParams act, FusedActivation(b.node().attrs()));
  const Value* y = b.node().output(0);
  if (act.act == k::Act::kClip && y && std::isfinite(b.DeferredClip(y))) act = k::ActParams{k::Act::kRelu, 0.f, 0.f};
  return act;
}

int TacticNumber(const std::string& tactic, const std::string& prefix) {
  if (tactic.rfind(prefix, 0) != 0) return -1;
  try {
    return std::stoi(tactic.substr(prefix.size()));
  } catch (...) {
    return -1;
  }
}

namespace {

bool IsF32(const Value* v) { return v && v->dtype() == DType::kFloat32; }

// ---- activations ----------------------------------------------------------------------------------------

float ConstScalar(const Value* v, float fallback) {
  if (!v || !v->is_constant() || v->constant()->numel() != 1) return fallback;
  return static_cast<float>(v->constant()->GetAsDouble(0));
}

// The unary op's function, or nullopt if `node` is not a unary op this backend knows.
std::optional<k::ActParams> UnaryAct(const Node& n) {
  const Attributes& a = n.attrs();
  const float inf = std::numeric_limits<float>::infinity();
  k::ActParams p;
  if (n.op() == OpKind::kRelu) { p.act = k::Act::kRelu; return p; }
  if (n.op() == OpKind::kSigmoid) { p.act = k::Act::kSigmoid; return p; }
  if (n.op() == OpKind::kTanh) { p.act = k::Act::kTanh; return p; }
  if (n.op() == OpKind::kHardSwish) { p.act = k::Act::kHardSwish; return p; }
  if (n.op() == OpKind::kErf) { p.act = k::Act::kErf; return p; }
  if (n.op() == OpKind::kExp) { p.act = k::Act::kExp; return p; }
  if (n.op() == OpKind::kLog) { p.act = k::Act::kLog; return p; }
  if (n.op() == OpKind::kSqrt) { p.act = k::Act::kSqrt; return p; }
  if (n.op() == OpKind::kNeg) { p.act = k::Act::kNeg; return p; }
  if (n.op() == OpKind::kAbs) { p.act = k::Act::kAbs; return p; }
  if (n.op() == OpKind::kReciprocal) { p.act = k::Act::kReciprocal; return p; }
  if (n.op() == OpKind::kLeakyRelu) { p.act = k::Act::kLeakyRelu; p.alpha = a.GetFloat("alpha", 0.01f); return p; }
  if (n.op() == OpKind::kHardSigmoid) {
      p.act = k::Act::kHardSigmoid;
      p.alpha = a.GetFloat("alpha", 0.2f);
      p.beta = a.GetFloat("beta", 0.5f);
      return p;
  }
  if (n.op() == OpKind::kSwish) { p.act = k::Act::kSwish; p.alpha = a.GetFloat("alpha", 1.f); return p; }
  if (n.op() == OpKind::kGelu) {
      p.act = a.GetString("approximate", "none") == "tanh" ? k::Act::kGeluTanh : k::Act::kGelu;
      return p;
  }
  if (n.op() == OpKind::kClip) {
      p.act = k::Act::kClip;
      if (n.opset() > 0 && n.opset() < 11) {
        p.alpha = a.GetFloat("min", -inf);
        p.beta = a.GetFloat("max", inf);
      } else {
        p.alpha = ConstScalar(n.input(1), -inf);
        p.beta = ConstScalar(n.input(2), inf);
      }
      return p;
  }
  return std::nullopt;
}

std::optional<k::Bin> BinaryOp(OpKind op) {
  if (op == OpKind::kAdd || op == OpKind::kSum) return k::Bin::kAdd;
  if (op == OpKind::kSub) return k::Bin::kSub;
  if (op == OpKind::kMul) return k::Bin::kMul;
  if (op == OpKind::kDiv) return k::Bin::kDiv;
  if (op == OpKind::kPow) return k::Bin::kPow;
  if (op == OpKind::kMax) return k::Bin::kMax;
  if (op == OpKind::kMin) return k::Bin::kMin;
  return std::nullopt;
}

bool IsView(OpKind op) {
  return op == OpKind::kReshape || op == OpKind::kFlatten || op == OpKind::kSqueeze || op == OpKind::kUnsqueeze ||
         op == OpKind::kIdentity || op == OpKind::kDropout;
}
bool IsGemm(OpKind op) { return op == OpKind::kGemm || op == OpKind::kMatMul || op == OpKind::kFusedGemm; }
bool IsConv(OpKind op) { return op == OpKind::kConv || op == OpKind::kFusedConv; }
// ---- convolution (cuDNN) ----------------------------------------------------------------------------------

struct ConvSetup {
  Handle<cudnnTensorDescriptor_t> x, y, bias;
  Handle<cudnnFilterDescriptor_t> w;
  Handle<cudnnConvolutionDescriptor_t> conv;
  int64_t n = 0, c = 0, k = 0, oh = 0, ow = 0;
  Repr repr;
};

Expected<Handle<cudnnTensorDescriptor_t>> TensorDesc(bool half, bool nhwc, int64_t n, int64_t c, int64_t h, int64_t w) {
  cudnnTensorDescriptor_t d = nullptr;
  KILN_CUDNN(cudnnCreateTensorDescriptor(&d));
  Handle<cudnnTensorDescriptor_t> h_(d, cudnnDestroyTensorDescriptor);
  KILN_CUDNN(cudnnSetTensor4dDescriptor(d, nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                        half ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT, static_cast<int>(n),
                                        static_cast<int>(c), static_cast<int>(h), static_cast<int>(w)));
  return h_;
}

Expected<ConvSetup> MakeConvSetup(const Node& node, bool half, bool tf32) {
  const std::vector<int64_t> xs = SizesOf(node.input(0)), ws = SizesOf(node.input(1)), ys = SizesOf(node.output(0));
  if (xs.size() != 4 || ws.size() != 4 || ys.size() != 4) return Unsupported("only 2-D convolutions");
  std::vector<int64_t> kernel = node.attrs().GetInts("kernel_shape", {ws[2], ws[3]});
  KILN_ASSIGN_OR_RETURN(WindowParams wp, ReadWindowParams(node.attrs(), kernel));
  KILN_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindowGeometry(wp, {xs[2], xs[3]}));
  if (g.pad_begin != g.pad_end) return Unsupported("convolution with asymmetric pads");
  ConvSetup s;
  s.repr = {half, half};
  s.n = xs[0], s.c = xs[1], s.k = ws[0], s.oh = ys[2], s.ow = ys[3];
  const int groups = static_cast<int>(node.attrs().GetInt("group", 1));
  KILN_ASSIGN_OR_RETURN(s.x, TensorDesc(half, half, xs[0], xs[1], xs[2], xs[3]));
  KILN_ASSIGN_OR_RETURN(s.y, TensorDesc(half, half, ys[0], ys[1], ys[2], ys[3]));
  KILN_ASSIGN_OR_RETURN(s.bias, TensorDesc(half, false, 1, ys[1], 1, 1));
  cudnnFilterDescriptor_t w = nullptr;
  KILN_CUDNN(cudnnCreateFilterDescriptor(&w));
  s.w = Handle<cudnnFilterDescriptor_t>(w, cudnnDestroyFilterDescriptor);
  KILN_CUDNN(cudnnSetFilter4dDescriptor(w, half ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT,
                                        half ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, static_cast<int>(ws[0]),
                                        static_cast<int>(ws[1]), static_cast<int>(ws[2]), static_cast<int>(ws[3])));
  cudnnConvolutionDescriptor_t cd = nullptr;
  KILN_CUDNN(cudnnCreateConvolutionDescriptor(&cd));
  s.conv = Handle<cudnnConvolutionDescriptor_t>(cd, cudnnDestroyConvolutionDescriptor);
  KILN_CUDNN(cudnnSetConvolution2dDescriptor(cd, static_cast<int>(g.pad_begin[0]), static_cast<int>(g.pad_begin[1]),
                                             static_cast<int>(g.strides[0]), static_cast<int>(g.strides[1]),
                                             static_cast<int>(g.dilations[0]), static_cast<int>(g.dilations[1]),
                                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  KILN_CUDNN(cudnnSetConvolutionGroupCount(cd, groups));
  KILN_CUDNN(cudnnSetConvolutionMathType(cd, half ? CUDNN_TENSOR_OP_MATH : (tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH)));
  return s;
}

// The most workspace one convolution algorithm may use: an eighth of the GPU's memory, at most 4 GiB
// (FFT and Winograd algorithms of large-batch VGG-style layers want GBs, and the workspace is one
// buffer shared by every layer of a context), or KILN_CUDA_WORKSPACE_MB.
size_t ConvWorkspaceLimit() {
  if (const char* e = std::getenv("KILN_CUDA_WORKSPACE_MB")) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(e, &end, 10);
    if (end != e && *end == '\0' && mb <= (size_t{1} << 20)) return static_cast<size_t>(mb) << 20;
  }
  size_t free = 0, total = 0;  // of the current device
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return size_t{512} << 20;
  return std::min<size_t>(total / 8, size_t{4} << 30);
}

Expected<std::vector<cudnnConvolutionFwdAlgo_t>> ConvAlgos(Resources& res, const ConvSetup& s) {
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int count = 0;
  KILN_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(res.cudnn(), s.x.get(), s.w.get(), s.conv.get(), s.y.get(),
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
  const size_t limit = ConvWorkspaceLimit();
  std::vector<cudnnConvolutionFwdAlgo_t> algos;
  for (int i = 0; i < count; ++i) {
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= limit) algos.push_back(perf[i].algo);
  }
  return algos;
}

// kiln.dwconv or its one-pixel-a-thread form kiln.dwconv.t1.
bool IsKilnDwConv(const std::string& tactic) { return tactic == "kiln.dwconv" || tactic == "kiln.dwconv.t1"; }

// groups == input channels == output channels: one 2-D filter per channel.
bool IsDepthwise(const Node& node) {
  const Value* x = node.input(0);
  const Value* w = node.input(1);
  if (!x || !w || !x->shape() || !w->shape() || x->shape()->rank() != 4 || w->shape()->rank() != 4) return false;
  const auto xs = x->shape()->sizes(), ws = w->shape()->sizes();
  if (!xs || !ws) return false;
  const int64_t group = node.attrs().GetInt("group", 1);
  return group > 1 && (*xs)[1] == group && (*ws)[0] == group && (*ws)[1] == 1;
}

bool CanFuseBiasAct(const Node& node, const k::ActParams& act) {
  return node.input(2) != nullptr && (act.act == k::Act::kRelu || act.act == k::Act::kNone);
}

Status LowerConv(ProgramBuilder& b) {
  const Node& node = b.node();
  KILN_ASSIGN_OR_RETURN(ConvSetup s, MakeConvSetup(node, b.half(), b.tf32()));
  k::ActParams act;
  if (node.op() == OpKind::kFusedConv) {
    KILN_ASSIGN_OR_RETURN(act, LayerActivation(b));
  }
  const Repr bias_repr{b.half(), false};
  KILN_ASSIGN_OR_RETURN(int x, b.Input(0, s.repr));
  KILN_ASSIGN_OR_RETURN(int w, b.Input(1, s.repr));
  int bias = -1, z = -1;
  if (node.input(2)) {
    KILN_ASSIGN_OR_RETURN(bias, b.Input(2, bias_repr));
  }
  if (node.op() == OpKind::kFusedConv && node.input(3)) {
    if (SizesOf(node.input(3)) != SizesOf(node.output(0))) return Unsupported("residual Z broadcast to Y");
    KILN_ASSIGN_OR_RETURN(z, b.Input(3, s.repr));
  }
  const int y = b.Output(0, s.repr);

  if (b.tactic().rfind("cublaslt.conv1x1", 0) == 0) {
    if (!s.repr.nhwc || !IsPointwise(node)) return Unsupported("cublaslt.conv1x1 needs a pointwise NHWC convolution");
    return LowerConvPointwise(b, x, w, bias, z, y, s.n * s.oh * s.ow, s.k, s.c, act);
  }
  if (b.tactic() == "kiln.pointwise") {
    if (!s.repr.half || !s.repr.nhwc || !IsPointwise(node) || !k::PointwiseHalfSupports(s.c, s.k)) {
      return Unsupported("kiln.pointwise needs an FP16 NHWC 1x1 convolution of at most 64 input channels");
    }
    const int64_t m = s.n * s.oh * s.ow, n = s.k, kk = s.c;
    b.Add([=](const Program& p, cudaStream_t st) {
      return CudaStatus(k::PointwiseHalf(p.ptr(x), p.ptr(w), bias >= 0 ? p.ptr(bias) : nullptr,
                                         z >= 0 ? p.ptr(z) : nullptr, p.ptr(y), m, n, kk, act, st),
                        "pointwise convolution");
    });
    return Status::Ok();
  }
  // The window geometry of Kiln's own convolution kernels (the input clamped where a Clip was deferred).
  auto geometry = [&]() -> Expected<k::DwGeometry> {
    const std::vector<int64_t> xs = SizesOf(node.input(0)), ws = SizesOf(node.input(1));
    KILN_ASSIGN_OR_RETURN(WindowParams wp, ReadWindowParams(node.attrs(), {ws[2], ws[3]}));
    KILN_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindowGeometry(wp, {xs[2], xs[3]}));
    k::DwGeometry dg{};
    dg.n = xs[0], dg.c = xs[1], dg.h = xs[2], dg.w = xs[3], dg.oh = s.oh, dg.ow = s.ow;
    dg.kh = static_cast<int>(ws[2]), dg.kw = static_cast<int>(ws[3]);
    dg.sh = static_cast<int>(g.strides[0]), dg.sw = static_cast<int>(g.strides[1]);
    dg.ph = static_cast<int>(g.pad_begin[0]), dg.pw = static_cast<int>(g.pad_begin[1]);
    dg.dh = static_cast<int>(g.dilations[0]), dg.dw = static_cast<int>(g.dilations[1]);
    dg.in_max = b.DeferredClip(node.input(0));
    return dg;
  };
  if (b.tactic() == "kiln.stemconv") {
    const std::vector<int64_t> ws = SizesOf(node.input(1));
    if (!s.repr.half || !s.repr.nhwc || node.attrs().GetInt("group", 1) != 1 ||
        !k::SmallCinConvHalfSupports(ws[1], ws[0], ws[2], ws[3])) {
      return Unsupported("kiln.stemconv needs an FP16 NHWC convolution of at most 4 input channels");
    }
    KILN_ASSIGN_OR_RETURN(k::DwGeometry dg, geometry());
    if (dg.dh != 1 || dg.dw != 1) return Unsupported("kiln.stemconv needs dilation 1");
    const int64_t out_channels = ws[0];
    b.Add([=](const Program& p, cudaStream_t st) {
      return CudaStatus(k::SmallCinConvHalf(p.ptr(x), p.ptr(w), bias >= 0 ? p.ptr(bias) : nullptr,
                                            z >= 0 ? p.ptr(z) : nullptr, p.ptr(y), dg, out_channels, act, st),
                        "stem convolution");
    });
    return Status::Ok();
  }
  if (IsKilnDwConv(b.tactic())) {
    if (!IsDepthwise(node)) return Unsupported("kiln.dwconv needs a depthwise convolution");
    KILN_ASSIGN_OR_RETURN(k::DwGeometry dg, geometry());
    dg.tile = b.tactic() == "kiln.dwconv.t1" ? 1 : 4;
    const Repr r = s.repr;
    const void* w_taps = nullptr;  // FP16: the filter tap-major as well, for the vectorized kernel
    if (r.half && node.input(1)->is_constant()) {
      auto tap_major = [](const Tensor& f) {  // [C, 1, KH, KW] -> [KH * KW, C]
        return TransposedMatrix(f, f.size(0), f.numel() / f.size(0));
      };
      KILN_ASSIGN_OR_RETURN(w_taps, b.weights().GetDerived(node.input(1)->constant(), true, "taps", tap_major));
    }
    b.Add([=](const Program& p, cudaStream_t st) {
      return CudaStatus(k::DwConv(p.ptr(x), p.ptr(w), w_taps, bias >= 0 ? p.ptr(bias) : nullptr,
                                  z >= 0 ? p.ptr(z) : nullptr, p.ptr(y), r.half, r.nhwc, dg, act, st),
                        "depthwise convolution");
    });
    return Status::Ok();
  }

  int algo_id = TacticNumber(b.tactic(), "cudnn.conv_bias_act.a");
  bool fused = algo_id >= 0;
  if (!fused) algo_id = TacticNumber(b.tactic(), "cudnn.conv.a");
  if (fused && (!CanFuseBiasAct(node, act) || (act.act == k::Act::kNone && algo_id != 1))) fused = false;
  size_t ws = 0;
  auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(algo_id);
  if (algo_id < 0 || cudnnGetConvolutionForwardWorkspaceSize(b.res().cudnn(), s.x.get(), s.w.get(), s.conv.get(),
                                                             s.y.get(), algo, &ws) != CUDNN_STATUS_SUCCESS) {
    // The recorded algorithm does not apply to these sizes: take cuDNN's first choice.
    KILN_ASSIGN_OR_RETURN(std::vector<cudnnConvolutionFwdAlgo_t> algos, ConvAlgos(b.res(), s));
    if (algos.empty()) return Unsupported("cuDNN has no algorithm for this convolution");
    algo = algos.front();
    if (fused && act.act == k::Act::kNone) fused = false;
    KILN_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(b.res().cudnn(), s.x.get(), s.w.get(), s.conv.get(), s.y.get(),
                                                       algo, &ws));
  }
  b.RequestWorkspace(ws);
  cudnnHandle_t handle = b.res().cudnn();
  if (fused) {
    cudnnActivationDescriptor_t ad = nullptr;
    KILN_CUDNN(cudnnCreateActivationDescriptor(&ad));
    Handle<cudnnActivationDescriptor_t> act_desc(ad, cudnnDestroyActivationDescriptor);
    KILN_CUDNN(cudnnSetActivationDescriptor(ad, act.act == k::Act::kRelu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                                            CUDNN_NOT_PROPAGATE_NAN, 0.0));
    b.Add([=](const Program& p, cudaStream_t) {
      const float one = 1.f, alpha2 = z >= 0 ? 1.f : 0.f;
      void* yp = p.ptr(y);
      return CudnnStatus(cudnnConvolutionBiasActivationForward(
                             handle, &one, s.x.get(), p.ptr(x), s.w.get(), p.ptr(w), s.conv.get(), algo, p.workspace(),
                             ws, &alpha2, s.y.get(), z >= 0 ? p.ptr(z) : yp, s.bias.get(), p.ptr(bias),
                             act_desc.get(), s.y.get(), yp),
                         "cudnnConvolutionBiasActivationForward");
    });
    return Status::Ok();
  }
  const bool epilogue = bias >= 0 || z >= 0 || act.act != k::Act::kNone;
  const bool half = b.half();
  const int64_t numel = b.tensor(y).numel(), channels = s.k, inner = half ? 1 : s.oh * s.ow;
  b.Add([=](const Program& p, cudaStream_t st) {
    const float one = 1.f, zero = 0.f;
    void* yp = p.ptr(y);
    KILN_CUDNN(cudnnConvolutionForward(handle, &one, s.x.get(), p.ptr(x), s.w.get(), p.ptr(w), s.conv.get(), algo,
                                       p.workspace(), ws, &zero, s.y.get(), yp));
    if (!epilogue) return Status::Ok();
    return CudaStatus(k::Epilogue(yp, yp, half, numel, bias >= 0 ? p.ptr(bias) : nullptr, channels, inner,
                                  z >= 0 ? p.ptr(z) : nullptr, act, st),
                      "conv epilogue");
  });
  return Status::Ok();
}
// ---- everything else -----------------------------------------------------------------------------------

Status LowerPool(ProgramBuilder& b) {
  const Node& node = b.node();
  KILN_ASSIGN_OR_RETURN(int x, b.FloatInput(0, true));
  const Repr r = b.tensor(x).repr;
  const std::vector<int64_t> xs = SizesOf(node.input(0)), ys = SizesOf(node.output(0));
  if (xs.size() != 4) return Unsupported("only 2-D pooling");
  if (node.op() == OpKind::kGlobalAveragePool) {
    const int y = b.Output(0, Repr{r.half, false});  // [N, C, 1, 1] is the same memory in both layouts
    b.Add([=](const Program& p, cudaStream_t st) {
      return CudaStatus(k::GlobalAvgPool(p.ptr(x), p.ptr(y), r.half, r.nhwc, xs[0], xs[1], xs[2] * xs[3], st),
                        "GlobalAveragePool");
    });
    return Status::Ok();
  }
  KILN_ASSIGN_OR_RETURN(WindowParams wp, ReadWindowParams(node.attrs(), node.attrs().GetInts("kernel_shape")));
  KILN_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindowGeometry(wp, {xs[2], xs[3]}));
  k::PoolGeometry pg{};
  pg.n = xs[0], pg.c = xs[1], pg.h = xs[2], pg.w = xs[3], pg.oh = ys[2], pg.ow = ys[3];
  pg.kh = static_cast<int>(g.kernel[0]), pg.kw = static_cast<int>(g.kernel[1]);
  pg.sh = static_cast<int>(g.strides[0]), pg.sw = static_cast<int>(g.strides[1]);
  pg.ph = static_cast<int>(g.pad_begin[0]), pg.pw = static_cast<int>(g.pad_begin[1]);
  pg.dh = static_cast<int>(g.dilations[0]), pg.dw = static_cast<int>(g.dilations[1]);
  pg.max = node.op() == OpKind::kMaxPool;
  pg.count_include_pad = node.attrs().GetInt("count_include_pad", 0) != 0;
  const int y = b.Output(0, r);
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::Pool2d(p.ptr(x), p.ptr(y), r.half, r.nhwc, pg, st), "pooling");
  });
  return Status::Ok();
}

Status LowerUnary(ProgramBuilder& b, k::ActParams act) {
  KILN_ASSIGN_OR_RETURN(int x, b.FloatInput(0, true));
  const Repr r = b.tensor(x).repr;
  const int y = b.Output(0, r);
  const int64_t n = b.tensor(y).numel();
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::Unary(p.ptr(x), p.ptr(y), r.half, n, act, st), "unary");
  });
  return Status::Ok();
}

Status LowerBinary(ProgramBuilder& b, k::Bin op) {
  const Node& node = b.node();
  const std::vector<int64_t> as = SizesOf(node.input(0)), bs = SizesOf(node.input(1)), ys = SizesOf(node.output(0));
  const bool same = as == ys && bs == ys;
  int a = -1, bb = -1;
  if (same) {
    KILN_ASSIGN_OR_RETURN(a, b.FloatInput(0, true));
    KILN_ASSIGN_OR_RETURN(bb, b.Input(1, b.tensor(a).repr));
  } else {
    KILN_ASSIGN_OR_RETURN(a, b.Input(0, Repr{b.half(), false}));
    KILN_ASSIGN_OR_RETURN(bb, b.Input(1, Repr{b.half(), false}));
  }
  const Repr r = b.tensor(a).repr;
  if (ys.size() > static_cast<size_t>(k::kMaxRank)) return Unsupported("rank above 6");
  k::Broadcast bc;
  bc.rank = static_cast<int>(ys.size());
  int64_t sa = 1, sb = 1;
  for (int d = bc.rank - 1; d >= 0; --d) {
    const int da = d - (bc.rank - static_cast<int>(as.size())), db = d - (bc.rank - static_cast<int>(bs.size()));
    const int64_t la = da >= 0 ? as[static_cast<size_t>(da)] : 1, lb = db >= 0 ? bs[static_cast<size_t>(db)] : 1;
    bc.sizes[d] = ys[static_cast<size_t>(d)];
    bc.a[d] = la == 1 ? 0 : sa;
    bc.b[d] = lb == 1 ? 0 : sb;
    sa *= la;
    sb *= lb;
  }
  const int y = b.Output(0, r);
  const int64_t n = b.tensor(y).numel();
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::Binary(p.ptr(a), p.ptr(bb), p.ptr(y), r.half, op, bc, n, same, k::ActParams{}, st), "binary");
  });
  return Status::Ok();
}

Status LowerView(ProgramBuilder& b) {
  KILN_ASSIGN_OR_RETURN(int x, b.InputAsIs(0));
  Repr r = b.tensor(x).repr;
  const OpKind op = b.node().op();
  if (r.nhwc && op != OpKind::kIdentity && op != OpKind::kDropout) {
    r.nhwc = false;
    KILN_ASSIGN_OR_RETURN(x, b.Input(0, r));
  }
  b.OutputView(0, x);
  b.Add([](const Program&, cudaStream_t) { return Status::Ok(); });
  return Status::Ok();
}

Status LowerConcat(ProgramBuilder& b) {
  const Node& node = b.node();
  const std::vector<int64_t> ys = SizesOf(node.output(0));
  int64_t axis = node.attrs().GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(ys.size());
  const int64_t outer = Prod(ys, 0, static_cast<size_t>(axis));
  std::vector<int> ins;
  std::vector<size_t> widths;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    if (!node.input(i)) continue;
    KILN_ASSIGN_OR_RETURN(int t, b.Input(i, Repr{b.half(), false}));
    ins.push_back(t);
    widths.push_back(outer == 0 ? 0 : b.tensor(t).bytes() / static_cast<size_t>(outer));
  }
  const int y = b.Output(0, Repr{b.half(), false});
  const size_t pitch = outer == 0 ? 0 : b.tensor(y).bytes() / static_cast<size_t>(outer);
  b.Add([=](const Program& p, cudaStream_t st) {
    char* dst = static_cast<char*>(p.ptr(y));
    for (size_t i = 0; i < ins.size(); ++i) {
      if (widths[i] && outer) {
        KILN_CUDA(cudaMemcpy2DAsync(dst, pitch, p.ptr(ins[i]), widths[i], widths[i], static_cast<size_t>(outer),
                                    cudaMemcpyDeviceToDevice, st));
      }
      dst += widths[i];
    }
    return Status::Ok();
  });
  return Status::Ok();
}

Status LowerTranspose(ProgramBuilder& b) {
  const Node& node = b.node();
  KILN_ASSIGN_OR_RETURN(int x, b.Input(0, Repr{b.half(), false}));
  const std::vector<int64_t> xs = SizesOf(node.input(0));
  if (xs.size() > static_cast<size_t>(k::kMaxRank)) return Unsupported("rank above 6");
  std::vector<int64_t> perm = node.attrs().GetInts("perm");
  if (perm.empty()) {
    for (size_t i = xs.size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  }
  int64_t sizes[k::kMaxRank] = {};
  int pm[k::kMaxRank] = {};
  for (size_t i = 0; i < xs.size(); ++i) {
    sizes[i] = xs[i];
    pm[i] = static_cast<int>(perm[i] < 0 ? perm[i] + static_cast<int64_t>(xs.size()) : perm[i]);
  }
  const int rank = static_cast<int>(xs.size());
  const int y = b.Output(0, b.tensor(x).repr);
  const int es = b.tensor(x).numel() ? static_cast<int>(b.tensor(x).bytes() / static_cast<size_t>(b.tensor(x).numel())) : 4;
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::Transpose(p.ptr(x), p.ptr(y), es, rank, sizes, pm, st), "transpose");
  });
  return Status::Ok();
}

Status LowerSoftmax(ProgramBuilder& b) {
  const Node& node = b.node();
  const std::vector<int64_t> xs = SizesOf(node.input(0));
  const int64_t rank = static_cast<int64_t>(xs.size());
  int64_t axis = node.attrs().GetInt("axis", node.opset() > 0 && node.opset() < 13 ? 1 : -1);
  if (axis < 0) axis += rank;
  int64_t cols = 0;
  if (node.opset() > 0 && node.opset() < 13) {
    cols = Prod(xs, static_cast<size_t>(axis), xs.size());
  } else {
    if (axis != rank - 1) return Unsupported("Softmax over a non-last axis");
    cols = rank ? xs.back() : 1;
  }
  KILN_ASSIGN_OR_RETURN(int x, b.Input(0, Repr{b.half(), false}));
  const int y = b.Output(0, Repr{b.half(), false});
  const int64_t rows = cols ? b.tensor(x).numel() / cols : 0;
  const bool half = b.half(), log = node.op() == OpKind::kLogSoftmax;
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::Softmax(p.ptr(x), p.ptr(y), half, rows, cols, log, st), "softmax");
  });
  return Status::Ok();
}

Status LowerLayerNorm(ProgramBuilder& b) {
  const Node& node = b.node();
  if (!LayerNormFolds(node, b.half()).empty()) return LowerFusedLayerNorm(b);
  const std::vector<int64_t> xs = SizesOf(node.input(0));
  int64_t axis = node.attrs().GetInt("axis", -1);
  if (axis < 0) axis += static_cast<int64_t>(xs.size());
  const int64_t cols = Prod(xs, static_cast<size_t>(axis), xs.size());
  const Repr r{b.half(), false};
  KILN_ASSIGN_OR_RETURN(int x, b.Input(0, r));
  KILN_ASSIGN_OR_RETURN(int scale, b.Input(1, r));
  if (b.tensor(scale).numel() != cols) return Unsupported("LayerNormalization scale broadcast");
  int bias = -1;
  if (node.input(2)) {
    KILN_ASSIGN_OR_RETURN(bias, b.Input(2, r));
  }
  const int y = b.Output(0, r);
  const int64_t rows = cols ? b.tensor(x).numel() / cols : 0;
  const float eps = node.attrs().GetFloat("epsilon", 1e-5f);
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::LayerNorm(p.ptr(x), p.ptr(scale), bias >= 0 ? p.ptr(bias) : nullptr, p.ptr(y), r.half, rows,
                                   cols, eps, st),
                      "layer norm");
  });
  return Status::Ok();
}

Status LowerGather(ProgramBuilder& b) {
  const Node& node = b.node();
  const std::vector<int64_t> ds = SizesOf(node.input(0));
  int64_t axis = node.attrs().GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(ds.size());
  KILN_ASSIGN_OR_RETURN(int data, b.Input(0, Repr{b.half(), false}));
  KILN_ASSIGN_OR_RETURN(int idx, b.InputAsIs(1));
  const bool idx64 = b.tensor(idx).dtype == DType::kInt64;
  if (!idx64 && b.tensor(idx).dtype != DType::kInt32) return Unsupported("Gather indices must be int32 or int64");
  const Repr r = b.tensor(data).repr;
  const int y = b.Output(0, r);
  const int64_t outer = Prod(ds, 0, static_cast<size_t>(axis)), len = ds[static_cast<size_t>(axis)];
  const int64_t inner = Prod(ds, static_cast<size_t>(axis) + 1, ds.size()), nidx = b.tensor(idx).numel();
  const int esize = r.half ? 2 : 4;
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::Gather(p.ptr(data), p.ptr(idx), idx64, p.ptr(y), esize, outer, len, inner, nidx, st), "gather");
  });
  return Status::Ok();
}

Status LowerCast(ProgramBuilder& b) {
  KILN_ASSIGN_OR_RETURN(int x, b.InputAsIs(0));
  const DType src = b.tensor(x).dtype;
  int kind = 0;
  if (src == DType::kFloat32) {
    KILN_ASSIGN_OR_RETURN(x, b.Input(0, Repr{false, false}));
  } else if (src == DType::kInt64) {
    kind = 1;
  } else if (src == DType::kInt32) {
    kind = 2;
  } else if (src == DType::kBool) {
    kind = 3;
  } else {
    return Unsupported("Cast from " + std::string(DTypeName(src)));
  }
  const bool half = b.half();
  const int y = b.Output(0, Repr{half, false});
  const int64_t n = b.tensor(y).numel();
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::CastToFloat(p.ptr(x), kind, p.ptr(y), half, n, st), "cast");
  });
  return Status::Ok();
}

Status LowerSplit(ProgramBuilder& b) {
  const Node& node = b.node();
  const std::vector<int64_t> xs = SizesOf(node.input(0));
  int64_t axis = node.attrs().GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(xs.size());
  KILN_ASSIGN_OR_RETURN(int x, b.Input(0, Repr{b.half(), false}));
  const int64_t outer = Prod(xs, 0, static_cast<size_t>(axis));
  const size_t pitch = outer == 0 ? 0 : b.tensor(x).bytes() / static_cast<size_t>(outer);
  std::vector<int> outs;
  std::vector<size_t> widths;
  for (size_t j = 0; j < node.num_outputs(); ++j) {
    if (!node.output(j)) return Unsupported("Split with an omitted output");
    const int y = b.Output(j, b.tensor(x).repr);
    outs.push_back(y);
    widths.push_back(outer == 0 ? 0 : b.tensor(y).bytes() / static_cast<size_t>(outer));
  }
  b.Add([=](const Program& p, cudaStream_t st) {
    const char* src = static_cast<const char*>(p.ptr(x));
    for (size_t j = 0; j < outs.size(); ++j) {
      if (widths[j] && outer) {
        KILN_CUDA(cudaMemcpy2DAsync(p.ptr(outs[j]), widths[j], src, pitch, widths[j], static_cast<size_t>(outer),
                                    cudaMemcpyDeviceToDevice, st));
      }
      src += widths[j];
    }
    return Status::Ok();
  });
  return Status::Ok();
}

}  // namespace

std::string WhyUnsupportedOp(const Node& node) {
  const OpKind op = node.op();
  const Value* x = node.input(0);
  if (op != OpKind::kSplit && !HostEvaluable(node)) {
    for (size_t j = 1; j < node.num_outputs(); ++j) {
      if (node.output(j)) return std::string(node.op_name()) + " with optional output " + std::to_string(j);
    }
  }
  if (HostEvaluable(node)) return "";  // shape arithmetic, done once on the host when the program is built
  if (IsView(op)) return "";
  if (!x) return "";
  if (op == OpKind::kCast) {
    const DType to = static_cast<DType>(node.attrs().GetInt("to", 0));
    const DType from = x->dtype();
    if (to != DType::kFloat32) return "Cast to " + std::string(DTypeName(to));
    if (from != DType::kFloat32 && from != DType::kInt64 && from != DType::kInt32 && from != DType::kBool) {
      return "Cast from " + std::string(DTypeName(from));
    }
    return "";
  }
  if (op == OpKind::kGather) {
    const Value* idx = node.input(1);
    if (!IsF32(x)) return "Gather of " + std::string(DTypeName(x->dtype())) + " data computed on the GPU";
    if (!idx || (idx->dtype() != DType::kInt64 && idx->dtype() != DType::kInt32)) return "Gather with non-integer indices";
    return "";
  }
  if (!IsF32(x)) return std::string(node.op_name()) + " on " + std::string(DTypeName(x->dtype())) + " tensors";
  if (op == OpKind::kSplit) {
    for (const Value* o : node.outputs()) {
      if (!o) return "Split with an omitted output";
    }
    return "";
  }
  if (op == OpKind::kAttention) {
    for (size_t i = 0; i < 4; ++i) {
      const Value* v = node.input(i);
      if (i < 3 && !v) return "Attention without Q, K or V";
      if (v && v->shape() && v->shape()->rank() > 6) return "Attention of rank above 6";
    }
    return "";
  }
  auto rank_above = [](const Value* v, size_t r) { return v && v->shape() && v->shape()->rank() > r; };
  if (IsConv(op)) {
    const Value* w = node.input(1);
    if (!w || !w->is_constant()) return "Conv with a non-constant weight";
    if (w->constant()->rank() != 4) return "Conv that is not 2-D";
    if (node.input(2) && !node.input(2)->is_constant()) return "Conv with a non-constant bias";
    const std::string pad = node.attrs().GetString("auto_pad", "NOTSET");
    if (pad != "NOTSET" && pad != "VALID" && !pad.empty()) return "Conv with auto_pad " + pad;
    const std::vector<int64_t> pads = node.attrs().GetInts("pads", {0, 0, 0, 0});
    if (pads.size() == 4 && (pads[0] != pads[2] || pads[1] != pads[3])) return "Conv with asymmetric pads";
    if (op == OpKind::kFusedConv) {
      auto act = FusedActivation(node.attrs());
      if (!act.ok()) return act.status().message();
      const Value* z = node.input(3);
      const Value* y = node.output(0);
      if (z && z->shape() && y->shape() && *z->shape() != *y->shape()) return "FusedConv with a broadcast residual";
    }
    return "";
  }
  if (op == OpKind::kMaxPool || op == OpKind::kAveragePool) {
    if (node.attrs().GetInts("kernel_shape").size() != 2) return std::string(node.op_name()) + " that is not 2-D";
    const std::string pad = node.attrs().GetString("auto_pad", "NOTSET");
    if (pad != "NOTSET" && pad != "VALID" && !pad.empty()) return std::string(node.op_name()) + " with auto_pad " + pad;
    return "";
  }
  if (op == OpKind::kGlobalAveragePool) {
    if (x->shape() && x->shape()->rank() != 4) return "GlobalAveragePool that is not 2-D";
    return "";
  }
  if (IsGemm(op)) {
    for (size_t i = 0; i < 2; ++i) {
      if (node.input(i) && node.input(i)->shape() && node.input(i)->shape()->rank() < 2) {
        return std::string(node.op_name()) + " of a vector";
      }
    }
    if (op == OpKind::kFusedGemm) {
      auto act = FusedActivation(node.attrs());
      if (!act.ok()) return act.status().message();
    }
    return "";
  }
  if (UnaryAct(node)) {
    if (op == OpKind::kClip && !(node.opset() > 0 && node.opset() < 11)) {
      for (size_t i = 1; i < 3; ++i) {
        if (node.input(i) && !node.input(i)->is_constant()) return "Clip with non-constant bounds";
      }
    }
    return "";
  }
  if (BinaryOp(op)) {
    if (node.num_inputs() != 2) return std::string(node.op_name()) + " of " + std::to_string(node.num_inputs()) + " inputs";
    if (!IsF32(node.input(1))) return std::string(node.op_name()) + " with a non-float operand";
    if (rank_above(node.output(0), 6)) return std::string(node.op_name()) + " of rank above 6";
    return "";
  }
  if (op == OpKind::kConcat) {
    for (const Value* v : node.inputs()) {
      if (v && !IsF32(v)) return "Concat of non-float tensors";
    }
    return "";
  }
  if (op == OpKind::kTranspose) return rank_above(x, 6) ? "Transpose of rank above 6" : "";
  if (op == OpKind::kSoftmax || op == OpKind::kLogSoftmax) {
    if (node.opset() > 0 && node.opset() < 13) return "";
    const int64_t axis = node.attrs().GetInt("axis", -1);
    if (axis == -1) return "";
    if (x->shape() && axis == static_cast<int64_t>(x->shape()->rank()) - 1) return "";
    return std::string(node.op_name()) + " over a non-last axis";
  }
  if (op == OpKind::kLayerNormalization) {
    if (!node.input(1) || !node.input(1)->is_constant()) return "LayerNormalization with a non-constant scale";
    return "";
  }
  return "op " + std::string(node.op_name());
}

std::string LayerPrecision(const Node& node, bool fp16, bool tf32) {
  if (fp16) return "fp16";
  if (tf32 && (IsConv(node.op()) || IsGemm(node.op()))) return "tf32";
  return "fp32";
}

std::vector<std::string> CandidateTactics(const Node& node, Resources& res, bool half, bool tf32) {
  const OpKind op = node.op();
  if (IsConv(op)) {
    std::vector<std::string> out;
    auto setup = MakeConvSetup(node, half, tf32);
    if (!setup.ok()) return {"cudnn.conv"};
    auto algos = ConvAlgos(res, *setup);
    if (!algos.ok() || algos->empty()) return {"cudnn.conv"};
    k::ActParams act;
    if (op == OpKind::kFusedConv) {
      auto a = FusedActivation(node.attrs());
      if (a.ok()) act = *a;
    }
    const size_t limit = std::min<size_t>(algos->size(), 8);
    for (size_t i = 0; i < limit; ++i) {
      const int id = static_cast<int>((*algos)[i]);
      if (CanFuseBiasAct(node, act) && (act.act == k::Act::kRelu || id == 1)) {
        out.push_back("cudnn.conv_bias_act.a" + std::to_string(id));
      }
      out.push_back("cudnn.conv.a" + std::to_string(id));
    }
    if (IsDepthwise(node)) {
      out.push_back("kiln.dwconv");
      // One pixel a thread: only the vectorized FP16 3x3 kernel has a tile to shrink.
      const std::vector<int64_t> ws = SizesOf(node.input(1));
      if (half && ws.size() == 4 && ws[2] == 3 && ws[3] == 3) out.push_back("kiln.dwconv.t1");
    }
    if (half && IsPointwise(node)) {
      for (int i = 0; i < 3; ++i) out.push_back("cublaslt.conv1x1.h" + std::to_string(i));
      const std::vector<int64_t> ws = SizesOf(node.input(1));
      if (k::PointwiseHalfSupports(ws[1], ws[0])) out.push_back("kiln.pointwise");
    }
    if (half && node.attrs().GetInt("group", 1) == 1) {
      const std::vector<int64_t> ws = SizesOf(node.input(1));
      if (ws.size() == 4 && k::SmallCinConvHalfSupports(ws[1], ws[0], ws[2], ws[3])) out.push_back("kiln.stemconv");
    }
    return out;
  }
  if (IsGemm(op)) {
    // The first 8 of cuBLASLt's heuristic choices, each timed (its first choice for BERT's FP32 GEMMs ran
    // at 90% of the strict-FP32 rate of an 8192^3 product, PyTorch's cuBLAS at nearly 100%).
    const int algos = 8;
    std::vector<std::string> out;
    for (int i = 0; i < algos; ++i) out.push_back("cublaslt.gemm.h" + std::to_string(i));
    // FP32/TF32: the same with a constant 2-D weight in the other layout (cublaslt.gemm.t.hN, see LowerGemm).
    const Value* w = node.input(1);
    if (!half && w && w->is_constant() && w->constant()->rank() == 2 && w->dtype() == DType::kFloat32) {
      for (int i = 0; i < algos; ++i) out.push_back("cublaslt.gemm.t.h" + std::to_string(i));
    }
    const bool exact = std::getenv("KILN_CUDA_EXACT_GELU") && std::string(std::getenv("KILN_CUDA_EXACT_GELU")) == "1";
    if (half && !exact && op == OpKind::kFusedGemm && node.attrs().GetString("activation", "") == "Gelu") {
      for (int i = 0; i < algos; ++i) out.push_back("cublaslt.gemm.gelu_tanh.h" + std::to_string(i));
    }
    return out;
  }
  if (IsView(op)) return {"kiln.view"};
  if (op == OpKind::kMaxPool || op == OpKind::kAveragePool || op == OpKind::kGlobalAveragePool) return {"kiln.pool"};
  if (UnaryAct(node) || BinaryOp(op)) return {"kiln.eltwise"};
  if (op == OpKind::kConcat) return {"kiln.concat"};
  if (op == OpKind::kTranspose) return {"kiln.transpose"};
  if (op == OpKind::kSoftmax || op == OpKind::kLogSoftmax) return {"kiln.softmax"};
  if (op == OpKind::kLayerNormalization) return {"kiln.layernorm"};
  if (op == OpKind::kAttention) {
    if (half) return {"kiln.flash_attention", "kiln.flash_attention.m128", "cublaslt.attention"};
    return {"kiln.flash_attention", "cublaslt.attention"};
  }
  if (HostEvaluable(node)) return {"kiln.host"};
  if (op == OpKind::kGather) return {"kiln.gather"};
  if (op == OpKind::kCast) return {"kiln.cast"};
  if (op == OpKind::kSplit) return {"kiln.split"};
  return {"kiln." + std::string(node.op_name())};
}

std::unordered_map<const Value*, float> DeferredClips(const std::vector<const Node*>& schedule,
                                                      const std::vector<std::string>& tactics,
                                                      const std::unordered_set<const Node*>& folded) {
  std::unordered_map<const Value*, float> clips;
  for (size_t i = 0; i < schedule.size() && i < tactics.size(); ++i) {
    const Node& dw = *schedule[i];
    if (!IsKilnDwConv(tactics[i]) || !IsConv(dw.op()) || !IsDepthwise(dw) || folded.count(&dw)) continue;
    const Value* v = dw.input(0);
    const Node* p = v ? v->producer() : nullptr;
    if (!p || folded.count(p) || v->is_graph_output() || v->uses().size() != 1) continue;
    if (p->op() != OpKind::kFusedConv && p->op() != OpKind::kFusedGemm) continue;
    if (p->num_outputs() != 1 || WhyUnsupportedOp(*p) != "") continue;
    Expected<k::ActParams> act = FusedActivation(p->attrs());
    // Clip(0, hi) = min(ReLU(x), hi); a lower bound other than 0 is not a ReLU.
    if (!act.ok() || act->act != k::Act::kClip || act->alpha != 0.f || !std::isfinite(act->beta) || act->beta < 0.f) {
      continue;
    }
    clips[v] = act->beta;
  }
  return clips;
}

Status LowerLayer(ProgramBuilder& b) {
  const Node& node = b.node();
  const std::string why = WhyUnsupportedOp(node);
  if (!why.empty()) return Unsupported(why);
  const OpKind op = node.op();
  if (IsConv(op)) return LowerConv(b);
  if (IsGemm(op)) return LowerGemm(b);
  if (IsView(op)) return LowerView(b);
  if (op == OpKind::kMaxPool || op == OpKind::kAveragePool || op == OpKind::kGlobalAveragePool) return LowerPool(b);
  if (auto act = UnaryAct(node)) return LowerUnary(b, *act);
  if (auto bin = BinaryOp(op)) return LowerBinary(b, *bin);
  if (op == OpKind::kConcat) return LowerConcat(b);
  if (op == OpKind::kTranspose) return LowerTranspose(b);
  if (op == OpKind::kSoftmax || op == OpKind::kLogSoftmax) return LowerSoftmax(b);
  if (op == OpKind::kLayerNormalization) return LowerLayerNorm(b);
  if (op == OpKind::kGather) return LowerGather(b);
  if (op == OpKind::kCast) return LowerCast(b);
  if (op == OpKind::kSplit) return LowerSplit(b);
  if (op == OpKind::kAttention) return LowerAttentionLayer(b);
  return Unsupported("op " + std::string(node.op_name()));
}

}  // namespace kiln::cuda