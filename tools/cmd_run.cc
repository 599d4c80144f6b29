// kiln run: runs a model (an ONNX file, built into an engine for exactly the shapes given, or a saved
// plan) on given or random inputs, prints each output's dtype, shape and value range and writes them as
// .npy files. --reference runs the imported ONNX graph with the reference kernels instead, unoptimized.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "core/npy.h"
#include "kiln/engine.h"
#include "runtime/engine_impl.h"
#include "runtime/reference_executor.h"

namespace kiln::cli {
namespace {

struct RunOptions {
  std::string model;
  std::vector<std::string> inputs;  // NAME=FILE.npy
  std::vector<std::string> dims;    // NAME=SIZE
  std::string output_dir;
  uint64_t seed = 0;
  std::string device = "cpu";
  bool reference = false;
};

bool IsPlanFile(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".plan") == 0;
}

// Builds (ONNX) for exactly these input sizes, or checks them against a loaded plan's profile, then runs.
Expected<TensorMap> RunEngine(const RunOptions& opt, std::shared_ptr<Engine> engine, const TensorMap& inputs,
                              DeviceKind device, std::string* how) {
  if (!engine) {
    BuildOptions build;
    build.device = device == DeviceKind::kCuda ? DeviceType::kCuda : DeviceType::kCpu;
    build.profiles.push_back(ExactProfile(inputs));
    KILN_ASSIGN_OR_RETURN(engine, Engine::BuildFromOnnx(opt.model, build));
  }
  KILN_ASSIGN_OR_RETURN(TensorMap out, RunOnce(*engine, inputs));
  *how = "engine: " + std::to_string(engine->layers().size()) + " layers, " + engine->target_description();
  return out;
}

std::string Join(const std::vector<const Value*>& values) {
  std::string s;
  for (const Value* v : values) s += (s.empty() ? "" : ", ") + v->name();
  return s.empty() ? "none" : s;
}

// Min, max and mean of a numeric tensor, for a first look at an output without opening the file.
std::string Summary(const Tensor& t) {
  if (t.numel() == 0 || t.dtype() == DType::kUndefined) return "";
  double lo = t.GetAsDouble(0), hi = lo, sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = t.GetAsDouble(i);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sum += v;
  }
  char buf[96];
  std::snprintf(buf, sizeof(buf), "  min %.4g  max %.4g  mean %.4g", lo, hi,
                sum / static_cast<double>(t.numel()));
  return buf;
}

