// Engine: building, loading and saving plans; binding information. (Execution: context.cc.)
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <new>

#include "backends/cpu/cpu_kernels.h"
#include "build/builder.h"
#include "onnx/importer.h"
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

BindingInfo MakeBinding(const Value& v) {
  BindingInfo b;
  b.name = v.name();
  b.dtype = ToDataType(v.dtype());
  if (v.shape()) {
    for (const Dim& d : v.shape()->dims()) {
      b.dims.push_back(d.is_static() ? d.value() : -1);
      b.dim_names.push_back(d.is_symbolic() ? d.symbol() : "");
    }
  }
  return b;
}

}  // namespace

DType ToDType(DataType t) { return static_cast<DType>(t); }
DataType ToDataType(DType t) { return static_cast<DataType>(t); }

size_t DataTypeSize(DataType t) { return DTypeSize(ToDType(t)); }
const char* DataTypeName(DataType t) { return DTypeName(ToDType(t)).data(); }
const char* PrecisionName(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kFp16: return "fp16";
    case Precision::kInt8: return "int8";
    case Precision::kBf16: return "bf16";
  }
  return "?";
}

Expected<std::shared_ptr<Engine::Impl>> Engine::Impl::FromPlan(plan::Plan plan) {
  auto impl = std::make_shared<Impl>();
  const Graph& g = *plan.graph;
  for (const Value* v : g.inputs()) {
    if (v->is_constant()) continue;
    impl->input_index[v->name()] = impl->inputs.size();
    impl->inputs.push_back(MakeBinding(*v));
  }
  for (const Value* v : g.outputs()) {
    impl->output_index[v->name()] = impl->outputs.size();
    impl->outputs.push_back(MakeBinding(*v));
  }
  for (const plan::Profile& p : plan.profiles) {
    if (p.inputs.size() != impl->inputs.size()) return Internal("a profile does not cover every input");
    for (size_t i = 0; i < p.inputs.size(); ++i) {
      impl->inputs[i].profiles.push_back({p.inputs[i].min, p.inputs[i].opt, p.inputs[i].max});
    }
  }
  for (size_t i = 0; i < plan.schedule.size(); ++i) {
    const Node* n = plan.schedule[i];
    impl->layers.push_back(
        {n->name(), std::string(n->op_name()), plan.layers[i].tactic, plan.layers[i].precision});
  }
  for (const Value* v : g.values()) {
    if (v->is_constant()) impl->weight_bytes += v->constant()->nbytes();
  }
  // Packed weights: offered to the kernels now, so that no context packs them again (a layout this build
  // or CPU would not ask for is simply not taken; the kernels pack from the plain weights then).
  if (plan.target.device != "cuda") {
    for (const plan::PackedWeights& p : plan.packed) {
      const Value* v = g.FindValue(p.value);
      if (!v || !v->is_constant() || !p.bytes) continue;
      if (auto handle = cpu::AdoptPackedWeights(*v->constant(), p.layout, *p.bytes)) {
        impl->adopted_packed.push_back(std::move(handle));
        impl->adopted_packed_bytes += p.bytes->nbytes();
      }
    }
  }
  impl->plan = std::move(plan);
  return impl;
}

MemoryInfo Engine::Impl::Memory(int profile) const {
  MemoryInfo m;
  m.weight_bytes = weight_bytes;
  m.packed_weight_bytes = adopted_packed_bytes;
  if (profile < 0 || static_cast<size_t>(profile) >= plan.memory.size() ||
      static_cast<size_t>(profile) >= plan.profiles.size()) {
    return m;
  }
  const plan::PlanMemory& pm = plan.memory[profile];
  m.arena_bytes = pm.arena_size;
  m.naive_bytes = pm.naive_size;
  m.planned_tensors = static_cast<int>(pm.blocks.size());
  m.dynamic_tensors = static_cast<int>(pm.dynamic_count);
  // The counts of shared memory are not stored in the plan: lay the opt shapes out again (milliseconds).
  std::map<std::string, std::vector<int64_t>> sizes;
  for (const plan::InputRange& r : plan.profiles[profile].inputs) sizes[r.name] = r.opt;
  if (auto layout = build::ArenaLayoutForSizes(*plan.graph, sizes); layout.ok()) {
    m.in_place_tensors = layout->in_place;
    m.view_tensors = layout->views;
    m.concats_eliminated = layout->concats_eliminated;
  }
  return m;
}

