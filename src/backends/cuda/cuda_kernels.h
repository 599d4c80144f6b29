// Kiln's own CUDA kernels (cuda_kernels.cu): element-wise chains with broadcasting, fused epilogues,
// pooling, softmax, layer norm, transposes and layout/precision conversions. Every launcher takes the
// stream to run on and returns the launch's error (cudaGetLastError). Storage is FP32 or FP16 (`half`);
// arithmetic is always FP32.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace kiln::cuda::k {

enum class Act : int {
  kNone, kRelu, kTanh, kSigmoid, kGelu, kGeluTanh, kHardSwish, kLeakyRelu, kClip, kHardSigmoid, kSwish,
  // unary math (not fused activations)
  kErf, kExp, kLog, kSqrt, kNeg, kAbs, kReciprocal,
};
struct ActParams {
  Act act = Act::kNone;
  float alpha = 0.f;
  float beta = 0.f;
};

enum class Bin : int { kAdd, kSub, kMul, kDiv, kPow, kMax, kMin };

constexpr int kMaxRank = 6;
// Output sizes and, per operand, element strides (0 where the operand is broadcast), right-aligned to
// `rank` dims.
struct Broadcast {
  int rank = 0;
  int64_t sizes[kMaxRank] = {};
  int64_t a[kMaxRank] = {};
  int64_t b[kMaxRank] = {};
};

// y = act(y + bias[channel(i)] + z[i]) over `n` elements; channel(i) = (i / inner) % channels (NCHW:
// inner = H*W; NHWC: inner = 1). bias and z may be null. `src` may differ from y (then y = act(src + ...)).
cudaError_t Epilogue(const void* src, void* y, bool half, int64_t n, const void* bias, int64_t channels,
                     int64_t inner, const void* z, ActParams act, cudaStream_t s);
// y = act(x) element-wise.
cudaError_t Unary(const void* x, void* y, bool half, int64_t n, ActParams act, cudaStream_t s);
// y = act(a op b) with broadcasting (`bc.a`/`bc.b` strides); `same` when both have y's shape.
cudaError_t Binary(const void* a, const void* b, void* y, bool half, Bin op, const Broadcast& bc, int64_t n,
                   bool same, ActParams act, cudaStream_t s);
// Layout and precision conversion of a rank-4 tensor [n,c,h,w] (logical sizes), or a flat precision
// conversion when both layouts agree.
cudaError_t Convert(const void* src, bool src_half, bool src_nhwc, void* dst, bool dst_half, bool dst_nhwc,
                    int64_t n, int64_t c, int64_t h, int64_t w, cudaStream_t s);

struct PoolGeometry {
  int64_t n, c, h, w, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;  // ph, pw: begin pads
  bool max;
  bool count_include_pad;
};
cudaError_t Pool2d(const void* x, void* y, bool half, bool nhwc, const PoolGeometry& g, cudaStream_t s);
// Depthwise 2-D convolution (groups = channels = filters) with y = act(conv + bias[c] + z); w is [C, kh*kw].
struct DwGeometry {
  int64_t n, c, h, w, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;
  // Inputs are read as min(x, in_max) when in_max is finite: the upper half of a producer's Clip(0, hi)
  // deferred to this layer (the producer ran it as a ReLU; see DeferredClips in cuda_layers.cc).
  float in_max = HUGE_VALF;
  // Output pixels per thread of the vectorized FP16 3x3 kernel: 4, or 1 (tactic kiln.dwconv.t1: four times
  // the threads, for grids too small to fill the GPU).
  int tile = 4;
};
// w [C, kh*kw]; w_taps (optional, FP16 NHWC only) the same filter tap-major, [kh*kw, C], which the
// vectorized 3x3 kernel needs.
cudaError_t DwConv(const void* x, const void* w, const void* w_taps, const void* bias, const void* z, void* y,
                   bool half, bool nhwc, const DwGeometry& g, ActParams act, cudaStream_t s);
// FP16 NHWC pointwise (1x1, stride 1) convolution for few input channels: y [m, n] = act(x [m, k] w^T + bias
// + z), w [n, k] (KRSC), bias [n] and z [m, n] optional; k and n multiples of 8, k <= 64, n * k <= 24576.
bool PointwiseHalfSupports(int64_t k, int64_t n);
cudaError_t PointwiseHalf(const void* x, const void* w, const void* bias, const void* z, void* y, int64_t m,
                          int64_t n, int64_t k, ActParams act, cudaStream_t s);
