// The internals behind include/kiln/engine.h (for src/runtime and Kiln's own tools only).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kiln/engine.h"
#include "plan/plan.h"
#include "backends/cuda/cuda_backend.h"
#include "runtime/plan_executor.h"
#include "runtime/reference_executor.h"

namespace kiln {

struct Engine::Impl {
  plan::Plan plan;
  std::vector<BindingInfo> inputs;  // the runtime (non-constant) graph inputs, in graph order
  std::vector<BindingInfo> outputs;
  std::vector<LayerInfo> layers;
  std::map<std::string, size_t> input_index;
  std::map<std::string, size_t> output_index;
  uint64_t weight_bytes = 0;
  // The plan's packed weights offered to the CPU kernels (cpu::AdoptPackedWeights), held while the engine
  // lives, and their bytes.
  std::vector<std::shared_ptr<const void>> adopted_packed;
  uint64_t adopted_packed_bytes = 0;

  static Expected<std::shared_ptr<Impl>> FromPlan(plan::Plan plan);
  MemoryInfo Memory(int profile) const;
};

struct ExecutionContext::Impl {
  std::shared_ptr<const Engine::Impl> engine;
  int profile = 0;
  std::vector<std::vector<int64_t>> declared;  // SetInputShape per input (empty vector with flag below)
  std::vector<bool> has_declared;
  TensorMap inputs;
  TensorMap outputs;
  std::unique_ptr<PlanExecutor> executor;          // CPU plans: created at the first Run
  std::unique_ptr<cuda::CudaExecutor> gpu;         // GPU plans: created at the first Run
  int device = 0;                                  // the GPU for GPU plans
  RunTimings timings;
  bool profiling = false;
  int cpu_threads = 0;           // SetCpuThreads (0: the whole budget)
  int executor_threads = 0;      // the threads the CPU executor's kernels were created under
};

// Conversions between the public DataType and the internal DType (the values agree).
DType ToDType(DataType t);
DataType ToDataType(DType t);

// For Kiln's own tools and tests: a profile accepting exactly these inputs' sizes (min = opt = max), and
// one run of `engine` on internal tensors through a fresh context, outputs copied out by binding name.
OptimizationProfile ExactProfile(const TensorMap& inputs);
Tensor ToTensor(const HostTensor& h);  // a copy
Expected<TensorMap> RunOnce(const Engine& engine, const TensorMap& inputs);

}  // namespace kiln