Engine::Engine(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Expected<std::shared_ptr<Engine>> Engine::BuildFromOnnx(const std::string& onnx_path,
                                                        const BuildOptions& options) {
  return Guarded([&]() -> Expected<std::shared_ptr<Engine>> {
    if (options.progress) options.progress("importing " + onnx_path);
    const auto start = std::chrono::steady_clock::now();
    KILN_ASSIGN_OR_RETURN(Model model, ImportOnnxFile(onnx_path));
    auto plan = build::BuildPlan(std::move(model.graph), options, onnx_path);
    if (!plan.ok()) return plan.status().WithContext("model " + onnx_path);
    plan->build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    KILN_ASSIGN_OR_RETURN(auto impl, Impl::FromPlan(std::move(*plan)));
    return std::make_shared<Engine>(std::move(impl));
  });
}

Expected<std::shared_ptr<Engine>> Engine::Load(const std::string& plan_path) {
  return Guarded([&]() -> Expected<std::shared_ptr<Engine>> {
    KILN_ASSIGN_OR_RETURN(plan::Plan plan, plan::ReadPlanFile(plan_path));
    KILN_ASSIGN_OR_RETURN(auto impl, Impl::FromPlan(std::move(plan)));
    return std::make_shared<Engine>(std::move(impl));
  });
}

Expected<std::shared_ptr<Engine>> Engine::LoadFromMemory(const void* data, size_t size) {
  return Guarded([&]() -> Expected<std::shared_ptr<Engine>> {
    KILN_ASSIGN_OR_RETURN(plan::Plan plan, plan::ReadPlanBytes(data, size));
    KILN_ASSIGN_OR_RETURN(auto impl, Impl::FromPlan(std::move(plan)));
    return std::make_shared<Engine>(std::move(impl));
  });
}

Status Engine::Save(const std::string& plan_path) const {
  return Guarded([&]() -> Status {
    // Written beside the target and renamed, so a failed save never leaves a half-written plan behind.
    const std::string tmp = plan_path + ".tmp";
    Status st = plan::WritePlanFile(impl_->plan, tmp);
    std::error_code ec;
    if (!st.ok()) {
      std::filesystem::remove(tmp, ec);
      return st.WithContext("saving plan " + plan_path);
    }
    std::filesystem::rename(tmp, plan_path, ec);
    if (ec) {
      std::filesystem::remove(tmp, ec);
      return Unavailable("saving plan " + plan_path + ": " + ec.message());
    }
    return Status::Ok();
  });
}

Expected<std::string> Engine::Serialize() const {
  return Guarded([&]() -> Expected<std::string> { return plan::SerializePlan(impl_->plan); });
}

const std::vector<BindingInfo>& Engine::inputs() const { return impl_->inputs; }
const std::vector<BindingInfo>& Engine::outputs() const { return impl_->outputs; }
int Engine::num_profiles() const { return static_cast<int>(impl_->plan.profiles.size()); }
const std::vector<LayerInfo>& Engine::layers() const { return impl_->layers; }
MemoryInfo Engine::memory(int profile) const { return impl_->Memory(profile); }
std::string Engine::target_description() const { return plan::DescribeTarget(impl_->plan.target); }
uint32_t Engine::plan_format_version() const { return impl_->plan.format_version; }
const std::string& Engine::source() const { return impl_->plan.source; }
double Engine::build_seconds() const { return impl_->plan.build_seconds; }

std::unique_ptr<ExecutionContext> Engine::CreateContext(int device) const {
  try {
    auto impl = std::make_unique<ExecutionContext::Impl>();
    impl->engine = impl_;
    impl->device = device;
    impl->declared.resize(impl_->inputs.size());
    impl->has_declared.resize(impl_->inputs.size(), false);
    return std::make_unique<ExecutionContext>(std::move(impl));
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // namespace kiln
