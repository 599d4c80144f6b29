// Helpers shared by the data-movement kernels (dm_*.cc): byte-wise element copies that work for every
// stored dtype, products of possibly-symbolic dims, and a gather along per-axis index maps that Slice, Pad,
// Tile and Expand reduce to.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"
#include "kiln/status.h"

namespace kiln {

class InferContext;
class KernelContext;

namespace dm {

// Input i of a kernel, or an error naming `what` when it is missing.
Expected<const Tensor*> Input(const KernelContext& ctx, size_t i, const char* what);
// Refuses index-like tensors that are not int32/int64.
Status RequireIndexDType(DType t, const char* what);
// Refuses a tensor that is not rank 0 or a one-element rank-1 tensor.
Status RequireScalar(const Tensor& t, const char* what);

// a * b of dims: static when both are, the other dim when one is a static 1, else unknown.
Dim MulDims(const Dim& a, const Dim& b);
// Product of dims [begin, end) of `s`.
Dim DimProduct(const Shape& s, size_t begin, size_t end);
// Sum of dims: static when all are, the one non-static dim when the others sum to 0, else unknown.
Dim SumDims(const std::vector<Dim>& dims);
// The dim both `a` and `b` describe: the static one if any, else a when a == b, else unknown. Errors on two
// different static values.
Expected<Dim> MergeDims(const Dim& a, const Dim& b);

// Input i's values if it is a constant (nullopt if missing or not constant).
std::optional<std::vector<int64_t>> ConstInts(const InferContext& ctx, size_t i);
// The static length of 1-D input i (nullopt if unknown).
std::optional<int64_t> StaticLength1D(const InferContext& ctx, size_t i);
// A shape of `rank` unknown dims.
Shape UnknownDims(size_t rank);

// Copies one element of `es` bytes.
inline void CopyElem(char* dst, const char* src, size_t es) {
  switch (es) {
    case 1: *dst = *src; return;
    case 2: std::memcpy(dst, src, 2); return;
    case 4: std::memcpy(dst, src, 4); return;
    case 8: std::memcpy(dst, src, 8); return;
    default: std::memcpy(dst, src, es); return;
  }
}

// out[o_0, ..., o_{r-1}] = in[maps[0][o_0], ..., maps[r-1][o_{r-1}]], or the `fill` element when any map
// entry is -1. Output sizes are the maps' lengths. Every non-negative map entry must be < the input dim.
void GatherByAxisMaps(const char* src, const std::vector<int64_t>& in_sizes,
                      const std::vector<std::vector<int64_t>>& maps, size_t es, const char* fill, char* dst);

// A one-element tensor of `dtype` holding `v` converted (for fill values).
Tensor ScalarOf(DType dtype, double v);

}  // namespace dm
}  // namespace kiln
