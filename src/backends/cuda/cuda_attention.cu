// Kiln's fused attention kernel (FP16 storage, FP16 tensor cores, FP32 accumulation and softmax), in the
// manner of FlashAttention-2: one block of 4 warps owns 64 query rows (16 per warp) of one (batch, head);
// it streams the keys and values through shared memory in tiles of 64 (double-buffered with cp.async),
// computes the scores of a tile with mma.sync, keeps a running row maximum and sum (online softmax), and
// accumulates P V in registers. The score matrix never reaches device memory.
//
// Every operand is addressed through strides with the head dim contiguous, so the layer can read Q, K and
// V straight out of the fused QKV product ([batch, seq, 3 * hidden]) and write the context as
// [batch, seq, hidden]: the head split and merge cost no copies.
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "backends/cuda/cuda_kernels.h"

namespace kiln::cuda::k {
namespace {

constexpr int kRowsPerWarp = 16;
constexpr int kBlockN = 64;  // keys per tile
constexpr int kPad = 8;                         // halves of padding per shared row: ldmatrix without bank conflicts
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; `bytes` 0 fills the destination with zeros (rows past the end).
__device__ __forceinline__ void CpAsync16(void* dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void Ldmatrix4(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}
__device__ __forceinline__ void Ldmatrix4Trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}

// c += a (16x16, row-major) * b (16x8, column-major), FP16 in, FP32 accumulate.
__device__ __forceinline__ void Mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t PackHalf2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Copies rows [row0, row0 + kRows) of a [rows, D] operand (row stride `ld` elements) into shared memory
// (row pitch D + kPad), zero-filling rows at or past `rows` (unless kEven: every row exists).
template <int D, int kRows, int kThreads, bool kEven>
__device__ __forceinline__ void LoadTile(__half* dst, const __half* src, int64_t ld, int row0, int rows) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert(kThreads % kChunks == 0, "a thread copies the same column of every row it copies");
  constexpr int kRowStep = kThreads / kChunks;
  const int col = (threadIdx.x % kChunks) * 8;
  int r = threadIdx.x / kChunks;
  const __half* g = src + static_cast<int64_t>(row0 + r) * ld + col;
  const int64_t step = ld * kRowStep;
#pragma unroll
  for (int i = 0; i < kRows / kRowStep; ++i, r += kRowStep, g += step) {
    if constexpr (kEven) {
      CpAsync16(dst + r * (D + kPad) + col, g, 16);
    } else {
      const bool in = row0 + r < rows;
      CpAsync16(dst + r * (D + kPad) + col, in ? g : src, in ? 16 : 0);
    }
  }
}

// How the kernel adds the mask: none; one FP16 row of key biases per (batch, head), contiguous and 16-byte
// aligned, copied to shared memory with cp.async (BERT's [B,1,1,S]); any other broadcast of [B,H,Sq,Sk]
// (per key through a float tile, or per query row from global memory).
enum MaskMode : int { kMaskNone = 0, kMaskKeys = 1, kMaskGeneral = 2 };

// One block of kWarps warps owns kWarps * 16 query rows of one (batch, head); the next key tile's loads
// are in flight while the current one is computed. At most 128 registers a thread at head dim <= 64 (16
// warps per multiprocessor: BERT's 128 keys are only two tiles, so the other blocks on the multiprocessor
// hide each block's first loads). kEven: the query and key counts are multiples of the block's rows and
// of the tile, so no row or key needs a bounds check (BERT's 128 and 384). A persistent grid whose blocks
// prefetch their next (batch, head) was tried and measured slower (89 us against 78 us per BERT-base layer
// at batch 128; 0.62 ms against 0.51 ms at sequence 384).
template <int D, int kWarps, int kMask, bool kEven>
__global__ void __launch_bounds__(kWarps * 32, (D <= 64 ? 16 : 8) / kWarps) FlashAttentionKernel(AttentionArgs a) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kBlockM = kWarps * kRowsPerWarp;
  constexpr int kLd = D + kPad;
  constexpr int kTilesN = kBlockN / 8;  // score n-tiles per key tile
  constexpr int kTilesD = D / 8;        // output n-tiles
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half* sq = reinterpret_cast<__half*>(smem_raw);  // [kBlockM][kLd]; at the end each warp's output rows
  __half* sk = sq + kBlockM * kLd;                   // [2][kBlockN][kLd] (by tile parity)
  __half* sv = sk + 2 * kBlockN * kLd;               // [2][kBlockN][kLd]
  // Per key tile: kMaskGeneral's key bias (mask * log2e, -inf past the end) as floats; kMaskKeys' raw FP16
  // mask copied with cp.async.
  float* sbias = reinterpret_cast<float*>(sv + 2 * kBlockN * kLd);  // [2][kBlockN]
  __half* smask = reinterpret_cast<__half*>(sbias + 2 * kBlockN);   // [2][kBlockN]

