#include "backends/cuda/cuda_program.h"

#include <algorithm>
#include <cstring>

#include "backends/cuda/cuda_kernels.h"
#include "ops/registry.h"

namespace kiln::cuda {

Status CudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Internal(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what);
}
Status CudnnStatus(cudnnStatus_t s, const char* what) {
  if (s == CUDNN_STATUS_SUCCESS) return Status::Ok();
  return Internal(std::string("cuDNN error ") + cudnnGetErrorString(s) + " in " + what);
}
Status LtStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Internal("cuBLASLt error " + std::to_string(static_cast<int>(s)) + " in " + what);
}

// ---- Resources -----------------------------------------------------------------------------------------

Expected<std::unique_ptr<Resources>> Resources::Create(int device) {
  auto r = std::make_unique<Resources>();
  r->device_ = device;
  KILN_CUDA(cudaSetDevice(device));
  KILN_CUDA(cudaStreamCreateWithFlags(&r->stream_, cudaStreamNonBlocking));
  KILN_CUDNN(cudnnCreate(&r->cudnn_));
  KILN_CUDNN(cudnnSetStream(r->cudnn_, r->stream_));
  KILN_LT(cublasLtCreate(&r->lt_));
  return r;
}

Resources::~Resources() {
  if (lt_) cublasLtDestroy(lt_);
  if (cudnn_) cudnnDestroy(cudnn_);
  if (stream_) cudaStreamDestroy(stream_);
}

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}

Status DeviceBuffer::Reserve(size_t bytes) {
  if (bytes <= size_ && data_) return Status::Ok();
  if (data_) cudaFree(data_);
  data_ = nullptr;
  size_ = 0;
  KILN_CUDA(cudaMalloc(&data_, std::max<size_t>(bytes, 256)));
  size_ = bytes;
  return Status::Ok();
}

// ---- weights ---------------------------------------------------------------------------------------------

WeightStore::~WeightStore() {
  int prev = 0;
  cudaGetDevice(&prev);
  cudaSetDevice(device_);
  for (auto& entry : cache_) cudaFree(entry.second);
  cudaSetDevice(prev);
}

Expected<const void*> WeightStore::Get(const Tensor* t, Repr repr) {
  std::lock_guard<std::mutex> lock(mu_);
  if (t->dtype() != DType::kFloat32) repr = {};
  if (t->rank() != 4) repr.nhwc = false;
  return Upload(t, repr, "", nullptr);
}

Expected<const void*> WeightStore::GetDerived(const Tensor* t, bool half, const std::string& tag,
                                              const std::function<std::vector<float>(const Tensor&)>& make) {
  if (t->dtype() != DType::kFloat32) return InvalidArgument("only FP32 weights are rearranged");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(std::make_tuple(t, half, false, tag));
  if (it != cache_.end()) return static_cast<const void*>(it->second);
  const std::vector<float> host = make(*t);
  if (static_cast<int64_t>(host.size()) != t->numel()) {
    return Internal("weight rearrangement '" + tag + "' changed the size");
  }
  return Upload(t, Repr{half, false}, tag, host.data());
}

Expected<const void*> WeightStore::Upload(const Tensor* t, Repr repr, const std::string& tag, const float* host_data) {
  const auto key = std::make_tuple(t, repr.half, repr.nhwc, tag);
  auto it = cache_.find(key);
  if (it != cache_.end()) return static_cast<const void*>(it->second);
  const void* host = host_data ? static_cast<const void*>(host_data) : t->raw_data();
  void* raw = nullptr;
  const size_t bytes = std::max<size_t>(t->nbytes(), 4);
  KILN_CUDA(cudaMalloc(&raw, bytes));
  if (t->nbytes()) KILN_CUDA(cudaMemcpy(raw, host, t->nbytes(), cudaMemcpyHostToDevice));
  void* out = raw;
  if (repr.half || repr.nhwc) {
    const int64_t n = t->rank() == 4 ? t->size(0) : 1, c = t->rank() == 4 ? t->size(1) : 1;
    const int64_t h = t->rank() == 4 ? t->size(2) : 1, w = t->rank() == 4 ? t->size(3) : t->numel();
    KILN_CUDA(cudaMalloc(&out, std::max<size_t>(static_cast<size_t>(t->numel()) * (repr.half ? 2 : 4), 4)));
    Status st = CudaStatus(k::Convert(raw, false, false, out, repr.half, repr.nhwc, n, c, h, w, nullptr), "weight conversion");
    if (st.ok()) st = CudaStatus(cudaDeviceSynchronize(), "weight conversion");
    cudaFree(raw);
    if (!st.ok()) {
      cudaFree(out);
      return st;
    }
  }
  bytes_ += bytes;
  cache_[key] = out;
  return static_cast<const void*>(out);
}

