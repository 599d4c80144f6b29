// Kiln's runtime API: build an engine from an ONNX model (or load a saved plan), then run it.
//
//   kiln::BuildOptions options;                         // CPU, FP32, default profiles, optimizer on
//   auto engine = kiln::Engine::BuildFromOnnx("resnet50.onnx", options);
//   if (!engine.ok()) { std::cerr << engine.status().ToString() << "\n"; return 1; }
//   (*engine)->Save("resnet50.plan");                    // later: kiln::Engine::Load("resnet50.plan")
//   auto ctx = (*engine)->CreateContext();               // one per thread
//   ctx->SetInput("data", pixels.data(), kiln::DataType::kFloat32, {1, 3, 224, 224});
//   kiln::Status st = ctx->Run();
//   auto probs = ctx->GetOutput("prob");                 // Expected<HostTensor>
//
// Errors are returned as Status / Expected (include/kiln/status.h); no exception leaves these calls.
// Thread-safety: an Engine is immutable once built or loaded and may be shared by any number of threads.
// An ExecutionContext is used by one thread at a time; contexts of one engine share its weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

// Element types of tensors crossing the API. The values are ONNX's TensorProto data types.
enum class DataType : uint8_t {
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
};
// Bytes per element; 0 for a value that is not a DataType.
size_t DataTypeSize(DataType t);
// "f32", "i64", "bool", ...
const char* DataTypeName(DataType t);

enum class DeviceType { kCpu, kCuda };
// kBf16: CPU plans, on CPUs with BF16 instructions: layers with a BF16 tactic round their inputs and
// weights to bfloat16 and accumulate in FP32 where that is faster; the rest stay FP32.
enum class Precision { kFp32, kFp16, kInt8, kBf16 };
const char* PrecisionName(Precision p);  // "fp32", "fp16", "int8", "bf16"

// The range of shapes one input accepts in one optimization profile: min <= actual <= max per dim; `opt`
// is the shape the build optimizes for (and the memory plan is sized for).
struct InputProfile {
  std::vector<int64_t> min, opt, max;
};
// One optimization profile: a range for each input with dynamic dims. Inputs not named get the default.
struct OptimizationProfile {
  std::map<std::string, InputProfile> inputs;
};

// The default range for a dynamic leading (batch) dimension when no profile names the input.
inline constexpr int64_t kDefaultBatchMin = 1;
inline constexpr int64_t kDefaultBatchOpt = 1;
inline constexpr int64_t kDefaultBatchMax = 32;

// Parses a shapes option (docs/PLANS.md): entries separated by ',' or ' ', each NAME:SHAPE where SHAPE is
// one shape "1x3x224x224" (min = opt = max), "MIN..MAX" (opt = min) or "MIN..OPT..MAX". The name is
// what comes before the last ':' (so "input:0:1x3" names input "input:0").
Expected<OptimizationProfile> ParseShapesOption(const std::string& text);

struct BuildOptions {
  DeviceType device = DeviceType::kCpu;
  Precision precision = Precision::kFp32;
  // Optimization profiles; empty: one profile with the defaults. Each must name only real inputs.
  std::vector<OptimizationProfile> profiles;
  // Run the optimizer's pass pipeline before lowering.
  bool optimize = true;
  // Choose fast kernels (tactics) where one applies; false: every layer runs its reference kernel, the
  // oracle (to tell a tactic's error from the optimizer's). CPU plans only.
  bool fast_kernels = true;
  // CPU plans with fast kernels and the optimizer on: keep activations channels-last (NHWC) between
  // convolutions and pools that have NHWC kernels, with layout changes only at the edges of such
  // regions. false: NCHW throughout (each convolution then reorders for itself), to compare.
  bool channels_last = true;
  // CPU plans: store the chosen kernels' packed weights in the plan (docs/PLANS.md), so that loading it
  // packs nothing; the plan grows by about the packed layers' weights again. false: smaller plans, each
  // process packs at its first run.
  bool packed_weights = true;
  // Optimizer passes to skip, by name (docs/OPTIMIZATIONS.md lists them); an unknown name is an error.
  std::vector<std::string> disabled_passes;
  // GPU plans: FP32 convolutions and GEMMs may use TF32 tensor cores (10-bit mantissas); the plan records
  // "tf32" as those layers' precision. The environment variable KILN_CUDA_TF32 (1 or 0) overrides it.
  bool tf32 = false;
  // GPU plans: a timing-cache file, loaded before the tactics are timed and saved after (layer signature
  // -> chosen tactic, keyed by GPU, driver and library versions), so that a second build times nothing.
  // "" for none; the environment variable KILN_CUDA_TIMING_CACHE overrides it.
  std::string timing_cache;
  // Called with a short line for each build stage ("importing", "planning memory", ...). Optional.
  std::function<void(const std::string&)> progress;
};