int RunRun(const RunOptions& opt) {
  auto dims = ParseDimOverrides(opt.dims);
  if (!dims.ok()) return Fail(dims.status());

  std::shared_ptr<Engine> engine;  // a loaded plan
  Model model;
  if (IsPlanFile(opt.model)) {
    if (opt.reference) return Fail("--reference runs an ONNX model; " + opt.model + " is a plan");
    auto loaded = Engine::Load(opt.model);
    if (!loaded.ok()) return Fail(loaded.status());
    engine = *loaded;
  } else {
    auto imported = LoadModel(opt.model);
    if (!imported.ok()) return Fail(imported.status());
    model = std::move(imported).value();
  }
  const Graph& graph = engine ? *engine->impl().plan.graph : model.graph;
  const std::vector<const Value*> needed = RuntimeInputs(graph);

  for (const auto& entry : *dims) {
    const std::string& symbol = entry.first;  // named: clang 14 cannot capture structured bindings
    const bool used = std::any_of(needed.begin(), needed.end(), [&](const Value* v) {
      return v->shape() && std::any_of(v->shape()->dims().begin(), v->shape()->dims().end(),
                                       [&](const Dim& d) { return d.is_symbolic() && d.symbol() == symbol; });
    });
    if (!used) Note("--dim " + symbol + ": no input has a dimension named '" + symbol + "'");
  }

  TensorMap inputs;
  for (const std::string& entry : opt.inputs) {
    auto name_file = SplitNameValue(entry, "--input");
    if (!name_file.ok()) return Fail(name_file.status());
    const auto& [name, file] = *name_file;
    const Value* v = graph.FindValue(name);
    if (!v || !v->is_graph_input() || v->is_constant()) {
      return Fail(opt.model + ": the model has no input '" + name + "' (its inputs: " + Join(needed) + ")");
    }
    if (inputs.count(name)) return Fail("input '" + name + "' is given twice");
    auto tensor = ReadNpy(file);
    if (!tensor.ok()) return Fail(tensor.status().WithContext("input '" + name + "'"));
    inputs[name] = std::move(tensor).value();
  }

  // Random inputs take symbolic sizes from the inputs given (a batch of 4 images makes a batch of 4 masks).
  std::map<std::string, int64_t> sizes_of = *dims;
  for (const auto& [name, tensor] : inputs) {
    const Value* v = graph.FindValue(name);
    if (!v->shape() || v->shape()->rank() != tensor.rank()) continue;
    for (size_t d = 0; d < tensor.rank(); ++d) {
      const Dim& dim = (*v->shape())[d];
      if (dim.is_symbolic()) sizes_of.emplace(dim.symbol(), tensor.size(d));
    }
  }

  std::mt19937_64 rng(opt.seed);
  std::set<std::string> random_names;
  for (const Value* v : needed) {
    if (inputs.count(v->name())) continue;
    auto sizes = ConcreteSizes(*v, sizes_of);
    if (!sizes.ok()) return Fail(sizes.status());
    auto tensor = RandomTensor(v->dtype(), *sizes, rng);
    if (!tensor.ok()) return Fail(tensor.status().WithContext("input '" + v->name() + "'"));
    if (!opt.inputs.empty()) {
      Note("no value given for input '" + v->name() + "': using random " + tensor->Description());
    }
    inputs[v->name()] = std::move(tensor).value();
    random_names.insert(v->name());
  }
  for (const Value* v : needed) {
    const std::string origin =
        random_names.count(v->name()) ? " (random, seed " + std::to_string(opt.seed) + ")" : "";
    std::printf("input  %s: %s%s\n", v->name().c_str(), inputs[v->name()].Description().c_str(),
                origin.c_str());
  }

  const DeviceKind device = opt.reference ? ChooseDevice("cpu") : ChooseDevice(opt.device);
  const auto start = std::chrono::steady_clock::now();
  std::string how = "reference CPU kernels, unoptimized";
  auto outputs = opt.reference ? RunReference(graph, inputs) : RunEngine(opt, engine, inputs, device, &how);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!outputs.ok()) return Fail(outputs.status().WithContext(opt.model));

  if (!opt.output_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opt.output_dir, ec);
    if (ec) return Fail("cannot create output directory '" + opt.output_dir + "': " + ec.message());
  }
  std::set<std::string> taken;
  for (const Value* out : graph.outputs()) {
    auto it = outputs->find(out->name());
    if (it == outputs->end()) return Fail("output '" + out->name() + "' was not computed");
    const Tensor& t = it->second;
    std::string where;
    if (!opt.output_dir.empty()) {
      const std::string path =
          (std::filesystem::path(opt.output_dir) / (SafeFileName(out->name(), taken) + ".npy")).string();
      Status st = WriteNpy(path, t);
      if (!st.ok()) return Fail(st.WithContext("output '" + out->name() + "'"));
      where = "  -> " + path;
    }
    std::printf("output %s: %s%s%s\n", out->name().c_str(), t.Description().c_str(), Summary(t).c_str(),
                where.c_str());
  }
  std::printf("time   %s (%s%s)\n", FormatDuration(seconds).c_str(), how.c_str(),
              engine || opt.reference ? "" : "; the time includes the build");
  return kExitOk;
}

}  // namespace

void AddRunCommand(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run",
                                     "Run a model (ONNX or plan) on .npy inputs (or random ones)");
  cmd->add_option("model", opt->model, "The ONNX model file, or a plan made by kiln build (.plan)")->required();
  cmd->add_option("-i,--input", opt->inputs,
                  "An input value: NAME=FILE.npy (repeatable). Inputs not given "
                  "get random values");
  cmd->add_option("-d,--dim", opt->dims,
                  "Size of a symbolic dimension for random inputs: NAME=SIZE "
                  "(repeatable; default 1)");
  cmd->add_option("-o,--output-dir", opt->output_dir, "Write each output as DIR/NAME.npy");
  cmd->add_option("--seed", opt->seed, "Seed of the random inputs")->capture_default_str();
  cmd->add_option("--device", opt->device, "Where to run")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--reference", opt->reference,
                "Run the imported ONNX graph as it is, with the reference kernels (no optimizer, no plan)");
  cmd->callback([opt, &exit_code] { exit_code = RunRun(*opt); });
}

}  // namespace kiln::cli