std::vector<float> TransposedMatrix(const Tensor& t, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  const float* src = t.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[static_cast<size_t>(c * rows + r)] = src[r * cols + c];
  }
  return out;
}

std::shared_ptr<WeightStore> SharedWeightStore(const void* plan_key, int device) {
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, std::weak_ptr<WeightStore>> stores;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = stores[{plan_key, device}];
  std::shared_ptr<WeightStore> s = slot.lock();
  if (!s) {
    s = std::make_shared<WeightStore>(device);
    slot = s;
  }
  return s;
}

// ---- Program ---------------------------------------------------------------------------------------------

int64_t DevTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : sizes) n *= d;
  return n;
}

size_t DevTensor::bytes() const {
  const size_t es = dtype == DType::kFloat32 ? (repr.half ? 2 : 4) : DTypeSize(dtype);
  return static_cast<size_t>(numel()) * es;
}

void* Program::ptr(int tensor) const {
  const DevTensor& t = tensors[static_cast<size_t>(tensor)];
  if (t.storage < 0) return const_cast<void*>(t.fixed);
  return arena_ + storages[static_cast<size_t>(t.storage)].offset;
}

void Program::LayOut() {
  constexpr uint64_t kAlign = 256;
  std::vector<size_t> order(storages.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return storages[a].bytes > storages[b].bytes; });
  std::vector<size_t> placed;
  arena_size = 0;
  for (size_t i : order) {
    Storage& s = storages[i];
    const uint64_t size = (std::max<uint64_t>(s.bytes, 1) + kAlign - 1) / kAlign * kAlign;
    // Live neighbours sorted by offset; take the first gap that fits (first fit in address order).
    std::vector<std::pair<uint64_t, uint64_t>> busy;
    for (size_t j : placed) {
      const Storage& o = storages[j];
      if (o.first <= s.last && s.first <= o.last) {
        busy.push_back({o.offset, (std::max<uint64_t>(o.bytes, 1) + kAlign - 1) / kAlign * kAlign});
      }
    }
    std::sort(busy.begin(), busy.end());
    uint64_t at = 0;
    for (const auto& b : busy) {
      if (at + size <= b.first) break;
      at = std::max(at, b.first + b.second);
    }
    s.offset = at;
    arena_size = std::max(arena_size, at + size);
    placed.push_back(i);
  }
}

Status Program::RunSteps(cudaStream_t s) const {
  for (size_t i = 0; i < steps.size(); ++i) {
    Status st = steps[i](*this, s);
    if (!st.ok()) return st.WithContext(step_names[i]);
  }
  return Status::Ok();
}

Program::~Program() {
  if (graph) cudaGraphExecDestroy(graph);
}

// ---- ProgramBuilder ---------------------------------------------------------------------------------------

int ProgramBuilder::NewTensor(std::vector<int64_t> sizes, Repr repr, DType dtype) {
  if (sizes.size() != 4) repr.nhwc = false;
  DevTensor t;
  t.sizes = std::move(sizes);
  t.repr = repr;
  t.dtype = dtype;
  t.storage = static_cast<int>(p_.storages.size());
  Storage s;
  s.bytes = t.bytes();
  s.tensor = static_cast<int>(p_.tensors.size());
  p_.storages.push_back(s);
  p_.tensors.push_back(std::move(t));
  return static_cast<int>(p_.tensors.size()) - 1;
}

