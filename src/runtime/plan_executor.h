// Executes a plan on the CPU: each layer runs the kernel its tactic names (a fast CPU kernel or the
// reference kernel), with every intermediate tensor in one arena laid out by build::LayOutArena for the
// actual input sizes (cached per distinct set of sizes, as XNNPACK's reshape step does).
//
// Safety net: a kernel may hand back memory other than what was planned for its output (a reference
// kernel that aliases an input, or allocates for itself). Anything in the arena that is not at the
// output's own slot is copied out at once, so arena reuse can never corrupt a live tensor. Graph outputs
// are never left in the arena, so they stay valid after the next run.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "build/arena_layout.h"
#include "plan/plan.h"
#include "runtime/reference_executor.h"

namespace kiln {

class PlanExecutor {
 public:
  // `plan` must outlive the executor.
  explicit PlanExecutor(const plan::Plan& plan, ReferenceRunOptions options = {});

  // Checks the inputs against the graph (CheckGraphInputs) and runs every layer.
  Expected<TensorMap> Run(const TensorMap& inputs);

  // The layout of the last successful run (null before one).
  const build::ArenaLayout* last_layout() const { return last_; }
  // Bytes of the arena currently allocated (the largest layout run so far).
  uint64_t arena_capacity() const;

  // Per-layer timing: when on, each Run adds each layer's wall time (ms) to layer_ms()[step].
  void set_profiling(bool on) { profiling_ = on; }
  const std::vector<double>& layer_ms() const { return layer_ms_; }
  int profiled_runs() const { return profiled_runs_; }
  void reset_profile() {
    layer_ms_.assign(layer_ms_.size(), 0);
    profiled_runs_ = 0;
  }

 private:
  using Sizes = std::map<std::string, std::vector<int64_t>>;
  Expected<const build::ArenaLayout*> Prepare(const Sizes& sizes);
  Status CreateKernels();
  Status RunConcatInPlace(const Node& node, const std::vector<const Tensor*>& ins, const build::Slot& slot,
                          Tensor* out);

  const plan::Plan& plan_;
  ReferenceRunOptions options_;
  std::vector<std::unique_ptr<cpu::CpuKernel>> kernels_;  // per schedule step; null: the reference kernel
  bool kernels_created_ = false;
  std::map<Sizes, std::unique_ptr<build::ArenaLayout>> layouts_;  // keyed by input sizes
  const build::ArenaLayout* last_ = nullptr;
  std::shared_ptr<Buffer> arena_;
  std::unordered_map<const Value*, int> uses_;  // reads of each value over the schedule
  bool profiling_ = false;
  std::vector<double> layer_ms_;
  int profiled_runs_ = 0;
};

}  // namespace kiln
