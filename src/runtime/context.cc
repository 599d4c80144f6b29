// ExecutionContext: per-thread inputs, shape checks against the selected profile, execution, outputs.
// HostTensor lives here too.
#include <chrono>
#include <cstring>
#include <new>
#include <thread>

#include "build/builder.h"
#include "build/profiles.h"
#include "runtime/cpu_threads.h"
#include "runtime/engine_impl.h"

namespace kiln {
namespace {

template <typename Fn>
auto Guarded(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return OutOfRange("out of memory");
  } catch (const std::exception& e) {
    return Internal(std::string("unexpected exception: ") + e.what());
  }
}

int64_t Product(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

}  // namespace

// --- HostTensor ------------------------------------------------------------------------------------

HostTensor::HostTensor(DataType dtype, std::vector<int64_t> dims) : dtype_(dtype), dims_(std::move(dims)) {
  auto n = CheckedNumElements(dims_);
  const size_t elem = DataTypeSize(dtype_);
  if (!n || elem == 0 || static_cast<uint64_t>(*n) > (uint64_t{1} << 50) / elem) {
    dims_.clear();  // invalid dims: an empty tensor (no exception may leave the API)
    return;
  }
  try {
    auto buffer = std::make_shared<Buffer>(static_cast<size_t>(*n) * elem);
    data_ = buffer->data();
    storage_ = std::move(buffer);
  } catch (const std::bad_alloc&) {
    dims_.clear();
  }
}

HostTensor HostTensor::Copy(DataType dtype, std::vector<int64_t> dims, const void* data) {
  HostTensor t(dtype, std::move(dims));
  if (t.data_ && data && t.nbytes() > 0) std::memcpy(t.data_, data, t.nbytes());
  return t;
}

HostTensor HostTensor::Wrap(DataType dtype, std::vector<int64_t> dims, void* data,
                            std::shared_ptr<void> owner) {
  HostTensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  t.data_ = data;
  t.storage_ = std::move(owner);
  return t;
}

int64_t HostTensor::numel() const { return Product(dims_); }

// --- ExecutionContext ------------------------------------------------------------------------------

ExecutionContext::ExecutionContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ExecutionContext::~ExecutionContext() = default;

Status ExecutionContext::SetOptimizationProfile(int index) {
  const int n = static_cast<int>(impl_->engine->plan.profiles.size());
  if (index < 0 || index >= n) {
    return OutOfRange("optimization profile " + std::to_string(index) + " does not exist (the engine has " +
                      std::to_string(n) + ")");
  }
  impl_->profile = index;
  return Status::Ok();
}

int ExecutionContext::optimization_profile() const { return impl_->profile; }

namespace {

Expected<size_t> FindInput(const Engine::Impl& e, const std::string& name) {
  auto it = e.input_index.find(name);
  if (it == e.input_index.end()) {
    std::string names;
    for (const BindingInfo& b : e.inputs) names += (names.empty() ? "" : ", ") + b.name;
    return NotFound("the engine has no input '" + name + "' (its inputs: " + names + ")");
  }
  return it->second;
}

}  // namespace

Status ExecutionContext::SetInputShape(const std::string& name, const std::vector<int64_t>& dims) {
  return Guarded([&]() -> Status {
    const Engine::Impl& e = *impl_->engine;
    KILN_ASSIGN_OR_RETURN(size_t i, FindInput(e, name));
    KILN_RETURN_IF_ERROR(
        build::CheckInProfile(e.plan.profiles[impl_->profile].inputs[i], dims, impl_->profile));
    impl_->declared[i] = dims;
    impl_->has_declared[i] = true;
    return Status::Ok();
  });
}

Status ExecutionContext::SetInput(const std::string& name, const void* data, DataType dtype,
                                  const std::vector<int64_t>& dims) {
  return Guarded([&]() -> Status {
    const Engine::Impl& e = *impl_->engine;
    KILN_ASSIGN_OR_RETURN(size_t i, FindInput(e, name));
    const BindingInfo& b = e.inputs[i];
    if (dtype != b.dtype) {
      return InvalidArgument("input '" + name + "' has dtype " + DataTypeName(b.dtype) + ", got " +
                             (DataTypeSize(dtype) ? DataTypeName(dtype) : "an unknown dtype"));
    }
    for (int64_t d : dims) {
      if (d < 0)
        return InvalidArgument("input '" + name + "' shape " + build::DimsToString(dims) + " is negative");
    }
    if (impl_->has_declared[i] && impl_->declared[i] != dims) {
      return InvalidArgument("input '" + name + "' has shape " + build::DimsToString(dims) +
                             ", but SetInputShape declared " + build::DimsToString(impl_->declared[i]));
    }
    KILN_RETURN_IF_ERROR(
        build::CheckInProfile(e.plan.profiles[impl_->profile].inputs[i], dims, impl_->profile));
    KILN_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(ToDType(dtype), dims));
    if (t.nbytes() > 0) {
      if (!data) return InvalidArgument("input '" + name + "': no data");
      std::memcpy(t.raw_data(), data, t.nbytes());
    }
    impl_->inputs[name] = std::move(t);
    return Status::Ok();
  });
}

