// kiln build MODEL.onnx [--report] [--verbose] [--disable-pass NAME]... [--check] [--print-graph] [-o OUT]
//
// Layer counts: BEFORE is the number of nodes in the ONNX file's graph (Constant nodes included, although
// the importer turns them into weights); AFTER is the number of nodes left after optimization, each an
// executable layer (see docs/OPTIMIZATIONS.md).
#include "cmd_build.h"

#include <onnx/onnx_pb.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "cli_common.h"
#include "kiln/engine.h"
#include "passes/pipeline.h"
#include "runtime/reference_executor.h"

namespace kiln::cli {
namespace {

struct BuildOptions {
  std::string model;
  bool report = false;
  bool verbose = false;
  bool check = false;
  bool print_graph = false;
  double tolerance = 1e-3;
  std::vector<std::string> disabled;
  std::string output;
  std::vector<std::string> shapes;
  std::vector<std::string> profiles;
  std::string device = "cpu";
  bool fp16 = false;
  bool bf16 = false;
  bool tf32 = false;
  bool no_packed_weights = false;
  std::string timing_cache;
};

// Nodes in the ONNX file's main graph, as the model's authors count them.
Expected<size_t> CountOnnxNodes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  onnx::ModelProto proto;
  if (!proto.ParseFromString(ss.str())) return DataLoss(path + ": not a valid ONNX model");
  return static_cast<size_t>(proto.graph().node_size());
}

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

void PrintPass(const PassReport& r, bool verbose) {
  std::printf("pass %-20s layers %zu -> %zu\n", r.pass.c_str(), r.layers_before, r.layers_after);
  for (const auto& [what, n] : r.counts) std::printf("  %6lld  %s\n", static_cast<long long>(n), what.c_str());
  for (const std::string& note : r.notes) {
    if (verbose || note.rfind("not folded", 0) != 0) std::printf("  note: %s\n", note.c_str());
  }
  if (verbose) {
    for (const FusedGroup& g : r.groups) {
      std::printf("    %s (%s) <- %s\n", g.result.c_str(), g.op.c_str(), Join(g.sources, ", ").c_str());
    }
  }
}

// Runs the original and the optimized graph on the same random inputs and compares every output.
Status CheckOutputs(const Graph& original, const Graph& optimized, double tolerance) {
  std::mt19937_64 rng(42);
  TensorMap inputs;
  for (const Value* in : RuntimeInputs(original)) {
    KILN_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, ConcreteSizes(*in, {}));
    KILN_ASSIGN_OR_RETURN(Tensor t, RandomTensor(in->dtype(), sizes, rng));
    inputs[in->name()] = std::move(t);
  }
  KILN_ASSIGN_OR_RETURN(TensorMap want, RunReference(original, inputs));
  KILN_ASSIGN_OR_RETURN(TensorMap got, RunReference(optimized, inputs));
  for (const auto& [name, w] : want) {
    auto it = got.find(name);
    if (it == got.end()) return Internal("output '" + name + "' missing after optimization");
    const Tensor& g = it->second;
    if (g.sizes() != w.sizes()) {
      return Internal("output '" + name + "' is " + g.Description() + " after optimization, " + w.Description() +
                      " before");
    }
    double max_err = 0, max_ref = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      const double e = w.GetAsDouble(i), a = g.GetAsDouble(i);
      max_err = std::max(max_err, std::fabs(e - a));
      max_ref = std::max(max_ref, std::fabs(e));
    }
    const bool ok = max_err <= tolerance * std::max(1.0, max_ref);
    std::printf("check %s: max |optimized - original| = %.3g (max |original| = %.3g) %s\n", name.c_str(), max_err,
                max_ref, ok ? "ok" : "MISMATCH");
    if (!ok) return Internal("output '" + name + "' changed by optimization beyond tolerance");
  }
  return Status::Ok();
}

// The end-of-build summary: layers, tactics chosen, memory per profile, build time.
void PrintBuildSummary(const Engine& e, const std::string& path) {
  std::map<std::string, int> tactics;
  for (const LayerInfo& l : e.layers()) ++tactics[l.tactic + " (" + l.precision + ")"];
  std::string t;
  for (const auto& entry : tactics) t += (t.empty() ? "" : ", ") + entry.first + " x" + std::to_string(entry.second);
  std::printf("plan written: %s\n", path.c_str());
  std::printf("  target   %s\n", e.target_description().c_str());
  std::printf("  layers   %zu; tactics: %s\n", e.layers().size(), t.c_str());
  for (int p = 0; p < e.num_profiles(); ++p) {
    const MemoryInfo m = e.memory(p);
    std::printf("  memory   profile %d: arena %.2f MiB (naive %.2f MiB), weights %.2f MiB\n", p,
                m.arena_bytes / 1048576.0, m.naive_bytes / 1048576.0, m.weight_bytes / 1048576.0);
  }
  std::printf("  built in %.2f s\n", e.build_seconds());
}

