// GEMM-shaped layers on cuBLASLt: Gemm, MatMul, kiln.FusedGemm, pointwise convolutions and kiln.Attention.
#include <algorithm>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_layers_common.h"
#include "backends/cuda/cuda_program.h"

namespace kiln::cuda {
namespace {

Expected<Handle<cublasLtMatrixLayout_t>> LtLayout(cudaDataType t, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                                 int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  KILN_LT(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  Handle<cublasLtMatrixLayout_t> h(l, cublasLtMatrixLayoutDestroy);
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    KILN_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    KILN_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return h;
}

}  // namespace

Status AddLtGemm(ProgramBuilder& b, const LtGemm& g) {
  const bool half = b.half();
  const k::ActParams act = g.act;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  bool lt_act = false;
  if (g.post.empty() && act.act == k::Act::kRelu) {
    epi = g.bias >= 0 ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    lt_act = true;
  } else if (g.post.empty() && act.act == k::Act::kGeluTanh) {
    epi = g.bias >= 0 ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    lt_act = true;
  } else if (g.bias >= 0) {
    epi = CUBLASLT_EPILOGUE_BIAS;
  }
  const cudaDataType dt = half ? CUDA_R_16F : CUDA_R_32F;
  cublasLtMatmulDesc_t md = nullptr;
  KILN_LT(cublasLtMatmulDescCreate(&md, half || !b.tf32() ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F));
  Handle<cublasLtMatmulDesc_t> desc(md, cublasLtMatmulDescDestroy);
  const cublasOperation_t op_a = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  KILN_LT(cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  KILN_LT(cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  KILN_LT(cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  const int64_t M = g.M, N = g.N, K = g.K, batch = g.batch;
  const int64_t stride_lt_a = g.b_broadcast ? 0 : K * N, stride_lt_b = g.a_broadcast ? 0 : M * K;
  KILN_ASSIGN_OR_RETURN(auto la, g.tb ? LtLayout(dt, K, N, K, batch, stride_lt_a) : LtLayout(dt, N, K, N, batch, stride_lt_a));
  KILN_ASSIGN_OR_RETURN(auto lb, g.ta ? LtLayout(dt, M, K, M, batch, stride_lt_b) : LtLayout(dt, K, M, K, batch, stride_lt_b));
  KILN_ASSIGN_OR_RETURN(auto ld, LtLayout(dt, N, M, N, batch, M * N));
  cublasLtMatmulPreference_t pref = nullptr;
  KILN_LT(cublasLtMatmulPreferenceCreate(&pref));
  Handle<cublasLtMatmulPreference_t> pref_h(pref, cublasLtMatmulPreferenceDestroy);
  const size_t max_ws = size_t{32} << 20;
  KILN_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof(max_ws)));
  cublasLtMatmulHeuristicResult_t results[8];
  int returned = 0;
  KILN_LT(cublasLtMatmulAlgoGetHeuristic(b.res().lt(), md, la.get(), lb.get(), ld.get(), ld.get(), pref, 8, results,
                                         &returned));
  if (returned <= 0) return Unsupported("cuBLASLt has no algorithm for this product");
  const std::string& tactic = b.tactic();
  const size_t h = tactic.rfind(".h");
  int pick = h == std::string::npos ? 0 : std::max(0, TacticNumber(tactic.substr(h), ".h"));
  if (pick >= returned) {
    // Timing a candidate that does not exist for this product is an error (the tuner skips it); a plan
    // run at other sizes takes the last one there is.
    if (b.tuning()) return Unsupported("cuBLASLt returned " + std::to_string(returned) + " algorithms");
    pick = returned - 1;
  }
  const cublasLtMatmulAlgo_t algo = results[pick].algo;
  const size_t ws = results[pick].workspaceSize;
  b.RequestWorkspace(ws);
  cublasLtHandle_t lt = b.res().lt();
  const int y = g.y, a = g.a, bm = g.b, bias = g.bias, cmat = g.cmat;
  const float alpha = g.alpha, beta = g.beta;
  const int64_t y_numel = b.tensor(y).numel();
  const auto post = g.post;
  const bool unary_after = !lt_act && act.act != k::Act::kNone && post.empty();
  b.Add([=](const Program& p, cudaStream_t st) {
    void* yp = p.ptr(y);
    if (bias >= 0) {
      const void* bp = p.ptr(bias);
      KILN_LT(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)));
    }
    const void* cp = cmat >= 0 ? p.ptr(cmat) : yp;
    KILN_LT(cublasLtMatmul(lt, desc.get(), &alpha, p.ptr(bm), la.get(), p.ptr(a), lb.get(), &beta, cp, ld.get(), yp,
                           ld.get(), &algo, p.workspace(), ws, st));
    (void)pref_h;
    for (size_t i = 0; i < post.size(); ++i) {
      const k::ActParams post_act = i + 1 == post.size() ? act : k::ActParams{};
      KILN_CUDA(k::Binary(yp, p.ptr(post[i].first), yp, half, k::Bin::kAdd, post[i].second, y_numel, false, post_act, st));
    }
    if (unary_after) KILN_CUDA(k::Unary(yp, yp, half, y_numel, act, st));
    return Status::Ok();
  });
  return Status::Ok();
}

// Over NHWC, Y [N*H*W, K] = X [N*H*W, C] W^T: the bias and ReLU go to cuBLASLt's epilogue and the
// residual Z is its C matrix.
bool IsPointwise(const Node& node) {
  const Value* w = node.input(1);
  if (!w || !w->shape()) return false;
  const auto ws = w->shape()->sizes();
  if (!ws || ws->size() != 4 || (*ws)[2] != 1 || (*ws)[3] != 1) return false;
  const Attributes& a = node.attrs();
  auto all_one = [](const std::vector<int64_t>& v) { return std::all_of(v.begin(), v.end(), [](int64_t x) { return x == 1; }); };
  auto all_zero = [](const std::vector<int64_t>& v) { return std::all_of(v.begin(), v.end(), [](int64_t x) { return x == 0; }); };
  const std::string pad = a.GetString("auto_pad", "NOTSET");
  return a.GetInt("group", 1) == 1 && all_one(a.GetInts("strides", {1, 1})) && all_one(a.GetInts("dilations", {1, 1})) &&
         all_zero(a.GetInts("pads", {0, 0, 0, 0})) && (pad == "NOTSET" || pad == "VALID" || pad.empty());
}

Status LowerConvPointwise(ProgramBuilder& b, int x, int w, int bias, int z, int y, int64_t M, int64_t N, int64_t K,
                          k::ActParams act) {
  LtGemm g;
  g.a = x, g.b = w, g.y = y;
  g.M = M, g.N = N, g.K = K, g.tb = true;
  g.bias = bias;
  if (z >= 0) g.cmat = z, g.beta = 1.f;
  g.act = act;
  return AddLtGemm(b, g);
}

Status LowerGemm(ProgramBuilder& b) {
  const Node& node = b.node();
  const OpKind op = node.op();
  const bool ta = op != OpKind::kMatMul && node.attrs().GetInt("transA", 0) != 0;
  const bool tb = op != OpKind::kMatMul && node.attrs().GetInt("transB", 0) != 0;
  const float alpha = op == OpKind::kMatMul ? 1.f : node.attrs().GetFloat("alpha", 1.f);
  const float beta_c = op == OpKind::kMatMul ? 0.f : node.attrs().GetFloat("beta", 1.f);
  k::ActParams act;
  if (op == OpKind::kFusedGemm) {
    KILN_ASSIGN_OR_RETURN(act, LayerActivation(b));
  }
  // cublaslt.gemm.gelu_tanh.hN (FP16 only): the erf GELU as cuBLASLt's GELU epilogue, its tanh form. The
  // two differ by at most 4.7e-4 absolute (at x ~ 2.7, where an FP16 output's ulp is 2e-3), which saves
  // a pass over the FFN activations.
  if (b.tactic().find(".gelu_tanh.") != std::string::npos) {
    if (!b.half() || act.act != k::Act::kGelu) return Unsupported("gelu_tanh needs an FP16 layer with a GELU");
    act.act = k::Act::kGeluTanh;
  }
  const std::vector<int64_t> as = SizesOf(node.input(0)), bs = SizesOf(node.input(1)), ys = SizesOf(node.output(0));
  if (as.size() < 2 || bs.size() < 2 || ys.size() < 2) return Unsupported("matrix products of vectors");
  int64_t M = ta ? as[as.size() - 1] : as[as.size() - 2];
  const int64_t K = ta ? as[as.size() - 2] : as[as.size() - 1];
  const int64_t N = tb ? bs[bs.size() - 2] : bs[bs.size() - 1];
  const int64_t a_bc = Prod(as, 0, as.size() - 2), b_bc = Prod(bs, 0, bs.size() - 2), y_bc = Prod(ys, 0, ys.size() - 2);
  if ((a_bc != 1 && a_bc != y_bc) || (b_bc != 1 && b_bc != y_bc)) return Unsupported("partially broadcast batch dims");
  int64_t batch = y_bc;
  if (b_bc == 1 && !ta && a_bc == y_bc) {  // [B, M, K] x [K, N]: one GEMM with B*M rows
    M *= a_bc;
    batch = 1;
  }
  const bool half = b.half();
  const Repr r{half, false};
  KILN_ASSIGN_OR_RETURN(int a, b.Input(0, r));
  // cublaslt.gemm.t.hN: a constant 2-D B stored in the other layout (transposed once at upload), so that
  // cuBLASLt runs the product with op(B) flipped. Strict-FP32 GEMMs of BERT-base at batch 128 run ~5%
  // faster with the weight [N, K] (nn.Linear's layout) than [K, N] (as ONNX exports MatMul weights); at
  // smaller M the other way round, so both are timed.
  const bool flip = b.tactic().find(".t.h") != std::string::npos;
  int bm = -1;
  if (flip) {
    if (bs.size() != 2 || !node.input(1)->is_constant()) return Unsupported("cublaslt.gemm.t needs a constant 2-D B");
    KILN_ASSIGN_OR_RETURN(bm, b.TransposedConstInput(1, r));
  } else {
    KILN_ASSIGN_OR_RETURN(bm, b.Input(1, r));
  }
  // Addends: C (input 2, scaled by beta) and R (input 3).
  const Value* cv = op == OpKind::kMatMul ? nullptr : node.input(2);
  const Value* rv = op == OpKind::kFusedGemm ? node.input(3) : nullptr;
  int bias = -1, cmat = -1;
  float beta = 0.f;
  std::vector<std::pair<int, const Value*>> post;  // added after the product, with broadcasting
  if (cv) {
    const std::vector<int64_t> cs = SizesOf(cv);
    KILN_ASSIGN_OR_RETURN(int c, b.Input(2, r));
    const bool vec = !cs.empty() && cs.back() == N && Prod(cs, 0, cs.size()) == N;
    if (vec && beta_c == 1.f) {
      bias = c;
    } else if (cs == ys) {
      cmat = c;
      beta = beta_c;
    } else if (beta_c == 1.f) {
      post.push_back({c, cv});
    } else {
      return Unsupported("Gemm with a broadcast C and beta != 1");
    }
  }
  if (rv) {
    KILN_ASSIGN_OR_RETURN(int rr, b.Input(3, r));
    if (cmat < 0 && SizesOf(rv) == ys) {
      cmat = rr;
      beta = 1.f;
    } else {
      post.push_back({rr, rv});
    }
  }
  LtGemm g;
  g.a = a, g.b = bm, g.M = M, g.N = N, g.K = K, g.ta = ta, g.tb = flip ? !tb : tb, g.batch = batch;
  g.a_broadcast = a_bc == 1, g.b_broadcast = b_bc == 1;
  g.bias = bias, g.cmat = cmat, g.alpha = alpha, g.beta = beta, g.act = act;
  g.y = b.Output(0, r);
  // Broadcast strides of each post addend against y.
  for (size_t i = 0; i < post.size(); ++i) {
    const std::vector<int64_t> s = SizesOf(post[i].second);
    if (ys.size() > static_cast<size_t>(k::kMaxRank)) return Unsupported("rank above 6");
    k::Broadcast bc;
    bc.rank = static_cast<int>(ys.size());
    int64_t sy = 1, sa = 1;
    for (int d = bc.rank - 1; d >= 0; --d) {
      const int ad = d - (bc.rank - static_cast<int>(s.size()));
      const int64_t len = ad >= 0 ? s[static_cast<size_t>(ad)] : 1;
      bc.sizes[d] = ys[static_cast<size_t>(d)];
      bc.a[d] = sy;
      bc.b[d] = len == 1 ? 0 : sa;
      sy *= ys[static_cast<size_t>(d)];
      sa *= len;
    }
    g.post.push_back({post[i].first, bc});
  }
  return AddLtGemm(b, g);
}

// softmax(scale * Q Kt + M) V with two batched cuBLASLt products around a masked softmax; the scores are
// materialized ([batch, Sq, Sk] in the arena), so this is for BERT-length sequences, not long ones.
Status LowerAttention(ProgramBuilder& b) {
  const Node& node = b.node();
  const std::vector<int64_t> qs = SizesOf(node.input(0)), ks = SizesOf(node.input(1)), vs = SizesOf(node.input(2));
  const std::vector<int64_t> ys = SizesOf(node.output(0));
  const size_t r = qs.size();
  if (r < 2 || ks.size() != r || vs.size() != r || ys.size() != r) return Unsupported("Attention with broadcast batch dims");
  const int64_t bc = Prod(ys, 0, r - 2);
  if (Prod(qs, 0, r - 2) != bc || Prod(ks, 0, r - 2) != bc || Prod(vs, 0, r - 2) != bc) {
    return Unsupported("Attention with broadcast batch dims");
  }
  const int64_t sq = qs[r - 2], d = qs[r - 1], sk = ks[r - 1], dv = vs[r - 1];
  const Repr rep{b.half(), false};
  KILN_ASSIGN_OR_RETURN(int q, b.Input(0, rep));
  KILN_ASSIGN_OR_RETURN(int kt, b.Input(1, rep));
  KILN_ASSIGN_OR_RETURN(int v, b.Input(2, rep));
  int mask = -1;
  k::Broadcast mb;
  if (node.input(3)) {
    KILN_ASSIGN_OR_RETURN(mask, b.Input(3, rep));
    std::vector<int64_t> scores(ys.begin(), ys.end() - 2);
    scores.push_back(sq);
    scores.push_back(sk);
    const std::vector<int64_t> ms = SizesOf(node.input(3));
    if (scores.size() > static_cast<size_t>(k::kMaxRank)) return Unsupported("rank above 6");
    mb.rank = static_cast<int>(scores.size());
    int64_t stride = 1;
    for (int dd = mb.rank - 1; dd >= 0; --dd) {
      const int md = dd - (mb.rank - static_cast<int>(ms.size()));
      const int64_t len = md >= 0 ? ms[static_cast<size_t>(md)] : 1;
      mb.sizes[dd] = scores[static_cast<size_t>(dd)];
      mb.b[dd] = len == 1 ? 0 : stride;
      stride *= len;
    }
  }
  const int s = b.Scratch({bc, sq, sk}, rep);
  const int y = b.Output(0, rep);
  LtGemm g1;
  g1.a = q, g1.b = kt, g1.y = s, g1.M = sq, g1.N = sk, g1.K = d, g1.batch = bc;
  KILN_RETURN_IF_ERROR(AddLtGemm(b, g1));
  const bool half = b.half();
  const float scale = node.attrs().GetFloat("scale", 1.f);
  b.KeepTouching(s);
  if (mask >= 0) b.KeepTouching(mask);
  b.Add([=](const Program& p, cudaStream_t st) {
    return CudaStatus(k::MaskedSoftmax(p.ptr(s), p.ptr(s), half, bc * sq, sk, scale, mask >= 0 ? p.ptr(mask) : nullptr, mb, st),
                      "attention softmax");
  });
  b.KeepTouching(s);
  b.KeepTouching(v);
  b.KeepTouching(y);
  LtGemm g2;
  g2.a = s, g2.b = v, g2.y = y, g2.M = sq, g2.N = dv, g2.K = sk, g2.batch = bc;
  return AddLtGemm(b, g2);
}

}  // namespace kiln::cuda
