#include "runtime/plan_executor.h"

#include <chrono>
#include <cstring>
#include <new>

#include "build/graph_clone.h"

namespace kiln {
namespace {

// Bounds the per-shape layout cache (a server sees few distinct batch sizes; a fuzzer many).
constexpr size_t kMaxCachedLayouts = 32;

}  // namespace

PlanExecutor::PlanExecutor(const plan::Plan& plan, ReferenceRunOptions options)
    : plan_(plan), options_(std::move(options)) {
  for (const Node* n : plan_.schedule) {
    for (const Value* v : n->inputs()) {
      if (v) ++uses_[v];
    }
  }
}

uint64_t PlanExecutor::arena_capacity() const { return arena_ ? arena_->size() : 0; }

Status PlanExecutor::CreateKernels() {
  if (kernels_created_) return Status::Ok();
  if (plan_.layers.size() != plan_.schedule.size()) return Internal("the plan's layer list does not match its schedule");
  std::vector<std::unique_ptr<cpu::CpuKernel>> kernels(plan_.schedule.size());
  for (size_t i = 0; i < plan_.schedule.size(); ++i) {
    const std::string& tactic = plan_.layers[i].tactic;
    if (tactic == "reference") continue;
    kernels[i] = cpu::CreateCpuKernel(*plan_.schedule[i], tactic);
    if (!kernels[i]) {
      return Unsupported(plan_.schedule[i]->Label() + ": tactic '" + tactic + "' is not in this build of Kiln");
    }
  }
  kernels_ = std::move(kernels);
  kernels_created_ = true;
  return Status::Ok();
}

Expected<const build::ArenaLayout*> PlanExecutor::Prepare(const Sizes& sizes) {
  auto it = layouts_.find(sizes);
  if (it != layouts_.end()) return it->second.get();
  std::vector<const Node*> bound_schedule;
  std::unordered_map<const Value*, const Value*> original_of;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Graph> bound,
                        build::CloneWithInputSizes(*plan_.graph, sizes, &bound_schedule, &plan_.schedule,
                                                   &original_of));
  KILN_ASSIGN_OR_RETURN(build::ArenaLayout bound_layout, build::LayOutArena(bound_schedule));
  auto layout = std::make_unique<build::ArenaLayout>(bound_layout);
  layout->slots.clear();
  for (const auto& [v, slot] : bound_layout.slots) layout->slots[original_of.at(v)] = slot;
  if (layouts_.size() >= kMaxCachedLayouts) {
    layouts_.clear();
    last_ = nullptr;
  }
  return layouts_.emplace(sizes, std::move(layout)).first->second.get();
}

Status PlanExecutor::RunConcatInPlace(const Node& node, const std::vector<const Tensor*>& ins,
                                      const build::Slot& slot, Tensor* out) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ins) {
    if (!t) return InvalidArgument("a Concat input is missing");
    first = first ? first : t;
  }
  if (!first) return InvalidArgument("Concat has no inputs");
  const int64_t rank = static_cast<int64_t>(first->rank());
  int64_t axis = node.attrs().GetInt("axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return InvalidArgument("Concat axis out of range");
  std::vector<int64_t> sizes = first->sizes();
  sizes[static_cast<size_t>(axis)] = 0;
  uint64_t total = 0;
  for (const Tensor* t : ins) {
    if (t->dtype() != first->dtype() || t->rank() != first->rank()) {
      return InvalidArgument("Concat inputs " + first->Description() + " and " + t->Description() + " differ");
    }
    sizes[static_cast<size_t>(axis)] += t->size(static_cast<size_t>(axis));
    total += t->nbytes();
  }
  if (total != slot.size) return Internal("Concat output does not match its planned slot");
  char* dst = static_cast<char*>(arena_->data()) + slot.offset;
  for (const Tensor* t : ins) {
    // Producers placed in their slice are already there; anything else (a graph input, a weight, a view
    // of another tensor) is copied in.
    if (t->raw_data() != dst && t->nbytes() > 0) std::memmove(dst, t->raw_data(), t->nbytes());
    dst += t->nbytes();
  }
  *out = Tensor(first->dtype(), std::move(sizes), arena_, slot.offset);
  return Status::Ok();
}

