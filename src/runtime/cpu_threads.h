// The process-wide budget of CPU threads for Kiln's kernels, and the lease a context's run takes from it.
//
// oneDNN (Debian's build) runs on OpenMP, where every calling thread gets its own team of threads: two
// contexts running at once would each use all cores. A lease holds `threads` of the budget for one run
// (waiting while others hold them), and sets the calling thread's OpenMP thread count to that, so the
// contexts running at any moment never use more threads than the budget in all.
#pragma once

namespace kiln {

class CpuThreadLease {
 public:
  // Takes `threads` threads of the budget (0 or more than the budget: the whole budget), waiting until
  // they are free.
  explicit CpuThreadLease(int threads);
  ~CpuThreadLease();
  CpuThreadLease(const CpuThreadLease&) = delete;
  CpuThreadLease& operator=(const CpuThreadLease&) = delete;

  int threads() const { return threads_; }

 private:
  int threads_ = 0;
};

// The threads a context asking for `threads` (0: the whole budget) runs with under the current budget.
int EffectiveCpuThreads(int threads);

}  // namespace kiln
