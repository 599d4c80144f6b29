// The CUDA backend's internals (only src/backends/cuda/ includes this): device resources, weights on the
// device, and a Program, the schedule of one set of input sizes lowered to launches over one arena.
//
// A device tensor has a storage format (Repr): FP32 or FP16, and for rank-4 tensors NCHW or NHWC. Each
// layer asks for its inputs in the format it wants (FP16 NHWC for tensor-core convolutions, NCHW where
// it reshapes); the ProgramBuilder inserts conversion launches where a producer left another format and
// reuses a conversion for every later consumer. Graph inputs arrive and graph outputs leave as FP32 NCHW.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::cuda {

Status CudaStatus(cudaError_t e, const char* what);
Status CudnnStatus(cudnnStatus_t s, const char* what);
Status LtStatus(cublasStatus_t s, const char* what);
#define KILN_CUDA(expr) KILN_RETURN_IF_ERROR(::kiln::cuda::CudaStatus((expr), #expr))
#define KILN_CUDNN(expr) KILN_RETURN_IF_ERROR(::kiln::cuda::CudnnStatus((expr), #expr))
#define KILN_LT(expr) KILN_RETURN_IF_ERROR(::kiln::cuda::LtStatus((expr), #expr))

struct Repr {
  bool half = false;
  bool nhwc = false;  // rank-4 tensors only
  bool operator==(const Repr& o) const { return half == o.half && nhwc == o.nhwc; }
};

// One context's (or the tuner's) handles on one GPU. Not thread-safe: one per context.
class Resources {
 public:
  static Expected<std::unique_ptr<Resources>> Create(int device);
  ~Resources();
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cudnnHandle_t cudnn() const { return cudnn_; }
  cublasLtHandle_t lt() const { return lt_; }

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
};

// Device memory that frees itself.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  Status Reserve(size_t bytes);  // grows (contents are lost), never shrinks
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// The plan's constants on one GPU, uploaded on first use in each storage format, shared by every context
// of that plan on that device (thread-safe).
class WeightStore {
 public:
  explicit WeightStore(int device) : device_(device) {}
  ~WeightStore();
  // `t` (an FP32 or integer host tensor) on the device: FP32 as-is, or FP16 and/or, for rank-4 filters,
  // KRSC (NHWC) order.
  Expected<const void*> Get(const Tensor* t, Repr repr);
  // An FP32 `t` rearranged on the host by `make` (as many values as t has; `tag` names the arrangement),
  // uploaded once as FP32 or FP16: GEMM weights in the other layout, depthwise filters tap-major.
  Expected<const void*> GetDerived(const Tensor* t, bool half, const std::string& tag,
                                   const std::function<std::vector<float>(const Tensor&)>& make);
  size_t bytes() const { return bytes_; }

 private:
  int device_;
  std::mutex mu_;
  Expected<const void*> Upload(const Tensor* t, Repr repr, const std::string& tag, const float* host);
  std::map<std::tuple<const Tensor*, bool, bool, std::string>, void*> cache_;  // (t, half, nhwc, arrangement)
  size_t bytes_ = 0;
};
// An FP32 `t` read as a row-major [rows, cols] matrix, transposed to [cols, rows] on the host (for
// WeightStore::GetDerived: GEMM weights in the other layout, depthwise filters [C, taps] tap-major).
std::vector<float> TransposedMatrix(const Tensor& t, int64_t rows, int64_t cols);
// The store shared by the contexts of `plan_key` on `device` (created on first use).
std::shared_ptr<WeightStore> SharedWeightStore(const void* plan_key, int device);

struct DevTensor {
  std::vector<int64_t> sizes;  // logical sizes (NCHW order for rank 4)
  Repr repr;
  DType dtype = DType::kFloat32;  // kFloat32 for float tensors in either Repr; other dtypes as stored
  int storage = -1;               // arena storage, or -1 for `fixed`
  const void* fixed = nullptr;    // weights
  int64_t numel() const;
  size_t bytes() const;
};

