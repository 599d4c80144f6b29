#include "build/tactics.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "backends/cpu/cpu_kernels.h"
#include "ops/registry.h"

namespace kiln::build {
namespace {

// Random activations of the node's input shapes (weights are the real constants).
Expected<std::vector<Tensor>> MakeInputs(const Node& node, std::mt19937& rng, const TacticOptions& options) {
  std::vector<Tensor> inputs(node.num_inputs());
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const Value* v = node.input(i);
    if (!v || v->is_constant()) continue;
    std::vector<int64_t> sizes;
    if (v->shape() && v->shape()->is_static()) {
      sizes = *v->shape()->sizes();
    } else if (auto it = options.known_sizes ? options.known_sizes->find(v->name()) : std::map<std::string, std::vector<int64_t>>::const_iterator{};
               options.known_sizes && it != options.known_sizes->end()) {
      sizes = it->second;
    } else {
      return Unsupported("input '" + v->name() + "' has no static shape");
    }
    KILN_ASSIGN_OR_RETURN(inputs[i], Tensor::Create(v->dtype(), sizes));
    if (v->dtype() == DType::kFloat32) {
      float* p = inputs[i].data<float>();
      for (int64_t k = 0; k < inputs[i].numel(); ++k) p[k] = dist(rng);
    }
  }
  return inputs;
}

// Median milliseconds of one run of `kernel` (after one untimed run), or an error.
Expected<double> TimeKernel(cpu::CpuKernel& kernel, const Node& node, const std::vector<Tensor>& owned,
                            const TacticOptions& options) {
  std::vector<const Tensor*> ins(node.num_inputs(), nullptr);
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const Value* v = node.input(i);
    if (v) ins[i] = v->is_constant() ? v->constant() : &owned[i];
  }
  const KernelLimits limits;
  std::vector<double> runs;
  double spent = 0;
  for (int r = 0; r < options.min_runs + 1 && (r <= options.min_runs || spent < options.budget_ms); ++r) {
    KernelContext ctx(node, ins, limits);
    const auto start = std::chrono::steady_clock::now();
    Status st = kernel.Run(ctx);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!st.ok()) return st;
    if (r > 0) runs.push_back(ms);  // the first run packs weights and creates primitives
    spent += ms;
  }
  std::sort(runs.begin(), runs.end());
  return runs.empty() ? 0.0 : runs[runs.size() / 2];
}

}  // namespace

Expected<std::vector<TacticChoice>> ChooseTactics(const std::vector<const Node*>& schedule,
                                                  const TacticOptions& options) {
  std::vector<TacticChoice> out(schedule.size());
  std::mt19937 rng(1234);
  size_t timed_layers = 0;
  for (size_t i = 0; i < schedule.size(); ++i) {
    const Node& node = *schedule[i];
    std::vector<cpu::CpuTactic> candidates = cpu::CpuTacticsFor(node);
    std::erase_if(candidates, [&](const cpu::CpuTactic& c) { return c.precision != "fp32" && !options.allow_bf16; });
    if (candidates.empty()) continue;
    if (options.progress && (timed_layers++ % 8 == 0)) {
      options.progress("choosing tactics: timing layer " + std::to_string(i + 1) + "/" +
                       std::to_string(schedule.size()) + " (" + node.Label() + ")");
    }
    auto inputs = MakeInputs(node, rng, options);
    double best = -1;
    for (const cpu::CpuTactic& c : candidates) {
      TacticTiming t{c.name, -1, ""};
      if (!inputs.ok()) {
        t.error = inputs.status().message();
      } else if (auto kernel = c.create(); !kernel) {
        t.error = "could not be created";
      } else if (auto ms = TimeKernel(*kernel, node, *inputs, options); !ms.ok()) {
        t.error = ms.status().message();
      } else {
        t.ms = *ms;
        if (best < 0 || *ms < best) {
          best = *ms;
          out[i].tactic = c.name;
          out[i].precision = c.precision;
        }
      }
      if (!t.error.empty() && options.progress) {
        options.progress(node.Label() + ": tactic " + t.tactic + " cannot run these shapes (" + t.error + ")");
      }
      out[i].timings.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace kiln::build