int ProgramBuilder::FixedTensor(std::vector<int64_t> sizes, Repr repr, DType dtype, const void* ptr) {
  DevTensor t;
  t.sizes = std::move(sizes);
  t.repr = repr;
  t.dtype = dtype;
  t.fixed = ptr;
  p_.tensors.push_back(std::move(t));
  return static_cast<int>(p_.tensors.size()) - 1;
}

int ProgramBuilder::AddGraphInput(const Value* v) {
  const int id = NewTensor(v->shape()->sizes().value_or(std::vector<int64_t>{}), {}, v->dtype());
  p_.storages[static_cast<size_t>(p_.tensors[static_cast<size_t>(id)].storage)].first = 0;
  values_[v] = {id};
  p_.inputs[v->name()] = id;
  return id;
}

Expected<int> ProgramBuilder::ValueTensor(const Value* v, Repr want) {
  const std::string where = node_ ? node_->Label() : std::string("graph outputs");
  if (!v) return InvalidArgument(where + ": a required input is missing");
  const bool is_float = v->dtype() == DType::kFloat32;
  if (!is_float) want = {};
  if (!v->shape() || !v->shape()->is_static()) return Internal("value '" + v->name() + "' has no static shape");
  const std::vector<int64_t> sizes = *v->shape()->sizes();
  if (sizes.size() != 4) want.nhwc = false;
  if (v->is_constant()) {
    auto& list = values_[v];
    for (int id : list) {
      if (p_.tensors[static_cast<size_t>(id)].repr == want) return id;
    }
    KILN_ASSIGN_OR_RETURN(const void* ptr, weights_.Get(v->constant(), want));
    list.push_back(FixedTensor(sizes, want, v->dtype(), ptr));
    return list.back();
  }
  auto it = values_.find(v);
  if (it == values_.end() || it->second.empty()) {
    if (!tuning_) return Internal(where + ": value '" + v->name() + "' was not computed");
    const int id = NewTensor(sizes, want, v->dtype());
    Storage& s = p_.storages[static_cast<size_t>(p_.tensors[static_cast<size_t>(id)].storage)];
    s.random_fill = true;
    s.first = 0;
    values_[v] = {id};
    return id;
  }
  for (int id : it->second) {
    if (p_.tensors[static_cast<size_t>(id)].repr == want) return id;
  }
  // Convert from the first format it exists in.
  const int src = it->second.front();
  const DevTensor& st = p_.tensors[static_cast<size_t>(src)];
  if (st.dtype != DType::kFloat32) return Internal("cannot convert non-float value '" + v->name() + "'");
  const int dst = NewTensor(sizes, want, v->dtype());
  const Repr from = st.repr;
  int64_t n = 1, c = 1, h = 1, w = 1;
  if (sizes.size() == 4) {
    n = sizes[0], c = sizes[1], h = sizes[2], w = sizes[3];
  } else {
    w = p_.tensors[static_cast<size_t>(src)].numel();
  }
  std::vector<int> saved;
  saved.swap(touched_);
  Touch(src);
  Touch(dst);
  Add([=](const Program& p, cudaStream_t s) {
    return CudaStatus(k::Convert(p.ptr(src), from.half, from.nhwc, p.ptr(dst), want.half, want.nhwc, n, c, h, w, s),
                      "format conversion");
  }, "convert " + v->name());
  touched_.swap(saved);
  values_[v].push_back(dst);
  return dst;
}

Expected<int> ProgramBuilder::Input(size_t i, Repr want) {
  KILN_ASSIGN_OR_RETURN(int id, ValueTensor(node_->input(i), want));
  Touch(id);
  return id;
}

