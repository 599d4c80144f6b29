// Kiln's own CUDA kernels; see cuda_kernels.h. Simple grid-stride kernels: these ops move bytes, so each
// reads its inputs once and writes its output once, converting FP16 storage to FP32 arithmetic in registers.
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/cuda_kernels.h"

namespace kiln::cuda::k {
namespace {

constexpr int kThreads = 256;

inline unsigned Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}

template <typename T>
__device__ __forceinline__ float Load(const T* p, int64_t i) {
  return static_cast<float>(p[i]);
}
template <>
__device__ __forceinline__ float Load<__half>(const __half* p, int64_t i) {
  return __half2float(p[i]);
}
template <typename T>
__device__ __forceinline__ void Store(T* p, int64_t i, float v) {
  p[i] = static_cast<T>(v);
}
template <>
__device__ __forceinline__ void Store<__half>(__half* p, int64_t i, float v) {
  p[i] = __float2half_rn(v);
}

__device__ __forceinline__ float Sigm(float x) { return 1.f / (1.f + __expf(-x)); }

__device__ __forceinline__ float Apply(const ActParams& a, float x) {
  switch (a.act) {
    case Act::kNone: return x;
    case Act::kRelu: return x > 0.f ? x : 0.f;
    case Act::kTanh: return tanhf(x);
    case Act::kSigmoid: return Sigm(x);
    case Act::kGelu: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case Act::kGeluTanh: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case Act::kHardSwish: return x * fminf(fmaxf(x / 6.f + 0.5f, 0.f), 1.f);
    case Act::kLeakyRelu: return x < 0.f ? a.alpha * x : x;
    case Act::kClip: return fminf(fmaxf(x, a.alpha), a.beta);
    case Act::kHardSigmoid: return fminf(fmaxf(a.alpha * x + a.beta, 0.f), 1.f);
    case Act::kSwish: return x * Sigm(a.alpha * x);
    case Act::kErf: return erff(x);
    case Act::kExp: return expf(x);
    case Act::kLog: return logf(x);
    case Act::kSqrt: return sqrtf(x);
    case Act::kNeg: return -x;
    case Act::kAbs: return fabsf(x);
    case Act::kReciprocal: return 1.f / x;
  }
  return x;
}

__device__ __forceinline__ float BinOp(Bin op, float a, float b) {
  switch (op) {
    case Bin::kAdd: return a + b;
    case Bin::kSub: return a - b;
    case Bin::kMul: return a * b;
    case Bin::kDiv: return a / b;
    case Bin::kPow: return powf(a, b);
    case Bin::kMax: return fmaxf(a, b);
    case Bin::kMin: return fminf(a, b);
  }
  return a;
}

// I: the index type, int32_t whenever the element count fits (64-bit division costs ~10x more).
#define KILN_GRID_LOOP(i, n) \
  for (I i = static_cast<I>(blockIdx.x * blockDim.x + threadIdx.x); i < static_cast<I>(n); \
       i += static_cast<I>(gridDim.x * blockDim.x))

bool Fits32(int64_t n) { return n < (int64_t{1} << 31) - 65536LL * 16 * 256; }

template <typename T, typename I>
__global__ void EpilogueKernel(const T* src, T* y, I n, const T* bias, I channels, I inner, const T* z,
                               ActParams act) {
  KILN_GRID_LOOP(i, n) {
    float v = Load(src, i);
    if (bias) v += Load(bias, (i / inner) % channels);
    if (z) v += Load(z, i);
    Store(y, i, Apply(act, v));
  }
}

template <typename T, typename I>
__global__ void UnaryKernel(const T* x, T* y, I n, ActParams act) {
  KILN_GRID_LOOP(i, n) Store(y, i, Apply(act, Load(x, i)));
}

template <typename T, typename I>
__global__ void BinarySameKernel(const T* a, const T* b, T* y, I n, Bin op, ActParams act) {
  KILN_GRID_LOOP(i, n) Store(y, i, Apply(act, BinOp(op, Load(a, i), Load(b, i))));
}

template <typename T, typename I>
__global__ void BinaryBcastKernel(const T* a, const T* b, T* y, I n, Bin op, Broadcast bc, ActParams act) {
  KILN_GRID_LOOP(i, n) {
    I rem = i, ia = 0, ib = 0;
    for (int d = bc.rank - 1; d >= 0; --d) {
      const I size = static_cast<I>(bc.sizes[d]);
      const I c = rem % size;
      rem /= size;
      ia += c * static_cast<I>(bc.a[d]);
      ib += c * static_cast<I>(bc.b[d]);
    }
    Store(y, i, Apply(act, BinOp(op, Load(a, ia), Load(b, ib))));
  }
}

// FP16 broadcasting binary op, 8 elements (one 16-byte word of each operand) per thread: every operand
// is contiguous along the innermost dim, whose size is a multiple of 8 (BERT's embedding sums).
template <typename I>
__global__ void BinaryBcast8Kernel(const __half* a, const __half* b, __half* y, I n8, Bin op, Broadcast bc,
                                   ActParams act) {
  KILN_GRID_LOOP(i8, n8) {
    I rem = i8 * 8, ia = 0, ib = 0;
    for (int d = bc.rank - 1; d >= 0; --d) {
      const I size = static_cast<I>(bc.sizes[d]);
      const I c = rem % size;
      rem /= size;
      ia += c * static_cast<I>(bc.a[d]);
      ib += c * static_cast<I>(bc.b[d]);
    }
    const uint4 ra = *reinterpret_cast<const uint4*>(a + ia), rb = *reinterpret_cast<const uint4*>(b + ib);
    const __half2* ha = reinterpret_cast<const __half2*>(&ra);
    const __half2* hb = reinterpret_cast<const __half2*>(&rb);
    uint4 out;
    __half2* ho = reinterpret_cast<__half2*>(&out);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 fa = __half22float2(ha[e]), fb = __half22float2(hb[e]);
      ho[e] = __floats2half2_rn(Apply(act, BinOp(op, fa.x, fb.x)), Apply(act, BinOp(op, fa.y, fb.y)));
    }
    *reinterpret_cast<uint4*>(y + i8 * 8) = out;
  }
}

bool Vectorizable8(const void* a, const void* b, const void* y, const Broadcast& bc) {
  if (bc.rank < 1 || bc.sizes[bc.rank - 1] % 8 != 0 || bc.a[bc.rank - 1] != 1 || bc.b[bc.rank - 1] != 1) return false;
  for (int d = 0; d < bc.rank; ++d) {
    if (bc.a[d] % 8 != 0 && d != bc.rank - 1) return false;
    if (bc.b[d] % 8 != 0 && d != bc.rank - 1) return false;
  }
  return reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(y) % 16 == 0;
}

template <typename S, typename D, typename I>
__global__ void ConvertKernel(const S* src, bool src_nhwc, D* dst, bool dst_nhwc, I n, I c, I h, I w, I total) {
  const I hw = h * w;
  KILN_GRID_LOOP(i, total) {
    I si = i;
    if (src_nhwc != dst_nhwc) {
      if (dst_nhwc) {  // i indexes [n, hw, c]
        const I ci = i % c, p = (i / c) % hw, ni = i / (c * hw);
        si = (ni * c + ci) * hw + p;
      } else {  // i indexes [n, c, hw]
        const I p = i % hw, ci = (i / hw) % c, ni = i / (c * hw);
        si = (ni * hw + p) * c + ci;
      }
    }
    Store(dst, i, Load(src, si));
  }
}

