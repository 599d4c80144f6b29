#include "build/builder.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "build/arena_layout.h"
#include "build/graph_clone.h"
#include "build/memory_planner.h"
#include "build/profiles.h"
#include "build/tactics.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_info.h"
#include "ops/infer.h"
#include "passes/pass.h"
#include "passes/pipeline.h"

namespace kiln::build {
namespace {

void Progress(const BuildOptions& options, const std::string& line) {
  if (options.progress) options.progress(line);
}

// Runs the optimizer's pass pipeline (src/passes/): the single call site of the optimizer in the build.
Status Optimize(Graph& graph, const BuildOptions& options) {
  PipelineOptions pipeline;
  pipeline.disabled.insert(options.disabled_passes.begin(), options.disabled_passes.end());
  KILN_ASSIGN_OR_RETURN(PipelineReport report, RunPipeline(graph, pipeline));
  Progress(options, "optimized: " + std::to_string(report.layers_before) + " -> " +
                        std::to_string(report.layers_after) + " layers");
  return Status::Ok();
}

// The static sizes of every value once the graph is bound to `sizes` and constant-folded: shape arithmetic
// (Shape -> Gather -> Slice ...) that shape inference alone leaves unknown becomes known.
Expected<std::map<std::string, std::vector<int64_t>>> FoldedSizes(
    const Graph& graph, const std::map<std::string, std::vector<int64_t>>& sizes) {
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Graph> folded, CloneWithInputSizes(graph, sizes));
  for (const PassInfo& pass : OptimizerPasses()) {
    if (std::string(pass.name) != "constant_folding") continue;
    PassReport report;
    KILN_RETURN_IF_ERROR(pass.run(*folded, report));
  }
  std::map<std::string, std::vector<int64_t>> out;
  for (const Value* v : folded->values()) {
    if (v->shape() && v->shape()->is_static()) out[v->name()] = *v->shape()->sizes();
  }
  return out;
}

// CPU plans: activations NHWC where the CPU kernels are faster so (the channels_last pass).
Status UseChannelsLast(Graph& graph, const BuildOptions& options) {
  PassReport report;
  KILN_RETURN_IF_ERROR(ChannelsLast(graph, report, cpu::HasChannelsLastKernel));
  if (!report.changed()) return Status::Ok();
  // A model's own NCHW -> NHWC Transposes (detection heads) now meet the pass's NHWC -> NCHW ones: the
  // elimination pass cancels such pairs.
  PassReport cleanup;
  KILN_RETURN_IF_ERROR(Elimination(graph, cleanup));
  int64_t transposes = 0;
  for (const Node* n : graph.nodes()) transposes += n->op() == OpKind::kTranspose;
  Progress(options, "channels-last: " + std::to_string(report.counts["layers made channels-last (NHWC)"]) +
                        " layers NHWC, " + std::to_string(transposes) + " transposes left in the graph");
  return VerifyGraph(graph);
}

// A GPU build refuses the model if any layer cannot run on the GPU, naming every such layer at once.
Status CheckGpuSupport(const Graph& graph) {
  std::string missing;
  int count = 0;
  for (const Node* n : graph.nodes()) {
    const std::string why = cuda::WhyUnsupported(*n);
    if (why.empty()) continue;
    if (++count <= 20) missing += (missing.empty() ? "" : "; ") + n->Label() + ": " + why;
  }
  if (count == 0) return Status::Ok();
  if (count > 20) missing += "; and " + std::to_string(count - 20) + " more";
  return Unsupported("the GPU cannot run " + std::to_string(count) + " layer(s) of this model: " + missing +
                     " (build with --device cpu)");
}

}  // namespace

Expected<ArenaLayout> ArenaLayoutForSizes(const Graph& graph,
                                          const std::map<std::string, std::vector<int64_t>>& input_sizes) {
  std::vector<const Node*> schedule;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Graph> bound, CloneWithInputSizes(graph, input_sizes, &schedule));
  return LayOutArena(schedule);
}

Expected<plan::PlanMemory> PlanMemoryForSizes(
    const Graph& graph, const std::map<std::string, std::vector<int64_t>>& input_sizes) {
  std::vector<const Node*> schedule;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Graph> bound, CloneWithInputSizes(graph, input_sizes, &schedule));
  // The same layout the executor uses at run time (views, in-place outputs, concat slices included).
  KILN_ASSIGN_OR_RETURN(ArenaLayout layout, LayOutArena(schedule));
  plan::PlanMemory m;
  m.arena_size = layout.arena_size;
  m.naive_size = layout.naive_size;
  m.dynamic_count = static_cast<uint64_t>(layout.dynamic);
  for (const Value* v : bound->values()) {
    auto it = layout.slots.find(v);
    if (it == layout.slots.end() || v->name().empty()) continue;
    m.blocks.push_back({v->name(), it->second.offset, it->second.size});
  }
  return m;
}