  const int qblocks = (a.sq + kBlockM - 1) / kBlockM, tiles = (a.sk + kBlockN - 1) / kBlockN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const __half* mask = static_cast<const __half*>(a.mask);
  const bool row_mask = kMask == kMaskGeneral && a.mask_stride[2] != 0;  // the mask differs per query row

  // Block w: query rows [m0, m0 + kBlockM) of z = (batch, head); consecutive blocks take the query blocks
  // of one head together, so its keys and values are read from L2 after the first.
  const int w = static_cast<int>(blockIdx.x), z = w / qblocks;
  const int ib = z / a.heads, ih = z % a.heads, m0 = (w % qblocks) * kBlockM;
  const __half* kp = static_cast<const __half*>(a.k) + ib * a.k_stride[0] + ih * a.k_stride[1];
  const __half* vp = static_cast<const __half*>(a.v) + ib * a.v_stride[0] + ih * a.v_stride[1];
  const int64_t mask_base = kMask != kMaskNone ? ib * a.mask_stride[0] + ih * a.mask_stride[1] : 0;
  auto issue = [&](int t, int buf) {  // the loads of key tile t (and of the queries with the first)
    if (t == 0) {
      const __half* q = static_cast<const __half*>(a.q) + ib * a.q_stride[0] + ih * a.q_stride[1];
      LoadTile<D, kBlockM, kThreads, kEven>(sq, q, a.q_stride[2], m0, a.sq);
    }
    LoadTile<D, kBlockN, kThreads, kEven>(sk + buf * kBlockN * kLd, kp, a.k_stride[2], t * kBlockN, a.sk);
    LoadTile<D, kBlockN, kThreads, kEven>(sv + buf * kBlockN * kLd, vp, a.v_stride[2], t * kBlockN, a.sk);
    if constexpr (kMask == kMaskKeys) {
      // Without a blocking load, so the warps that copy it go on to the current tile at once.
      const int c = threadIdx.x;
      if (c < kBlockN / 8) {
        const int key = t * kBlockN + c * 8;
        const int valid = kEven ? 8 : (key < a.sk ? min(8, a.sk - key) : 0);
        CpAsync16(smask + buf * kBlockN + c * 8, valid ? mask + mask_base + key : mask, valid * 2);
      }
    } else if constexpr (kMask == kMaskGeneral) {
      for (int j = threadIdx.x; j < kBlockN; j += kThreads) {
        const int key = t * kBlockN + j;
        float bias = -INFINITY;
        if (key < a.sk) {
          bias = 0.f;
          if (!row_mask) bias = __half2float(mask[mask_base + key * a.mask_stride[3]]) * kLog2e;
        }
        sbias[buf * kBlockN + j] = bias;
      }
    }
  };

  issue(0, 0);
  CpAsyncCommit();

  // Per thread: rows g = lane / 4 and g + 8 of the warp's 16, columns 2 * (lane % 4) + {0, 1} of each n-tile.
  float o[kTilesD][4];
  float row_max[2], row_sum[2];
  const float scale = a.scale * kLog2e;
  const int g = lane / 4, tq = lane % 4;
  const int qrow0 = m0 + warp * kRowsPerWarp + g;  // this thread's first query row

