// Kiln's own 8-bit element-wise kernels, for what surrounds the 8-bit convolutions of a quantized model:
//   "kiln.quantize"    QuantizeLinear f32 -> u8/i8, per-tensor constant scale and zero point
//   "kiln.dequantize"  DequantizeLinear u8/i8 -> f32, per-tensor constant scale and zero point
//   "kiln.qadd"        kiln.QAdd of two same-shape tensors (the residual additions of a quantized ResNet)
// Each is an AVX-512 loop (16 elements per step; chosen at run time where the CPU has AVX512F/BW) with a
// plain loop for the tail and for other CPUs. Both compute the same float operations in the same order
// as the reference kernels (src/ops/detection_quant.cc, src/ops/quantized.cc): separate multiplies and
// adds (no fused multiply-add), a true division by the scale, round half to even after clamping into the
// output range (the plain loop rounds by adding and subtracting 1.5 * 2^23, exact for values this small);
// so results are bit-identical to the reference. (The plain loop alone, which the compiler does not
// vectorize because of the 8-bit narrowing, ran ResNet-50's 16 residual additions in 14.6 ms at batch 1,
// twice the time of all 53 convolutions.)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "backends/cpu/onednn_common.h"
#include "backends/cpu/onednn_kernels.h"

namespace kiln::cpu::onednn {
namespace {

constexpr float kRound = 12582912.f;  // 1.5 * 2^23: (v + kRound) - kRound rounds v half to even


// A per-tensor parameter: an f32 constant scale or an 8-bit constant zero point of one element (a missing
// zero point counts as present, 0).
bool PerTensorScale(const Node& node, size_t i) {
  const Tensor* t = ConstantInput(node, i);
  return t && t->numel() == 1 && t->dtype() == DType::kFloat32;
}
bool PerTensorZero(const Node& node, size_t i) {
  if (!node.input(i)) return true;
  const Tensor* t = ConstantInput(node, i);
  return t && t->numel() == 1 && Is8BitInteger(t->dtype());
}

// v (already divided by the scale) clamped into [lo, hi] - zp, rounded half to even, plus zp; NaN gives 0
// (QuantizeLinear's reference saturates NaN to 0).
template <typename Q>
inline Q Requantize(float v, float zp) {
  constexpr float lo = static_cast<float>(std::numeric_limits<Q>::lowest());
  constexpr float hi = static_cast<float>(std::numeric_limits<Q>::max());
  const bool nan = v != v;
  float c = std::min(std::max(v, lo - zp), hi - zp);
  c = (c + kRound) - kRound;
  const float r = nan ? 0.f : c + zp;
  return static_cast<Q>(static_cast<int32_t>(r));
}

// ---- AVX-512 (16 lanes) ----

bool HaveAvx512() {
  static const bool have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return have;
}

// 16 8-bit values widened to i32.
template <typename Q>
__attribute__((target("avx512f,avx512bw"))) inline __m512i Load16(const Q* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (std::is_same_v<Q, uint8_t>) {
    return _mm512_cvtepu8_epi32(v);
  } else {
    return _mm512_cvtepi8_epi32(v);
  }
}

// Requantize for 16 lanes (see the scalar form): clamp, round half to even, add zp, NaN -> 0, narrow.
template <typename Q>
__attribute__((target("avx512f,avx512bw"))) inline void Store16(Q* p, __m512 v, float zp) {
  constexpr float lo = static_cast<float>(std::numeric_limits<Q>::lowest());
  constexpr float hi = static_cast<float>(std::numeric_limits<Q>::max());
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  __m512 c = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(lo - zp)), _mm512_set1_ps(hi - zp));
  c = _mm512_roundscale_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  c = _mm512_mask_mov_ps(_mm512_add_ps(c, _mm512_set1_ps(zp)), nan, _mm512_setzero_ps());
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(c)));
}

