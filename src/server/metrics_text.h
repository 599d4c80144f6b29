// Prometheus text exposition of the models' counters with Triton's metric names, nv_cpu_utilization and,
// where NVML finds GPUs, nv_gpu_utilization / nv_gpu_memory_total_bytes / nv_gpu_memory_used_bytes.
#pragma once

#include <string>

#include "server/model_repository.h"

namespace kiln::server {

// The /metrics page. Not thread-compatible with itself only through the CPU sample it keeps (locked inside).
std::string RenderPrometheus(const ModelRepository& repository);

}  // namespace kiln::server
