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

// One timed run of `kernel` on the node's inputs (real weights, `owned` activations), in ms, or an error.
Expected<double> TimeOneRun(cpu::CpuKernel& kernel, const Node& node, const std::vector<Tensor>& owned) {
  std::vector<const Tensor*> ins(node.num_inputs(), nullptr);
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const Value* v = node.input(i);
    if (v) ins[i] = v->is_constant() ? v->constant() : &owned[i];
  }
  const KernelLimits limits;
  KernelContext ctx(node, ins, limits);
  const auto start = std::chrono::steady_clock::now();
  Status st = kernel.Run(ctx);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!st.ok()) return st;
  return ms;
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
    // BF16 tactics round FP32 layers: only when the build asks. INT8 ones run layers the model itself
    // quantized (kiln.QConv, Q/DQ), so they are always candidates.
    std::erase_if(candidates, [&](const cpu::CpuTactic& c) { return c.precision == "bf16" && !options.allow_bf16; });
    if (candidates.empty()) continue;
    if (options.progress && (timed_layers++ % 8 == 0)) {
      options.progress("choosing tactics: timing layer " + std::to_string(i + 1) + "/" +
                       std::to_string(schedule.size()) + " (" + node.Label() + ")");
    }
    auto inputs = MakeInputs(node, rng, options);
    // Candidates are timed in rounds, one run of each per round, so that a burst of load on the machine
    // slows them alike rather than the one that happened to run then; the first run of each (primitive
    // creation, weight packing) is not timed. Median per candidate; rounds continue past min_runs while
    // the budget lasts.
    struct Candidate {
      TacticTiming timing;
      std::unique_ptr<cpu::CpuKernel> kernel;
      std::vector<double> runs;
      std::string precision;
    };
    std::vector<Candidate> cands;
    for (const cpu::CpuTactic& c : candidates) {
      Candidate k{TacticTiming{c.name, -1, ""}, nullptr, {}, c.precision};
      if (!inputs.ok()) {
        k.timing.error = inputs.status().message();
      } else if (k.kernel = c.create(); !k.kernel) {
        k.timing.error = "could not be created";
      } else if (auto first = TimeOneRun(*k.kernel, node, *inputs); !first.ok()) {
        k.timing.error = first.status().message();
        k.kernel.reset();
      }
      cands.push_back(std::move(k));
    }
    // With one candidate there is nothing to choose: one timed run (for the report) is enough.
    const auto alive = std::count_if(cands.begin(), cands.end(), [](const Candidate& k) { return k.kernel != nullptr; });
    const int min_rounds = alive > 1 ? options.min_runs : 1;
    const double budget = alive > 1 ? options.budget_ms : 0;
    double spent = 0;
    for (int round = 0; round < min_rounds || spent < budget; ++round) {
      bool any = false;
      for (Candidate& k : cands) {
        if (!k.kernel) continue;
        auto ms = TimeOneRun(*k.kernel, node, *inputs);
        if (!ms.ok()) {
          k.timing.error = ms.status().message();
          k.kernel.reset();
          continue;
        }
        k.runs.push_back(*ms);
        spent += *ms;
        any = true;
      }
      if (!any || round >= 4 * options.min_runs + 16) break;
    }
    double best = -1;
    for (Candidate& k : cands) {
      if (k.kernel && !k.runs.empty()) {
        std::sort(k.runs.begin(), k.runs.end());
        k.timing.ms = k.runs[k.runs.size() / 2];
        if (best < 0 || k.timing.ms < best) {
          best = k.timing.ms;
          out[i].tactic = k.timing.tactic;
          out[i].precision = k.precision;
        }
      }
      if (!k.timing.error.empty() && options.progress) {
        options.progress(node.Label() + ": tactic " + k.timing.tactic + " cannot run these shapes (" + k.timing.error + ")");
      }
      out[i].timings.push_back(std::move(k.timing));
    }
    // The winner's packed weights, for the plan: the other candidates' copies (other layouts of the same
    // weights) go first, so that only the winner's are alive when they are collected.
    for (size_t j = 0; j < cands.size(); ++j) {
      if (out[i].timings[j].tactic != out[i].tactic) cands[j].kernel.reset();
    }
    for (const Value* v : node.inputs()) {
      if (!options.collect_packed_weights || !v || !v->is_constant()) continue;
      for (cpu::PackedWeightCopy& c : cpu::LivePackedWeights(*v->constant())) {
        out[i].packed.push_back({v->name(), std::move(c.layout), std::move(c.bytes)});
      }
    }
  }
  return out;
}

}  // namespace kiln::build
