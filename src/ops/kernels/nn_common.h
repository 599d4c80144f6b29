// Helpers shared by the neural-network reference kernels: the one GEMM routine, sliding-window geometry
// (kernel, strides, dilations, pads, auto_pad, ceil_mode) for Conv/ConvTranspose/pooling, and conversion
// of 16-bit float tensors to and from their compute type.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

class InferContext;
class KernelContext;

// ---- GEMM ------------------------------------------------------------------------------------------

// a * b + acc for integers, wrapping on overflow (two's complement) instead of undefined behaviour.
template <typename T>
inline T MulAddWrap(T acc, T a, T b) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(acc) + static_cast<U>(a) * static_cast<U>(b));
  } else {
    return acc + a * b;
  }
}

// C[m x n] += A[m x k] * B[k x n]. A's element (i, p) is a[i * a_rs + p * a_cs] (so a transposed A is just
// other strides); B and C are row-major with row strides ldb and ldc. Loops are i-p-j (the inner loop runs
// along rows of B and C, so it vectorizes) with p and j blocked so a panel of B stays in cache.
template <typename T>
void GemmAccumulate(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                    int64_t ldb, T* c, int64_t ldc) {
  constexpr int64_t kBlockK = 256;
  constexpr int64_t kBlockN = 1024;
  for (int64_t p0 = 0; p0 < k; p0 += kBlockK) {
    const int64_t p1 = std::min(k, p0 + kBlockK);
    for (int64_t j0 = 0; j0 < n; j0 += kBlockN) {
      const int64_t j1 = std::min(n, j0 + kBlockN);
      for (int64_t i = 0; i < m; ++i) {
        T* c_row = c + i * ldc;
        for (int64_t p = p0; p < p1; ++p) {
          const T av = a[i * a_rs + p * a_cs];
          const T* b_row = b + p * ldb;
          for (int64_t j = j0; j < j1; ++j) c_row[j] = MulAddWrap(c_row[j], av, b_row[j]);
        }
      }
    }
  }
}

// ---- compute-type views ------------------------------------------------------------------------------

// The elements of a tensor of type T as ComputeT<T>: the tensor's own storage when the types agree, a
// converted copy for the 16-bit floats.
template <typename T>
class ComputeInput {
 public:
  using C = ComputeT<T>;
  explicit ComputeInput(const Tensor& t) {
    if constexpr (std::is_same_v<T, C>) {
      ptr_ = t.data<T>();
    } else {
      const T* src = t.data<T>();
      copy_.resize(static_cast<size_t>(t.numel()));
      for (size_t i = 0; i < copy_.size(); ++i) copy_[i] = static_cast<C>(src[i]);
      ptr_ = copy_.data();
    }
  }
  const C* data() const { return ptr_; }

 private:
  const C* ptr_ = nullptr;
  std::vector<C> copy_;
};

// A buffer of ComputeT<T> that ends up in an output tensor of type T: written in place when the types
// agree, else converted by Store().
template <typename T>
class ComputeOutput {
 public:
  using C = ComputeT<T>;
  explicit ComputeOutput(Tensor& t) : dst_(t.data<T>()), n_(t.numel()) {
    if constexpr (std::is_same_v<T, C>) {
      ptr_ = dst_;
    } else {
      buf_.assign(static_cast<size_t>(n_), C(0));
      ptr_ = buf_.data();
    }
  }
  C* data() { return ptr_; }
  void Store() {
    if constexpr (!std::is_same_v<T, C>) {
      for (int64_t i = 0; i < n_; ++i) dst_[i] = T(buf_[static_cast<size_t>(i)]);
    }
  }

 private:
  T* dst_;
  int64_t n_;
  C* ptr_ = nullptr;
  std::vector<C> buf_;
};

// ---- sliding windows ---------------------------------------------------------------------------------

enum class AutoPad { kNotSet, kSameUpper, kSameLower, kValid };

// The sliding-window attributes of Conv, ConvTranspose and the pools, for `kernel.size()` spatial dims.
struct WindowParams {
  std::vector<int64_t> kernel;
  std::vector<int64_t> strides;
  std::vector<int64_t> dilations;
  std::vector<int64_t> pads;  // begin of each dim, then end of each dim
  AutoPad auto_pad = AutoPad::kNotSet;
  bool ceil_mode = false;
};

// One spatial dim of a window op: output size and the pads actually used.
struct WindowDim {
  int64_t out = 0;
  int64_t pad_begin = 0;
  int64_t pad_end = 0;
};

// The geometry of one window op over all spatial dims.
struct WindowGeometry {
  std::vector<int64_t> in;  // the image a window runs over
  std::vector<int64_t> out;
  std::vector<int64_t> kernel;
  std::vector<int64_t> strides;
  std::vector<int64_t> dilations;
  std::vector<int64_t> pad_begin;
  std::vector<int64_t> pad_end;
};

