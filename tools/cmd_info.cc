// kiln info: version, what was compiled in, and the devices found at run time, one "name: value" a line.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "backends/cuda/cuda_info.h"
#include "backends/cpu/cpu_kernels.h"
#include "cli_common.h"
#include "commands.h"
#include "onnx/importer.h"
#include "ops/registry.h"

namespace kiln::cli {
namespace {

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "unknown CPU" : line.substr(start);
  }
  return "unknown CPU";
}

void Line(const std::string& name, const std::string& value) {
  std::printf("%s: %s\n", name.c_str(), value.c_str());
}

int RunInfo() {
  const CudaInfo& cuda = QueryCuda();
  Line("version", KILN_VERSION);
  Line("cpu reference kernels", "yes");
  Line("onednn", cpu::HaveOneDnn() ? "yes (" + cpu::OneDnnVersion() + ", OpenMP threads)"
                                   : std::string("no (Kiln was built without oneDNN)"));
  if (cuda.compiled) {
    Line("cuda", "yes (runtime " + cuda.runtime_version + ", cudnn " + cuda.cudnn_version + ", cublaslt " +
                     cuda.cublas_version + ")");
    Line("cuda driver", cuda.driver_version.empty() ? "none" : cuda.driver_version);
  } else {
    Line("cuda", "no (" +
                     (cuda.unavailable_reason.empty() ? std::string("not built") : cuda.unavailable_reason) +
                     ")");
  }
  Line("onnx opsets", std::to_string(kMinOnnxOpset) + ".." + std::to_string(kMaxOnnxOpset));
  Line("operators", std::to_string(OpRegistry::Global().RegisteredOps().size()));

  const unsigned threads = std::thread::hardware_concurrency();
  Line("cpu", CpuModelName() + ", " + std::to_string(threads) + (threads == 1 ? " thread" : " threads"));
  if (cuda.devices.empty()) {
    // Without any driver the runtime reports "driver version is insufficient", which misleads.
    std::string reason = cuda.unavailable_reason.empty() ? "unknown reason" : cuda.unavailable_reason;
    if (cuda.compiled && cuda.driver_version.empty()) reason = "no NVIDIA driver found: " + reason;
    Line("gpu", "none (" + reason + ")");
  }
  for (const CudaDeviceInfo& d : cuda.devices) {
    char mem[32];
    std::snprintf(mem, sizeof(mem), "%.1f GiB", static_cast<double>(d.memory_bytes) / (1024.0 * 1024 * 1024));
    Line("gpu" + std::to_string(d.index),
         d.name + ", sm_" + std::to_string(d.sm_major) + std::to_string(d.sm_minor) + ", " + mem);
  }
  return kExitOk;
}

}  // namespace

void AddInfoCommand(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand("info", "Show the version, compiled-in features and the devices found");
  cmd->callback([&exit_code] { exit_code = RunInfo(); });
}

}  // namespace kiln::cli
