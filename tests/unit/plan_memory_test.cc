// The memory planner: packing by lifetimes, on hand-computed cases, a chain graph and random lifetimes.
#include <gtest/gtest.h>

#include <random>

#include "build/builder.h"
#include "build/arena_layout.h"
#include "build/graph_clone.h"
#include "build/memory_planner.h"
#include "ops/infer.h"

namespace kiln::build {
namespace {

TEST(MemoryPlanner, HandComputedPacking) {
  // A [0,1] 1000 B, B [1,2] 500 B, C [2,3] 1000 B. Largest first: A at 0; C does not overlap A in time,
  // so it reuses offset 0; B overlaps both and goes above them at 1024.
  auto plan = PackLifetimes({{0, 1000, 0, 1}, {1, 500, 1, 2}, {2, 1000, 2, 3}});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->blocks[0].offset, 0u);
  EXPECT_EQ(plan->blocks[1].offset, 1024u);
  EXPECT_EQ(plan->blocks[2].offset, 0u);
  EXPECT_EQ(plan->arena_size, 1536u);
  EXPECT_EQ(plan->naive_size, 1024u + 512u + 1024u);
}

TEST(MemoryPlanner, BestFitPicksTheSmallestGap) {
  // Placed largest first: A [0,1024), B [1024,1536), H [1536,1792), D [1792,1984). At steps 5..6 only B
  // and D are alive, leaving gaps [0,1024) and [1536,1792): E (128 B) takes the smaller one.
  auto plan =
      PackLifetimes({{0, 1024, 0, 1}, {1, 512, 0, 9}, {2, 256, 0, 1}, {3, 192, 0, 9}, {4, 128, 5, 6}});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->blocks[0].offset, 0u);
  EXPECT_EQ(plan->blocks[1].offset, 1024u);
  EXPECT_EQ(plan->blocks[2].offset, 1536u);
  EXPECT_EQ(plan->blocks[3].offset, 1792u);
  EXPECT_EQ(plan->blocks[4].offset, 1536u);
  EXPECT_EQ(plan->arena_size, 1984u);
}

TEST(MemoryPlanner, RejectsBackwardLifetime) { EXPECT_FALSE(PackLifetimes({{0, 64, 3, 2}}).ok()); }

TEST(MemoryPlanner, RandomLifetimesNeverShareLiveMemory) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 60);
    std::vector<TensorLifetime> lt;
    for (int i = 0; i < n; ++i) {
      const int first = static_cast<int>(rng() % 40);
      const int last = first + static_cast<int>(rng() % 10);
      lt.push_back({i, 1 + rng() % 5000, first, last});
    }
    auto plan = PackLifetimes(lt);
    ASSERT_TRUE(plan.ok());
    uint64_t peak_live = 0;
    for (int step = 0; step < 50; ++step) {
      uint64_t live = 0;
      for (const auto& t : lt) {
        if (t.first <= step && step <= t.last) live += (t.size + 63) / 64 * 64;
      }
      peak_live = std::max(peak_live, live);
    }
    for (int i = 0; i < n; ++i) {
      const ArenaBlock& a = plan->blocks[i];
      EXPECT_EQ(a.offset % 64, 0u);
      EXPECT_LE(a.offset + a.size, plan->arena_size);
      for (int j = i + 1; j < n; ++j) {
        const ArenaBlock& b = plan->blocks[j];
        const bool live_together = lt[i].first <= lt[j].last && lt[j].first <= lt[i].last;
        const bool overlap = a.offset < b.offset + b.size && b.offset < a.offset + a.size;
        ASSERT_FALSE(live_together && overlap) << "trial " << trial << ": tensors " << i << " and " << j;
      }
    }
    EXPECT_GE(plan->arena_size, peak_live);
    EXPECT_LE(plan->arena_size, plan->naive_size);
  }
}

Graph ActivationChain(int layers) {
  Graph g;
  Value* prev = g.AddValue("x", DType::kFloat32, Shape{Dim::Symbol("batch"), 1024});
  g.AddInput(prev);
  for (int i = 0; i < layers; ++i) {
    Value* next = g.AddValue("t" + std::to_string(i), DType::kFloat32);
    g.AddNode(i % 2 ? OpKind::kRelu : OpKind::kSigmoid, "n" + std::to_string(i), {prev}, {next}, 13);
    prev = next;
  }
  g.AddOutput(prev);
  EXPECT_TRUE(InferShapes(g).ok());
  return g;
}

// t0..t8 are in the arena (t9 is the graph output): each activation runs in place over its input, so
// one buffer serves the whole chain; without in-place execution two alternate.
TEST(MemoryPlanner, ActivationChainRunsInPlace) {
  const int kLayers = 10;
  Graph g = ActivationChain(kLayers);
  auto m = PlanMemoryForSizes(g, {{"x", {2, 1024}}});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const uint64_t one = 2 * 1024 * 4;
  EXPECT_EQ(m->naive_size, (kLayers - 1) * one);
  EXPECT_EQ(m->arena_size, one);
  EXPECT_EQ(m->blocks.size(), static_cast<size_t>(kLayers - 1));
  EXPECT_EQ(m->dynamic_count, 0u);

  std::vector<const Node*> schedule;
  auto bound = CloneWithInputSizes(g, {{"x", {2, 1024}}}, &schedule);
  ASSERT_TRUE(bound.ok());
  ArenaOptions no_in_place;
  no_in_place.in_place = false;
  auto layout = LayOutArena(schedule, no_in_place);
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->arena_size, 2 * one);
  EXPECT_EQ(layout->in_place, 0);
  auto with = LayOutArena(schedule);
  ASSERT_TRUE(with.ok());
  EXPECT_EQ(with->in_place, kLayers - 2);  // t1..t8 over their inputs; t0 reads the graph input
}

}  // namespace
}  // namespace kiln::build
