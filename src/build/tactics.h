// Tactic selection: for each layer, the candidate kernels (src/backends/cpu) are timed on the layer's
// real shapes (one profile's opt shapes) with random activations and the real weights, and the fastest
// that runs is kept. The reference kernel is the fallback: chosen when no fast tactic applies or when
// every candidate fails on the real shapes (the reason is kept for --verbose reports).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::build {

struct TacticTiming {
  std::string tactic;
  double ms = 0;       // median time of one run; < 0 if it failed
  std::string error;   // why it failed
};

// A packed copy of one constant input of a layer, as the chosen kernel made it on the timed shapes.
struct PackedInput {
  std::string value;  // the constant's value name
  std::string layout;
  Tensor bytes;
};

struct TacticChoice {
  std::string tactic = "reference";
  std::string precision = "fp32";  // the chosen tactic's (CpuTactic::precision)
  std::vector<TacticTiming> timings;  // every candidate tried (empty: only the reference applies)
  std::vector<PackedInput> packed;    // the chosen kernel's packed weights, for the plan
};

struct TacticOptions {
  // Minimum timed runs per candidate and the time budget after which no more runs are made.
  int min_runs = 3;
  double budget_ms = 20;
  std::function<void(const std::string&)> progress;  // "choosing tactics: 12/57 layers"
  // Keep the chosen kernels' packed weights (TacticChoice::packed), for a plan that stores them.
  bool collect_packed_weights = false;
  // Sizes of values whose shape the bound graph leaves unknown (data-dependent shape arithmetic that
  // constant folding resolves for static input sizes), by value name. Optional.
  const std::map<std::string, std::vector<int64_t>>* known_sizes = nullptr;
  // Whether BF16 tactics may be chosen (a bf16 build); otherwise only FP32 ones are timed.
  bool allow_bf16 = false;
};

// `schedule` is the schedule of a graph bound to static shapes (build::CloneWithInputSizes); the result
// is parallel to it.
Expected<std::vector<TacticChoice>> ChooseTactics(const std::vector<const Node*>& schedule,
                                                  const TacticOptions& options = {});

}  // namespace kiln::build
