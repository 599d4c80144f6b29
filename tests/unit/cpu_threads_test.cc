// The CPU thread budget: leases never hold more than the budget at once, a lease sets the calling
// thread's OpenMP team size (what oneDNN's kernels use), and contexts sharing the budget still compute
// the right thing.
#include <gtest/gtest.h>
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "kiln/engine.h"
#include "plan_test_util.h"
#include "runtime/cpu_threads.h"

namespace kiln {
namespace {

class CpuThreads : public ::testing::Test {
 protected:
  void TearDown() override { SetCpuThreadBudget(0); }
};

TEST_F(CpuThreads, LeasesNeverExceedTheBudget) {
  SetCpuThreadBudget(4);
  EXPECT_EQ(CpuThreadBudget(), 4);
  EXPECT_EQ(EffectiveCpuThreads(0), 4);
  EXPECT_EQ(EffectiveCpuThreads(9), 4);
  EXPECT_EQ(EffectiveCpuThreads(3), 3);
  std::atomic<int> held{0}, peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        CpuThreadLease lease(t % 2 ? 3 : 1);
        const int now = held += lease.threads();
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        held -= lease.threads();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 4);
  EXPECT_GE(peak.load(), 2);  // leases did run side by side
}

TEST_F(CpuThreads, LeaseSetsTheOpenMpTeamSize) {
  if (!cpu::HaveOneDnn()) GTEST_SKIP() << "built without oneDNN";
  using GetMax = int (*)();
  const auto get_max = reinterpret_cast<GetMax>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
  if (!get_max) GTEST_SKIP() << "no OpenMP runtime loaded";
  SetCpuThreadBudget(8);
  {
    CpuThreadLease lease(3);
    EXPECT_EQ(get_max(), 3);
  }
  {
    CpuThreadLease lease(1);
    EXPECT_EQ(get_max(), 1);
  }
}

// Four contexts of one engine, one thread each, running at once under a budget of two: all correct.
TEST_F(CpuThreads, ContextsSharingTheBudgetAgree) {
  plan_test::TempDir dir;
  const std::string onnx = dir.Write("cnn.onnx", plan_test::SmallCnnOnnx());
  auto e = Engine::BuildFromOnnx(onnx);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  SetCpuThreadBudget(2);
  auto reference = (*e)->CreateContext();
  const std::vector<float> px(2 * 3 * 8 * 8, 0.25f);
  ASSERT_TRUE(reference->SetInput("x", px.data(), DataType::kFloat32, {2, 3, 8, 8}).ok());
  ASSERT_TRUE(reference->Run().ok());
  auto want = reference->GetOutput((*e)->outputs()[0].name);
  ASSERT_TRUE(want.ok());
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0}, failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto ctx = (*e)->CreateContext();
      if (!ctx->SetCpuThreads(1).ok() || !ctx->SetInput("x", px.data(), DataType::kFloat32, {2, 3, 8, 8}).ok()) {
        ++failures;
        return;
      }
      for (int i = 0; i < 10; ++i) {
        if (!ctx->Run().ok()) {
          ++failures;
          return;
        }
        auto got = ctx->GetOutput((*e)->outputs()[0].name);
        if (!got.ok() || got->nbytes() != want->nbytes()) {
          ++failures;
          return;
        }
        const float* a = static_cast<const float*>(got->data());
        const float* b = static_cast<const float*>(want->data());
        for (size_t k = 0; k < got->nbytes() / sizeof(float); ++k) mismatches += std::abs(a[k] - b[k]) > 1e-5f * (1 + std::abs(b[k]));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  auto ctx = (*e)->CreateContext();
  EXPECT_FALSE(ctx->SetCpuThreads(-1).ok());
}

}  // namespace
}  // namespace kiln
