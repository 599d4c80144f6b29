// Benchmark statistics and reports for `kiln bench`: latency statistics per batch size, the CSV table and
// a hand-drawn SVG chart of latency and throughput against batch size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::bench {

struct LatencyStats {
  int64_t count = 0;
  double mean = 0, min = 0, max = 0, median = 0, p90 = 0, p99 = 0, stddev = 0;  // seconds
};

// Statistics of per-run latencies in seconds. Percentiles interpolate linearly between order statistics
// (NumPy's default); stddev is the population standard deviation (NumPy's np.std). Empty input: zeros.
LatencyStats ComputeLatencyStats(std::vector<double> seconds);

struct BatchResult {
  int64_t batch = 0;
  LatencyStats latency;
  double throughput_per_s = 0;  // samples (batch items) per second: batch * runs / total time
  // Mean milliseconds per run spent copying inputs to the device, computing, and copying outputs back
  // (GPU plans; on the CPU everything is compute).
  double h2d_mean_ms = 0, compute_mean_ms = 0, d2h_mean_ms = 0;
};

// The header and one row per batch: batch, throughput_per_s, latency_mean_ms, latency_median_ms,
// latency_p99_ms, latency_min_ms, latency_max_ms, latency_p90_ms, latency_std_ms, iterations,
// h2d_mean_ms, compute_mean_ms, d2h_mean_ms.
std::string FormatCsv(const std::vector<BatchResult>& results);

// An SVG document with two panels side by side: mean and p99 latency (ms) vs batch, throughput vs batch
// (batch on a log2 axis).
std::string RenderSvg(std::vector<BatchResult> results, const std::string& title);

}  // namespace kiln::bench
