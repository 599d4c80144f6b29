// The builder: lowers an (optimized) graph into a plan: profiles, schedule with a tactic and precision per
// layer, memory plan per profile, target fingerprint.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "build/arena_layout.h"
#include "ir/graph.h"
#include "kiln/engine.h"
#include "kiln/status.h"
#include "plan/plan.h"

namespace kiln::build {

// Builds a plan from `graph` (which the plan takes over). `source` names the model in the plan.
Expected<plan::Plan> BuildPlan(Graph graph, const BuildOptions& options, const std::string& source);

// The arena layout of `graph` run with `input_sizes` (every runtime input), as the executor lays it out.
Expected<ArenaLayout> ArenaLayoutForSizes(const Graph& graph,
                                          const std::map<std::string, std::vector<int64_t>>& input_sizes);

// The memory plan of `graph` run with `input_sizes` (every runtime input) in the order of `schedule`.
Expected<plan::PlanMemory> PlanMemoryForSizes(const Graph& graph,
                                              const std::map<std::string, std::vector<int64_t>>& input_sizes);

}  // namespace kiln::build
