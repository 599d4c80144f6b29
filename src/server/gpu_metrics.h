// GPU samples for the metrics page, from NVML loaded at run time (dlopen of libnvidia-ml.so.1, which the
// NVIDIA driver installs): no build-time dependency, and on a machine without the driver simply no GPUs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::server {

struct GpuSample {
  std::string uuid;          // "GPU-8e2c...", Triton's gpu_uuid label
  double utilization = 0;    // 0..1, over NVML's last sample period
  uint64_t memory_used = 0;  // bytes
  uint64_t memory_total = 0;
};

// One sample per GPU that NVML reports; empty when NVML cannot be loaded or initialized (said once on
// stderr only when the library loads but fails). Thread-safe.
std::vector<GpuSample> SampleGpus();

}  // namespace kiln::server