struct Storage {
  uint64_t bytes = 0;
  int first = 1 << 30;  // first and last step touching it
  int last = -1;
  uint64_t offset = 0;
  bool random_fill = false;  // tuning: filled with random values before timing
  int tensor = -1;           // the tensor that owns it (for filling)
};

class Program;
using Launch = std::function<Status(const Program&, cudaStream_t)>;

class Program {
 public:
  std::vector<DevTensor> tensors;
  std::vector<Storage> storages;
  std::vector<Launch> steps;
  std::vector<std::string> step_names;
  std::vector<std::shared_ptr<void>> keep_alive;  // descriptors the launches use
  std::map<std::string, int> inputs, outputs;     // graph binding name -> tensor
  uint64_t arena_size = 0;
  size_t workspace_size = 0;

  void* ptr(int tensor) const;
  void* workspace() const { return workspace_; }
  // Packs the storages into one arena (best fit by lifetime), then binds the arena and workspace.
  void LayOut();
  void Bind(void* arena, void* workspace) {
    arena_ = static_cast<char*>(arena);
    workspace_ = workspace;
  }
  char* arena() const { return arena_; }
  Status RunSteps(cudaStream_t s) const;

  // CUDA graph of the steps, captured once the program has run eagerly.
  cudaGraphExec_t graph = nullptr;
  const void* graph_arena = nullptr;
  bool capture_failed = false;
  bool profiled = false;
  int runs = 0;
  ~Program();

 private:
  char* arena_ = nullptr;
  void* workspace_ = nullptr;
};

// Lowers layers of a bound graph (static shapes) into a Program.
class ProgramBuilder {
 public:
  // `tuning`: inputs that no step produced become random-filled arena tensors in whatever format the
  // layer wants (one layer timed in isolation).
  ProgramBuilder(Program& program, Resources& res, WeightStore& weights, bool tuning)
      : p_(program), res_(res), weights_(weights), tuning_(tuning) {}

  Resources& res() { return res_; }
  WeightStore& weights() { return weights_; }
  const Node& node() const { return *node_; }
  bool half() const { return half_; }
  bool tf32() const { return tf32_; }
  bool tuning() const { return tuning_; }
  const std::string& tactic() const { return tactic_; }

  // Graph inputs (FP32, NCHW).
  int AddGraphInput(const Value* v);
  // Lowers one layer with its tactic and precision.
  Status AddLayer(const Node& node, const std::string& tactic, const std::string& precision);
  // Makes each graph output FP32 NCHW and records it.
  Status FinishOutputs(const std::vector<Value*>& outputs);

  // For layers: input i in `want` (converted if needed); want.nhwc is ignored unless the value is rank 4.
  Expected<int> Input(size_t i, Repr want);
  // Constant 2-D input i [R, C] as a new tensor holding its transpose [C, R] (in `want`'s precision).
  Expected<int> TransposedConstInput(size_t i, Repr want);
  // The input's current tensor, whatever its format.
  Expected<int> InputAsIs(size_t i);
  // Float input i as FP16 when the layer runs in FP16, in its current layout when `keep_layout`.
  Expected<int> FloatInput(size_t i, bool keep_layout);
  // A new arena tensor for output j (its sizes from the bound graph).
  int Output(size_t j, Repr repr);
  // Like Input/Output for a value other than the layer's own (a layer that folds neighbouring layers
  // into itself reads or writes their values; see FoldedLayers).
  Expected<int> ValueInput(const Value* v, Repr want);
  int ValueOutput(const Value* v, Repr repr);
  // Layers that AddLayer skips: another layer computes their work (FoldedLayers).
  void SetFolded(std::unordered_set<const Node*> folded) { folded_ = std::move(folded); }
  // Values whose producer runs its Clip(0, hi) as a ReLU, and whose one consumer clamps to hi on reading
  // (DeferredClips); DeferredClip(v) is that hi, or +inf.
  void SetDeferredClips(std::unordered_map<const Value*, float> clips) { deferred_clips_ = std::move(clips); }
  float DeferredClip(const Value* v) const {
    auto it = deferred_clips_.find(v);
    return it == deferred_clips_.end() ? HUGE_VALF : it->second;
  }
  // A scratch arena tensor that lives through this layer only.
  int Scratch(std::vector<int64_t> sizes, Repr repr);
  // Whether the layer can run on the host now (every input a constant or known from shapes, and no float
  // output: shape arithmetic such as Shape -> Gather -> Unsqueeze -> Slice), and running it so: its
  // outputs are uploaded once, as constants of this program.
  bool CanEvaluateOnHost() const;
  Status EvaluateOnHost();
  // Output j is input tensor `src`'s memory under the output's sizes.
  int OutputView(size_t j, int src);
  const DevTensor& tensor(int id) const { return p_.tensors[static_cast<size_t>(id)]; }
  void RequestWorkspace(size_t bytes);
  void KeepAlive(std::shared_ptr<void> p) { p_.keep_alive.push_back(std::move(p)); }
  // Marks a tensor as used by the next launch Add()s (for layers made of several launches).
  void KeepTouching(int tensor) { Touch(tensor); }
  // Appends the layer's launch; every tensor the layer touched lives through it.
  void Add(Launch launch, const std::string& name = "");