// The (batch, channel, row, column) of element i of an [N, C, OH, OW] output stored NCHW or NHWC.
template <typename I>
__device__ __forceinline__ void OutputCoords(I i, bool nhwc, I C, I OH, I OW, I& ni, I& ci, I& oy, I& ox) {
  if (nhwc) {
    ci = i % C;
    I r = i / C;
    ox = r % OW;
    r /= OW;
    oy = r % OH;
    ni = r / OH;
  } else {
    ox = i % OW;
    I r = i / OW;
    oy = r % OH;
    r /= OH;
    ci = r % C;
    ni = r / C;
  }
}

template <typename T, typename I>
__global__ void PoolKernel(const T* x, T* y, bool nhwc, PoolGeometry g, I total) {
  const I C = static_cast<I>(g.c), OW = static_cast<I>(g.ow), OH = static_cast<I>(g.oh);
  const I H = static_cast<I>(g.h), W = static_cast<I>(g.w);
  KILN_GRID_LOOP(i, total) {
    I ni, ci, oy, ox;
    OutputCoords(i, nhwc, C, OH, OW, ni, ci, oy, ox);
    float acc = g.max ? -FLT_MAX : 0.f;
    bool any = false;
    int count = 0;
    for (int ky = 0; ky < g.kh; ++ky) {
      const I iy = oy * g.sh + ky * g.dh - g.ph;
      if (iy < 0 || iy >= H) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const I ix = ox * g.sw + kx * g.dw - g.pw;
        if (ix < 0 || ix >= W) continue;
        const I at = nhwc ? ((ni * H + iy) * W + ix) * C + ci : ((ni * C + ci) * H + iy) * W + ix;
        const float v = Load(x, at);
        if (g.max) {
          acc = any ? fmaxf(acc, v) : v;
        } else {
          acc += v;
        }
        any = true;
        ++count;
      }
    }
    if (!g.max) {
      const int div = g.count_include_pad ? g.kh * g.kw : count;
      acc = div > 0 ? acc / static_cast<float>(div) : 0.f;
    }
    Store(y, i, acc);
  }
}

// FP16 NHWC pooling with C % 8 == 0: each thread owns 8 channels of one output pixel and reads them as one
// 16-byte word per window tap (ResNet's stem max pool moves 256 MB at batch 128: one 2-byte load per tap
// made it instruction-bound).
template <typename I>
__global__ void PoolNhwc8Kernel(const __half* x, __half* y, PoolGeometry g, I total) {
  const I C8 = static_cast<I>(g.c / 8), OW = static_cast<I>(g.ow), OH = static_cast<I>(g.oh);
  const I H = static_cast<I>(g.h), W = static_cast<I>(g.w);
  KILN_GRID_LOOP(i, total) {
    const I c8 = i % C8;
    I r = i / C8;
    const I ox = r % OW;
    r /= OW;
    const I oy = r % OH;
    const I ni = r / OH;
    float acc[8];
    for (int e = 0; e < 8; ++e) acc[e] = g.max ? -FLT_MAX : 0.f;
    int count = 0;
    for (int ky = 0; ky < g.kh; ++ky) {
      const I iy = oy * g.sh + ky * g.dh - g.ph;
      if (iy < 0 || iy >= H) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const I ix = ox * g.sw + kx * g.dw - g.pw;
        if (ix < 0 || ix >= W) continue;
        const uint4 raw = reinterpret_cast<const uint4*>(x)[((ni * H + iy) * W + ix) * C8 + c8];
        const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __half22float2(h[e]);
          acc[2 * e] = g.max ? fmaxf(acc[2 * e], f.x) : acc[2 * e] + f.x;
          acc[2 * e + 1] = g.max ? fmaxf(acc[2 * e + 1], f.y) : acc[2 * e + 1] + f.y;
        }
        ++count;
      }
    }
    float scale = 1.f;
    if (!g.max) {
      const int div = g.count_include_pad ? g.kh * g.kw : count;
      scale = div > 0 ? 1.f / static_cast<float>(div) : 0.f;
    }
    uint4 out;
    __half2* o = reinterpret_cast<__half2*>(&out);
#pragma unroll
    for (int e = 0; e < 4; ++e) o[e] = __floats2half2_rn(acc[2 * e] * scale, acc[2 * e + 1] * scale);
    reinterpret_cast<uint4*>(y)[i] = out;
  }
}

// Depthwise convolution (one filter per channel) with the fused epilogue. The filter is [C, kh*kw] in both
// layouts. NHWC: consecutive threads take consecutive channels, so every tap's loads are coalesced.
template <typename T, typename I>
__global__ void DwConvKernel(const T* x, const T* w, const T* bias, const T* z, T* y, bool nhwc, DwGeometry g,
                             ActParams act, I total) {
  const I C = static_cast<I>(g.c), OW = static_cast<I>(g.ow), OH = static_cast<I>(g.oh);
  const I H = static_cast<I>(g.h), W = static_cast<I>(g.w);
  const bool clamp = g.in_max < HUGE_VALF;
  KILN_GRID_LOOP(i, total) {
    I ni, ci, oy, ox;
    OutputCoords(i, nhwc, C, OH, OW, ni, ci, oy, ox);
    float acc = 0.f;
    const T* wc = w + ci * (g.kh * g.kw);
    for (int ky = 0; ky < g.kh; ++ky) {
      const I iy = oy * g.sh + ky * g.dh - g.ph;
      if (iy < 0 || iy >= H) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const I ix = ox * g.sw + kx * g.dw - g.pw;
        if (ix < 0 || ix >= W) continue;
        const I at = nhwc ? ((ni * H + iy) * W + ix) * C + ci : ((ni * C + ci) * H + iy) * W + ix;
        const float xv = Load(x, at);
        acc += (clamp ? fminf(xv, g.in_max) : xv) * Load(wc, ky * g.kw + kx);
      }
    }
    if (bias) acc += Load(bias, ci);
    if (z) acc += Load(z, i);
    Store(y, i, Apply(act, acc));
  }
}

// FP16 NHWC depthwise KH x KW convolutions (dilation 1, channels a multiple of 8): each thread computes 8
// channels (one 16-byte vector) of kTile neighbouring output pixels of a row, so a warp reads contiguous
// 16-byte vectors of each input pixel row it touches and each input column once per output row. The
// filter comes tap-major ([KH*KW][C], uploaded so once: the 8 channels of one tap are one vector), so a
// thread holds one filter row (KW x 8 floats) at a time: 80 registers, 3 blocks (24 warps) per
// multiprocessor. (Holding all of a thread's 72 taps as floats took 144 registers, one block per
// multiprocessor, and ran MobileNetV2's layers at 0.6 TB/s. Unrolling the rows again for grids too small to
// fill the GPU was tried and was no faster at batch 1.) FP32 accumulation, the input clamp and the
// bias / residual / activation epilogue as DwConvKernel.
// kDwTile: output pixels per thread, 4 (DwGeometry::tile = 4), or 1 for grids too small to fill the GPU
// (batch 1: MobileNetV2's 7x7x960 layer is 1,680 threads of 4 pixels, 7 blocks).
constexpr int kDwThreads = 256;

// The 8 halves of a 16-byte vector as floats.
__device__ __forceinline__ void Unpack8(const uint4& v, float* f) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const float2 p = __half22float2(h[q]);
    f[2 * q] = p.x;
    f[2 * q + 1] = p.y;
  }
}