  for (int t = 0; t < tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < tiles) {
      issue(t + 1, buf ^ 1);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int i = 0; i < kTilesD; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
      row_max[0] = row_max[1] = -INFINITY;
      row_sum[0] = row_sum[1] = 0.f;
    }
    const __half* kt = sk + buf * kBlockN * kLd;
    const __half* vt = sv + buf * kBlockN * kLd;

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys. The query fragments are read from shared
    // memory again for each tile rather than kept in registers (16 registers at head dim 64: the kernel
    // would spill).
    float s[kTilesN][4];
#pragma unroll
    for (int n = 0; n < kTilesN; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qf[4];
      Ldmatrix4(qf, sq + (warp * kRowsPerWarp + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int n = 0; n < kTilesN; n += 2) {
        uint32_t kf[4];
        Ldmatrix4(kf, kt + (n * 8 + (lane / 16) * 8 + lane % 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
        Mma(s[n], qf, kf[0], kf[1]);
        Mma(s[n + 1], qf, kf[2], kf[3]);
      }
    }

    // Online softmax in base 2: x = (scale * s + mask) * log2(e). A thread's two columns of an n-tile are
    // the same keys for both its rows, so their biases are read once.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kTilesN; ++n) {
      const int col = n * 8 + 2 * tq;
      float kb[2] = {0.f, 0.f};
      if constexpr (kMask == kMaskKeys) {
        const float2 m = __half22float2(*reinterpret_cast<const __half2*>(smask + buf * kBlockN + col));
        kb[0] = m.x * kLog2e;
        kb[1] = m.y * kLog2e;
      } else if constexpr (kMask == kMaskGeneral) {
        kb[0] = sbias[buf * kBlockN + col];
        kb[1] = sbias[buf * kBlockN + col + 1];
      }
      if constexpr (!kEven && kMask != kMaskGeneral) {  // kMaskGeneral's bias is -inf past the end
        if (t * kBlockN + col >= a.sk) kb[0] = -INFINITY;
        if (t * kBlockN + col + 1 >= a.sk) kb[1] = -INFINITY;
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = fmaf(s[n][e], scale, kb[e & 1]);
        if (kMask == kMaskGeneral && row_mask) {
          const int row = qrow0 + (e >> 1) * 8, key = t * kBlockN + col + (e & 1);
          if (row < a.sq && key < a.sk) {
            x += __half2float(mask[mask_base + row * a.mask_stride[2] + key * a.mask_stride[3]]) * kLog2e;
          }
        }
        s[n][e] = x;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], x);
      }
    }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      // A row whose keys are all -inf so far keeps 0 as its base, so that no inf - inf appears.
      const float base = new_max == -INFINITY ? 0.f : new_max;
      corr[r] = Exp2(row_max[r] - base);
      row_max[r] = new_max;
      tile_max[r] = base;
    }
    float tile_sum[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < kTilesN; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = Exp2(s[n][e] - tile_max[e >> 1]);
        tile_sum[e >> 1] += s[n][e];
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) row_sum[r] = row_sum[r] * corr[r] + tile_sum[r];
#pragma unroll
    for (int i = 0; i < kTilesD; ++i) {
      o[i][0] *= corr[0];
      o[i][1] *= corr[0];
      o[i][2] *= corr[1];
      o[i][3] *= corr[1];
    }

    // O += P V: the score accumulators of two adjacent n-tiles are the A fragment of one k-step.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t pf[4];
      pf[0] = PackHalf2(s[2 * kk][0], s[2 * kk][1]);
      pf[1] = PackHalf2(s[2 * kk][2], s[2 * kk][3]);
      pf[2] = PackHalf2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pf[3] = PackHalf2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int n = 0; n < kTilesD; n += 2) {
        uint32_t vf[4];
        Ldmatrix4Trans(vf, vt + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kLd + n * 8 + (lane / 16) * 8);
        Mma(o[n], pf, vf[0], vf[1]);
        Mma(o[n + 1], pf, vf[2], vf[3]);
      }
    }
    if (t + 1 < tiles) __syncthreads();  // the next tile's loads overwrite this tile's buffers
  }

  // Normalize, stage the warp's 16 rows in its own rows of the query buffer (no longer read), and write
  // them as whole 16-byte chunks.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.f ? 1.f / l : 0.f;
  }
  __half* stage = sq + warp * kRowsPerWarp * kLd;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
#pragma unroll
    for (int i = 0; i < kTilesD; ++i) {
      *reinterpret_cast<__half2*>(stage + (g + r * 8) * kLd + i * 8 + 2 * tq) =
          __floats2half2_rn(o[i][2 * r] * inv[r], o[i][2 * r + 1] * inv[r]);
    }
  }
  __syncwarp();
  __half* out = static_cast<__half*>(a.o) + ib * a.o_stride[0] + ih * a.o_stride[1];
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int c = lane; c < kRowsPerWarp * kChunks; c += 32) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const int row = m0 + warp * kRowsPerWarp + r;
    if (kEven || row < a.sq) {
      *reinterpret_cast<uint4*>(out + static_cast<int64_t>(row) * a.o_stride[2] + col) =
          *reinterpret_cast<const uint4*>(stage + r * kLd + col);
    }
  }
}