// FP16 NHWC direct convolution for few input channels (the stem of image networks): x [N,H,W,C] with C <= 4,
// w [K,KH,KW,C] (K % 8 == 0, K <= 64, KH*KW*C <= 160), one group, dilation 1 (g.c = C; g.in_max clamps the
// input), y [N,OH,OW,K] = act(conv + bias + z).
bool SmallCinConvHalfSupports(int64_t c, int64_t k, int64_t kh, int64_t kw);
cudaError_t SmallCinConvHalf(const void* x, const void* w, const void* bias, const void* z, void* y,
                             const DwGeometry& g, int64_t k, ActParams act, cudaStream_t s);
// y[n,c] = mean over hw of x.
cudaError_t GlobalAvgPool(const void* x, void* y, bool half, bool nhwc, int64_t n, int64_t c, int64_t hw,
                          cudaStream_t s);
// Row-wise softmax (or log-softmax) of x [rows, cols].
cudaError_t Softmax(const void* x, void* y, bool half, int64_t rows, int64_t cols, bool log, cudaStream_t s);
// Row-wise softmax of scale * x + mask, in place allowed. The mask (may be null) is broadcast: its offset
// for element (row, col) is mask_row_offset(row) + col * mask_col_stride, with mask_row_offset from `bc.b`
// over the first rank-1 dims of `bc` (the scores' dims).
cudaError_t MaskedSoftmax(const void* x, void* y, bool half, int64_t rows, int64_t cols, float scale,
                          const void* mask, const Broadcast& bc, cudaStream_t s);
// y[o, j, t] = data[o, idx[j], t] (negative indices count from the end); `esize` bytes per element, indices
// int64 or int32.
cudaError_t Gather(const void* data, const void* idx, bool idx64, void* y, int esize, int64_t outer,
                   int64_t axis_len, int64_t inner, int64_t nidx, cudaStream_t s);
// y = float(x) for x of kind: 0 f32, 1 i64, 2 i32, 3 bool (u8); y FP32 or FP16.
cudaError_t CastToFloat(const void* x, int src_kind, void* y, bool half, int64_t n, cudaStream_t s);
// Row-wise layer norm of x [rows, cols] with scale/bias [cols] (bias may be null); FP32 statistics.
cudaError_t LayerNorm(const void* x, const void* scale, const void* bias, void* y, bool half, int64_t rows,
                      int64_t cols, float epsilon, cudaStream_t s);
// FP16 row-wise layer norm (cols % 8 == 0, cols <= 2048, 16-byte aligned rows) of a row that is x's row, or
// table[ids[row]] (an embedding lookup, negative ids counting from the end), plus up to two addends whose
// row is add[i] + (row % period[i]) * cols (broadcast over the leading dims). Sums and statistics in FP32.
struct LayerNormInputs {
  const void* x = nullptr;
  const void* table = nullptr;
  const void* ids = nullptr;
  bool ids64 = true;
  int64_t table_rows = 0;
  const void* add[2] = {nullptr, nullptr};
  int64_t period[2] = {1, 1};
};
cudaError_t LayerNormHalf(const LayerNormInputs& in, const void* scale, const void* bias, void* y, int64_t rows,
                          int64_t cols, float epsilon, cudaStream_t s);
// y = x permuted: y's dim d is x's dim perm[d]; elements of `esize` bytes (2, 4 or 8).
cudaError_t Transpose(const void* x, void* y, int esize, int rank, const int64_t* in_sizes, const int* perm,
                      cudaStream_t s);
// Fused attention o = softmax(scale * q k^T + mask) v over FP16 tensors (cuda_attention.cu), FP32
// accumulation and softmax statistics. Operands are indexed [batch, head, row, d] through strides in
// elements (batch, head, row; d is contiguous); the mask (FP16, may be null) through [batch, head, query,
// key] strides (0 where broadcast). Pointers and every stride of q, k, v and o must be multiples of 8
// elements (16-byte loads).
struct AttentionArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  const void* mask = nullptr;
  int64_t q_stride[3] = {}, k_stride[3] = {}, v_stride[3] = {}, o_stride[3] = {};
  int64_t mask_stride[4] = {};
  int batch = 0, heads = 0, sq = 0, sk = 0, head_dim = 0;
  float scale = 1.f;
  int block_rows = 64;  // query rows per block: 64 (4 warps) or 128 (8 warps, K and V read by half as many blocks)
};
bool FlashAttentionSupports(int head_dim);
cudaError_t FlashAttention(const AttentionArgs& a, cudaStream_t s);
// The same in strict FP32 (q, k, v, o and the mask FP32; block_rows ignored): head dim 64.
bool FlashAttentionF32Supports(int head_dim);
cudaError_t FlashAttentionF32(const AttentionArgs& a, cudaStream_t s);
// Deterministic pseudo-random values in [-1, 1) (for timing candidates on non-zero data).
cudaError_t FillRandom(void* p, bool half, int64_t n, uint32_t seed, cudaStream_t s);

}  // namespace kiln::cuda::k