Expected<plan::Plan> BuildPlan(Graph graph_in, const BuildOptions& options, const std::string& source) {
  const auto start = std::chrono::steady_clock::now();
  auto graph = std::make_shared<Graph>(std::move(graph_in));
  const bool gpu = options.device == DeviceType::kCuda;
  if (gpu && !cuda::BackendCompiled()) {
    return Unsupported("this build of Kiln has no CUDA backend (no CUDA toolkit at configure time): build with --device cpu");
  }
  if (gpu && cuda::DeviceCount() == 0) {
    return Unsupported("--device cuda: no usable GPU (" + QueryCuda().unavailable_reason + ")");
  }
  if (gpu && options.precision == Precision::kBf16) {
    return Unsupported("bf16 is a CPU precision in this version of Kiln: build GPU plans in fp32 or fp16");
  }
  if (options.optimize) {
    Progress(options, "optimizing");
    KILN_RETURN_IF_ERROR(Optimize(*graph, options));
  }
  KILN_RETURN_IF_ERROR(VerifyGraph(*graph));
  KILN_RETURN_IF_ERROR(ValidateGraphOps(*graph));

  if (gpu) KILN_RETURN_IF_ERROR(CheckGpuSupport(*graph));
  if (!gpu && options.optimize && options.fast_kernels && options.channels_last) {
    KILN_RETURN_IF_ERROR(UseChannelsLast(*graph, options));
  }

  plan::Plan plan;
  plan.source = source;
  plan.target = plan::CurrentTarget(gpu ? "cuda" : "cpu");
  Progress(options, "resolving profiles");
  KILN_ASSIGN_OR_RETURN(plan.profiles, ResolveProfiles(*graph, options.profiles));

  Progress(options, "choosing tactics");
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, graph->TopologicalOrder());
  plan.schedule.assign(order.begin(), order.end());
  // Tactics are timed on the first profile's opt shapes (a graph bound to them); layers without a fast
  // candidate run the reference kernel. CPU plans: a bf16 build may choose BF16 tactics; fp16 and int8
  // have no CPU tactics (FP32).
  {
    std::map<std::string, std::vector<int64_t>> sizes;
    for (const plan::InputRange& r : plan.profiles.at(0).inputs) sizes[r.name] = r.opt;
    std::vector<const Node*> bound_schedule;
    KILN_ASSIGN_OR_RETURN(std::unique_ptr<Graph> bound,
                          CloneWithInputSizes(*graph, sizes, &bound_schedule, &plan.schedule));
    if (gpu) {
      cuda::CudaBuildOptions cuda_options;
      cuda_options.fp16 = options.precision == Precision::kFp16;
      cuda_options.tf32 = options.tf32;
      cuda_options.timing_cache = options.timing_cache;
      KILN_ASSIGN_OR_RETURN(std::vector<cuda::CudaLayerChoice> choices,
                            cuda::ChooseCudaTactics(bound_schedule, cuda_options));
      if (choices.size() != bound_schedule.size()) return Internal("the CUDA backend chose tactics for another schedule");
      for (const cuda::CudaLayerChoice& c : choices) plan.layers.push_back({c.tactic, c.precision});
    } else {
      TacticOptions tactic_options;
      tactic_options.progress = options.progress;
      tactic_options.allow_bf16 = options.precision == Precision::kBf16;
      tactic_options.collect_packed_weights = options.packed_weights;
      std::map<std::string, std::vector<int64_t>> known_sizes;
      if (options.fast_kernels) {
        KILN_ASSIGN_OR_RETURN(known_sizes, FoldedSizes(*graph, sizes));
        tactic_options.known_sizes = &known_sizes;
      }
      std::vector<TacticChoice> choices(bound_schedule.size());
      if (options.fast_kernels) {
        KILN_ASSIGN_OR_RETURN(choices, ChooseTactics(bound_schedule, tactic_options));
      }
      for (TacticChoice& c : choices) {
        plan.layers.push_back({c.tactic, c.precision});
        for (PackedInput& p : c.packed) {
          plan.packed.push_back({p.value, std::move(p.layout), std::make_shared<const Tensor>(std::move(p.bytes))});
        }
      }
    }
  }
  // The plan needs only the libraries its tactics come from ("onednn.conv" -> "onednn"); a GPU plan needs
  // the CUDA runtime, cuDNN and cuBLASLt it was built with.
  std::erase_if(plan.target.libraries, [&](const std::pair<std::string, std::string>& lib) {
    if (gpu && (lib.first == "cuda" || lib.first == "cudnn" || lib.first == "cublaslt")) return false;
    return lib.first != "reference" && std::none_of(plan.layers.begin(), plan.layers.end(), [&](const plan::LayerChoice& l) {
             return l.tactic.rfind(lib.first + ".", 0) == 0;
           });
  });
  // BF16 layers need the BF16 instructions they were timed with (oneDNN would emulate them slowly or not
  // at all elsewhere): the plan requires the feature, and loading it on a CPU without refuses it.
  const auto bf16_layers = std::count_if(plan.layers.begin(), plan.layers.end(),
                                         [](const plan::LayerChoice& l) { return l.precision == "bf16"; });
  if (!gpu && bf16_layers > 0) {
    const auto& have = plan.target.cpu_features;
    for (const char* f : {"avx512_bf16", "amx_bf16"}) {
      if (std::find(have.begin(), have.end(), f) != have.end()) {
        plan.target.required_features.push_back(f);
        break;
      }
    }
  }
  if (!gpu && options.precision == Precision::kBf16) {
    Progress(options, std::to_string(bf16_layers) + " of " + std::to_string(plan.layers.size()) + " layers run in bf16" +
                          (cpu::HaveBf16() ? "" : " (this CPU has no BF16 instructions)"));
  } else if (!gpu && options.precision != Precision::kFp32) {
    Progress(options, std::string("no ") + PrecisionName(options.precision) +
                          " tactics exist for the CPU: every layer falls back to fp32");
  }

  for (size_t p = 0; p < plan.profiles.size(); ++p) {
    Progress(options, "planning memory for profile " + std::to_string(p));
    std::map<std::string, std::vector<int64_t>> sizes;
    for (const plan::InputRange& r : plan.profiles[p].inputs) sizes[r.name] = r.opt;
    auto memory = PlanMemoryForSizes(*graph, sizes);
    if (!memory.ok()) {
      return memory.status().WithContext("profile " + std::to_string(p) + " opt shapes");
    }
    plan.memory.push_back(std::move(*memory));
  }
  plan.graph = std::move(graph);
  plan.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return plan;
}

}  // namespace kiln::build
