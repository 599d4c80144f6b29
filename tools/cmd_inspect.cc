// kiln inspect: what a plan holds: target, bindings, profiles, layers with tactic and precision, memory.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <string>

#include "cli_common.h"
#include "cmd_plan.h"
#include "kiln/engine.h"

namespace kiln::cli {
namespace {

std::string Dims(const std::vector<int64_t>& dims, const std::vector<std::string>& names = {}) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ",";
    if (dims[i] >= 0) {
      s += std::to_string(dims[i]);
    } else {
      s += i < names.size() && !names[i].empty() ? names[i] : "?";
    }
  }
  return s + "]";
}

std::string Bytes(uint64_t n) {
  char buf[64];
  if (n >= (uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", n / double(uint64_t{1} << 30));
  } else if (n >= (uint64_t{1} << 20)) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", n / double(uint64_t{1} << 20));
  } else if (n >= 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", n / 1024.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(n));
  }
  return buf;
}

int RunInspect(const std::string& path, bool all_layers) {
  auto engine = Engine::Load(path);
  if (!engine.ok()) return Fail(engine.status());
  const Engine& e = **engine;
  std::printf("plan      %s (format version %u)\n", path.c_str(), e.plan_format_version());
  if (!e.source().empty())
    std::printf("built     from %s in %.2f s\n", e.source().c_str(), e.build_seconds());
  std::printf("target    %s\n", e.target_description().c_str());
  std::printf("inputs\n");
  for (const BindingInfo& b : e.inputs()) {
    std::printf("  %-24s %s%s\n", b.name.c_str(), DataTypeName(b.dtype), Dims(b.dims, b.dim_names).c_str());
    for (size_t p = 0; p < b.profiles.size(); ++p) {
      const InputProfile& r = b.profiles[p];
      std::printf("    profile %zu: min %s  opt %s  max %s\n", p, Dims(r.min).c_str(), Dims(r.opt).c_str(),
                  Dims(r.max).c_str());
    }
  }
  std::printf("outputs\n");
  for (const BindingInfo& b : e.outputs()) {
    std::printf("  %-24s %s%s\n", b.name.c_str(), DataTypeName(b.dtype), Dims(b.dims, b.dim_names).c_str());
  }
  std::map<std::string, int> tactics;
  for (const LayerInfo& l : e.layers()) ++tactics[l.tactic + " " + l.precision];
  std::printf("layers    %zu (", e.layers().size());
  bool first = true;
  for (const auto& [t, n] : tactics) {
    std::printf("%s%d %s", first ? "" : ", ", n, t.c_str());
    first = false;
  }
  std::printf(")\n");
  const size_t shown = all_layers ? e.layers().size() : std::min<size_t>(e.layers().size(), 40);
  for (size_t i = 0; i < shown; ++i) {
    const LayerInfo& l = e.layers()[i];
    std::printf("  %4zu  %-32s %-20s %-10s %s\n", i, l.name.c_str(), l.op.c_str(), l.tactic.c_str(),
                l.precision.c_str());
  }
  if (shown < e.layers().size()) {
    std::printf("  ... %zu more (--all-layers lists them)\n", e.layers().size() - shown);
  }
  std::printf("memory\n");
  for (int p = 0; p < e.num_profiles(); ++p) {
    const MemoryInfo m = e.memory(p);
    const double saved = m.naive_bytes ? 100.0 * (1.0 - double(m.arena_bytes) / double(m.naive_bytes)) : 0;
    std::printf("  profile %d (opt shapes): arena %s for %d tensors, naive sum %s (%.1f%% saved)", p,
                Bytes(m.arena_bytes).c_str(), m.planned_tensors, Bytes(m.naive_bytes).c_str(), saved);
    if (m.dynamic_tensors > 0)
      std::printf(", %d tensors of data-dependent size outside it", m.dynamic_tensors);
    std::printf("\n    shared: %d outputs in place over their input, %d views, %d concats written in place\n",
                m.in_place_tensors, m.view_tensors, m.concats_eliminated);
  }
  std::printf("  weights %s (memory-mapped)", Bytes(e.memory().weight_bytes).c_str());
  if (e.memory().packed_weight_bytes > 0) {
    std::printf(", and %s packed in the kernels' layouts at build time (loading packs nothing)",
                Bytes(e.memory().packed_weight_bytes).c_str());
  }
  std::printf("\n");
  return kExitOk;
}

}  // namespace

void AddInspectCommand(CLI::App& app, int& exit_code) {
  auto* cmd =
      app.add_subcommand("inspect", "Show what a plan holds: target, bindings, profiles, layers, memory");
  auto path = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  cmd->add_option("plan", *path, "The plan file (from kiln build)")->required();
  cmd->add_flag("--all-layers", *all, "List every layer (default: the first 40)");
  cmd->callback([&exit_code, path, all] { exit_code = RunInspect(*path, *all); });
}

}  // namespace kiln::cli