// Raises `kernel`'s dynamic shared-memory limit to `bytes` once per device, recorded in `raised` (one bit per
// device; a function attribute, not a stream operation, so it may also happen while a graph is captured).
template <typename Kernel>
cudaError_t RaiseSmemLimitOnce(Kernel kernel, size_t bytes, std::atomic<uint64_t>& raised) {
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  const uint64_t bit = uint64_t{1} << (device & 63);
  if (raised.load() & bit) return cudaSuccess;
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (e == cudaSuccess) raised.fetch_or(bit);
  return e;
}

template <int D, int kWarps, int kMask, bool kEven>
cudaError_t LaunchFlashVariant(const AttentionArgs& a, cudaStream_t s) {
  constexpr int kBlockM = kWarps * kRowsPerWarp;
  constexpr int kLd = D + kPad;
  constexpr size_t kSmem = sizeof(__half) * (kBlockM + 4 * kBlockN) * kLd + (sizeof(float) + sizeof(__half)) * 2 * kBlockN;
  static std::atomic<uint64_t> raised{0};
  auto* kernel = FlashAttentionKernel<D, kWarps, kMask, kEven>;
  if (cudaError_t e = RaiseSmemLimitOnce(kernel, kSmem, raised); e != cudaSuccess) return e;
  const int64_t blocks = (a.sq + kBlockM - 1) / kBlockM * static_cast<int64_t>(a.batch) * a.heads;
  if (blocks > (int64_t{1} << 31) - 1) return cudaErrorInvalidValue;
  kernel<<<static_cast<unsigned>(blocks), kWarps * 32, kSmem, s>>>(a);
  return cudaGetLastError();
}

// Picks the mask mode and whether bounds checks can be left out.
template <int D, int kWarps>
cudaError_t LaunchFlash(const AttentionArgs& a, cudaStream_t s) {
  constexpr int kBlockM = kWarps * kRowsPerWarp;
  const bool even = a.sq % kBlockM == 0 && a.sk % kBlockN == 0;
  const auto* mask = static_cast<const __half*>(a.mask);
  if (!mask) {
    return even ? LaunchFlashVariant<D, kWarps, kMaskNone, true>(a, s)
                : LaunchFlashVariant<D, kWarps, kMaskNone, false>(a, s);
  }
  const bool keys = a.mask_stride[2] == 0 && a.mask_stride[3] == 1 && a.mask_stride[0] % 8 == 0 &&
                    a.mask_stride[1] % 8 == 0 && reinterpret_cast<uintptr_t>(mask) % 16 == 0;
  if (keys) {
    return even ? LaunchFlashVariant<D, kWarps, kMaskKeys, true>(a, s)
                : LaunchFlashVariant<D, kWarps, kMaskKeys, false>(a, s);
  }
  return LaunchFlashVariant<D, kWarps, kMaskGeneral, false>(a, s);
}

// ---- FP32 ---------------------------------------------------------------------------------------------
// The same algorithm in strict FP32 (FMA on the CUDA cores, no tensor cores, so that an FP32 plan stays
// FP32): one block of 256 threads owns 64 query rows of one (batch, head), head dim 64, and streams the
// keys and values through shared memory in tiles of 64. Thread (ty, tx) = (tid / 16, tid % 16) computes
// the scores of rows 4 ty .. 4 ty + 3 against keys tx, tx + 16, tx + 32, tx + 48 (so that its 16 row
// partners, one half-warp, reduce the row's max and sum with shuffles), writes its probabilities to shared
// memory, and accumulates the outputs of the same rows at dims 4 tx .. 4 tx + 3. Shared rows are padded
// to 68 floats: the float4 reads of 8 consecutive threads then fall in distinct banks.
constexpr int kF32Rows = 64, kF32Keys = 64, kF32D = 64, kF32Ld = kF32D + 4, kF32Threads = 256;
constexpr size_t kF32Smem = sizeof(float) * (4 * 64 * kF32Ld + kF32Keys);