// An input or output of an engine.
struct BindingInfo {
  std::string name;
  DataType dtype = DataType::kFloat32;
  // Dims with -1 where the dim is dynamic; dim_names[i] is the symbol of a dynamic dim ("" if none).
  std::vector<int64_t> dims;
  std::vector<std::string> dim_names;
  // Inputs: the range per optimization profile (profiles[p]); empty for outputs.
  std::vector<InputProfile> profiles;
};

// One scheduled layer of an engine.
struct LayerInfo {
  std::string name;       // node name
  std::string op;         // "Conv", "kiln.FusedConv"
  std::string tactic;     // the kernel chosen: "reference" for now
  std::string precision;  // "fp32"
};

// What the memory planner found for one profile's opt shapes.
struct MemoryInfo {
  uint64_t arena_bytes = 0;   // one arena holding every intermediate tensor, reused over lifetimes
  uint64_t naive_bytes = 0;   // one buffer per intermediate tensor
  uint64_t weight_bytes = 0;  // constants
  uint64_t packed_weight_bytes = 0;  // the plan's packed copies of weights that the CPU kernels took at load
  int planned_tensors = 0;    // tensors placed in the arena
  int dynamic_tensors = 0;    // tensors whose size depends on data, left out of the arena
  int in_place_tensors = 0;   // outputs written over an input that dies there
  int view_tensors = 0;       // outputs sharing their input's memory (Reshape, Flatten, ...)
  int concats_eliminated = 0; // Concat nodes whose producers write straight into their slices
};

// A dense, row-major host tensor. Copies share storage (like std::shared_ptr).
class HostTensor {
 public:
  HostTensor() = default;
  // Zero-filled.
  HostTensor(DataType dtype, std::vector<int64_t> dims);
  // A copy of `data` (numel(dims) * DataTypeSize(dtype) bytes).
  static HostTensor Copy(DataType dtype, std::vector<int64_t> dims, const void* data);

  bool empty() const { return storage_ == nullptr && dims_.empty(); }
  DataType dtype() const { return dtype_; }
  const std::vector<int64_t>& dims() const { return dims_; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * DataTypeSize(dtype_); }
  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* data_as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data_as() const {
    return static_cast<const T*>(data_);
  }

  // Wraps storage owned elsewhere, kept alive by `owner` (used by the runtime to hand out results
  // without a copy).
  static HostTensor Wrap(DataType dtype, std::vector<int64_t> dims, void* data, std::shared_ptr<void> owner);

 private:
  DataType dtype_ = DataType::kFloat32;
  std::vector<int64_t> dims_;
  void* data_ = nullptr;
  std::shared_ptr<void> storage_;
};

// Where the time of the last Run went. On the CPU everything is compute.
struct RunTimings {
  double host_to_device_ms = 0;
  double compute_ms = 0;
  double device_to_host_ms = 0;
};

// Mean wall time of one layer over the profiled runs (ExecutionContext::SetProfiling).
struct LayerTiming {
  std::string name, op, tactic;
  double mean_ms = 0;
};

class Engine;

// Per-thread execution state: the inputs, shapes and outputs of one inference at a time.
class ExecutionContext {
 public:
  struct Impl;
  explicit ExecutionContext(std::unique_ptr<Impl> impl);
  ~ExecutionContext();
  ExecutionContext(const ExecutionContext&) = delete;
  ExecutionContext& operator=(const ExecutionContext&) = delete;

