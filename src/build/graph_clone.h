// Copies of a graph for planning: the builder binds a profile's shapes to a copy to get static sizes.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::build {

// A structural copy of `graph` (constants share their tensors with the original), in which each input
// named in `input_sizes` has those static sizes; shapes are then re-inferred. `schedule_out`, if not null,
// receives the copy's nodes in the original's topological order, or in the order of `order` (the
// original's nodes, e.g. a plan's schedule) if given. `original_of`, if not null, maps each of the copy's
// values to the original value.
Expected<std::unique_ptr<Graph>> CloneWithInputSizes(
    const Graph& graph, const std::map<std::string, std::vector<int64_t>>& input_sizes,
    std::vector<const Node*>* schedule_out = nullptr, const std::vector<const Node*>* order = nullptr,
    std::unordered_map<const Value*, const Value*>* original_of = nullptr);

}  // namespace kiln::build
