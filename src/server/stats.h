// Per model-version counters, updated by the scheduler and read by the metrics and statistics front ends.
// Durations are nanoseconds summed over requests (Triton's convention), plus per-batch-size execution stats.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>

namespace kiln::server {

struct DurationStat {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> ns{0};
  void Add(uint64_t duration_ns) {
    count.fetch_add(1, std::memory_order_relaxed);
    ns.fetch_add(duration_ns, std::memory_order_relaxed);
  }
};

// Why a request failed; the label of nv_inference_request_failure.
enum class FailureReason { kRejected, kCanceled, kBackend, kOther };
inline constexpr std::array<const char*, 4> kFailureReasonNames = {"REJECTED", "CANCELED", "BACKEND", "OTHER"};

struct BatchSizeStat {
  uint64_t count = 0;
  uint64_t compute_input_ns = 0, compute_infer_ns = 0, compute_output_ns = 0;
};

class ModelStats {
 public:
  DurationStat success, fail, queue, compute_input, compute_infer, compute_output;
  std::array<std::atomic<uint64_t>, 4> failures{};  // indexed by FailureReason
  std::atomic<uint64_t> inference_count{0};          // samples (batch elements) inferred
  std::atomic<uint64_t> execution_count{0};          // engine runs
  std::atomic<int64_t> pending{0};                   // requests queued or running
  std::atomic<uint64_t> last_inference_ms{0};        // ms since the epoch
  // Held while one execution's counters are added (inference and execution counts, queue, compute
  // phases, success) and while a statistics endpoint reads them, so a reader never sees one phase
  // counted without the others (perf_analyzer aborts when the compute counts disagree).
  mutable std::mutex group;

  void AddFailure(FailureReason reason, uint64_t duration_ns) {
    fail.Add(duration_ns);
    failures[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  }
  void AddBatch(int64_t size, uint64_t input_ns, uint64_t infer_ns, uint64_t output_ns) {
    std::lock_guard<std::mutex> lock(mu_);
    BatchSizeStat& s = batches_[size];
    ++s.count;
    s.compute_input_ns += input_ns;
    s.compute_infer_ns += infer_ns;
    s.compute_output_ns += output_ns;
  }
  // Forgets everything counted so far (warm-up requests are not the clients').
  void Reset() {
    for (DurationStat* d : {&success, &fail, &queue, &compute_input, &compute_infer, &compute_output}) {
      d->count = 0;
      d->ns = 0;
    }
    for (auto& f : failures) f = 0;
    inference_count = 0;
    execution_count = 0;
    last_inference_ms = 0;
    std::lock_guard<std::mutex> lock(mu_);
    batches_.clear();
  }
  std::map<int64_t, BatchSizeStat> batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }

 private:
  mutable std::mutex mu_;
  std::map<int64_t, BatchSizeStat> batches_;
};

}  // namespace kiln::server