// "auto_pad" (absent or empty: NOTSET).
Expected<AutoPad> ReadAutoPad(const Attributes& attrs);
// Checks the window attributes of a node whose spatial rank is not yet known: auto_pad one of the four
// modes; kernel_shape, strides, dilations positive; pads and output_padding non-negative; all of them
// (pads counting two per dim) of one length.
Status ValidateWindowAttrs(const Node& node);
// Reads strides, dilations (default 1), pads (default 0), auto_pad and ceil_mode for the given kernel,
// checking the lengths against the kernel's rank.
Expected<WindowParams> ReadWindowParams(const Attributes& attrs, std::vector<int64_t> kernel);
// Output size and pads of spatial dim d for an input of size `in` (Conv/pool semantics).
Expected<WindowDim> ComputeWindowDim(const WindowParams& p, size_t d, int64_t in);
// All spatial dims at once, for the static input spatial sizes `in`.
Expected<WindowGeometry> ComputeWindowGeometry(const WindowParams& p, const std::vector<int64_t>& in);

// Copies the windows of an image `src` [channels, in...] into columns `col` [channels * kernel..., out...]
// (zeros where a window reads padding).
template <typename C>
void Im2Col(const C* src, int64_t channels, const WindowGeometry& g, C* col);
// The adjoint of Im2Col: adds each column entry into the image position it reads, dropping padding.
template <typename C>
void Col2ImAdd(const C* col, int64_t channels, const WindowGeometry& g, C* dst);

// Walks the windows of Im2Col / Col2ImAdd: calls fn(col_index, image_index) for each in-bounds pair,
// image_index relative to one channel's image. Shared by both directions.
template <typename Fn>
void ForEachWindowTap(int64_t channels, const WindowGeometry& g, bool zero_pad_cols, Fn&& fn);

// ---- small shared helpers ----------------------------------------------------------------------------

// Refuses a known rank below `min_rank` (an unknown rank passes).
Status CheckMinRank(const std::optional<Shape>& s, size_t min_rank, const char* what);
// Static dim or nullopt.
inline std::optional<int64_t> StaticDim(const Dim& d) {
  return d.is_static() ? std::optional<int64_t>(d.value()) : std::nullopt;
}
// "input X has dtype i32; Conv supports f16, bf16, f32, f64"
Status RequireFloat(DType t, const char* what);
// Errors unless inputs 0..n-1 are present. Validation checks this already; kernels and shape functions
// check again so that a graph that skipped validation cannot make them read a missing input.
Status RequireInputs(const InferContext& ctx, size_t n);
Status RequireInputs(const KernelContext& ctx, size_t n);
// Errors unless input i's dtype equals input 0's (for ops whose inputs share one type T).
Status RequireSameDType(const InferContext& ctx, size_t i, const char* what);

// ---- template definitions ----------------------------------------------------------------------------

template <typename Fn>
void ForEachWindowTap(int64_t channels, const WindowGeometry& g, bool zero_pad_cols, Fn&& fn) {
  const size_t r = g.in.size();
  if (r == 0) return;
  int64_t kprod = 1;
  int64_t out_n = 1;
  int64_t in_n = 1;
  for (size_t d = 0; d < r; ++d) {
    kprod *= g.kernel[d];
    out_n *= g.out[d];
    in_n *= g.in[d];
  }
  if (out_n == 0) return;
  const int64_t last_out = g.out[r - 1];
  const int64_t outer_n = out_n / last_out;
  std::vector<int64_t> k(r);
  std::vector<int64_t> o(r);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t kidx = 0; kidx < kprod; ++kidx) {
      int64_t rem = kidx;
      for (size_t d = r; d-- > 0;) {
        k[d] = rem % g.kernel[d];
        rem /= g.kernel[d];
      }
      const int64_t row = (c * kprod + kidx) * out_n;
      const int64_t img = c * in_n;
      const int64_t lo = k[r - 1] * g.dilations[r - 1] - g.pad_begin[r - 1];
      std::fill(o.begin(), o.end(), 0);
      for (int64_t outer = 0; outer < outer_n; ++outer) {
        bool valid = true;
        int64_t off = 0;
        for (size_t d = 0; d + 1 < r; ++d) {
          const int64_t i = o[d] * g.strides[d] + k[d] * g.dilations[d] - g.pad_begin[d];
          if (i < 0 || i >= g.in[d]) valid = false;
          off = off * g.in[d] + i;
        }
        off *= g.in[r - 1];
        const int64_t col_base = row + outer * last_out;
        for (int64_t ow = 0; ow < last_out; ++ow) {
          const int64_t iw = ow * g.strides[r - 1] + lo;
          if (valid && iw >= 0 && iw < g.in[r - 1]) {
            fn(col_base + ow, img + off + iw);
          } else if (zero_pad_cols) {
            fn(col_base + ow, int64_t{-1});
          }
        }
        for (size_t d = r - 1; d-- > 0;) {
          if (++o[d] < g.out[d]) break;
          o[d] = 0;
        }
      }
    }
  }
}

template <typename C>
void Im2Col(const C* src, int64_t channels, const WindowGeometry& g, C* col) {
  ForEachWindowTap(channels, g, true, [&](int64_t ci, int64_t ii) { col[ci] = ii < 0 ? C(0) : src[ii]; });
}

template <typename C>
void Col2ImAdd(const C* col, int64_t channels, const WindowGeometry& g, C* dst) {
  ForEachWindowTap(channels, g, false, [&](int64_t ci, int64_t ii) { dst[ii] += col[ci]; });
}

}  // namespace kiln