// y[at] = act(acc + b + z[at]) for one vector of 8 FP16 channels (z optional): the epilogue of the vectorized
// depthwise and pointwise kernels.
template <typename I>
__device__ __forceinline__ void StoreVector8(uint4* y, const uint4* z, I at, const float (&acc)[8], const float (&b)[8],
                                             const ActParams& act) {
  float zf[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (z) Unpack8(z[at], zf);
  uint4 out;
  __half2* o = reinterpret_cast<__half2*>(&out);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    o[q] = __floats2half2_rn(Apply(act, acc[2 * q] + b[2 * q] + zf[2 * q]),
                             Apply(act, acc[2 * q + 1] + b[2 * q + 1] + zf[2 * q + 1]));
  }
  y[at] = out;
}

template <int KH, int KW, int SW, int kDwTile, typename I>
__global__ void __launch_bounds__(kDwThreads, 3) DwConvNhwcHalf8Kernel(const uint4* __restrict__ x,
                                                                      const uint4* __restrict__ w_taps,
                                                                      const uint4* __restrict__ bias,
                                                                      const uint4* __restrict__ z, uint4* y,
                                                                      DwGeometry g, ActParams act, I total) {
  constexpr int kCols = (kDwTile - 1) * SW + KW;  // input columns under the tile's outputs
  const I CV = static_cast<I>(g.c / 8), OWT = static_cast<I>((g.ow + kDwTile - 1) / kDwTile);
  const I H = static_cast<I>(g.h), W = static_cast<I>(g.w), OH = static_cast<I>(g.oh), OW = static_cast<I>(g.ow);
  const bool clamp = g.in_max < HUGE_VALF;
  KILN_GRID_LOOP(i, total) {
    const I cv = i % CV;
    I r = i / CV;
    const I ox0 = (r % OWT) * kDwTile;
    r /= OWT;
    const I oy = r % OH, n = r / OH;
    float acc[kDwTile][8];
#pragma unroll
    for (int j = 0; j < kDwTile; ++j) {
#pragma unroll
      for (int c = 0; c < 8; ++c) acc[j][c] = 0.f;
    }
    const I ix0 = ox0 * SW - g.pw;
#pragma unroll 1
    for (int ky = 0; ky < KH; ++ky) {  // not unrolled: one filter row and one input row in registers
      const I iy = oy * g.sh - g.ph + ky;
      if (iy < 0 || iy >= H) continue;
      float wr[KW][8];
#pragma unroll
      for (int kx = 0; kx < KW; ++kx) Unpack8(__ldg(w_taps + (ky * KW + kx) * CV + cv), wr[kx]);
      const uint4* row = x + ((n * H + iy) * W) * CV + cv;
      // Each input column once, added into every output of the tile that covers it.
#pragma unroll
      for (int col = 0; col < kCols; ++col) {
        const I ix = ix0 + col;
        if (ix < 0 || ix >= W) continue;
        float f[8];
        Unpack8(__ldg(row + ix * CV), f);
        if (clamp) {
#pragma unroll
          for (int c = 0; c < 8; ++c) f[c] = fminf(f[c], g.in_max);
        }
#pragma unroll
        for (int j = 0; j < kDwTile; ++j) {
          const int kx = col - j * SW;
          if (kx < 0 || kx >= KW) continue;
#pragma unroll
          for (int c = 0; c < 8; ++c) acc[j][c] = fmaf(f[c], wr[kx][c], acc[j][c]);
        }
      }
    }
    float b[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (bias) Unpack8(__ldg(bias + cv), b);
#pragma unroll
    for (int j = 0; j < kDwTile; ++j) {
      if (ox0 + j >= OW) break;
      StoreVector8(y, z, ((n * OH + oy) * OW + ox0 + j) * CV + cv, acc[j], b, act);
    }
  }
}

// Multiprocessors of the current device (cached per device).
int SmCount() {
  static std::atomic<int> cached[64];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 132;
  int n = cached[device].load();
  if (n <= 0) {
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0) n = 132;
    cached[device].store(n);
  }
  return n;
}

// FP16 NHWC pointwise convolution for few input channels, Y [M, N] = act(X [M, K] W^T + bias + Z) (K and N
// multiples of 8, K <= 64): the expansions of MobileNet-style blocks (K = 16 or 24 into N = 96 or 144) are
// bound by their output's bytes, and cuBLASLt's kernels for so short a K ran them at a sixth of the memory
// rate. Each thread computes 8 output channels (one vector) of kPwPixels pixels in FP32 FMAs; the filter
// sits in shared memory ordered [K/8][8][N/8], so the lanes of a warp (consecutive output vectors of one
// pixel) read consecutive vectors, and the pixel's input is one broadcast read per lane group.
constexpr int kPwPixels = 4;
constexpr int kPwMaxK = 64;

template <int KC, typename I>
__global__ void __launch_bounds__(kDwThreads, 3) PointwiseHalfKernel(const uint4* __restrict__ x,
                                                                    const uint4* __restrict__ w,
                                                                    const uint4* __restrict__ bias,
                                                                    const uint4* __restrict__ z, uint4* y, I m,
                                                                    int nv_count, ActParams act) {
  extern __shared__ uint4 pw_smem[];  // [KC][8][nv_count]
  for (int j = threadIdx.x; j < nv_count * 8 * KC; j += blockDim.x) {
    // W [N][K] halves = [nv][c][kc] vectors.
    const int kc = j % KC, c = (j / KC) % 8, nv = j / (KC * 8);
    pw_smem[(kc * 8 + c) * nv_count + nv] = w[j];
  }
  __syncthreads();
  const I total = (m + kPwPixels - 1) / kPwPixels * nv_count;
  KILN_GRID_LOOP(i, total) {
    const int nv = static_cast<int>(i % nv_count);
    const I m0 = i / nv_count * kPwPixels;
    float acc[kPwPixels][8];
#pragma unroll
    for (int p = 0; p < kPwPixels; ++p) {
#pragma unroll
      for (int c = 0; c < 8; ++c) acc[p][c] = 0.f;
    }
#pragma unroll 1
    for (int kc = 0; kc < KC; ++kc) {  // not unrolled: one 8-channel slice of the inputs in registers
      float xf[kPwPixels][8];
#pragma unroll
      for (int p = 0; p < kPwPixels; ++p) {
        const uint4 v = m0 + p < m ? __ldg(x + (m0 + p) * KC + kc) : make_uint4(0, 0, 0, 0);
        Unpack8(v, xf[p]);
      }
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        float wf[8];
        Unpack8(pw_smem[(kc * 8 + c) * nv_count + nv], wf);
#pragma unroll
        for (int p = 0; p < kPwPixels; ++p) {
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[p][c] = fmaf(xf[p][e], wf[e], acc[p][c]);
        }
      }
    }
    float b[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (bias) Unpack8(__ldg(bias + nv), b);
#pragma unroll
    for (int p = 0; p < kPwPixels; ++p) {
      if (m0 + p >= m) break;
      StoreVector8(y, z, (m0 + p) * nv_count + nv, acc[p], b, act);
    }
  }
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// NCHW: one warp per (n, c) plane.
template <typename T>
__global__ void GapNchwKernel(const T* x, T* y, int64_t planes, int64_t hw) {
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= planes) return;
  float s = 0.f;
  for (int64_t j = lane; j < hw; j += 32) s += Load(x, warp * hw + j);
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) Store(y, warp, s / static_cast<float>(hw));
}