template <typename Q>
__attribute__((target("avx512f,avx512bw"))) int64_t QuantizeAvx512(const float* x, Q* y, int64_t n, float scale,
                                                                   float zp) {
  const __m512 s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) Store16(y + i, _mm512_div_ps(_mm512_loadu_ps(x + i), s), zp);
  return i;
}

template <typename Q>
__attribute__((target("avx512f,avx512bw"))) int64_t DequantizeAvx512(const Q* x, float* y, int64_t n, float scale,
                                                                     int32_t zp) {
  const __m512 s = _mm512_set1_ps(scale);
  const __m512i z = _mm512_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(Load16(x + i), z)), s));
  }
  return i;
}

template <typename Q>
__attribute__((target("avx512f,avx512bw"))) int64_t QAddAvx512(const Q* a, const Q* b, Q* y, int64_t n, float sa,
                                                               int32_t za, float sb, int32_t zb, float sy, float zy,
                                                               bool relu) {
  const __m512 vsa = _mm512_set1_ps(sa), vsb = _mm512_set1_ps(sb), vsy = _mm512_set1_ps(sy);
  const __m512i vza = _mm512_set1_epi32(za), vzb = _mm512_set1_epi32(zb);
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 fa = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(Load16(a + i), vza)), vsa);
    const __m512 fb = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(Load16(b + i), vzb)), vsb);
    __m512 v = _mm512_add_ps(fa, fb);
    if (relu) v = _mm512_max_ps(v, zero);
    Store16(y + i, _mm512_div_ps(v, vsy), zy);
  }
  return i;
}

// ---- the loops: AVX-512 where it runs, plain code for the tail and elsewhere ----

template <typename Q>
void QuantizeLoop(const float* x, Q* y, int64_t n, float scale, float zp) {
  int64_t i = HaveAvx512() ? QuantizeAvx512(x, y, n, scale, zp) : 0;
  for (; i < n; ++i) y[i] = Requantize<Q>(x[i] / scale, zp);
}

template <typename Q>
void DequantizeLoop(const Q* x, float* y, int64_t n, float scale, int32_t zp) {
  int64_t i = HaveAvx512() ? DequantizeAvx512(x, y, n, scale, zp) : 0;
  for (; i < n; ++i) y[i] = static_cast<float>(static_cast<int32_t>(x[i]) - zp) * scale;
}

template <typename A, typename B, typename Y>
void QAddLoop(const A* a, const B* b, Y* y, int64_t n, float sa, int32_t za, float sb, int32_t zb, float sy,
              float zy, bool relu) {
  int64_t i = 0;
  if constexpr (std::is_same_v<A, B> && std::is_same_v<A, Y>) {
    if (HaveAvx512()) i = QAddAvx512(a, b, y, n, sa, za, sb, zb, sy, zy, relu);
  }
  for (; i < n; ++i) {
    float v = static_cast<float>(static_cast<int32_t>(a[i]) - za) * sa +
              static_cast<float>(static_cast<int32_t>(b[i]) - zb) * sb;
    v = relu ? std::max(v, 0.f) : v;
    y[i] = Requantize<Y>(v / sy, zy);
  }
}

float Scale(const Tensor* t) { return static_cast<float>(t->GetAsDouble(0)); }
int32_t Zero(const Tensor* t) { return t ? static_cast<int32_t>(t->GetAsInt64(0)) : 0; }

class QuantizeKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override {
    const Tensor& x = *ctx.input(0);
    if (x.dtype() != DType::kFloat32) return InvalidArgument("kiln.quantize needs f32, got " + x.Description());
    const Tensor* zp = ctx.input(2);
    const DType out = zp ? zp->dtype() : DType::kUInt8;
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, out, x.sizes()));
    const float s = Scale(ctx.input(1));
    const float z = static_cast<float>(Zero(zp));
    if (out == DType::kUInt8) {
      QuantizeLoop(x.data<float>(), y->data<uint8_t>(), x.numel(), s, z);
    } else {
      QuantizeLoop(x.data<float>(), y->data<int8_t>(), x.numel(), s, z);
    }
    return Status::Ok();
  }
};

class DequantizeKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override {
    const Tensor& x = *ctx.input(0);
    if (!Is8BitInteger(x.dtype())) return InvalidArgument("kiln.dequantize needs u8 or i8, got " + x.Description());
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, DType::kFloat32, x.sizes()));
    const float s = Scale(ctx.input(1));
    const int32_t z = Zero(ctx.input(2));
    if (x.dtype() == DType::kUInt8) {
      DequantizeLoop(x.data<uint8_t>(), y->data<float>(), x.numel(), s, z);
    } else {
      DequantizeLoop(x.data<int8_t>(), y->data<float>(), x.numel(), s, z);
    }
    return Status::Ok();
  }
};

class QAddKernel final : public CpuKernel {
 public:
  Status Run(KernelContext& ctx) override {
    const Tensor& a = *ctx.input(0);
    const Tensor& b = *ctx.input(3);
    if (a.sizes() != b.sizes() || !Is8BitInteger(a.dtype()) || !Is8BitInteger(b.dtype())) {
      return RunReferenceKernel(ctx);  // broadcasting: the reference kernel's business
    }
    const DType out = ctx.input(7)->dtype();
    KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutputToOverwrite(0, out, a.sizes()));
    const bool relu = ctx.attrs().GetString("activation", "") == "Relu";
    const float sa = Scale(ctx.input(1)), sb = Scale(ctx.input(4)), sy = Scale(ctx.input(6));
    const int32_t za = Zero(ctx.input(2)), zb = Zero(ctx.input(5));
    const float zy = static_cast<float>(Zero(ctx.input(7)));
    const int64_t n = a.numel();
    // The common case (u8 everywhere, as onnxruntime writes it) and i8 everywhere; mixed types go to the
    // reference kernel.
    if (a.dtype() == DType::kUInt8 && b.dtype() == DType::kUInt8 && out == DType::kUInt8) {
      QAddLoop(a.data<uint8_t>(), b.data<uint8_t>(), y->data<uint8_t>(), n, sa, za, sb, zb, sy, zy, relu);
    } else if (a.dtype() == DType::kInt8 && b.dtype() == DType::kInt8 && out == DType::kInt8) {
      QAddLoop(a.data<int8_t>(), b.data<int8_t>(), y->data<int8_t>(), n, sa, za, sb, zb, sy, zy, relu);
    } else {
      return RunReferenceKernel(ctx);
    }
    return Status::Ok();
  }
};

template <typename K>
CpuTactic Tactic(const char* name) {
  return CpuTactic{name, [] { return std::unique_ptr<CpuKernel>(new K()); }, "int8"};
}

}  // namespace

std::vector<CpuTactic> QuantEltwiseTactics(const Node& node) {
  const OpKind op = node.op();
  const Value* x = node.input(0);
  if (!x || node.attrs().GetInt("block_size", 0) != 0) return {};
  if (op == OpKind::kQuantizeLinear) {
    if (x->dtype() != DType::kFloat32 || !PerTensorScale(node, 1) || !PerTensorZero(node, 2)) return {};
    if (node.attrs().GetInt("output_dtype", 0) != 0 && !node.input(2)) return {};  // i8 without a zero point
    return {Tactic<QuantizeKernel>("kiln.quantize")};
  }
  if (op == OpKind::kDequantizeLinear) {
    if (!Is8BitInteger(x->dtype()) || !PerTensorScale(node, 1) || !PerTensorZero(node, 2)) return {};
    return {Tactic<DequantizeKernel>("kiln.dequantize")};
  }
  if (op == OpKind::kQAdd) {
    for (size_t i : {1, 4, 6}) {
      if (!PerTensorScale(node, i)) return {};
    }
    for (size_t i : {2, 5, 7}) {
      if (!PerTensorZero(node, i)) return {};
    }
    return {Tactic<QAddKernel>("kiln.qadd")};
  }
  return {};
}

}  // namespace kiln::cpu::onednn
