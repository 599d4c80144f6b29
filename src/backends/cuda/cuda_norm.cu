// Kiln's FP16 layer norm (see cuda_kernels.h, LayerNormHalf): one warp per row, the row in registers, its
// source either a tensor's row or an embedding table's, plus up to two broadcast addends, so that BERT's
// embedding lookup, its two sums and the norm are one pass (cuda_layernorm.cc folds them).
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "backends/cuda/cuda_kernels.h"

namespace kiln::cuda::k {
namespace {

// The row's source: x's row, or (table, ids) a gathered embedding row; plus up to two addends whose row is
// `row % period` (broadcast over the leading dims).
struct LnSources {
  const __half* x = nullptr;
  const __half* table = nullptr;
  const void* ids = nullptr;
  bool ids64 = false;
  int64_t table_rows = 0;
  const __half* add[2] = {nullptr, nullptr};
  int64_t period[2] = {1, 1};
};

__device__ __forceinline__ void AddRow(float (&v)[8], const __half* p, int chunk) {
  const uint4 raw = reinterpret_cast<const uint4*>(p)[chunk];
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 f = __half22float2(h[e]);
    v[2 * e] += f.x;
    v[2 * e + 1] += f.y;
  }
}

// The row's values as floats, from the raw 16-byte chunks the plain form keeps (its source row is FP16, so
// holding it as halves loses nothing and takes half the registers).
__device__ __forceinline__ void Unpack8(float (&f)[8], const uint4& raw) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 x = __half22float2(h[e]);
    f[2 * e] = x.x;
    f[2 * e + 1] = x.y;
  }
}

// One warp per row held in registers: each lane loads kChunks 16-byte chunks (8 halves), so the row is read
// from memory once and written once (cols % 8 == 0, cols <= 256 * kChunks). kSources: the row has a table
// or addends, summed in floats; the plain form keeps the row as halves and every lane's loads independent
// (up to 768 columns at 32 registers: 64 warps per multiprocessor, BERT-base at batch 128 in two waves).
template <int kChunks, bool kSources>
__global__ void __launch_bounds__(256, kSources ? 1 : (kChunks <= 3 ? 8 : 4))
    LayerNormHalfKernel(LnSources in, const __half* scale, const __half* bias, __half* y, int64_t rows, int cols,
                        float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const __half* src_row = in.x + row * cols;
  if (kSources && in.table) {
    int64_t k = in.ids64 ? static_cast<const int64_t*>(in.ids)[row] : static_cast<const int32_t*>(in.ids)[row];
    if (k < 0) k += in.table_rows;
    k = k < 0 ? 0 : (k >= in.table_rows ? in.table_rows - 1 : k);
    src_row = in.table + k * cols;
  }
  const uint4* src = reinterpret_cast<const uint4*>(src_row);
  // kSources: the summed row as floats; otherwise the raw chunks (unused array of the other form: 1 element).
  float v[kSources ? kChunks : 1][8];
  uint4 raw[kSources ? 1 : kChunks];
  float sum = 0.f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int chunk = c * 32 + lane;
    if constexpr (!kSources) {
      raw[c] = make_uint4(0, 0, 0, 0);
      if (chunk * 8 < cols) raw[c] = src[chunk];
      float f[8];
      Unpack8(f, raw[c]);
#pragma unroll
      for (int e = 0; e < 8; ++e) sum += f[e];
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) v[c][e] = 0.f;
      if (chunk * 8 < cols) {
        Unpack8(v[c], src[chunk]);
#pragma unroll
        for (int a = 0; a < 2; ++a) {
          if (in.add[a]) AddRow(v[c], in.add[a] + (row % in.period[a]) * cols, chunk);
        }
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) sum += v[c][e];
    }
  }
  // Chunk c's values as floats, whichever form holds them.
  auto values = [&](int c, float (&f)[8]) {
    if constexpr (kSources) {
#pragma unroll
      for (int e = 0; e < 8; ++e) f[e] = v[c][e];
    } else {
      Unpack8(f, raw[c]);
    }
  };
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float mean = sum / static_cast<float>(cols);
  float var = 0.f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    if ((c * 32 + lane) * 8 >= cols) continue;
    float f[8];
    values(c, f);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float d = f[e] - mean;
      var += d * d;
    }
  }
  for (int o = 16; o > 0; o /= 2) var += __shfl_xor_sync(0xffffffffu, var, o);
  const float rstd = rsqrtf(var / static_cast<float>(cols) + eps);
  uint4* dst = reinterpret_cast<uint4*>(y + row * cols);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int chunk = c * 32 + lane;
    if (chunk * 8 >= cols) continue;
    float f[8];
    values(c, f);
    const uint4 sraw = reinterpret_cast<const uint4*>(scale)[chunk];
    uint4 braw = make_uint4(0, 0, 0, 0);
    if (bias) braw = reinterpret_cast<const uint4*>(bias)[chunk];
    const __half2* sh = reinterpret_cast<const __half2*>(&sraw);
    const __half2* bh = reinterpret_cast<const __half2*>(&braw);
    uint4 out;
    __half2* oh = reinterpret_cast<__half2*>(&out);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 sc = __half22float2(sh[e]), bi = __half22float2(bh[e]);
      oh[e] = __floats2half2_rn((f[2 * e] - mean) * rstd * sc.x + bi.x, (f[2 * e + 1] - mean) * rstd * sc.y + bi.y);
    }
    dst[chunk] = out;
  }
}

}  // namespace

cudaError_t LayerNormHalf(const LayerNormInputs& inputs, const void* scale, const void* bias, void* y, int64_t rows,
                          int64_t cols, float epsilon, cudaStream_t s) {
  if (rows * cols == 0) return cudaSuccess;
  if (cols % 8 != 0 || cols > 2048) return cudaErrorInvalidValue;
  LnSources in;
  in.x = static_cast<const __half*>(inputs.x);
  in.table = static_cast<const __half*>(inputs.table);
  in.ids = inputs.ids;
  in.ids64 = inputs.ids64;
  in.table_rows = inputs.table_rows;
  for (int a = 0; a < 2; ++a) {
    in.add[a] = static_cast<const __half*>(inputs.add[a]);
    in.period[a] = inputs.period[a] > 0 ? inputs.period[a] : 1;
  }
  constexpr int kRowsPerBlock = 8;  // one warp each
  const unsigned blocks = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const auto* sh = static_cast<const __half*>(scale);
  const auto* bh = static_cast<const __half*>(bias);
  auto* yh = static_cast<__half*>(y);
  const int c = static_cast<int>(cols);
  auto launch = [&](auto chunks, auto sources) {
    LayerNormHalfKernel<decltype(chunks)::value, decltype(sources)::value>
        <<<blocks, kRowsPerBlock * 32, 0, s>>>(in, sh, bh, yh, rows, c, epsilon);
  };
  auto by_width = [&](auto sources) {
    if (cols <= 256) launch(std::integral_constant<int, 1>(), sources);
    else if (cols <= 512) launch(std::integral_constant<int, 2>(), sources);
    else if (cols <= 768) launch(std::integral_constant<int, 3>(), sources);
    else if (cols <= 1024) launch(std::integral_constant<int, 4>(), sources);
    else launch(std::integral_constant<int, 8>(), sources);
  };
  if (in.table || in.add[0] || in.add[1]) {
    by_width(std::true_type());
  } else {
    by_width(std::false_type());
  }
  return cudaGetLastError();
}

}  // namespace kiln::cuda::k