  // Selects the optimization profile that input shapes are checked against (0 by default).
  Status SetOptimizationProfile(int index);
  int optimization_profile() const;
  // Declares an input's shape for the next Run; refused when outside the selected profile.
  Status SetInputShape(const std::string& name, const std::vector<int64_t>& dims);
  // Copies an input for the next Run. The dims are checked against the profile (and against the shape
  // given to SetInputShape, if any). `data` may be freed when this returns.
  Status SetInput(const std::string& name, const void* data, DataType dtype,
                  const std::vector<int64_t>& dims);
  Status SetInput(const std::string& name, const HostTensor& tensor);
  // Runs the engine on the inputs set. Every input must have been set.
  Status Run();
  // Runs on another thread; the context must not be touched until the future is ready.
  std::future<Status> RunAsync();
  // An output of the last successful Run (shares storage with the context until the next Run).
  Expected<HostTensor> GetOutput(const std::string& name) const;
  // The memory plan for the shapes of the last Run (or the profile's opt shapes before any Run).
  MemoryInfo memory() const;
  // The time split of the last successful Run (host<->device copies and compute, for GPU plans).
  RunTimings last_run_timings() const;
  // The GPU this context runs on (GPU plans; -1 for CPU plans).
  int device() const;
  // CPU plans: the threads this context's runs use, 1 up to CpuThreadBudget() (0, the default: the whole
  // budget). Each run holds its threads of the process-wide budget and waits while they are taken, so
  // k contexts with budget / k threads each run side by side and more never oversubscribe the cores.
  Status SetCpuThreads(int threads);
  // Per-layer timing of the following runs (CPU plans): on resets the counts. Costs a clock read per layer.
  void SetProfiling(bool on);
  // One entry per layer in schedule order, means over the runs since SetProfiling(true); empty if none.
  std::vector<LayerTiming> layer_timings() const;

 private:
  std::unique_ptr<Impl> impl_;
};

// CPU plans: how many threads Kiln's CPU kernels use in all, shared by every context of the process
// (default: OMP_NUM_THREADS if set, else the machine's hardware threads; 0 restores the default).
void SetCpuThreadBudget(int threads);
int CpuThreadBudget();

class Engine {
 public:
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Imports, optimizes and lowers an ONNX model into an engine.
  static Expected<std::shared_ptr<Engine>> BuildFromOnnx(const std::string& onnx_path,
                                                         const BuildOptions& options = {});
  // Loads a plan saved by Save(). The weights are memory-mapped, not copied. Refuses a plan made for
  // another target, a newer format, and truncated or corrupted files, each with a clear message.
  static Expected<std::shared_ptr<Engine>> Load(const std::string& plan_path);
  // Loads a plan from bytes in memory (copied once).
  static Expected<std::shared_ptr<Engine>> LoadFromMemory(const void* data, size_t size);
  Status Save(const std::string& plan_path) const;
  // The plan file's bytes.
  Expected<std::string> Serialize() const;

  const std::vector<BindingInfo>& inputs() const;
  const std::vector<BindingInfo>& outputs() const;
  int num_profiles() const;
  const std::vector<LayerInfo>& layers() const;
  // The memory plan for profile `profile`'s opt shapes.
  MemoryInfo memory(int profile = 0) const;
  // "cpu x86_64 (...), needs ...; libraries reference 1"
  std::string target_description() const;
  // The plan format version this engine was loaded from or would be saved as.
  uint32_t plan_format_version() const;
  // Where the model came from (the ONNX file) and how long the build took (0 if unknown).
  const std::string& source() const;
  double build_seconds() const;

  // A new context. Contexts share the engine's weights (and keep them alive after the engine is
  // released); each holds its own inputs and outputs (and, for GPU plans, its device arena and stream on
  // GPU `device`). Null if the context cannot be made (out of memory).
  std::unique_ptr<ExecutionContext> CreateContext(int device = 0) const;

  struct Impl;
  // For Kiln's own tools: the engine's internals (src/runtime/engine_impl.h).
  const Impl& impl() const { return *impl_; }
  explicit Engine(std::shared_ptr<Impl> impl);

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace kiln
