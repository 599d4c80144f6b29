// The op registry: every operator is defined once, with
//   - its input/output arity and attributes (names, kinds, required or not),
//   - a validate function for attribute values that the kinds alone do not check,
//   - a shape function that sets output dtypes and shapes (symbolic dims kept symbolic),
//   - a plain, correct reference CPU kernel: the oracle for every fast kernel and fusion.
//
// Op groups register themselves from one list in all_ops.cc (no static initializers). A group's file is
// src/ops/<group>.cc with a `void Register<Group>Ops(OpRegistry&)` function.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

struct AttrSpec {
  std::string name;
  AttrKind kind;
  bool required = false;
};

class InferContext;
class KernelContext;

struct OpSchema {
  OpKind op{};
  int min_inputs = 0;
  int max_inputs = 0;   // -1: variadic
  int min_outputs = 1;
  int max_outputs = 1;  // -1: variadic
  std::vector<AttrSpec> attrs;
  // Oldest ONNX opset whose form of this op Kiln implements (node tests of older opsets are skipped).
  int min_opset = 1;
  // Checks attribute values and node structure beyond kinds (e.g. "kernel_shape must be positive").
  // Optional. The message need not name the node: callers add it.
  std::function<Status(const Node&)> validate;
  // Sets output dtypes/shapes from input dtypes/shapes (and constant inputs where the op needs values).
  std::function<Status(InferContext&)> infer;
  // Reference kernel: reads inputs, allocates and fills outputs.
  std::function<Status(KernelContext&)> run;
};

class OpRegistry {
 public:
  // The registry holding every op Kiln defines. Thread-safe to read.
  static const OpRegistry& Global();

  void Register(OpSchema schema);
  const OpSchema* Find(OpKind op) const;
  // The ops that have a schema and a reference kernel: what Kiln claims.
  std::vector<OpKind> RegisteredOps() const;

 private:
  std::array<std::unique_ptr<OpSchema>, kNumOpKinds> schemas_{};
};

// Checks a node against its schema: op registered, input/output counts, attribute names and kinds,
// required attributes, then schema.validate. Errors name the node.
Status ValidateNode(const Node& node);

// Shape inference context for one node. Writes output dtypes and shapes into the graph's values.
class InferContext {
 public:
  explicit InferContext(Node& node) : node_(node) {}

  const Node& node() const { return node_; }
  int opset() const { return node_.opset(); }
  const Attributes& attrs() const { return node_.attrs(); }

  size_t num_inputs() const { return node_.num_inputs(); }
  bool has_input(size_t i) const { return node_.input(i) != nullptr; }
  // Input i's dtype / shape (nullopt if rank unknown). Precondition: has_input(i).
  DType input_dtype(size_t i) const { return node_.input(i)->dtype(); }
  const std::optional<Shape>& input_shape(size_t i) const { return node_.input(i)->shape(); }
  // Input i's value if it is a constant, else null.
  const Tensor* input_constant(size_t i) const {
    const Value* v = node_.input(i);
    return v ? v->constant() : nullptr;
  }

  size_t num_outputs() const { return node_.num_outputs(); }
  bool has_output(size_t i) const { return node_.output(i) != nullptr; }
  // Sets output i's dtype and shape (ignored if the output is not requested).
  void set_output(size_t i, DType dtype, std::optional<Shape> shape);

  // An InvalidArgument error. (The caller adds the node's label.)
  Status Error(const std::string& message) const { return InvalidArgument(message); }

 private:
  Node& node_;
};

// Limits the reference executor puts on what one kernel may allocate.
struct KernelLimits {
  size_t max_tensor_bytes = size_t{16} << 30;
};

// Memory an executor hands a kernel for one output (a slot of the execution context's arena).
struct OutputPlacement {
  std::shared_ptr<Buffer> buffer;
  size_t offset = 0;
  size_t nbytes = 0;
  bool zero = true;  // zero-fill first; false when the output is written in place over an input
};

// Kernel context for one node execution (reference and fast kernels alike).
class KernelContext {
 public:
  KernelContext(const Node& node, std::vector<const Tensor*> inputs, const KernelLimits& limits)
      : node_(node), inputs_(std::move(inputs)), outputs_(node.num_outputs()), limits_(limits) {}

  const Node& node() const { return node_; }
  int opset() const { return node_.opset(); }
  const Attributes& attrs() const { return node_.attrs(); }

  size_t num_inputs() const { return inputs_.size(); }
  // Input i, or null if omitted.
  const Tensor* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }

  size_t num_outputs() const { return outputs_.size(); }
  // Whether output i is requested (ONNX lets optional outputs be left unnamed).
  bool output_requested(size_t i) const { return node_.output(i) != nullptr; }
  // Allocates output i as a zero-filled tensor (or, where the executor placed output i and the byte size
  // agrees, a tensor over that memory: zero-filled unless the output runs in place over an input, in
  // which case the kernel must write every element). Refuses invalid or oversized sizes with an error.
  Expected<Tensor*> AllocateOutput(size_t i, DType dtype, std::vector<int64_t> sizes);
  // The same, for kernels that write every element of the output: memory the executor placed is handed
  // out as it is (not zero-filled first: that costs a pass over every activation).
  Expected<Tensor*> AllocateOutputToOverwrite(size_t i, DType dtype, std::vector<int64_t> sizes);
  // For executors: the memory AllocateOutput hands out for output i.
  void PlaceOutput(size_t i, OutputPlacement placement) {
    if (placements_.size() < outputs_.size()) placements_.resize(outputs_.size());
    if (i < placements_.size()) placements_[i] = std::move(placement);
  }
  // Sets output i to an existing tensor (for ops that alias their input, such as Reshape or Identity).
  void SetOutput(size_t i, Tensor t) { outputs_[i] = std::move(t); }

  std::vector<Tensor>& outputs() { return outputs_; }
  Status Error(const std::string& message) const { return InvalidArgument(message); }

 private:
  Expected<Tensor*> Allocate(size_t i, DType dtype, std::vector<int64_t> sizes, bool zero);

  const Node& node_;
  std::vector<const Tensor*> inputs_;
  std::vector<Tensor> outputs_;
  std::vector<OutputPlacement> placements_;
  const KernelLimits& limits_;
};

}  // namespace kiln