__device__ __forceinline__ float Dot4(const float4& a, const float4& b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

__global__ void __launch_bounds__(kF32Threads, 2) FlashAttentionF32Kernel(AttentionArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sq = reinterpret_cast<float*>(smem_raw);  // [64][kF32Ld] queries
  float* sk = sq + kF32Rows * kF32Ld;               // [64][kF32Ld] keys of the tile
  float* sv = sk + kF32Keys * kF32Ld;               // [64][kF32Ld] values of the tile
  float* sp = sv + kF32Keys * kF32Ld;               // [64][kF32Ld] probabilities of the tile
  float* sbias = sp + kF32Rows * kF32Ld;            // [64] key bias: mask * log2e, -inf past the end
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int qblocks = (a.sq + kF32Rows - 1) / kF32Rows, tiles = (a.sk + kF32Keys - 1) / kF32Keys;
  const int z = static_cast<int>(blockIdx.x) / qblocks, m0 = (static_cast<int>(blockIdx.x) % qblocks) * kF32Rows;
  const int b = z / a.heads, h = z % a.heads;
  const float* q = static_cast<const float*>(a.q) + b * a.q_stride[0] + h * a.q_stride[1];
  const float* kp = static_cast<const float*>(a.k) + b * a.k_stride[0] + h * a.k_stride[1];
  const float* vp = static_cast<const float*>(a.v) + b * a.v_stride[0] + h * a.v_stride[1];
  const float* mask = static_cast<const float*>(a.mask);
  const bool row_mask = mask && a.mask_stride[2] != 0;
  const int64_t mask_base = mask ? b * a.mask_stride[0] + h * a.mask_stride[1] : 0;
  // Rows [row0, row0 + 64) of an operand into shared memory, zeros past `rows`.
  auto load = [&](float* dst, const float* src, int64_t ld, int row0, int rows) {
    for (int c = tid; c < 64 * (kF32D / 4); c += kF32Threads) {
      const int r = c / (kF32D / 4), col = (c % (kF32D / 4)) * 4;
      const bool in = row0 + r < rows;
      CpAsync16(dst + r * kF32Ld + col, in ? src + static_cast<int64_t>(row0 + r) * ld + col : src, in ? 16 : 0);
    }
  };
  load(sq, q, a.q_stride[2], m0, a.sq);

  float o[4][4], row_max[4], row_sum[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    row_max[i] = -INFINITY;
    row_sum[i] = 0.f;
#pragma unroll
    for (int j = 0; j < 4; ++j) o[i][j] = 0.f;
  }
  const float scale = a.scale * kLog2e;
  for (int t = 0; t < tiles; ++t) {
    __syncthreads();  // the previous tile's keys, values and probabilities are consumed
    load(sk, kp, a.k_stride[2], t * kF32Keys, a.sk);
    load(sv, vp, a.v_stride[2], t * kF32Keys, a.sk);
    CpAsyncCommit();
    if (tid < kF32Keys) {
      const int key = t * kF32Keys + tid;
      float bias = -INFINITY;
      if (key < a.sk) {
        bias = 0.f;
        if (mask && !row_mask) bias = mask[mask_base + key * a.mask_stride[3]] * kLog2e;
      }
      sbias[tid] = bias;
    }
    CpAsyncWait<0>();
    __syncthreads();

    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = 0.f;
    }
#pragma unroll 4
    for (int d = 0; d < kF32D; d += 4) {
      float4 qv[4], kv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) qv[i] = *reinterpret_cast<const float4*>(sq + (ty * 4 + i) * kF32Ld + d);
#pragma unroll
      for (int j = 0; j < 4; ++j) kv[j] = *reinterpret_cast<const float4*>(sk + (tx + 16 * j) * kF32Ld + d);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = Dot4(qv[i], kv[j], s[i][j]);
      }
    }

    // Online softmax in base 2, as in the FP16 kernel.
    float corr[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = m0 + ty * 4 + i;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = tx + 16 * j, key = t * kF32Keys + col;
        float x = s[i][j] * scale + sbias[col];
        if (row_mask && row < a.sq && key < a.sk) {
          x += mask[mask_base + row * a.mask_stride[2] + key * a.mask_stride[3]] * kLog2e;
        }
        s[i][j] = x;
        mx = fmaxf(mx, x);
      }