// NHWC: one thread per (n, c), reading along c across the warp (coalesced).
template <typename T>
__global__ void GapNhwcKernel(const T* x, T* y, int64_t n, int64_t c, int64_t hw) {
  using I = int64_t;
  KILN_GRID_LOOP(i, n * c) {
    const int64_t ni = i / c, ci = i % c;
    float s = 0.f;
    for (int64_t p = 0; p < hw; ++p) s += Load(x, (ni * hw + p) * c + ci);
    Store(y, i, s / static_cast<float>(hw));
  }
}

__device__ float BlockReduce(float v, bool is_max, float* shared) {
  for (int o = 16; o > 0; o /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  __syncthreads();
  if (lane == 0) shared[wid] = v;
  __syncthreads();
  if (wid == 0) {
    v = lane < nw ? shared[lane] : (is_max ? -FLT_MAX : 0.f);
    for (int o = 16; o > 0; o /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, v, o);
      v = is_max ? fmaxf(v, other) : v + other;
    }
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  return shared[0];
}

template <typename T>
__global__ void SoftmaxKernel(const T* x, T* y, int64_t cols, bool log) {
  __shared__ float shared[32];
  const T* row = x + blockIdx.x * cols;
  T* out = y + blockIdx.x * cols;
  float mx = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, Load(row, j));
  mx = BlockReduce(mx, true, shared);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) sum += __expf(Load(row, j) - mx);
  sum = BlockReduce(sum, false, shared);
  const float inv = 1.f / sum, lsum = logf(sum);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = Load(row, j) - mx;
    Store(out, j, log ? v - lsum : __expf(v) * inv);
  }
}

template <typename T>
__global__ void LayerNormKernel(const T* x, const T* scale, const T* bias, T* y, int64_t cols, float eps) {
  __shared__ float shared[32];
  const T* row = x + blockIdx.x * cols;
  T* out = y + blockIdx.x * cols;
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += Load(row, j);
  const float mean = BlockReduce(s, false, shared) / static_cast<float>(cols);
  float v = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float d = Load(row, j) - mean;
    v += d * d;
  }
  const float rstd = rsqrtf(BlockReduce(v, false, shared) / static_cast<float>(cols) + eps);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    float r = (Load(row, j) - mean) * rstd * Load(scale, j);
    if (bias) r += Load(bias, j);
    Store(out, j, r);
  }
}

template <typename T>
__global__ void MaskedSoftmaxKernel(const T* x, T* y, int64_t cols, float scale, const T* mask, Broadcast bc) {
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  const T* row = x + r * cols;
  T* out = y + r * cols;
  int64_t moff = 0, mstride = 0;
  if (mask) {
    int64_t rem = r;
    for (int d = bc.rank - 2; d >= 0; --d) {
      moff += (rem % bc.sizes[d]) * bc.b[d];
      rem /= bc.sizes[d];
    }
    mstride = bc.b[bc.rank - 1];
  }
  float mx = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = scale * Load(row, j) + (mask ? Load(mask, moff + j * mstride) : 0.f);
    mx = fmaxf(mx, v);
  }
  mx = BlockReduce(mx, true, shared);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    sum += __expf(scale * Load(row, j) + (mask ? Load(mask, moff + j * mstride) : 0.f) - mx);
  }
  sum = BlockReduce(sum, false, shared);
  const float inv = 1.f / sum;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = scale * Load(row, j) + (mask ? Load(mask, moff + j * mstride) : 0.f);
    Store(out, j, __expf(v - mx) * inv);
  }
}

template <typename E, typename Idx, typename I>
__global__ void GatherKernel(const E* data, const Idx* idx, E* y, I axis_len, I inner, I nidx, I total) {
  KILN_GRID_LOOP(i, total) {
    const I t = i % inner, j = (i / inner) % nidx, o = i / (inner * nidx);
    I k = static_cast<I>(idx[j]);
    if (k < 0) k += axis_len;
    k = k < 0 ? 0 : (k >= axis_len ? axis_len - 1 : k);
    y[i] = data[(o * axis_len + k) * inner + t];
  }
}

// Whole rows of 16-byte words, one warp per gathered row: the index is read once per row and each lane
// has several independent loads in flight (a thread per word waited on two dependent loads for 16 bytes).
template <typename Idx>
__global__ void GatherRowsKernel(const uint4* data, const Idx* idx, uint4* y, int64_t axis_len, int64_t inner,
                                 int64_t nidx, int64_t rows) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {
    const int64_t j = r % nidx, o = r / nidx;
    int64_t k = static_cast<int64_t>(idx[j]);
    if (k < 0) k += axis_len;
    k = k < 0 ? 0 : (k >= axis_len ? axis_len - 1 : k);
    const uint4* src = data + (o * axis_len + k) * inner;
    uint4* dst = y + r * inner;
    for (int64_t t = lane; t < inner; t += 32) dst[t] = src[t];
  }
}

template <typename S, typename T>
__global__ void CastKernel(const S* x, T* y, int64_t n) {
  using I = int64_t;
  KILN_GRID_LOOP(i, n) Store(y, i, static_cast<float>(x[i]));
}

struct TransposeArgs {
  int rank;
  int64_t out_sizes[kMaxRank];
  int64_t in_strides[kMaxRank];  // x's stride of the dim that is y's dim d
};

template <typename E, typename I>
__global__ void TransposeKernel(const E* x, E* y, TransposeArgs t, I n) {
  KILN_GRID_LOOP(i, n) {
    I rem = i, src = 0;
    for (int d = t.rank - 1; d >= 0; --d) {
      const I size = static_cast<I>(t.out_sizes[d]);
      src += (rem % size) * static_cast<I>(t.in_strides[d]);
      rem /= size;
    }
    y[i] = x[src];
  }
}

// Moves whole chunks (the innermost dims that the permutation keeps innermost) as W words.
template <typename W, typename I>
__global__ void ChunkTransposeKernel(const W* x, W* y, TransposeArgs t, I words_per_chunk, I total) {
  KILN_GRID_LOOP(i, total) {
    const I o = i % words_per_chunk;
    I rem = i / words_per_chunk, src = 0;
    for (int d = t.rank - 1; d >= 0; --d) {
      const I size = static_cast<I>(t.out_sizes[d]);
      src += (rem % size) * static_cast<I>(t.in_strides[d]);
      rem /= size;
    }
    y[i] = x[src * words_per_chunk + o];
  }
}

// Batched 2-D transpose [batch, rows, cols] -> [batch, cols, rows] through 32x32 shared-memory tiles, so
// reads and writes are both coalesced.
template <typename E>
__global__ void Transpose2dKernel(const E* x, E* y, int rows, int cols) {
  __shared__ E tile[32][33];
  const int64_t base = static_cast<int64_t>(blockIdx.z) * rows * cols;
  const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
  for (int j = threadIdx.y; j < 32; j += 8) {
    const int r = r0 + j, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[j][threadIdx.x] = x[base + static_cast<int64_t>(r) * cols + c];
  }
  __syncthreads();
  for (int j = threadIdx.y; j < 32; j += 8) {
    const int c = c0 + j, r = r0 + threadIdx.x;
    if (r < rows && c < cols) y[base + static_cast<int64_t>(c) * rows + r] = tile[threadIdx.x][j];
  }
}

template <typename T>
__global__ void FillRandomKernel(T* p, int64_t n, uint32_t seed) {
  using I = int64_t;
  KILN_GRID_LOOP(i, n) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    Store(p, i, static_cast<float>(h >> 8) * (2.f / 16777216.f) - 1.f);
  }
}

}  // namespace

