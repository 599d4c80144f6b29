// Helpers shared by op definitions: axes, broadcasting, strides, and reading shape-like inputs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"
#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

class InferContext;
class KernelContext;

// Maps axis in [-rank, rank) to [0, rank), or an error naming `what`.
Expected<int64_t> NormalizeAxis(int64_t axis, int64_t rank, const char* what = "axis");
// The same for a list; also refuses duplicates.
Expected<std::vector<int64_t>> NormalizeAxes(const std::vector<int64_t>& axes, int64_t rank,
                                             const char* what = "axes");

// NumPy-style multidirectional broadcasting of static sizes, or an error naming both shapes.
Expected<std::vector<int64_t>> BroadcastSizes(const std::vector<int64_t>& a, const std::vector<int64_t>& b);
// Broadcasting of possibly-symbolic shapes: a static 1 yields to the other dim; equal dims stay; an
// unknown or symbolic dim against a static dim > 1 becomes that static dim; symbolic against a different
// symbol becomes unknown. Errors only on two different static dims, neither 1.
Expected<Shape> BroadcastShapes(const Shape& a, const Shape& b);
// Broadcasts the shapes of all (non-null) inputs of an InferContext; nullopt if any rank is unknown.
Expected<std::optional<Shape>> BroadcastInputShapes(const InferContext& ctx);

// Row-major strides for sizes (in elements).
std::vector<int64_t> Strides(const std::vector<int64_t>& sizes);
// Strides of `in_sizes` as read when broadcast to `out_sizes` (0 on broadcast dims). in_sizes is
// right-aligned against out_sizes.
std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in_sizes, const std::vector<int64_t>& out_sizes);

// Walks every index of `sizes` in row-major order, keeping one flat offset per operand (each with its own
// strides). Usage:
//   MultiIndexer it(out_sizes, {strides_a, strides_b});
//   for (int64_t i = 0; i < n; ++i, it.Next()) out[i] = a[it.offset(0)] + b[it.offset(1)];
class MultiIndexer {
 public:
  MultiIndexer(std::vector<int64_t> sizes, std::vector<std::vector<int64_t>> strides);
  int64_t offset(size_t operand) const { return offsets_[operand]; }
  void Next();

 private:
  std::vector<int64_t> sizes_;
  std::vector<std::vector<int64_t>> strides_;
  std::vector<int64_t> index_;
  std::vector<int64_t> offsets_;
};

// Reads an int list that is an attribute in older opsets and an input in newer ones (Squeeze's axes,
// Split's split, Reduce*'s axes, ...): returns the input's values when input `input_index` is present,
// else the attribute `attr` if present, else nullopt.
std::optional<std::vector<int64_t>> IntsFromInputOrAttr(const KernelContext& ctx, size_t input_index,
                                                        const std::string& attr);
// Shape-inference counterpart: the values if the input is a constant (or the attribute is set); nullopt
// when the input exists but is not constant (the values are known only at run time).
std::optional<std::vector<int64_t>> IntsFromInputOrAttr(const InferContext& ctx, size_t input_index,
                                                        const std::string& attr);

// A copy of `t` (rank 4 or less, read as rank 4 with leading 1s) with its dims permuted: output dim i is
// input dim perm[i]. For the NCHW <-> NHWC changes of the channels-last ops and pass.
Tensor PermuteRank4(const Tensor& t, const std::vector<int64_t>& perm);

// Runs the reference kernel of `op` on `inputs` as if it were `node` (the kernels read only attributes
// they know by name and the inputs given), returning output 0: how Kiln's fused ops define themselves
// through the ops they stand for.
Expected<Tensor> RunAs(OpKind op, const Node& node, std::vector<const Tensor*> inputs);

// Output dtype/shape equal to input 0's: the shape function of every unary elementwise op.
Status InferSameAsInput0(InferContext& ctx);

}  // namespace kiln
