#include "server/metrics_text.h"

#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>

#include "server/gpu_metrics.h"

namespace kiln::server {
namespace {

// Busy and total jiffies from the "cpu" line of /proc/stat.
bool ReadCpuJiffies(uint64_t* busy, uint64_t* total) {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") {
    return false;
  }
  *busy = user + nice + system + irq + softirq + steal;
  *total = *busy + idle + iowait;
  return true;
}

// The CPU's utilization (0..1) since the previous call (since boot on the first).
double CpuUtilization() {
  static std::mutex mu;
  static uint64_t last_busy = 0, last_total = 0;
  std::lock_guard<std::mutex> lock(mu);
  uint64_t busy = 0, total = 0;
  if (!ReadCpuJiffies(&busy, &total)) return 0;
  const uint64_t d_total = total - last_total, d_busy = busy - last_busy;
  last_busy = busy;
  last_total = total;
  return d_total == 0 ? 0 : static_cast<double>(d_busy) / static_cast<double>(d_total);
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

struct Family {
  const char* name;
  const char* type;
  const char* help;
  std::function<uint64_t(const ModelStats&)> value;
};

}  // namespace

std::string RenderPrometheus(const ModelRepository& repository) {
  const auto versions = repository.Ready();
  const auto us = [](const DurationStat& d) { return d.ns.load() / 1000; };
  const Family families[] = {
      {"nv_inference_request_success", "counter", "Number of successful inference requests, all batch sizes",
       [](const ModelStats& s) { return s.success.count.load(); }},
      {"nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)",
       [](const ModelStats& s) { return s.inference_count.load(); }},
      {"nv_inference_exec_count", "counter", "Number of model executions performed",
       [](const ModelStats& s) { return s.execution_count.load(); }},
      {"nv_inference_pending_request_count", "gauge",
       "Instantaneous number of pending requests awaiting execution per-model.",
       [](const ModelStats& s) { return static_cast<uint64_t>(std::max<int64_t>(0, s.pending.load())); }},
      {"nv_inference_request_duration_us", "counter", "Cumulative inference request duration in microseconds",
       [us](const ModelStats& s) { return us(s.success); }},
      {"nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds",
       [us](const ModelStats& s) { return us(s.queue); }},
      {"nv_inference_compute_input_duration_us", "counter",
       "Cumulative compute input duration in microseconds", [us](const ModelStats& s) { return us(s.compute_input); }},
      {"nv_inference_compute_infer_duration_us", "counter",
       "Cumulative compute inference duration in microseconds",
       [us](const ModelStats& s) { return us(s.compute_infer); }},
      {"nv_inference_compute_output_duration_us", "counter",
       "Cumulative inference compute output duration in microseconds",
       [us](const ModelStats& s) { return us(s.compute_output); }},
  };
  std::ostringstream out;
  auto labels = [](const ModelVersion& v) {
    return "model=\"" + Escape(v.model) + "\",version=\"" + std::to_string(v.version) + "\"";
  };
  out << "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes\n"
      << "# TYPE nv_inference_request_failure counter\n";
  for (const auto& v : versions) {
    for (size_t r = 0; r < kFailureReasonNames.size(); ++r) {
      out << "nv_inference_request_failure{" << labels(*v) << ",reason=\"" << kFailureReasonNames[r] << "\"} "
          << v->stats->failures[r].load() << "\n";
    }
  }
  for (const Family& f : families) {
    out << "# HELP " << f.name << " " << f.help << "\n# TYPE " << f.name << " " << f.type << "\n";
    for (const auto& v : versions) out << f.name << "{" << labels(*v) << "} " << f.value(*v->stats) << "\n";
  }
  out << "# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]\n# TYPE nv_cpu_utilization gauge\n"
      << "nv_cpu_utilization " << CpuUtilization() << "\n";
  // GPU families only when NVML reports GPUs (Triton omits them on machines without).
  const std::vector<GpuSample> gpus = SampleGpus();
  if (!gpus.empty()) {
    const auto gpu_family = [&out, &gpus](const char* name, const char* help, auto value) {
      out << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n";
      for (const GpuSample& g : gpus) out << name << "{gpu_uuid=\"" << Escape(g.uuid) << "\"} " << value(g) << "\n";
    };
    gpu_family("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)",
               [](const GpuSample& g) { return g.utilization; });
    gpu_family("nv_gpu_memory_total_bytes", "GPU total memory, in bytes",
               [](const GpuSample& g) { return g.memory_total; });
    gpu_family("nv_gpu_memory_used_bytes", "GPU used memory, in bytes",
               [](const GpuSample& g) { return g.memory_used; });
  }
  return out.str();
}

}  // namespace kiln::server