Expected<TensorMap> PlanExecutor::Run(const TensorMap& inputs) {
  const Graph& graph = *plan_.graph;
  KILN_RETURN_IF_ERROR(CheckGraphInputs(graph, inputs));
  KILN_RETURN_IF_ERROR(CreateKernels());
  Sizes sizes;
  for (const auto& [name, t] : inputs) sizes[name] = t.sizes();
  KILN_ASSIGN_OR_RETURN(const build::ArenaLayout* layout, Prepare(sizes));
  if (!arena_ || arena_->size() < layout->arena_size) {
    arena_.reset();
    arena_ = std::make_shared<Buffer>(layout->arena_size);
  }
  char* const base = static_cast<char*>(arena_->data());

  std::unordered_map<const Value*, Tensor> live;
  std::unordered_map<const Value*, int> remaining = uses_;
  for (const Value* in : graph.inputs()) {
    if (!in->is_constant()) live[in] = inputs.at(in->name());
  }
  auto lookup = [&](const Value* v) -> const Tensor* {
    if (v->is_constant()) return v->constant();
    auto it = live.find(v);
    return it == live.end() ? nullptr : &it->second;
  };

  if (profiling_) layer_ms_.resize(plan_.schedule.size(), 0);
  for (size_t step = 0; step < plan_.schedule.size(); ++step) {
    const Node* n = plan_.schedule[step];
    const auto layer_start = profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    std::vector<const Tensor*> ins(n->num_inputs(), nullptr);
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      if (const Value* v = n->input(i)) {
        ins[i] = lookup(v);
        if (!ins[i]) return InvalidArgument(n->Label() + ": input '" + v->name() + "' has no value (dangling input)");
      }
    }
    auto slot_of = [&](const Value* v) -> const build::Slot* {
      auto it = v ? layout->slots.find(v) : layout->slots.end();
      return it == layout->slots.end() ? nullptr : &it->second;
    };

    const build::Slot* concat_slot = n->op() == OpKind::kConcat ? slot_of(n->output(0)) : nullptr;
    if (concat_slot && concat_slot->kind == build::SlotKind::kConcat) {
      Tensor out;
      KILN_RETURN_IF_ERROR(RunConcatInPlace(*n, ins, *concat_slot, &out).WithContext(n->Label()));
      live[n->output(0)] = std::move(out);
    } else {
      KernelContext ctx(*n, ins, options_.limits);
      for (size_t j = 0; j < n->num_outputs(); ++j) {
        const build::Slot* s = slot_of(n->output(j));
        if (s && (s->kind == build::SlotKind::kOwn || s->kind == build::SlotKind::kInPlace)) {
          ctx.PlaceOutput(j, {arena_, s->offset, s->size, s->kind == build::SlotKind::kOwn});
        }
      }
      Status st;
      try {
        if (kernels_[step]) {
          st = kernels_[step]->Run(ctx);
        } else {
          const OpSchema* schema = OpRegistry::Global().Find(n->op());
          st = schema && schema->run ? schema->run(ctx) : Unsupported("no reference kernel");
        }
      } catch (const std::bad_alloc&) {
        st = OutOfRange("out of memory");
      }
      if (!st.ok()) return st.WithContext(n->Label());
      for (size_t j = 0; j < n->num_outputs(); ++j) {
        const Value* o = n->output(j);
        if (!o) continue;
        Tensor& t = ctx.outputs()[j];
        if (t.empty()) return Internal(n->Label() + ": kernel did not produce output " + std::to_string(j));
        if (t.buffer() == arena_.get()) {
          const build::Slot* s = slot_of(o);
          if (!s || t.raw_data() != base + s->offset) t = t.Clone();  // arena memory it does not own
        }
        live[o] = std::move(t);
      }
    }
    for (const Value* v : n->inputs()) {
      if (v && --remaining[v] == 0 && !v->is_graph_output()) live.erase(v);
    }
    if (profiling_) {
      layer_ms_[step] +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - layer_start).count();
    }
  }
  if (profiling_) ++profiled_runs_;

  TensorMap out;
  for (const Value* o : graph.outputs()) {
    const Tensor* t = lookup(o);
    if (!t) return Internal("graph output '" + o->name() + "' was not computed");
    // An output must not share memory the context or the engine reuses or owns (the arena, an input, a
    // weight): the caller keeps it after the next run.
    const bool shared = !o->is_constant() && (t->buffer() == arena_.get() || t->shares_storage());
    out[o->name()] = shared ? t->Clone() : *t;
  }
  last_ = layout;
  return out;
}

}  // namespace kiln
