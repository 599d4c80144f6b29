// The public runtime API: build -> save -> load -> run equals the reference on the same graph; profiles,
// shapes parsing, contexts on threads, asynchronous runs, corrupted plan files.
#include <gtest/gtest.h>

#include "backends/cpu/cpu_kernels.h"

#include <cmath>
#include <cstring>
#include <thread>

#include "kiln/engine.h"
#include "onnx/importer.h"
#include "plan_test_util.h"
#include "runtime/reference_executor.h"

namespace kiln {
namespace {

using plan_test::TempDir;

std::vector<float> Pixels(int64_t batch, uint32_t seed) {
  return plan_test::RandomFloats(static_cast<size_t>(batch * 3 * 8 * 8), seed);
}

// Without the optimizer and with the reference kernels the plan's graph is the imported graph: results are
// bit-identical to the reference executor's.
TEST(Engine, BuildSaveLoadRunMatchesReference) {
  TempDir dir;
  const std::string onnx = dir.Write("cnn.onnx", plan_test::SmallCnnOnnx());
  BuildOptions options;
  options.optimize = false;
  options.fast_kernels = false;
  auto built = Engine::BuildFromOnnx(onnx, options);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  const std::string plan = dir.File("cnn.plan");
  ASSERT_TRUE((*built)->Save(plan).ok());
  auto loaded = Engine::Load(plan);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const Engine& e = **loaded;

  ASSERT_EQ(e.inputs().size(), 1u);
  EXPECT_EQ(e.inputs()[0].name, "x");
  EXPECT_EQ(e.inputs()[0].dims, (std::vector<int64_t>{-1, 3, 8, 8}));
  EXPECT_EQ(e.inputs()[0].dim_names[0], "batch");
  ASSERT_EQ(e.inputs()[0].profiles.size(), 1u);
  EXPECT_EQ(e.inputs()[0].profiles[0].min, (std::vector<int64_t>{1, 3, 8, 8}));
  EXPECT_EQ(e.inputs()[0].profiles[0].max, (std::vector<int64_t>{32, 3, 8, 8}));
  ASSERT_EQ(e.outputs().size(), 1u);
  EXPECT_EQ(e.layers().size(), 8u);
  EXPECT_EQ(e.layers()[0].tactic, "reference");
  // Opt batch 1: c1, r1, c2, s (each 4x8x8 floats = 1 KiB), p (256 B), f, logits in the arena; the graph
  // output y is not (the caller keeps it). The arena reuses memory; r1 runs in place over c1, f (Flatten)
  // is a view of p.
  const MemoryInfo m = e.memory();
  EXPECT_EQ(m.naive_bytes, 4u * 1024 + 256 + 256 + 64);
  EXPECT_LT(m.arena_bytes, m.naive_bytes);
  EXPECT_EQ(m.planned_tensors, 7);
  EXPECT_GE(m.in_place_tensors, 1);
  EXPECT_EQ(m.view_tensors, 1);

  auto model = ImportOnnxFile(onnx);
  ASSERT_TRUE(model.ok());
  auto ctx = e.CreateContext();
  for (int64_t batch : {1, 5, 32}) {
    const std::vector<float> px = Pixels(batch, static_cast<uint32_t>(batch));
    ASSERT_TRUE(ctx->SetInput("x", px.data(), DataType::kFloat32, {batch, 3, 8, 8}).ok());
    ASSERT_TRUE(ctx->Run().ok());
    auto y = ctx->GetOutput("y");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    ASSERT_EQ(y->dims(), (std::vector<int64_t>{batch, 5}));
    Tensor x(DType::kFloat32, {batch, 3, 8, 8});
    std::memcpy(x.raw_data(), px.data(), x.nbytes());
    auto ref = RunReference(model->graph, {{"x", x}});
    ASSERT_TRUE(ref.ok());
    ASSERT_EQ(std::memcmp(ref->at("y").raw_data(), y->data(), y->nbytes()), 0) << "batch " << batch;
    // Softmax rows sum to one.
    for (int64_t b = 0; b < batch; ++b) {
      float sum = 0;
      for (int k = 0; k < 5; ++k) sum += y->data_as<float>()[b * 5 + k];
      EXPECT_NEAR(sum, 1.f, 1e-5f);
    }
  }
  EXPECT_GT(ctx->memory().arena_bytes, m.arena_bytes);  // batch 32 needs more than batch 1
}

// With the optimizer (fusions), results match the reference of the unoptimized graph closely.
TEST(Engine, OptimizedEngineMatchesReference) {
  TempDir dir;
  const std::string onnx = dir.Write("cnn.onnx", plan_test::SmallCnnOnnx());
  std::vector<std::string> progress;
  BuildOptions options;
  options.progress = [&](const std::string& line) { progress.push_back(line); };
  auto built = Engine::BuildFromOnnx(onnx, options);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  EXPECT_FALSE(progress.empty());
  auto bytes = (*built)->Serialize();
  ASSERT_TRUE(bytes.ok());
  auto e = Engine::LoadFromMemory(bytes->data(), bytes->size());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_LE((*e)->layers().size(), 8u);
  auto model = ImportOnnxFile(onnx);
  ASSERT_TRUE(model.ok());
  const std::vector<float> px = Pixels(3, 11);
  auto ctx = (*e)->CreateContext();
  ASSERT_TRUE(ctx->SetInput("x", px.data(), DataType::kFloat32, {3, 3, 8, 8}).ok());
  ASSERT_TRUE(ctx->Run().ok());
  auto y = ctx->GetOutput("y");
  ASSERT_TRUE(y.ok());
  Tensor x(DType::kFloat32, {3, 3, 8, 8});
  std::memcpy(x.raw_data(), px.data(), x.nbytes());
  auto ref = RunReference(model->graph, {{"x", x}});
  ASSERT_TRUE(ref.ok());
  ASSERT_EQ(y->numel(), 15);
  for (int i = 0; i < 15; ++i) EXPECT_NEAR(y->data_as<float>()[i], ref->at("y").data<float>()[i], 1e-5f) << i;
  // With oneDNN the fused conv runs a oneDNN tactic (chosen by timing), and the plan names the library.
  if (cpu::HaveOneDnn()) {
    bool onednn = false;
    for (const LayerInfo& l : (*e)->layers()) onednn |= l.tactic.rfind("onednn.", 0) == 0;
    EXPECT_TRUE(onednn);
    EXPECT_NE((*e)->target_description().find("onednn"), std::string::npos) << (*e)->target_description();
  }
}

// The builder stores the chosen kernels' packed weights in the plan; loading registers them, so the first
// run packs nothing and its results equal those of an engine that packs its own.
TEST(Engine, PlanCarriesPackedWeights) {
  if (!cpu::HaveOneDnn()) GTEST_SKIP() << "built without oneDNN: nothing is packed";
  TempDir dir;
  const std::string onnx = dir.Write("cnn.onnx", plan_test::SmallCnnOnnx());
  auto built = Engine::BuildFromOnnx(onnx, BuildOptions{});
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  auto bytes = (*built)->Serialize();
  ASSERT_TRUE(bytes.ok());
  const std::vector<float> px = Pixels(1, 5);
  auto run = [&](ExecutionContext& ctx) {
    EXPECT_TRUE(ctx.SetInput("x", px.data(), DataType::kFloat32, {1, 3, 8, 8}).ok());
    EXPECT_TRUE(ctx.Run().ok());
    auto y = ctx.GetOutput("y");
    EXPECT_TRUE(y.ok());
    return std::vector<float>(y->data_as<float>(), y->data_as<float>() + y->numel());
  };
  const std::vector<float> want = run(*(*built)->CreateContext());
  built->reset();
  const size_t live_before = cpu::LivePackedWeightBytes();
  const uint64_t reorders_before = cpu::PackedWeightReorders();
  {
    auto e = Engine::LoadFromMemory(bytes->data(), bytes->size());
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const uint64_t packed = (*e)->memory().packed_weight_bytes;
    EXPECT_GT(packed, 0u) << "the plan holds no packed weights";
    auto ctx = (*e)->CreateContext();
    EXPECT_EQ(run(*ctx), want);
    // The kernels took the plan's copies: none packed its weights, and what is alive is the plan's.
    EXPECT_EQ(cpu::PackedWeightReorders(), reorders_before) << "a kernel packed its weights after all";
    EXPECT_EQ(cpu::LivePackedWeightBytes() - live_before, packed);
  }
  EXPECT_EQ(cpu::LivePackedWeightBytes(), live_before) << "the engine's packed weights outlived it and its context";
}

TEST(Engine, ShapesOutsideTheProfileAreRefused) {
  TempDir dir;
  const std::string onnx = dir.Write("cnn.onnx", plan_test::SmallCnnOnnx());
  BuildOptions options;
  options.optimize = false;  // the memory numbers below are for the unfused graph
  auto profile = ParseShapesOption("x:2x3x8x8..4x3x8x8..8x3x8x8");
  ASSERT_TRUE(profile.ok()) << profile.status().ToString();
  options.profiles.push_back(*profile);
  auto e = Engine::BuildFromOnnx(onnx, options);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto ctx = (*e)->CreateContext();
  const std::vector<float> px = Pixels(9, 1);
  Status st = ctx->SetInput("x", px.data(), DataType::kFloat32, {9, 3, 8, 8});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("outside the profile"), std::string::npos) << st.message();
  EXPECT_FALSE(ctx->SetInputShape("x", {1, 3, 8, 8}).ok());
  EXPECT_FALSE(ctx->SetInput("x", px.data(), DataType::kFloat32, {2, 3, 9, 8}).ok());
  EXPECT_FALSE(ctx->SetInput("x", px.data(), DataType::kInt64, {2, 3, 8, 8}).ok());
  EXPECT_FALSE(ctx->SetInput("nope", px.data(), DataType::kFloat32, {2, 3, 8, 8}).ok());
  EXPECT_FALSE(ctx->Run().ok());  // no input set
  ASSERT_TRUE(ctx->SetInputShape("x", {3, 3, 8, 8}).ok());
  EXPECT_FALSE(
      ctx->SetInput("x", px.data(), DataType::kFloat32, {2, 3, 8, 8}).ok());  // not the declared shape
  EXPECT_TRUE(ctx->SetInput("x", px.data(), DataType::kFloat32, {3, 3, 8, 8}).ok());
  EXPECT_TRUE(ctx->Run().ok());
  EXPECT_FALSE(ctx->GetOutput("nope").ok());
  EXPECT_FALSE(ctx->SetOptimizationProfile(1).ok());
  // opt batch 4: the memory plan is sized for it.
  EXPECT_EQ((*e)->memory().naive_bytes, 4u * 4096 + 1024 + 1024 + 128);