Status ExecutionContext::SetInput(const std::string& name, const HostTensor& tensor) {
  return SetInput(name, tensor.data(), tensor.dtype(), tensor.dims());
}

Status ExecutionContext::Run() {
  return Guarded([&]() -> Status {
    const Engine::Impl& e = *impl_->engine;
    for (const BindingInfo& b : e.inputs) {
      if (!impl_->inputs.count(b.name)) return InvalidArgument("input '" + b.name + "' was not set");
    }
    impl_->outputs.clear();
    impl_->timings = {};
    if (e.plan.target.device == "cuda") {
      if (!impl_->gpu) {
        KILN_ASSIGN_OR_RETURN(impl_->gpu, cuda::CudaExecutor::Create(e.plan, impl_->device));
      }
      KILN_ASSIGN_OR_RETURN(impl_->outputs, impl_->gpu->Run(impl_->inputs));
      const cuda::CudaRunTimings t = impl_->gpu->last_timings();
      impl_->timings = {t.host_to_device_ms, t.compute_ms, t.device_to_host_ms};
      return Status::Ok();
    }
    CpuThreadLease lease(impl_->cpu_threads);
    // oneDNN primitives keep the thread count they were created under: new count, new kernels.
    if (!impl_->executor || impl_->executor_threads != lease.threads()) {
      impl_->executor = std::make_unique<PlanExecutor>(e.plan);
      impl_->executor->set_profiling(impl_->profiling);
      impl_->executor_threads = lease.threads();
    }
    const auto start = std::chrono::steady_clock::now();
    KILN_ASSIGN_OR_RETURN(impl_->outputs, impl_->executor->Run(impl_->inputs));
    impl_->timings.compute_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return Status::Ok();
  });
}

Status ExecutionContext::SetCpuThreads(int threads) {
  if (threads < 0) return InvalidArgument("thread count must be 0 (the whole budget) or more, got " + std::to_string(threads));
  impl_->cpu_threads = threads;
  return Status::Ok();
}

std::future<Status> ExecutionContext::RunAsync() {
  try {
    return std::async(std::launch::async, [this] { return Run(); });
  } catch (const std::exception& ex) {
    std::promise<Status> failed;
    failed.set_value(Unavailable(std::string("cannot start an asynchronous run: ") + ex.what()));
    return failed.get_future();
  }
}