cudaError_t Epilogue(const void* src, void* y, bool half, int64_t n, const void* bias, int64_t channels,
                     int64_t inner, const void* z, ActParams act, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  auto run = [&](auto tag, auto itag) {
    using T = decltype(tag);
    using I = decltype(itag);
    EpilogueKernel<T, I><<<Blocks(n), kThreads, 0, s>>>(static_cast<const T*>(src), static_cast<T*>(y), static_cast<I>(n),
                                                         static_cast<const T*>(bias), static_cast<I>(channels),
                                                         static_cast<I>(inner), static_cast<const T*>(z), act);
  };
  if (half) {
    Fits32(n) ? run(__half(), int32_t()) : run(__half(), int64_t());
  } else {
    Fits32(n) ? run(float(), int32_t()) : run(float(), int64_t());
  }
  return cudaGetLastError();
}

cudaError_t Unary(const void* x, void* y, bool half, int64_t n, ActParams act, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  auto run = [&](auto tag, auto itag) {
    using T = decltype(tag);
    using I = decltype(itag);
    UnaryKernel<T, I><<<Blocks(n), kThreads, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y), static_cast<I>(n), act);
  };
  if (half) {
    Fits32(n) ? run(__half(), int32_t()) : run(__half(), int64_t());
  } else {
    Fits32(n) ? run(float(), int32_t()) : run(float(), int64_t());
  }
  return cudaGetLastError();
}

cudaError_t Binary(const void* a, const void* b, void* y, bool half, Bin op, const Broadcast& bc, int64_t n,
                   bool same, ActParams act, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  if (half) {
    auto* pa = static_cast<const __half*>(a);
    auto* pb = static_cast<const __half*>(b);
    auto* py = static_cast<__half*>(y);
    if (same) {
      BinarySameKernel<<<Blocks(n), kThreads, 0, s>>>(pa, pb, py, n, op, act);  // int64 index
    } else if (Fits32(n) && Vectorizable8(a, b, y, bc)) {
      BinaryBcast8Kernel<<<Blocks(n / 8), kThreads, 0, s>>>(pa, pb, py, static_cast<int32_t>(n / 8), op, bc, act);
    } else if (Fits32(n)) {
      BinaryBcastKernel<<<Blocks(n), kThreads, 0, s>>>(pa, pb, py, static_cast<int32_t>(n), op, bc, act);
    } else {
      BinaryBcastKernel<<<Blocks(n), kThreads, 0, s>>>(pa, pb, py, n, op, bc, act);
    }
  } else {
    auto* pa = static_cast<const float*>(a);
    auto* pb = static_cast<const float*>(b);
    auto* py = static_cast<float*>(y);
    if (same) {
      BinarySameKernel<<<Blocks(n), kThreads, 0, s>>>(pa, pb, py, n, op, act);  // int64 index
    } else if (Fits32(n)) {
      BinaryBcastKernel<<<Blocks(n), kThreads, 0, s>>>(pa, pb, py, static_cast<int32_t>(n), op, bc, act);
    } else {
      BinaryBcastKernel<<<Blocks(n), kThreads, 0, s>>>(pa, pb, py, n, op, bc, act);
    }
  }
  return cudaGetLastError();
}

cudaError_t Convert(const void* src, bool src_half, bool src_nhwc, void* dst, bool dst_half, bool dst_nhwc,
                    int64_t n, int64_t c, int64_t h, int64_t w, cudaStream_t s) {
  const int64_t total = n * c * h * w;
  if (total == 0) return cudaSuccess;
  const unsigned blocks = Blocks(total);
  auto run = [&](auto stag, auto dtag) {
    using S = decltype(stag);
    using D = decltype(dtag);
    if (Fits32(total)) {
      ConvertKernel<S, D, int32_t><<<blocks, kThreads, 0, s>>>(static_cast<const S*>(src), src_nhwc, static_cast<D*>(dst),
                                                               dst_nhwc, int32_t(n), int32_t(c), int32_t(h), int32_t(w),
                                                               int32_t(total));
    } else {
      ConvertKernel<S, D, int64_t><<<blocks, kThreads, 0, s>>>(static_cast<const S*>(src), src_nhwc, static_cast<D*>(dst),
                                                               dst_nhwc, n, c, h, w, total);
    }
  };
  if (src_half && dst_half) {
    run(__half(), __half());
  } else if (src_half) {
    run(__half(), float());
  } else if (dst_half) {
    run(float(), __half());
  } else {
    run(float(), float());
  }
  return cudaGetLastError();
}

cudaError_t Pool2d(const void* x, void* y, bool half, bool nhwc, const PoolGeometry& g, cudaStream_t s) {
  const int64_t total = g.n * g.c * g.oh * g.ow;
  if (total == 0) return cudaSuccess;
  auto run = [&](auto tag, auto itag) {
    using T = decltype(tag);
    using I = decltype(itag);
    PoolKernel<T, I><<<Blocks(total), kThreads, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y), nhwc, g,
                                                        static_cast<I>(total));
  };
  const bool fits = Fits32(g.n * g.c * g.h * g.w) && Fits32(total);
  if (half && nhwc && g.c % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0) {
    const int64_t total8 = total / 8;
    if (fits) {
      PoolNhwc8Kernel<int32_t><<<Blocks(total8), kThreads, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y), g,
                                                                 static_cast<int32_t>(total8));
    } else {
      PoolNhwc8Kernel<int64_t><<<Blocks(total8), kThreads, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y), g,
                                                                 total8);
    }
    return cudaGetLastError();
  }
  if (half) {
    fits ? run(__half(), int32_t()) : run(__half(), int64_t());
  } else {
    fits ? run(float(), int32_t()) : run(float(), int64_t());
  }
  return cudaGetLastError();
}

cudaError_t DwConv(const void* x, const void* w, const void* w_taps, const void* bias, const void* z, void* y,
                   bool half, bool nhwc, const DwGeometry& g, ActParams act, cudaStream_t s) {
  const int64_t total = g.n * g.c * g.oh * g.ow;
  if (total == 0) return cudaSuccess;
  if (half && nhwc && w_taps && g.c % 8 == 0 && g.kh == 3 && g.kw == 3 && g.dh == 1 && g.dw == 1 &&
      (g.sw == 1 || g.sw == 2) && Aligned16(x) && Aligned16(w_taps) && Aligned16(y) && (!bias || Aligned16(bias)) &&
      (!z || Aligned16(z))) {
    const int tile = g.tile == 1 ? 1 : 4;
    const int64_t tiles = g.n * g.oh * ((g.ow + tile - 1) / tile) * (g.c / 8);
    const unsigned blocks = Blocks(tiles);
    auto launch = [&](auto itag, auto stride) {
      using I = decltype(itag);
      constexpr int kSw = decltype(stride)::value;
      auto* kernel = tile == 1 ? DwConvNhwcHalf8Kernel<3, 3, kSw, 1, I> : DwConvNhwcHalf8Kernel<3, 3, kSw, 4, I>;
      kernel<<<blocks, kDwThreads, 0, s>>>(static_cast<const uint4*>(x), static_cast<const uint4*>(w_taps),
                                           static_cast<const uint4*>(bias), static_cast<const uint4*>(z),
                                           static_cast<uint4*>(y), g, act, static_cast<I>(tiles));
    };
    const bool fits = Fits32(g.n * g.c * g.h * g.w) && Fits32(total);
    if (g.sw == 1) {
      fits ? launch(int32_t(), std::integral_constant<int, 1>()) : launch(int64_t(), std::integral_constant<int, 1>());
    } else {
      fits ? launch(int32_t(), std::integral_constant<int, 2>()) : launch(int64_t(), std::integral_constant<int, 2>());
    }
    return cudaGetLastError();
  }
  auto run = [&](auto tag, auto itag) {
    using T = decltype(tag);
    using I = decltype(itag);
    DwConvKernel<T, I><<<Blocks(total), kThreads, 0, s>>>(static_cast<const T*>(x), static_cast<const T*>(w),
                                                          static_cast<const T*>(bias), static_cast<const T*>(z),
                                                          static_cast<T*>(y), nhwc, g, act, static_cast<I>(total));
  };
  const bool fits = Fits32(g.n * g.c * g.h * g.w) && Fits32(total);
  if (half) {
    fits ? run(__half(), int32_t()) : run(__half(), int64_t());
  } else {
    fits ? run(float(), int32_t()) : run(float(), int64_t());
  }
  return cudaGetLastError();
}

