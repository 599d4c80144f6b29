// What every optimizer pass shares: its signature and the report it fills.
//
// A pass is a function `Status Pass(Graph&, PassReport&)`. It rewrites the graph in place, leaves it valid
// (VerifyGraph passes; output dtypes/shapes of new nodes are set), keeps the graph's input and output values
// (names included), and records what it changed in the report. Passes are deterministic: they visit nodes in
// topological order and never iterate over pointer-keyed containers. The ordered list of passes is
// src/passes/pipeline.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// One node made from several: the new node's name and op, and the names of the nodes it replaced (as
// they were at the start of the pass; the pipeline maps them back to the model's original nodes).
struct FusedGroup {
  std::string result;
  std::string op;
  std::vector<std::string> sources;
};

// A Concat whose inputs can all be written straight into their slice of its output (concat elimination).
// Recorded for the memory planner; the IR still holds the Concat.
struct InPlaceConcat {
  int output_value_id = -1;  // the Concat's output Value::id()
  std::string concat;        // node name
  int64_t axis = 0;          // normalized
  // Whether the slices are strided in memory (some dim before `axis` is not known to be 1, e.g. a
  // batch): the producer must then write with the concat output's strides.
  bool strided = false;
  struct Slice {
    int input_value_id = -1;
    std::string producer;  // node name
    int64_t offset = -1;   // along axis, -1 if not static
    int64_t extent = -1;
  };
  std::vector<Slice> slices;
};

struct PassReport {
  std::string pass;
  // What changed, by kind of rewrite ("BatchNormalization folded into Conv" -> 53). String-keyed, so the
  // report prints in a deterministic order.
  std::map<std::string, int64_t> counts;
  std::vector<FusedGroup> groups;
  // Free-form notes (what was found but not done, and why).
  std::vector<std::string> notes;
  // Filled by concat elimination only.
  std::vector<InPlaceConcat> in_place_concats;
  size_t layers_before = 0;
  size_t layers_after = 0;

  void Count(const std::string& what, int64_t n = 1) { counts[what] += n; }
  void Fused(std::string result, std::string op, std::vector<std::string> sources) {
    groups.push_back({std::move(result), std::move(op), std::move(sources)});
  }
  bool changed() const { return !counts.empty() || layers_before != layers_after; }
};

// The executable layers of a graph: every node left (constants are not layers). See docs/OPTIMIZATIONS.md.
inline size_t CountLayers(const Graph& graph) { return graph.num_nodes(); }

// The passes, in pipeline order (each in src/passes/<file>.cc).
Status ConstantFolding(Graph& graph, PassReport& report);
Status Elimination(Graph& graph, PassReport& report);
Status FuseQdq(Graph& graph, PassReport& report);
Status FuseDecomposed(Graph& graph, PassReport& report);
Status FoldIntoConv(Graph& graph, PassReport& report);
Status FuseAttention(Graph& graph, PassReport& report);
Status FuseConv(Graph& graph, PassReport& report);
Status FuseGemm(Graph& graph, PassReport& report);
Status HorizontalFusion(Graph& graph, PassReport& report);
Status ConcatElimination(Graph& graph, PassReport& report);

// Target-specific, run by the builder for CPU plans rather than in the pipeline: convolutions and pools
// for which `has_nhwc_kernel` says the backend has a channels-last kernel become kiln.ConvNhwc /
// kiln.PoolNhwc, with transposes only at the edges of the NHWC regions (src/passes/channels_last.cc).
Status ChannelsLast(Graph& graph, PassReport& report, const std::function<bool(const Node&)>& has_nhwc_kernel);

}  // namespace kiln