#pragma unroll
      for (int off = 1; off < 16; off *= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float new_max = fmaxf(row_max[i], mx);
      const float base = new_max == -INFINITY ? 0.f : new_max;
      corr[i] = Exp2(row_max[i] - base);
      row_max[i] = new_max;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = Exp2(s[i][j] - base);
        sp[(ty * 4 + i) * kF32Ld + tx + 16 * j] = p;
        sum += p;
      }
      row_sum[i] = row_sum[i] * corr[i] + sum;
#pragma unroll
      for (int j = 0; j < 4; ++j) o[i][j] *= corr[i];
    }
    __syncthreads();

    // O += P V for this thread's rows and dims 4 tx .. 4 tx + 3.
#pragma unroll 4
    for (int c = 0; c < kF32Keys; c += 4) {
      float4 vv[4];
#pragma unroll
      for (int cc = 0; cc < 4; ++cc) vv[cc] = *reinterpret_cast<const float4*>(sv + (c + cc) * kF32Ld + tx * 4);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float4 p = *reinterpret_cast<const float4*>(sp + (ty * 4 + i) * kF32Ld + c);
        const float pc[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
        for (int cc = 0; cc < 4; ++cc) {
          o[i][0] = fmaf(pc[cc], vv[cc].x, o[i][0]);
          o[i][1] = fmaf(pc[cc], vv[cc].y, o[i][1]);
          o[i][2] = fmaf(pc[cc], vv[cc].z, o[i][2]);
          o[i][3] = fmaf(pc[cc], vv[cc].w, o[i][3]);
        }
      }
    }
  }

  float* out = static_cast<float*>(a.o) + b * a.o_stride[0] + h * a.o_stride[1];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float l = row_sum[i];
#pragma unroll
    for (int off = 1; off < 16; off *= 2) l += __shfl_xor_sync(0xffffffffu, l, off);
    const int row = m0 + ty * 4 + i;
    if (row >= a.sq) continue;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    *reinterpret_cast<float4*>(out + static_cast<int64_t>(row) * a.o_stride[2] + tx * 4) =
        make_float4(o[i][0] * inv, o[i][1] * inv, o[i][2] * inv, o[i][3] * inv);
  }
}

}  // namespace

bool FlashAttentionF32Supports(int head_dim) { return head_dim == kF32D; }

cudaError_t FlashAttentionF32(const AttentionArgs& a, cudaStream_t s) {
  if (a.sq <= 0 || a.batch * a.heads <= 0) return cudaSuccess;
  if (a.head_dim != kF32D) return cudaErrorInvalidValue;
  static std::atomic<uint64_t> raised{0};
  if (cudaError_t e = RaiseSmemLimitOnce(FlashAttentionF32Kernel, kF32Smem, raised); e != cudaSuccess) return e;
  const int64_t blocks = (a.sq + kF32Rows - 1) / kF32Rows * static_cast<int64_t>(a.batch) * a.heads;
  if (blocks > (int64_t{1} << 31) - 1) return cudaErrorInvalidValue;
  FlashAttentionF32Kernel<<<static_cast<unsigned>(blocks), kF32Threads, kF32Smem, s>>>(a);
  return cudaGetLastError();
}

bool FlashAttentionSupports(int head_dim) { return head_dim == 32 || head_dim == 64 || head_dim == 128; }

cudaError_t FlashAttention(const AttentionArgs& a, cudaStream_t s) {
  if (a.sq <= 0 || a.batch * a.heads <= 0) return cudaSuccess;
  // 64 query rows per block, or 128 (K and V read by half as many blocks; faster at sequence 384). 32
  // keys per tile (96 registers, 5 blocks per multiprocessor) was tried and measured slower (83 us against
  // 78 us per BERT-base layer at batch 128).
  const bool wide = a.block_rows == 128;
  switch (a.head_dim) {
    case 32: return wide ? LaunchFlash<32, 8>(a, s) : LaunchFlash<32, 4>(a, s);
    case 64: return wide ? LaunchFlash<64, 8>(a, s) : LaunchFlash<64, 4>(a, s);
    case 128: return wide ? LaunchFlash<128, 8>(a, s) : LaunchFlash<128, 4>(a, s);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kiln::cuda::k
