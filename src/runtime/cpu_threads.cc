#include "runtime/cpu_threads.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "backends/cpu/cpu_kernels.h"
#include "kiln/engine.h"

namespace kiln {
namespace {

int DefaultBudget() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

struct Budget {
  std::mutex mu;
  std::condition_variable freed;
  int total = DefaultBudget();
  int in_use = 0;
};

Budget& TheBudget() {
  static Budget b;
  return b;
}

}  // namespace

void SetCpuThreadBudget(int threads) {
  Budget& b = TheBudget();
  {
    std::lock_guard<std::mutex> lock(b.mu);
    b.total = threads > 0 ? threads : DefaultBudget();
  }
  b.freed.notify_all();
}

int CpuThreadBudget() {
  Budget& b = TheBudget();
  std::lock_guard<std::mutex> lock(b.mu);
  return b.total;
}

int EffectiveCpuThreads(int threads) {
  const int total = CpuThreadBudget();
  return threads <= 0 ? total : std::min(threads, total);
}

CpuThreadLease::CpuThreadLease(int threads) {
  Budget& b = TheBudget();
  std::unique_lock<std::mutex> lock(b.mu);
  threads_ = threads <= 0 ? b.total : std::min(threads, b.total);
  // in_use == 0 admits any request, so a budget lowered while a lease waits cannot starve it.
  b.freed.wait(lock, [&] { return b.in_use == 0 || b.in_use + threads_ <= b.total; });
  b.in_use += threads_;
  lock.unlock();
  cpu::SetKernelThreads(threads_);
}

CpuThreadLease::~CpuThreadLease() {
  Budget& b = TheBudget();
  {
    std::lock_guard<std::mutex> lock(b.mu);
    b.in_use -= threads_;
  }
  b.freed.notify_all();
}

}  // namespace kiln