// FP16 NHWC direct convolution for few input channels (C <= 4, one group, dilation 1, K a multiple of 8 up to
// 64): the stem of image networks (MobileNetV2's and the SSD's 3 -> 32 channels, 3x3 stride 2), which
// cuDNN's algorithms ran at about a tenth of the memory rate (0.33 ms at batch 128 for 142 MB). One thread
// computes every output channel of one output pixel in FP32 FMAs, so a warp writes 32 neighbouring pixels'
// outputs as one contiguous run; the filter sits in shared memory as floats [KH*KW*C][kK] (channels past K
// zero), read as float4 broadcasts. kK: K rounded up to 16, 32 or 64.
constexpr int kStemMaxC = 4;
constexpr int kStemMaxTaps = 160;  // KH * KW * C: a 7x7 filter over 3 channels is 147
constexpr int kStemThreads = 128;

template <int kK, typename I>
__global__ void __launch_bounds__(kStemThreads) SmallCinConvHalfKernel(const __half* __restrict__ x,
                                                                       const __half* __restrict__ w,
                                                                       const uint4* __restrict__ bias,
                                                                       const uint4* __restrict__ z, uint4* y,
                                                                       DwGeometry g, int k, ActParams act, I total) {
  extern __shared__ __align__(16) float sw[];  // [taps][kK]
  const int C = static_cast<int>(g.c), taps = g.kh * g.kw * C;
  for (int i = threadIdx.x; i < taps * kK; i += blockDim.x) {
    const int t = i / kK, o = i % kK;  // tap t = (ky * KW + kx) * C + c; w is [K][KH][KW][C]
    sw[i] = o < k ? __half2float(w[static_cast<int64_t>(o) * taps + t]) : 0.f;
  }
  __syncthreads();
  const I H = static_cast<I>(g.h), W = static_cast<I>(g.w), OH = static_cast<I>(g.oh), OW = static_cast<I>(g.ow);
  const bool clamp = g.in_max < HUGE_VALF;
  const int kv = k / 8;
  KILN_GRID_LOOP(p, total) {
    const I ox = p % OW, oy = (p / OW) % OH, n = p / (OW * OH);
    float acc[kK];
#pragma unroll
    for (int o = 0; o < kK; ++o) acc[o] = 0.f;
    for (int ky = 0; ky < g.kh; ++ky) {
      const I iy = oy * g.sh - g.ph + ky;
      if (iy < 0 || iy >= H) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const I ix = ox * g.sw - g.pw + kx;
        if (ix < 0 || ix >= W) continue;
        const __half* px = x + ((n * H + iy) * W + ix) * C;
        const float* wt = sw + (ky * g.kw + kx) * C * kK;
        for (int c = 0; c < C; ++c) {
          float v = __half2float(px[c]);
          if (clamp) v = fminf(v, g.in_max);
          const float4* w4 = reinterpret_cast<const float4*>(wt + c * kK);
#pragma unroll
          for (int o = 0; o < kK / 4; ++o) {
            const float4 f = w4[o];
            acc[4 * o] = fmaf(v, f.x, acc[4 * o]);
            acc[4 * o + 1] = fmaf(v, f.y, acc[4 * o + 1]);
            acc[4 * o + 2] = fmaf(v, f.z, acc[4 * o + 2]);
            acc[4 * o + 3] = fmaf(v, f.w, acc[4 * o + 3]);
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kK / 8; ++j) {
      if (j >= kv) break;
      float a8[8], b8[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int e = 0; e < 8; ++e) a8[e] = acc[8 * j + e];
      if (bias) Unpack8(__ldg(bias + j), b8);
      StoreVector8(y, z, p * kv + j, a8, b8, act);
    }
  }
}

bool SmallCinConvHalfSupports(int64_t c, int64_t k, int64_t kh, int64_t kw) {
  return c >= 1 && c <= kStemMaxC && k > 0 && k % 8 == 0 && k <= 64 && kh * kw * c <= kStemMaxTaps;
}

cudaError_t SmallCinConvHalf(const void* x, const void* w, const void* bias, const void* z, void* y,
                             const DwGeometry& g, int64_t k, ActParams act, cudaStream_t s) {
  const int64_t total = g.n * g.oh * g.ow;
  if (total == 0) return cudaSuccess;
  if (!SmallCinConvHalfSupports(g.c, k, g.kh, g.kw) || g.dh != 1 || g.dw != 1 || !Aligned16(y) ||
      (bias && !Aligned16(bias)) || (z && !Aligned16(z))) {
    return cudaErrorInvalidValue;
  }
  const int64_t taps = g.kh * g.kw * g.c;
  const unsigned blocks = static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((total + kStemThreads - 1) / kStemThreads, int64_t{16} * SmCount())));
  auto launch = [&](auto kk, auto itag) {
    using I = decltype(itag);
    constexpr int kK = decltype(kk)::value;
    SmallCinConvHalfKernel<kK, I><<<blocks, kStemThreads, static_cast<size_t>(taps * kK) * sizeof(float), s>>>(
        static_cast<const __half*>(x), static_cast<const __half*>(w), static_cast<const uint4*>(bias),
        static_cast<const uint4*>(z), static_cast<uint4*>(y), g, static_cast<int>(k), act, static_cast<I>(total));
  };
  auto by_k = [&](auto itag) {
    if (k <= 16) {
      launch(std::integral_constant<int, 16>(), itag);
    } else if (k <= 32) {
      launch(std::integral_constant<int, 32>(), itag);
    } else {
      launch(std::integral_constant<int, 64>(), itag);
    }
  };
  const bool fits = Fits32(g.n * g.c * g.h * g.w) && Fits32(total * k);
  fits ? by_k(int32_t()) : by_k(int64_t());
  return cudaGetLastError();
}

bool PointwiseHalfSupports(int64_t k, int64_t n) {
  return k > 0 && n > 0 && k % 8 == 0 && n % 8 == 0 && k <= kPwMaxK &&
         n * k * static_cast<int64_t>(sizeof(__half)) <= (48 << 10);
}