Expected<int> ProgramBuilder::TransposedConstInput(size_t i, Repr want) {
  const Value* v = node_->input(i);
  if (!v || !v->is_constant() || v->constant()->rank() != 2 || v->dtype() != DType::kFloat32) {
    return InvalidArgument(node_->Label() + ": input " + std::to_string(i) + " is not a constant FP32 matrix");
  }
  const int64_t rows = v->constant()->size(0), cols = v->constant()->size(1);
  auto transpose = [rows, cols](const Tensor& w) { return TransposedMatrix(w, rows, cols); };
  KILN_ASSIGN_OR_RETURN(const void* ptr, weights_.GetDerived(v->constant(), want.half, "transposed", transpose));
  const int id = FixedTensor({cols, rows}, Repr{want.half, false}, DType::kFloat32, ptr);
  Touch(id);
  return id;
}

Expected<int> ProgramBuilder::InputAsIs(size_t i) {
  const Value* v = node_->input(i);
  if (!v) return InvalidArgument(node_->Label() + ": input " + std::to_string(i) + " is missing");
  auto it = values_.find(v);
  if (it != values_.end() && !it->second.empty()) {
    Touch(it->second.front());
    return it->second.front();
  }
  return Input(i, Repr{half_, false});
}

Expected<int> ProgramBuilder::FloatInput(size_t i, bool keep_layout) {
  const Value* v = node_->input(i);
  Repr want{half_, false};
  if (keep_layout && v) {
    auto it = values_.find(v);
    if (it != values_.end() && !it->second.empty()) want.nhwc = p_.tensors[static_cast<size_t>(it->second.front())].repr.nhwc;
  }
  return Input(i, want);
}

int ProgramBuilder::Output(size_t j, Repr repr) {
  const Value* v = node_->output(j);
  const int id = NewTensor(v->shape()->sizes().value_or(std::vector<int64_t>{}), repr, v->dtype());
  values_[v] = {id};
  Touch(id);
  return id;
}

Expected<int> ProgramBuilder::ValueInput(const Value* v, Repr want) {
  KILN_ASSIGN_OR_RETURN(int id, ValueTensor(v, want));
  Touch(id);
  return id;
}

int ProgramBuilder::ValueOutput(const Value* v, Repr repr) {
  const int id = NewTensor(v->shape()->sizes().value_or(std::vector<int64_t>{}), repr, v->dtype());
  values_[v] = {id};
  Touch(id);
  return id;
}

int ProgramBuilder::OutputView(size_t j, int src) {
  const Value* v = node_->output(j);
  DevTensor t = p_.tensors[static_cast<size_t>(src)];
  t.sizes = v->shape()->sizes().value_or(std::vector<int64_t>{});
  if (t.sizes.size() != 4) t.repr.nhwc = false;
  p_.tensors.push_back(std::move(t));
  const int id = static_cast<int>(p_.tensors.size()) - 1;
  values_[v] = {id};
  Touch(id);
  return id;
}

int ProgramBuilder::Scratch(std::vector<int64_t> sizes, Repr repr) {
  const int id = NewTensor(std::move(sizes), repr, DType::kFloat32);
  Touch(id);
  return id;
}

bool HostEvaluable(const Node& node) {
  // Bounded walk up the producers: shape chains are short.
  std::vector<const Node*> stack = {&node};
  for (int visited = 0; !stack.empty(); ++visited) {
    if (visited > 64) return false;
    const Node* n = stack.back();
    stack.pop_back();
    for (const Value* o : n->outputs()) {
      if (o && IsFloat(o->dtype())) return false;
    }
    const OpSchema* schema = OpRegistry::Global().Find(n->op());
    if (!schema || !schema->run) return false;
    if (n->op() == OpKind::kShape) continue;
    for (const Value* v : n->inputs()) {
      if (!v || v->is_constant()) continue;
      if (!v->producer()) return false;
      stack.push_back(v->producer());
    }
  }
  return true;
}

bool ProgramBuilder::CanEvaluateOnHost() const {
  for (const Value* o : node_->outputs()) {
    if (o && IsFloat(o->dtype())) return false;
  }
  const OpSchema* schema = OpRegistry::Global().Find(node_->op());
  if (!schema || !schema->run) return false;
  if (node_->op() == OpKind::kShape) return true;
  for (const Value* v : node_->inputs()) {
    if (v && !v->is_constant() && !host_.count(v)) return false;
  }
  return true;
}

