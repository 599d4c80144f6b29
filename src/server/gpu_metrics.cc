#include "server/gpu_metrics.h"

#include <dlfcn.h>

#include <cstdio>
#include <mutex>

namespace kiln::server {
namespace {

// The few NVML entry points used, declared by their documented C signatures (no NVML header needed).
using NvmlReturn = int;  // NVML_SUCCESS is 0
using NvmlDevice = struct NvmlDeviceOpaque*;
struct NvmlUtilization {
  unsigned int gpu, memory;  // percent
};
struct NvmlMemory {
  unsigned long long total, free, used;  // bytes
};

struct Nvml {
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*count)(unsigned int*) = nullptr;
  NvmlReturn (*handle)(unsigned int, NvmlDevice*) = nullptr;
  NvmlReturn (*uuid)(NvmlDevice, char*, unsigned int) = nullptr;
  NvmlReturn (*utilization)(NvmlDevice, NvmlUtilization*) = nullptr;
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*) = nullptr;
  bool ready = false;
};

template <typename F>
bool Resolve(void* lib, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  return *fn != nullptr;
}

// Loaded and initialized once; the library stays loaded for the life of the process.
const Nvml& LoadNvml() {
  static const Nvml nvml = [] {
    Nvml n;
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return n;
    const bool found = Resolve(lib, "nvmlInit_v2", &n.init) && Resolve(lib, "nvmlDeviceGetCount_v2", &n.count) &&
                       Resolve(lib, "nvmlDeviceGetHandleByIndex_v2", &n.handle) &&
                       Resolve(lib, "nvmlDeviceGetUUID", &n.uuid) &&
                       Resolve(lib, "nvmlDeviceGetUtilizationRates", &n.utilization) &&
                       Resolve(lib, "nvmlDeviceGetMemoryInfo", &n.memory);
    if (!found) {
      std::fprintf(stderr, "kiln: libnvidia-ml.so.1 lacks an NVML function: no GPU metrics\n");
      return n;
    }
    const NvmlReturn r = n.init();
    if (r != 0) {
      std::fprintf(stderr, "kiln: nvmlInit failed (NVML error %d): no GPU metrics\n", r);
      return n;
    }
    n.ready = true;
    return n;
  }();
  return nvml;
}

}  // namespace

std::vector<GpuSample> SampleGpus() {
  const Nvml& nvml = LoadNvml();
  std::vector<GpuSample> out;
  unsigned int count = 0;
  if (!nvml.ready || nvml.count(&count) != 0) return out;
  for (unsigned int i = 0; i < count; ++i) {
    NvmlDevice device = nullptr;
    char uuid[96] = {};
    if (nvml.handle(i, &device) != 0 || nvml.uuid(device, uuid, sizeof(uuid) - 1) != 0) continue;
    GpuSample s;
    s.uuid = uuid;
    NvmlUtilization u{};
    if (nvml.utilization(device, &u) == 0) s.utilization = u.gpu / 100.0;
    NvmlMemory m{};
    if (nvml.memory(device, &m) == 0) {
      s.memory_used = m.used;
      s.memory_total = m.total;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace kiln::server
