// Runs a Graph with the reference CPU kernels: the oracle every other backend is tested against.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"
#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/registry.h"

namespace kiln {

using TensorMap = std::map<std::string, Tensor>;

struct ReferenceRunOptions {
  KernelLimits limits;
};

// Checks that `inputs` names exactly the graph's non-constant inputs with the right dtype and rank, that
// static dims match and that each symbolic dim is bound to one size throughout. Errors name the tensor.
Status CheckGraphInputs(const Graph& graph, const TensorMap& inputs);

// Runs every node in topological order and returns the graph outputs by name. Intermediate tensors are
// released after their last use.
Expected<TensorMap> RunReference(const Graph& graph, const TensorMap& inputs,
                                 const ReferenceRunOptions& options = {});

}  // namespace kiln
