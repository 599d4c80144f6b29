// Whole-graph validation and shape inference.
#pragma once

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// Validates every node against its schema (ValidateNode) and collects *all* unsupported ops in one
// Unsupported error ("unsupported operators: Foo (2 nodes: a, b), Bar (1 node: c)").
Status ValidateGraphOps(const Graph& graph);

// Runs each node's shape function in topological order, setting output dtypes and shapes. Errors name the
// node at fault.
Status InferShapes(Graph& graph);

}  // namespace kiln