int RunBuild(const BuildOptions& o) {
  auto onnx_nodes = CountOnnxNodes(o.model);
  if (!onnx_nodes.ok()) return Fail(onnx_nodes.status());
  auto model = LoadModel(o.model);
  if (!model.ok()) return Fail(model.status());
  std::optional<Model> original;
  if (o.check) {
    auto again = LoadModel(o.model);
    if (!again.ok()) return Fail(again.status());
    original.emplace(std::move(again).value());
  }
  PipelineOptions popts;
  popts.disabled.insert(o.disabled.begin(), o.disabled.end());
  if (o.check) popts.verify = true;
  auto report = RunPipeline(model->graph, popts);
  if (!report.ok()) return Fail(report.status().WithContext("model " + o.model));
  if (o.check) {
    Status st = CheckOutputs(original->graph, model->graph, o.tolerance);
    if (!st.ok()) return Fail(st.WithContext("model " + o.model));
  }
  if (o.print_graph) std::printf("%s", PrintGraph(model->graph).c_str());
  if (o.verbose && !o.report) {
    for (const PassReport& r : report->passes) PrintPass(r, true);
  }
  if (!o.output.empty()) {
    // The plan is built from the file again by the engine builder (which runs the same pipeline), so what
    // is saved is exactly what Engine::BuildFromOnnx gives applications.
    ::kiln::BuildOptions bopts;
    // --shapes entries merge into the first profile; each --profile adds one more.
    for (const std::string& s : o.shapes) {
      auto profile = ParseShapesOption(s);
      if (!profile.ok()) return Fail(profile.status().WithContext("--shapes " + s));
      if (bopts.profiles.empty()) bopts.profiles.push_back(std::move(profile).value());
      else for (auto& in : profile->inputs) bopts.profiles[0].inputs.insert(std::move(in));
    }
    for (const std::string& s : o.profiles) {
      auto profile = ParseShapesOption(s);
      if (!profile.ok()) return Fail(profile.status().WithContext("--profile " + s));
      bopts.profiles.push_back(std::move(profile).value());
    }
    bopts.device = o.device == "cuda" ? DeviceType::kCuda : DeviceType::kCpu;
    if (o.fp16 && o.bf16) return Fail(InvalidArgument("--fp16 and --bf16 exclude each other"));
    bopts.precision = o.fp16 ? Precision::kFp16 : o.bf16 ? Precision::kBf16 : Precision::kFp32;
    bopts.tf32 = o.tf32;
    bopts.packed_weights = !o.no_packed_weights;
    bopts.disabled_passes = o.disabled;  // the saved plan skips them too, as the report above did
    bopts.timing_cache = o.timing_cache;
    bopts.progress = [](const std::string& line) { std::fprintf(stderr, "kiln build: %s\n", line.c_str()); };
    auto engine = Engine::BuildFromOnnx(o.model, bopts);
    if (!engine.ok()) return Fail(engine.status());
    Status saved = (*engine)->Save(o.output);
    if (!saved.ok()) return Fail(saved);
    PrintBuildSummary(**engine, o.output);
  }
  if (o.report) {
    std::printf("model %s: %zu ONNX nodes (%zu after import)\n", o.model.c_str(), *onnx_nodes,
                report->layers_before);
    for (const PassReport& r : report->passes) PrintPass(r, o.verbose);
    std::printf("fused layers: %zu\n", report->fused.size());
    if (o.verbose) {
      for (const FusedGroup& g : report->fused) {
        std::printf("  %s (%s) <- %s\n", g.result.c_str(), g.op.c_str(), Join(g.sources, ", ").c_str());
      }
    }
    std::map<std::string, int> by_op;
    for (const Node* n : model->graph.nodes()) ++by_op[std::string(n->op_name())];
    std::string ops;
    for (const auto& [op, n] : by_op) ops += (ops.empty() ? "" : ", ") + op + " " + std::to_string(n);
    std::printf("layers by op: %s\n", ops.c_str());
    std::printf("layers: %zu -> %zu\n", *onnx_nodes, report->layers_after);
  }
  return kExitOk;
}

}  // namespace

void AddBuildCommand(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<BuildOptions>();
  CLI::App* cmd = app.add_subcommand("build", "Optimize a model (the pipeline of graph passes) and report");
  cmd->add_option("model", opts->model, "ONNX model file")->required();
  cmd->add_flag("--report", opts->report,
                "Print what each pass changed; the last line is `layers: ONNX_NODES -> LAYERS`");
  cmd->add_flag("--verbose", opts->verbose, "Also list every fused group by original node names");
  cmd->add_option("--disable-pass", opts->disabled, "Skip a pass by name (repeatable)");
  cmd->add_flag("--check", opts->check,
                "Run the original and the optimized graph on random inputs with the reference kernels and "
                "compare their outputs");
  cmd->add_flag("--print-graph", opts->print_graph, "Print the optimized graph");
  cmd->add_option("--tolerance", opts->tolerance, "Relative tolerance of --check (default 1e-3)");
  cmd->add_option("-o,--output", opts->output, "Write the optimized engine as a plan file");
  cmd->add_option("--shapes", opts->shapes,
                  "Input shape profile: NAME:1x3x224x224 or NAME:MIN..OPT..MAX (repeatable; see docs/PLANS.md)");
  cmd->add_option("--profile", opts->profiles,
                  "One more optimization profile, in the --shapes syntax (repeatable: one profile each)");
  cmd->add_option("--device", opts->device, "Where the plan runs: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--fp16", opts->fp16, "Allow FP16 tactics (GPU; FP32 where a layer needs it)");
  cmd->add_flag("--bf16", opts->bf16,
                "Allow BF16 tactics (CPU with BF16 instructions: bfloat16 inputs and weights, FP32 accumulation)");
  cmd->add_flag("--tf32", opts->tf32,
                "GPU: let FP32 convolutions and GEMMs use TF32 tensor cores (KILN_CUDA_TF32=1|0 overrides)");
  cmd->add_flag("--no-packed-weights", opts->no_packed_weights,
                "CPU: leave the kernels' packed weights out of the plan (smaller file; packed at each process's "
                "first run instead)");
  cmd->add_option("--timing-cache", opts->timing_cache,
                  "GPU: load tactic timings from FILE before the build and save them after "
                  "(KILN_CUDA_TIMING_CACHE overrides)");
  cmd->callback([opts, &exit_code] { exit_code = RunBuild(*opts); });
}

}  // namespace kiln::cli