 private:
  Expected<int> ValueTensor(const Value* v, Repr want);
  // A new tensor over weight memory `ptr` (no arena storage).
  int FixedTensor(std::vector<int64_t> sizes, Repr repr, DType dtype, const void* ptr);
  int NewTensor(std::vector<int64_t> sizes, Repr repr, DType dtype);
  void Touch(int tensor) { touched_.push_back(tensor); }

  Program& p_;
  Resources& res_;
  WeightStore& weights_;
  bool tuning_;
  const Node* node_ = nullptr;
  bool half_ = false;
  bool tf32_ = false;
  std::string tactic_;
  std::vector<int> touched_;
  // value -> tensors holding it, one per format
  std::unordered_map<const Value*, std::vector<int>> values_;
  std::unordered_set<const Node*> folded_;
  std::unordered_map<const Value*, float> deferred_clips_;
  // values known on the host (computed from static shapes and constants)
  std::unordered_map<const Value*, Tensor> host_;
};

// Whether `node` only computes shape arithmetic the builder can do on the host: no float output, and every
// input a constant, a Shape or itself such a node's output.
bool HostEvaluable(const Node& node);

// Per-op lowering (cuda_layers.cc).
std::string WhyUnsupportedOp(const Node& node);
// Candidate tactics for a bound layer (first = default).
std::vector<std::string> CandidateTactics(const Node& node, Resources& res, bool half, bool tf32);
std::string LayerPrecision(const Node& node, bool fp16, bool tf32);
Status LowerLayer(ProgramBuilder& b);
// The layers of a bound schedule that launch nothing because a later layer does their work in place
// (cuda_attention.cc: the head split/merge Reshape, Transpose and Split around a kiln.flash_attention;
// cuda_layernorm.cc: the Adds and embedding Gather feeding an FP16 layer norm), given each layer's tactic
// and precision.
std::unordered_set<const Node*> FoldedLayers(const std::vector<const Node*>& schedule,
                                             const std::vector<std::string>& tactics,
                                             const std::vector<std::string>& precisions);
// The ReLU6-style activations whose upper bound a depthwise consumer applies as it reads (cuda_layers.cc):
// for a layer with a fused Clip(0, hi) whose output feeds only a depthwise convolution run by kiln.dwconv
// (and is no graph output), the producer runs a ReLU, which cuDNN and cuBLASLt fuse into the product's
// epilogue, and the depthwise kernel reads min(x, hi): the pass over the (expanded, largest) tensor that a
// Clip epilogue costs them is gone. Keyed by the value between the two.
std::unordered_map<const Value*, float> DeferredClips(const std::vector<const Node*>& schedule,
                                                      const std::vector<std::string>& tactics,
                                                      const std::unordered_set<const Node*>& folded);

}  // namespace kiln::cuda