cudaError_t PointwiseHalf(const void* x, const void* w, const void* bias, const void* z, void* y, int64_t m,
                          int64_t n, int64_t k, ActParams act, cudaStream_t s) {
  if (m == 0) return cudaSuccess;
  if (!PointwiseHalfSupports(k, n) || !Aligned16(x) || !Aligned16(w) || !Aligned16(y) || (bias && !Aligned16(bias)) ||
      (z && !Aligned16(z))) {
    return cudaErrorInvalidValue;
  }
  const int nv = static_cast<int>(n / 8);
  const int64_t total = (m + kPwPixels - 1) / kPwPixels * nv;
  const unsigned blocks = static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((total + kDwThreads - 1) / kDwThreads, int64_t{6} * SmCount())));
  const size_t smem = static_cast<size_t>(n * k) * sizeof(__half);
  auto launch = [&](auto kc, auto itag) {
    using I = decltype(itag);
    PointwiseHalfKernel<decltype(kc)::value, I><<<blocks, kDwThreads, smem, s>>>(
        static_cast<const uint4*>(x), static_cast<const uint4*>(w), static_cast<const uint4*>(bias),
        static_cast<const uint4*>(z), static_cast<uint4*>(y), static_cast<I>(m), nv, act);
  };
  auto by_k = [&](auto itag) {
    switch (k / 8) {
      case 1: launch(std::integral_constant<int, 1>(), itag); break;
      case 2: launch(std::integral_constant<int, 2>(), itag); break;
      case 3: launch(std::integral_constant<int, 3>(), itag); break;
      case 4: launch(std::integral_constant<int, 4>(), itag); break;
      case 5: launch(std::integral_constant<int, 5>(), itag); break;
      case 6: launch(std::integral_constant<int, 6>(), itag); break;
      case 7: launch(std::integral_constant<int, 7>(), itag); break;
      default: launch(std::integral_constant<int, 8>(), itag); break;
    }
  };
  if (Fits32(m * std::max(n, k))) {
    by_k(int32_t());
  } else {
    by_k(int64_t());
  }
  return cudaGetLastError();
}

cudaError_t GlobalAvgPool(const void* x, void* y, bool half, bool nhwc, int64_t n, int64_t c, int64_t hw,
                          cudaStream_t s) {
  if (n * c == 0) return cudaSuccess;
  if (nhwc) {
    if (half) {
      GapNhwcKernel<<<Blocks(n * c), kThreads, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n, c, hw);
    } else {
      GapNhwcKernel<<<Blocks(n * c), kThreads, 0, s>>>(static_cast<const float*>(x), static_cast<float*>(y), n, c, hw);
    }
  } else {
    const unsigned blocks = Blocks(n * c * 32);
    if (half) {
      GapNchwKernel<<<blocks, kThreads, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n * c, hw);
    } else {
      GapNchwKernel<<<blocks, kThreads, 0, s>>>(static_cast<const float*>(x), static_cast<float*>(y), n * c, hw);
    }
  }
  return cudaGetLastError();
}

cudaError_t Softmax(const void* x, void* y, bool half, int64_t rows, int64_t cols, bool log, cudaStream_t s) {
  if (rows * cols == 0) return cudaSuccess;
  const int threads = cols >= 1024 ? 512 : (cols >= 256 ? 256 : 128);
  if (half) {
    SoftmaxKernel<<<static_cast<unsigned>(rows), threads, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y),
                                                                 cols, log);
  } else {
    SoftmaxKernel<<<static_cast<unsigned>(rows), threads, 0, s>>>(static_cast<const float*>(x), static_cast<float*>(y),
                                                                 cols, log);
  }
  return cudaGetLastError();
}

cudaError_t MaskedSoftmax(const void* x, void* y, bool half, int64_t rows, int64_t cols, float scale,
                          const void* mask, const Broadcast& bc, cudaStream_t s) {
  if (rows * cols == 0) return cudaSuccess;
  const int threads = cols >= 1024 ? 512 : (cols >= 256 ? 256 : 128);
  if (half) {
    MaskedSoftmaxKernel<<<static_cast<unsigned>(rows), threads, 0, s>>>(
        static_cast<const __half*>(x), static_cast<__half*>(y), cols, scale, static_cast<const __half*>(mask), bc);
  } else {
    MaskedSoftmaxKernel<<<static_cast<unsigned>(rows), threads, 0, s>>>(
        static_cast<const float*>(x), static_cast<float*>(y), cols, scale, static_cast<const float*>(mask), bc);
  }
  return cudaGetLastError();
}

