// The optimizer pipeline: ONE explicit, ordered list of passes (pipeline.cc), each with a name, run in
// order over a Graph. Passes can be disabled by name; the verifier can run after each pass (always in
// debug builds); a hook sees the graph after each pass (for dumps or timing).
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "passes/pass.h"

namespace kiln {

struct PassInfo {
  const char* name;
  Status (*run)(Graph&, PassReport&);
  const char* summary;  // one line: what the pass does
};

// The passes in the order the pipeline runs them.
const std::vector<PassInfo>& OptimizerPasses();

struct PipelineOptions {
  // Names of passes to skip (unknown names are an error).
  std::set<std::string> disabled;
#ifdef NDEBUG
  bool verify = false;
#else
  bool verify = true;
#endif
  // Called after each pass that ran.
  std::function<void(const PassInfo&, const Graph&)> after_pass;
};

struct PipelineReport {
  std::vector<PassReport> passes;  // one per pass that ran, in order
  size_t layers_before = 0;        // nodes in the graph given to the pipeline
  size_t layers_after = 0;
  // Fused nodes of the final graph, each with the original nodes it was made of (across passes),
  // in topological order.
  std::vector<FusedGroup> fused;
  // From concat elimination.
  std::vector<InPlaceConcat> in_place_concats;
};

// Runs the pipeline. On error the graph may be partly rewritten; the message names the pass.
Expected<PipelineReport> RunPipeline(Graph& graph, const PipelineOptions& options = {});

}  // namespace kiln
