// kiln bench: builds (or loads) an engine, then per batch size runs it after a warm-up and reports
// throughput and latency statistics; optionally writes a CSV table and an SVG chart.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <map>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cli_common.h"
#include "cmd_plan.h"
#include "kiln/engine.h"
#include "runtime/engine_bench.h"

namespace kiln::cli {
namespace {

struct BenchOptions {
  std::string model;
  std::vector<int64_t> batches;
  int64_t iterations = 0;
  double duration = 0;
  int64_t warmup = 3;
  std::string csv;
  std::string plot;
  std::vector<std::string> shapes;
  int profile_layers = 0;  // print the N slowest layers per batch size
};

// The slowest layers of the profiled runs and the time per op kind.
void PrintLayerProfile(const std::vector<LayerTiming>& layers, int top) {
  double total = 0;
  std::map<std::string, double> by_op;
  for (const LayerTiming& l : layers) {
    total += l.mean_ms;
    by_op[l.op + " [" + l.tactic + "]"] += l.mean_ms;
  }
  std::vector<const LayerTiming*> order;
  for (const LayerTiming& l : layers) order.push_back(&l);
  std::sort(order.begin(), order.end(), [](const LayerTiming* a, const LayerTiming* b) { return a->mean_ms > b->mean_ms; });
  std::printf("%8s layers by mean time (of %.3f ms summed over %zu layers):\n", "", total, layers.size());
  for (int i = 0; i < top && i < static_cast<int>(order.size()); ++i) {
    std::printf("%8s %9.3f ms %5.1f%%  %-28s %-18s %s\n", "", order[i]->mean_ms,
                total > 0 ? 100 * order[i]->mean_ms / total : 0, order[i]->name.c_str(), order[i]->op.c_str(),
                order[i]->tactic.c_str());
  }
  std::vector<std::pair<double, std::string>> ops;
  for (const auto& entry : by_op) ops.emplace_back(entry.second, entry.first);
  std::sort(ops.rbegin(), ops.rend());
  std::printf("%8s by op and tactic:", "");
  for (const auto& entry : ops) std::printf(" %s %.2f ms;", entry.second.c_str(), entry.first);
  std::printf("\n");
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The input shapes for one batch size: each input's opt shape in profile 0, with a dynamic leading dim set
// to `batch` (batch 0: the opt shapes as they are).
Expected<std::vector<std::vector<int64_t>>> ShapesForBatch(const Engine& e, int64_t batch) {
  std::vector<std::vector<int64_t>> shapes;
  for (const BindingInfo& b : e.inputs()) {
    if (b.profiles.empty()) return Internal("input '" + b.name + "' has no profile");
    std::vector<int64_t> dims = b.profiles[0].opt;
    if (batch > 0) {
      if (dims.empty() || b.dims.empty()) {
        return InvalidArgument("input '" + b.name + "' is a scalar: it has no batch dimension");
      }
      if (b.dims[0] >= 0 && b.dims[0] != batch) {
        return InvalidArgument("input '" + b.name + "' has a fixed batch of " + std::to_string(b.dims[0]) +
                               " in this model; --batch " + std::to_string(batch) + " cannot be run");
      }
      dims[0] = batch;
    }
    shapes.push_back(std::move(dims));
  }
  return shapes;
}

int RunBench(const BenchOptions& opt) {
  if (opt.iterations < 0 || opt.duration < 0 || opt.warmup < 0)
    return Fail("counts and durations must be >= 0");
  for (int64_t b : opt.batches) {
    if (b <= 0) return Fail("--batch sizes must be positive");
  }
  Expected<std::shared_ptr<Engine>> engine = Status(Internal("no engine"));
  const auto load_start = std::chrono::steady_clock::now();
  if (EndsWith(opt.model, ".onnx")) {
    BuildOptions build;
    for (const std::string& s : opt.shapes) {
      auto p = ParseShapesOption(s);
      if (!p.ok()) return Fail(p.status());
      build.profiles.push_back(std::move(*p));
    }
    if (build.profiles.empty() && !opt.batches.empty()) {
      // A default profile that covers every batch asked for.
      const int64_t max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());
      if (max_batch > kDefaultBatchMax) {
        Note("batch " + std::to_string(max_batch) +
             " exceeds the default profile; give --shapes to cover it");
      }
    }
    engine = Engine::BuildFromOnnx(opt.model, build);
  } else {
    if (!opt.shapes.empty()) Note("--shapes applies when building from ONNX; a plan keeps its own profiles");
    engine = Engine::Load(opt.model);
  }
  if (!engine.ok()) return Fail(engine.status());
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const Engine& e = **engine;
  std::printf("%s: %s in %s, %zu layers\n", opt.model.c_str(),
              EndsWith(opt.model, ".onnx") ? "built" : "loaded", FormatDuration(load_s).c_str(),
              e.layers().size());

  std::vector<int64_t> batches = opt.batches;
  if (batches.empty()) batches.push_back(0);
  const double duration = opt.iterations == 0 && opt.duration == 0 ? 2.0 : opt.duration;

  auto ctx = e.CreateContext();
  if (!ctx) return Fail("out of memory creating a context");
  std::mt19937_64 rng(0);
  std::vector<bench::BatchResult> results;
  std::printf("%8s %14s %10s %10s %10s %10s %10s %10s %10s %7s\n", "batch", "samples/s", "mean ms", "median",
              "min", "max", "p90", "p99", "std", "runs");
  for (int64_t batch : batches) {
    auto shapes = ShapesForBatch(e, batch);
    if (!shapes.ok()) return Fail(shapes.status());
    for (size_t i = 0; i < e.inputs().size(); ++i) {
      const BindingInfo& b = e.inputs()[i];
      auto t = RandomTensor(static_cast<DType>(b.dtype), (*shapes)[i], rng);
      if (!t.ok()) return Fail(t.status().WithContext("input '" + b.name + "'"));
      Status st = ctx->SetInput(b.name, t->raw_data(), b.dtype, (*shapes)[i]);
      if (!st.ok()) return Fail(st);
    }
    for (int64_t i = 0; i < opt.warmup; ++i) {
      Status st = ctx->Run();
      if (!st.ok()) return Fail(st);
    }
    ctx->SetProfiling(opt.profile_layers > 0);
    std::vector<double> latencies;
    double total = 0;
    RunTimings split;
    while (true) {
      const auto t0 = std::chrono::steady_clock::now();
      Status st = ctx->Run();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!st.ok()) return Fail(st);
      const RunTimings t = ctx->last_run_timings();
      split.host_to_device_ms += t.host_to_device_ms;
      split.compute_ms += t.compute_ms;
      split.device_to_host_ms += t.device_to_host_ms;
      latencies.push_back(dt);
      total += dt;
      const int64_t n = static_cast<int64_t>(latencies.size());
      if (opt.iterations > 0 && n >= opt.iterations) break;
      if (opt.iterations == 0 && total >= duration) break;
    }
    bench::BatchResult r;
    r.batch = batch > 0 ? batch : (*shapes).empty() || (*shapes)[0].empty() ? 1 : (*shapes)[0][0];
    r.latency = bench::ComputeLatencyStats(latencies);
    r.throughput_per_s =
        total > 0 ? static_cast<double>(r.batch) * static_cast<double>(latencies.size()) / total : 0;
    const double runs = static_cast<double>(latencies.size());
    r.h2d_mean_ms = split.host_to_device_ms / runs;
    r.compute_mean_ms = split.compute_ms / runs;
    r.d2h_mean_ms = split.device_to_host_ms / runs;
    const bench::LatencyStats& l = r.latency;
    std::printf("%8lld %14.2f %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f %7lld\n",
                static_cast<long long>(r.batch), r.throughput_per_s, l.mean * 1e3, l.median * 1e3,
                l.min * 1e3, l.max * 1e3, l.p90 * 1e3, l.p99 * 1e3, l.stddev * 1e3,
                static_cast<long long>(l.count));
    if (ctx->device() >= 0) {
      std::printf("%8s mean per run: host->device %.3f ms, compute %.3f ms, device->host %.3f ms\n", "",
                  r.h2d_mean_ms, r.compute_mean_ms, r.d2h_mean_ms);
    }
    if (opt.profile_layers > 0) PrintLayerProfile(ctx->layer_timings(), opt.profile_layers);
    std::fflush(stdout);
    results.push_back(r);
  }
  const MemoryInfo m = ctx->memory();
  std::printf(
      "arena %.2f MiB for the last shapes (naive sum %.2f MiB)\n", m.arena_bytes / 1048576.0,
      m.naive_bytes / 1048576.0);
  if (!opt.csv.empty()) {
    std::ofstream f(opt.csv, std::ios::binary);
    f << bench::FormatCsv(results);
    if (!f.good()) return Fail("cannot write " + opt.csv);
    Note("wrote " + opt.csv);
  }
  if (!opt.plot.empty()) {
    std::ofstream f(opt.plot, std::ios::binary);
    f << bench::RenderSvg(results, "kiln bench " + opt.model);
    if (!f.good()) return Fail("cannot write " + opt.plot);
    Note("wrote " + opt.plot);
  }
  return kExitOk;
}

}  // namespace

void AddBenchCommand(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure throughput and latency per batch size");
  cmd->add_option("model", opt->model, "MODEL.onnx (built first) or MODEL.plan")->required();
  cmd->add_option("--batch", opt->batches, "Batch sizes, e.g. 1,8,32 (default: the profile's opt shape)")
      ->delimiter(',');
  auto* iters = cmd->add_option("--iterations", opt->iterations, "Timed runs per batch size");
  cmd->add_option("--duration", opt->duration, "Seconds of timed runs per batch size (default 2)")
      ->excludes(iters);
  cmd->add_option("--warmup", opt->warmup, "Untimed runs before timing (default 3)");
  cmd->add_option("--csv", opt->csv, "Write one row per batch size to this CSV file");
  cmd->add_option("--profile-layers", opt->profile_layers,
                  "Time every layer and print the N slowest per batch size, and the time per op (CPU plans)");
  cmd->add_option("--plot", opt->plot, "Draw latency and throughput against batch size into this SVG file");
  cmd->add_option("--shapes", opt->shapes,
                  "Profile for building from ONNX, e.g. x:1x3x224x224..8x3x224x224..32x3x224x224");
  cmd->callback([opt, &exit_code] { exit_code = RunBench(*opt); });
}

}  // namespace kiln::cli