cudaError_t Gather(const void* data, const void* idx, bool idx64, void* y, int esize, int64_t outer,
                   int64_t axis_len, int64_t inner, int64_t nidx, cudaStream_t s) {
  if (outer * nidx * inner == 0) return cudaSuccess;
  // Rows of a multiple of 16 bytes (embedding tables) move as 16-byte words.
  if ((inner * esize) % 16 == 0 && reinterpret_cast<uintptr_t>(data) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0) {
    inner = inner * esize / 16;
    esize = 16;
  }
  const int64_t total = outer * nidx * inner;
  if (esize == 16 && inner >= 32) {
    const int64_t rows = outer * nidx;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((rows + 7) / 8, 65535 * 16));
    if (idx64) {
      GatherRowsKernel<<<blocks, 256, 0, s>>>(static_cast<const uint4*>(data), static_cast<const int64_t*>(idx),
                                              static_cast<uint4*>(y), axis_len, inner, nidx, rows);
    } else {
      GatherRowsKernel<<<blocks, 256, 0, s>>>(static_cast<const uint4*>(data), static_cast<const int32_t*>(idx),
                                              static_cast<uint4*>(y), axis_len, inner, nidx, rows);
    }
    return cudaGetLastError();
  }
  auto run = [&](auto etag) {
    using E = decltype(etag);
    auto go = [&](auto itag) {
      using I = decltype(itag);
      const auto* d = static_cast<const E*>(data);
      if (idx64) {
        GatherKernel<<<Blocks(total), kThreads, 0, s>>>(d, static_cast<const int64_t*>(idx), static_cast<E*>(y),
                                                        static_cast<I>(axis_len), static_cast<I>(inner),
                                                        static_cast<I>(nidx), static_cast<I>(total));
      } else {
        GatherKernel<<<Blocks(total), kThreads, 0, s>>>(d, static_cast<const int32_t*>(idx), static_cast<E*>(y),
                                                        static_cast<I>(axis_len), static_cast<I>(inner),
                                                        static_cast<I>(nidx), static_cast<I>(total));
      }
    };
    if (Fits32(total) && Fits32(outer * axis_len * inner)) go(int32_t()); else go(int64_t());
  };
  switch (esize) {
    case 2: run(uint16_t()); break;
    case 4: run(uint32_t()); break;
    case 8: run(uint64_t()); break;
    case 16: run(uint4()); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t CastToFloat(const void* x, int src_kind, void* y, bool half, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  auto run = [&](auto stag) {
    using S = decltype(stag);
    if (half) {
      CastKernel<<<Blocks(n), kThreads, 0, s>>>(static_cast<const S*>(x), static_cast<__half*>(y), n);
    } else {
      CastKernel<<<Blocks(n), kThreads, 0, s>>>(static_cast<const S*>(x), static_cast<float*>(y), n);
    }
  };
  switch (src_kind) {
    case 0: run(float()); break;
    case 1: run(int64_t()); break;
    case 2: run(int32_t()); break;
    case 3: run(uint8_t()); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LayerNorm(const void* x, const void* scale, const void* bias, void* y, bool half, int64_t rows,
                      int64_t cols, float epsilon, cudaStream_t s) {
  if (rows * cols == 0) return cudaSuccess;
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(scale) % 16 == 0 && reinterpret_cast<uintptr_t>(bias) % 16 == 0;
  if (half && aligned && cols % 8 == 0 && cols <= 2048) {
    LayerNormInputs in;
    in.x = x;
    return LayerNormHalf(in, scale, bias, y, rows, cols, epsilon, s);
  }
  const int threads = cols >= 1024 ? 512 : 256;
  if (half) {
    LayerNormKernel<<<static_cast<unsigned>(rows), threads, 0, s>>>(
        static_cast<const __half*>(x), static_cast<const __half*>(scale), static_cast<const __half*>(bias),
        static_cast<__half*>(y), cols, epsilon);
  } else {
    LayerNormKernel<<<static_cast<unsigned>(rows), threads, 0, s>>>(
        static_cast<const float*>(x), static_cast<const float*>(scale), static_cast<const float*>(bias),
        static_cast<float*>(y), cols, epsilon);
  }
  return cudaGetLastError();
}

cudaError_t Transpose(const void* x, void* y, int esize, int rank, const int64_t* in_sizes, const int* perm,
                      cudaStream_t s) {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= in_sizes[d];
  if (n == 0) return cudaSuccess;
  // Reduce: drop dims of size 1, then merge input dims that stay adjacent and in order in the output.
  int keep[kMaxRank], nk = 0;
  for (int d = 0; d < rank; ++d) {
    if (in_sizes[perm[d]] != 1) keep[nk++] = perm[d];  // output order, input dim ids
  }
  // groups in output order: [first input dim, last input dim]
  int gfirst[kMaxRank], glast[kMaxRank], ng = 0;
  for (int i = 0; i < nk; ++i) {
    if (ng > 0 && keep[i] == glast[ng - 1] + 1) {
      glast[ng - 1] = keep[i];
    } else {
      gfirst[ng] = glast[ng] = keep[i];
      ++ng;
    }
  }
  // Sizes of each group:
  int64_t gsize[kMaxRank];
  for (int g = 0; g < ng; ++g) {
    gsize[g] = 1;
    for (int d = gfirst[g]; d <= glast[g]; ++d) gsize[g] *= in_sizes[d];
  }
  // Input order of the groups.
  int order[kMaxRank];
  for (int g = 0; g < ng; ++g) order[g] = g;
  for (int a = 0; a < ng; ++a) {
    for (int b = a + 1; b < ng; ++b) {
      if (gfirst[order[b]] < gfirst[order[a]]) {
        const int t = order[a];
        order[a] = order[b];
        order[b] = t;
      }
    }
  }
  int pos_in[kMaxRank];  // group -> its input position
  for (int i = 0; i < ng; ++i) pos_in[order[i]] = i;
  int64_t rsizes[kMaxRank];
  for (int i = 0; i < ng; ++i) rsizes[i] = gsize[order[i]];
  int rperm[kMaxRank];
  for (int g = 0; g < ng; ++g) rperm[g] = pos_in[g];
  bool identity = true;
  for (int g = 0; g < ng; ++g) identity = identity && rperm[g] == g;
  if (identity) return cudaMemcpyAsync(y, x, static_cast<size_t>(n) * esize, cudaMemcpyDeviceToDevice, s);

  // The innermost group stays innermost: move chunks.
  if (rperm[ng - 1] == ng - 1) {
    const int64_t chunk_bytes = rsizes[ng - 1] * esize;
    TransposeArgs t{};
    t.rank = ng - 1;
    int64_t strides[kMaxRank];
    int64_t acc = 1;
    for (int d = ng - 2; d >= 0; --d) {
      strides[d] = acc;
      acc *= rsizes[d];
    }
    for (int d = 0; d < ng - 1; ++d) {
      t.out_sizes[d] = rsizes[rperm[d]];
      t.in_strides[d] = strides[rperm[d]];
    }
    const bool aligned16 = chunk_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                           reinterpret_cast<uintptr_t>(y) % 16 == 0;
    if (aligned16 || chunk_bytes % 4 == 0) {
      const int64_t wsize = aligned16 ? 16 : 4;
      const int64_t wpc = chunk_bytes / wsize, total = static_cast<int64_t>(n) * esize / wsize;
      auto run = [&](auto wtag) {
        using W = decltype(wtag);
        if (Fits32(total)) {
          ChunkTransposeKernel<W, int32_t><<<Blocks(total), kThreads, 0, s>>>(
              static_cast<const W*>(x), static_cast<W*>(y), t, static_cast<int32_t>(wpc), static_cast<int32_t>(total));
        } else {
          ChunkTransposeKernel<W, int64_t><<<Blocks(total), kThreads, 0, s>>>(static_cast<const W*>(x),
                                                                              static_cast<W*>(y), t, wpc, total);
        }
      };
      aligned16 ? run(uint4()) : run(uint32_t());
      return cudaGetLastError();
    }
  }
  // A batched 2-D transpose: [B, R, C] -> [B, C, R] (or [R, C] -> [C, R]).
  const bool two_d = (ng == 2 && rperm[0] == 1) || (ng == 3 && rperm[0] == 0 && rperm[1] == 2 && rperm[2] == 1);
  if (two_d) {
    const int64_t batch = ng == 3 ? rsizes[0] : 1, rows = rsizes[ng - 2], cols = rsizes[ng - 1];
    if (batch <= 65535 && rows < (1 << 30) && cols < (1 << 30)) {
      const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32),
                      static_cast<unsigned>(batch));
      const dim3 block(32, 8);
      const int r = static_cast<int>(rows), c = static_cast<int>(cols);
      if (grid.y <= 65535) {
        switch (esize) {
          case 2: Transpose2dKernel<<<grid, block, 0, s>>>(static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y), r, c); break;
          case 4: Transpose2dKernel<<<grid, block, 0, s>>>(static_cast<const uint32_t*>(x), static_cast<uint32_t*>(y), r, c); break;
          case 8: Transpose2dKernel<<<grid, block, 0, s>>>(static_cast<const uint64_t*>(x), static_cast<uint64_t*>(y), r, c); break;
          default: return cudaErrorInvalidValue;
        }
        return cudaGetLastError();
      }
    }
  }
  // General case: one thread per element.
  TransposeArgs t{};
  t.rank = rank;
  int64_t strides[kMaxRank];
  int64_t acc = 1;
  for (int d = rank - 1; d >= 0; --d) {
    strides[d] = acc;
    acc *= in_sizes[d];
  }
  for (int d = 0; d < rank; ++d) {
    t.out_sizes[d] = in_sizes[perm[d]];
    t.in_strides[d] = strides[perm[d]];
  }
  auto run = [&](auto etag) {
    using E = decltype(etag);
    if (Fits32(n)) {
      TransposeKernel<E, int32_t><<<Blocks(n), kThreads, 0, s>>>(static_cast<const E*>(x), static_cast<E*>(y), t,
                                                                  static_cast<int32_t>(n));
    } else {
      TransposeKernel<E, int64_t><<<Blocks(n), kThreads, 0, s>>>(static_cast<const E*>(x), static_cast<E*>(y), t, n);
    }
  };
  switch (esize) {
    case 2: run(uint16_t()); break;
    case 4: run(uint32_t()); break;
    case 8: run(uint64_t()); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t FillRandom(void* p, bool half, int64_t n, uint32_t seed, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  if (half) {
    FillRandomKernel<<<Blocks(n), kThreads, 0, s>>>(static_cast<__half*>(p), n, seed);
  } else {
    FillRandomKernel<<<Blocks(n), kThreads, 0, s>>>(static_cast<float*>(p), n, seed);
  }
  return cudaGetLastError();
}

}  // namespace kiln::cuda::k