Status ProgramBuilder::EvaluateOnHost() {
  static const KernelLimits kLimits;
  std::vector<Tensor> dummies;
  dummies.reserve(node_->num_inputs());
  std::vector<const Tensor*> ins;
  for (const Value* v : node_->inputs()) {
    if (!v) {
      ins.push_back(nullptr);
    } else if (v->is_constant()) {
      ins.push_back(v->constant());
    } else if (host_.count(v)) {
      ins.push_back(&host_.at(v));
    } else {  // Shape reads only the sizes
      if (!v->shape() || !v->shape()->is_static()) return Internal("shape of '" + v->name() + "' is not static");
      dummies.emplace_back(v->dtype(), *v->shape()->sizes());
      ins.push_back(&dummies.back());
    }
  }
  KernelContext ctx(*node_, ins, kLimits);
  const OpSchema* schema = OpRegistry::Global().Find(node_->op());
  KILN_RETURN_IF_ERROR(schema->run(ctx));
  for (size_t j = 0; j < node_->num_outputs(); ++j) {
    const Value* o = node_->output(j);
    if (!o) continue;
    Tensor& t = ctx.outputs()[j];
    void* dev = nullptr;
    KILN_CUDA(cudaMalloc(&dev, std::max<size_t>(t.nbytes(), 8)));
    p_.keep_alive.push_back(std::shared_ptr<void>(dev, [](void* q) { cudaFree(q); }));
    if (t.nbytes()) KILN_CUDA(cudaMemcpy(dev, t.raw_data(), t.nbytes(), cudaMemcpyHostToDevice));
    DevTensor d;
    d.sizes = t.sizes();
    d.dtype = t.dtype();
    d.fixed = dev;
    p_.tensors.push_back(std::move(d));
    values_[o] = {static_cast<int>(p_.tensors.size()) - 1};
    host_[o] = t.Clone();
  }
  return Status::Ok();
}

void ProgramBuilder::RequestWorkspace(size_t bytes) { p_.workspace_size = std::max(p_.workspace_size, bytes); }

void ProgramBuilder::Add(Launch launch, const std::string& name) {
  const int step = static_cast<int>(p_.steps.size());
  for (int id : touched_) {
    const DevTensor& t = p_.tensors[static_cast<size_t>(id)];
    if (t.storage < 0) continue;
    Storage& s = p_.storages[static_cast<size_t>(t.storage)];
    s.first = std::min(s.first, step);
    s.last = std::max(s.last, step);
  }
  touched_.clear();
  p_.steps.push_back(std::move(launch));
  p_.step_names.push_back(name.empty() && node_ ? node_->Label() + " [" + tactic_ + (half_ ? " fp16" : "") + "]" : name);
}

Status ProgramBuilder::AddLayer(const Node& node, const std::string& tactic, const std::string& precision) {
  node_ = &node;
  tactic_ = tactic;
  half_ = precision == "fp16";
  tf32_ = precision == "tf32";
  touched_.clear();
  if (folded_.count(&node)) return Status::Ok();
  if (CanEvaluateOnHost()) return EvaluateOnHost().WithContext(node.Label() + " [host]");
  return LowerLayer(*this).WithContext(node.Label() + " [" + tactic + "]");
}

Status ProgramBuilder::FinishOutputs(const std::vector<Value*>& outputs) {
  node_ = nullptr;
  for (const Value* v : outputs) {
    KILN_ASSIGN_OR_RETURN(int id, ValueTensor(v, Repr{}));
    const DevTensor& t = p_.tensors[static_cast<size_t>(id)];
    if (t.storage >= 0) p_.storages[static_cast<size_t>(t.storage)].last = 1 << 30;
    p_.outputs[v->name()] = id;
  }
  return Status::Ok();
}

}  // namespace kiln::cuda