Expected<HostTensor> ExecutionContext::GetOutput(const std::string& name) const {
  return Guarded([&]() -> Expected<HostTensor> {
    const Engine::Impl& e = *impl_->engine;
    if (!e.output_index.count(name)) {
      std::string names;
      for (const BindingInfo& b : e.outputs) names += (names.empty() ? "" : ", ") + b.name;
      return NotFound("the engine has no output '" + name + "' (its outputs: " + names + ")");
    }
    auto it = impl_->outputs.find(name);
    if (it == impl_->outputs.end())
      return NotFound("output '" + name + "' is not computed yet: call Run() first");
    const Value* v = e.plan.graph->FindValue(name);
    // Outputs that are weights or inputs are copied, so writing to the result cannot change the engine.
    auto holder = std::make_shared<Tensor>(v && (v->is_constant() || v->is_graph_input()) ? it->second.Clone()
                                                                                          : it->second);
    void* p = holder->raw_data();
    return HostTensor::Wrap(ToDataType(holder->dtype()), holder->sizes(), p, holder);
  });
}

RunTimings ExecutionContext::last_run_timings() const { return impl_->timings; }

void ExecutionContext::SetProfiling(bool on) {
  impl_->profiling = on;
  if (impl_->executor) {
    impl_->executor->set_profiling(on);
    impl_->executor->reset_profile();
  }
}

std::vector<LayerTiming> ExecutionContext::layer_timings() const {
  std::vector<LayerTiming> out;
  const PlanExecutor* x = impl_->executor.get();
  if (!x || x->profiled_runs() == 0) return out;
  const Engine::Impl& e = *impl_->engine;
  for (size_t i = 0; i < x->layer_ms().size() && i < e.layers.size(); ++i) {
    out.push_back({e.layers[i].name, e.layers[i].op, e.layers[i].tactic, x->layer_ms()[i] / x->profiled_runs()});
  }
  return out;
}

int ExecutionContext::device() const { return impl_->engine->plan.target.device == "cuda" ? impl_->device : -1; }

MemoryInfo ExecutionContext::memory() const {
  const Engine::Impl& e = *impl_->engine;
  const build::ArenaLayout* layout = impl_->executor ? impl_->executor->last_layout() : nullptr;
  if (!layout) return e.Memory(impl_->profile);
  MemoryInfo m;
  m.weight_bytes = e.weight_bytes;
  m.packed_weight_bytes = e.adopted_packed_bytes;
  m.arena_bytes = layout->arena_size;
  m.naive_bytes = layout->naive_size;
  m.planned_tensors = static_cast<int>(layout->slots.size());
  m.dynamic_tensors = layout->dynamic;
  m.in_place_tensors = layout->in_place;
  m.view_tensors = layout->views;
  m.concats_eliminated = layout->concats_eliminated;
  return m;
}

// --- helpers for Kiln's tools (engine_impl.h) ----------------------------------------------------------

OptimizationProfile ExactProfile(const TensorMap& inputs) {
  OptimizationProfile profile;
  for (const auto& entry : inputs) {
    profile.inputs[entry.first] = InputProfile{entry.second.sizes(), entry.second.sizes(), entry.second.sizes()};
  }
  return profile;
}

Tensor ToTensor(const HostTensor& h) {
  Tensor t(ToDType(h.dtype()), h.dims());
  if (t.nbytes() > 0) std::memcpy(t.raw_data(), h.data(), t.nbytes());
  return t;
}

Expected<TensorMap> RunOnce(const Engine& engine, const TensorMap& inputs) {
  auto ctx = engine.CreateContext();
  if (!ctx) return OutOfRange("cannot create an execution context");
  for (const auto& [name, t] : inputs) {
    KILN_RETURN_IF_ERROR(ctx->SetInput(name, t.raw_data(), ToDataType(t.dtype()), t.sizes()));
  }
  KILN_RETURN_IF_ERROR(ctx->Run());
  TensorMap out;
  for (const BindingInfo& b : engine.outputs()) {
    KILN_ASSIGN_OR_RETURN(HostTensor h, ctx->GetOutput(b.name));
    out[b.name] = ToTensor(h);
  }
  return out;
}

}  // namespace kiln
