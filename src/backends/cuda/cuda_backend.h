// The CUDA backend's surface for the rest of Kiln (no CUDA type appears here; nothing outside
// src/backends/cuda/ includes a CUDA header). Without a CUDA toolkit at configure time, cuda_stub.cc
// implements it: BackendCompiled() is false and everything else says why it cannot run.
//
// The builder asks WhyUnsupported() for every layer of a `--device cuda` build and refuses the model,
// naming each op the GPU cannot run (no silent CPU fallback). It then asks ChooseCudaTactics() to time
// the candidates on the GPU and records one tactic per layer in the plan. At run time the execution
// context creates one CudaExecutor (device arena, streams, CUDA graphs) per context.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "plan/plan.h"
#include "runtime/reference_executor.h"

namespace kiln::cuda {

// Whether the CUDA backend was compiled in, and how many usable GPUs this process sees (0 without a
// driver or device).
bool BackendCompiled();
int DeviceCount();

// "" if the GPU backend can run `node` (its dtypes and attributes; shapes may still be symbolic), else
// a short reason ("MaxPool with dilations", "op NonMaxSuppression").
std::string WhyUnsupported(const Node& node);

struct CudaBuildOptions {
  int device = 0;
  bool fp16 = false;  // FP16 tensor-core tactics where a layer allows, FP32 elsewhere
  bool tf32 = false;  // TF32 for FP32 convolutions and GEMMs
  std::string timing_cache;  // file path; "" for none
};

struct CudaLayerChoice {
  std::string tactic;     // e.g. "cudnn.conv", "cublaslt.gemm", "kiln.eltwise"
  std::string precision;  // "fp32", "tf32", "fp16"
};

// Times the candidate tactics of each layer of `schedule` (a graph bound to static shapes) on the GPU
// and returns the fastest per layer. Fails if no GPU is usable.
Expected<std::vector<CudaLayerChoice>> ChooseCudaTactics(const std::vector<const Node*>& schedule,
                                                         const CudaBuildOptions& options);

// Milliseconds of the last Run, split by where the time went.
struct CudaRunTimings {
  double host_to_device_ms = 0;
  double compute_ms = 0;
  double device_to_host_ms = 0;
};

// Runs a CUDA plan (plan.target.device == "cuda") for one execution context: inputs and outputs are host
// tensors; intermediates live in one device arena; the schedule is captured as a CUDA graph per shape.
class CudaExecutor {
 public:
  virtual ~CudaExecutor() = default;
  virtual Expected<TensorMap> Run(const TensorMap& inputs) = 0;
  virtual CudaRunTimings last_timings() const = 0;
  // `plan` must outlive the executor. `device`: the GPU to place this context on.
  static Expected<std::unique_ptr<CudaExecutor>> Create(const plan::Plan& plan, int device);
};

}  // namespace kiln::cuda
