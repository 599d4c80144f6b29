// The plan file: round trip, and one clean error for every corrupted, truncated or foreign variant.
#include <gtest/gtest.h>

#include <cstring>

#include "build/builder.h"
#include "plan/checksum.h"
#include "plan/plan.h"
#include "plan_test_util.h"
#include "runtime/reference_executor.h"

namespace kiln::plan {
namespace {

using plan_test::SmallGraph;

Plan BuildSmallPlan() {
  auto g = SmallGraph();
  auto p = build::BuildPlan(std::move(*g), BuildOptions{}, "small.onnx");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(*p);
}

std::string SmallPlanBytes() {
  auto bytes = SerializePlan(BuildSmallPlan());
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

void FixChecksum(std::string& bytes) {
  const uint32_t crc = Crc32c(bytes.data(), bytes.size() - kPlanTrailerSize);
  std::memcpy(bytes.data() + bytes.size() - kPlanTrailerSize, &crc, 4);
}

Tensor Input(int64_t batch) {
  Tensor x(DType::kFloat32, {batch, 4});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i) * 0.25f - 1.f;
  return x;
}

TEST(Crc32c, KnownValue) {
  // The CRC32C check value of "123456789" (RFC 3720).
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  // Incremental equals one shot.
  EXPECT_EQ(Crc32c("6789", 4, Crc32c("12345", 5)), 0xE3069283u);
}

TEST(PlanFormat, RoundTripKeepsGraphProfilesAndResults) {
  Plan built = BuildSmallPlan();
  auto bytes = SerializePlan(built);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(std::memcmp(bytes->data(), "KILNPLAN", 8), 0);
  auto read = ReadPlanBytes(bytes->data(), bytes->size());
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  const Plan& p = *read;
  ASSERT_EQ(p.schedule.size(), 4u);
  EXPECT_EQ(p.schedule[0]->op(), OpKind::kAdd);
  EXPECT_EQ(p.schedule[3]->op(), OpKind::kTranspose);
  EXPECT_EQ(p.schedule[3]->attrs().GetInts("perm"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(p.layers[0].tactic, "reference");
  EXPECT_EQ(p.layers[0].precision, "fp32");
  ASSERT_EQ(p.profiles.size(), 1u);
  ASSERT_EQ(p.profiles[0].inputs.size(), 1u);
  EXPECT_EQ(p.profiles[0].inputs[0].min, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(p.profiles[0].inputs[0].opt, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(p.profiles[0].inputs[0].max, (std::vector<int64_t>{32, 4}));
  const Value* x = p.graph->FindValue("x");
  ASSERT_TRUE(x && x->shape());
  EXPECT_EQ(x->shape()->ToString(), "[batch,4]");
  ASSERT_EQ(p.memory.size(), 1u);
  EXPECT_EQ(p.memory[0].arena_size, built.memory[0].arena_size);
  EXPECT_EQ(p.memory[0].naive_size, built.memory[0].naive_size);
  const Value* w = p.graph->FindValue("w");
  ASSERT_TRUE(w && w->is_constant());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w->constant()->raw_data()) % kWeightAlignment, 0u);

  TensorMap in{{"x", Input(3)}};
  auto a = RunReference(*built.graph, in);
  auto b = RunReference(*p.graph, in);
  ASSERT_TRUE(a.ok() && b.ok());
  const Tensor& ya = a->at("y");
  const Tensor& yb = b->at("y");
  ASSERT_EQ(yb.sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(std::memcmp(ya.raw_data(), yb.raw_data(), ya.nbytes()), 0);
  // Hand-computed: x[1][2] = 6*0.25-1 = 0.5, w[2] = 0, relu(0.5) * w2[2] (3) = 1.5.
  EXPECT_FLOAT_EQ(yb.data<float>()[1 * 4 + 2], 1.5f);
  EXPECT_EQ(b->at("t").sizes(), (std::vector<int64_t>{4, 3}));
}

TEST(PlanFormat, FileIsMemoryMappedAndAligned) {
  plan_test::TempDir dir;
  Plan built = BuildSmallPlan();
  const std::string path = dir.File("small.plan");
  ASSERT_TRUE(WritePlanFile(built, path).ok());
  auto read = ReadPlanFile(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  const Value* w2 = read->graph->FindValue("w2");
  ASSERT_TRUE(w2 && w2->is_constant());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w2->constant()->raw_data()) % kWeightAlignment, 0u);
  EXPECT_FLOAT_EQ(w2->constant()->data<float>()[3], 4.f);
  EXPECT_FALSE(ReadPlanFile(dir.File("missing.plan")).ok());
}

TEST(PlanFormat, EveryFlippedByteIsRejected) {
  const std::string good = SmallPlanBytes();
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      auto r = ReadPlanBytes(bad.data(), bad.size());
      ASSERT_FALSE(r.ok()) << "flip at " << i;
      EXPECT_FALSE(r.status().message().empty());
    }
  }
}

TEST(PlanFormat, EveryTruncationIsRejected) {
  const std::string good = SmallPlanBytes();
  for (size_t n = 0; n < good.size(); ++n) {
    auto r = ReadPlanBytes(good.data(), n);
    ASSERT_FALSE(r.ok()) << "truncated to " << n;
    if (n >= 8) {
      EXPECT_NE(r.status().message().find("truncated"), std::string::npos)
          << n << ": " << r.status().message();
    }
  }
  std::string longer = good + "x";
  EXPECT_FALSE(ReadPlanBytes(longer.data(), longer.size()).ok());
}

// Corruption that keeps the checksum valid (a bad writer, or a forged file) reaches the parser: every
// byte of the metadata changed, with the checksum recomputed, must give a clean result, never a crash.
TEST(PlanFormat, CorruptionBehindAValidChecksumIsHandled) {
  const std::string good = SmallPlanBytes();
  uint64_t meta_size = 0;
  std::memcpy(&meta_size, good.data() + 32, 8);
  int rejected = 0;
  for (size_t i = kPlanHeaderSize; i < kPlanHeaderSize + meta_size; ++i) {
    for (uint8_t value : {0x00, 0x7F, 0xFF}) {
      std::string bad = good;
      if (static_cast<uint8_t>(bad[i]) == value) continue;
      bad[i] = static_cast<char>(value);
      FixChecksum(bad);
      auto r = ReadPlanBytes(bad.data(), bad.size());
      if (!r.ok()) {
        ++rejected;
        EXPECT_FALSE(r.status().message().empty());
      }
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(PlanFormat, WrongMagic) {
  std::string bad = SmallPlanBytes();
  bad[0] = 'X';
  auto r = ReadPlanBytes(bad.data(), bad.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a Kiln plan"), std::string::npos);
  const std::string text = "hello";
  EXPECT_FALSE(ReadPlanBytes(text.data(), text.size()).ok());
}

TEST(PlanFormat, NewerFormatVersion) {
  std::string bad = SmallPlanBytes();
  const uint32_t v = kPlanFormatVersion + 1;
  std::memcpy(bad.data() + 8, &v, 4);
  FixChecksum(bad);
  auto r = ReadPlanBytes(bad.data(), bad.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

TEST(PlanFormat, ChecksumMismatch) {
  std::string bad = SmallPlanBytes();
  bad[bad.size() - 20] ^= 0x10;  // a weight byte
  auto r = ReadPlanBytes(bad.data(), bad.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos);
}

TEST(PlanFormat, SectionOffsetsOutOfRange) {
  std::string bad = SmallPlanBytes();
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(bad.data() + 32, &huge, 8);  // metadata size
  FixChecksum(bad);
  auto r = ReadPlanBytes(bad.data(), bad.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("out of range"), std::string::npos);
}

TEST(PlanFormat, ForeignTargetIsRefused) {
  Plan p = BuildSmallPlan();
  p.target.required_features = {"avx512_fp16", "kiln_test_feature"};
  auto bytes = SerializePlan(p);
  ASSERT_TRUE(bytes.ok());
  auto r = ReadPlanBytes(bytes->data(), bytes->size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("kiln_test_feature"), std::string::npos);
  ReadOptions lax;
  lax.check_target = false;
  EXPECT_TRUE(ReadPlanBytes(bytes->data(), bytes->size(), lax).ok());

  Plan q = BuildSmallPlan();
  q.target.libraries = {{"reference", "999"}};
  bytes = SerializePlan(q);
  r = ReadPlanBytes(bytes->data(), bytes->size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("reference 999"), std::string::npos);

  Plan c = BuildSmallPlan();
  c.target.device = "cuda";
  c.target.cuda_compute_capability = 90;
  bytes = SerializePlan(c);
  r = ReadPlanBytes(bytes->data(), bytes->size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("sm_90"), std::string::npos);
}

TEST(PlanTarget, FeaturesAreKnownNames) {
  const TargetFingerprint t = CurrentTarget();
  EXPECT_FALSE(t.arch.empty());
  for (const std::string& f : t.cpu_features) {
    EXPECT_TRUE(f == "sse4_2" || f == "avx" || f == "avx2" || f == "fma" || f == "f16c" ||
                f.rfind("avx512", 0) == 0 || f.rfind("amx", 0) == 0)
        << f;
  }
  EXPECT_TRUE(CheckTargetCompatible(t, t).ok());
}

}  // namespace
}  // namespace kiln::plan