  BuildOptions bad;
  bad.profiles.push_back(*ParseShapesOption("x:1x3x8x8..4x3x9x8"));
  auto refused = Engine::BuildFromOnnx(onnx, bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("fixed at 8"), std::string::npos) << refused.status().message();
  BuildOptions unknown;
  unknown.profiles.push_back(*ParseShapesOption("y:1x5"));
  EXPECT_FALSE(Engine::BuildFromOnnx(onnx, unknown).ok());
}

TEST(Engine, ContextsOnThreadsAndAsync) {
  TempDir dir;
  const std::string onnx = dir.Write("cnn.onnx", plan_test::SmallCnnOnnx());
  auto e = Engine::BuildFromOnnx(onnx);
  ASSERT_TRUE(e.ok());
  auto bytes = (*e)->Serialize();
  ASSERT_TRUE(bytes.ok());
  auto loaded = Engine::LoadFromMemory(bytes->data(), bytes->size());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  std::shared_ptr<Engine> engine = *loaded;
  const std::vector<float> px = Pixels(2, 7);
  auto expected_ctx = engine->CreateContext();
  ASSERT_TRUE(expected_ctx->SetInput("x", px.data(), DataType::kFloat32, {2, 3, 8, 8}).ok());
  ASSERT_TRUE(expected_ctx->RunAsync().get().ok());
  HostTensor expected = *expected_ctx->GetOutput("y");

  std::vector<std::unique_ptr<ExecutionContext>> contexts;
  for (int t = 0; t < 4; ++t) contexts.push_back(engine->CreateContext());
  engine.reset();  // the contexts keep the engine's state alive
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      ExecutionContext* ctx = contexts[t].get();
      for (int i = 0; i < 5; ++i) {
        if (!ctx->SetInput("x", px.data(), DataType::kFloat32, {2, 3, 8, 8}).ok()) return;
        if (!ctx->Run().ok()) return;
        auto y = ctx->GetOutput("y");
        if (y.ok() && std::memcmp(y->data(), expected.data(), expected.nbytes()) == 0) ++same[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(same[t], 5) << "thread " << t;
}

TEST(Engine, CorruptedPlanFileGivesOneClearError) {
  TempDir dir;
  const std::string onnx = dir.Write("cnn.onnx", plan_test::SmallCnnOnnx());
  auto e = Engine::BuildFromOnnx(onnx);
  ASSERT_TRUE(e.ok());
  const std::string plan = dir.File("cnn.plan");
  ASSERT_TRUE((*e)->Save(plan).ok());
  std::string bytes = plan_test::ReadFile(plan);
  const std::string truncated = dir.Write("t.plan", bytes.substr(0, bytes.size() / 2));
  auto r = Engine::Load(truncated);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
  bytes[bytes.size() / 2] ^= 1;
  r = Engine::Load(dir.Write("c.plan", bytes));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos);
  r = Engine::Load(onnx);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a Kiln plan"), std::string::npos);
  EXPECT_FALSE(Engine::Load(dir.File("none.plan")).ok());
  EXPECT_FALSE(Engine::BuildFromOnnx(dir.File("none.onnx")).ok());
}

TEST(ShapesOption, ParsesFixedAndRanges) {
  auto p = ParseShapesOption("x:1x3x224x224, mask:1x8..4x16..8x128 input:0:2..6");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->inputs.size(), 3u);
  EXPECT_EQ(p->inputs["x"].min, (std::vector<int64_t>{1, 3, 224, 224}));
  EXPECT_EQ(p->inputs["x"].max, (std::vector<int64_t>{1, 3, 224, 224}));
  EXPECT_EQ(p->inputs["mask"].min, (std::vector<int64_t>{1, 8}));
  EXPECT_EQ(p->inputs["mask"].opt, (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(p->inputs["mask"].max, (std::vector<int64_t>{8, 128}));
  EXPECT_EQ(p->inputs["input:0"].min, (std::vector<int64_t>{2}));
  EXPECT_EQ(p->inputs["input:0"].opt, (std::vector<int64_t>{2}));  // MIN..MAX: opt = min
  EXPECT_EQ(p->inputs["input:0"].max, (std::vector<int64_t>{6}));
  for (const char* bad : {"", "x", "x:", ":1x2", "x:1xx2", "x:1x-2", "x:4..2", "x:1x2..3", "x:1..2..3..4",
                          "x:1 x:2", "x:99999999999999999999"}) {
    EXPECT_FALSE(ParseShapesOption(bad).ok()) << bad;
  }
}

TEST(HostTensor, CopyAndInvalidDims) {
  const float v[3] = {1, 2, 3};
  HostTensor t = HostTensor::Copy(DataType::kFloat32, {3}, v);
  EXPECT_EQ(t.numel(), 3);
  EXPECT_EQ(t.nbytes(), 12u);
  EXPECT_EQ(t.data_as<float>()[2], 3.f);
  HostTensor bad(DataType::kFloat32, {-1, 4});
  EXPECT_EQ(bad.data(), nullptr);
}

}  // namespace
}  // namespace kiln
