// Tests of the node-test runner's comparison: a runner that compared loosely would pass broken kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "conformance/node_case.h"

namespace kiln::conformance {
namespace {

Tensor F32(std::vector<float> v) { return Tensor::FromVector(v); }

TEST(CompareTensorsTest, F32WithinBackendTolerance) {
  // |a - e| <= 1e-7 + 1e-3 * |e|: for e = 100 that is 0.1000001.
  EXPECT_EQ(CompareTensors(F32({100.f, 0.f}), F32({100.09f, 5e-8f})), "");
  EXPECT_NE(CompareTensors(F32({100.f, 0.f}), F32({100.11f, 0.f})), "");
  EXPECT_NE(CompareTensors(F32({100.f, 0.f}), F32({100.f, 1e-6f})), "");
}

TEST(CompareTensorsTest, ReportsFirstMismatchAndCount) {
  Tensor e(DType::kFloat32, {2, 2});
  Tensor a(DType::kFloat32, {2, 2});
  a.data<float>()[1] = 1.f;
  a.data<float>()[3] = 2.f;
  const std::string msg = CompareTensors(e, a);
  EXPECT_NE(msg.find("2 of 4 values differ"), std::string::npos) << msg;
  EXPECT_NE(msg.find("first at [0,1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max abs error 2"), std::string::npos) << msg;
}

TEST(CompareTensorsTest, NanEqualsNanOnly) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(CompareTensors(F32({nan, inf, -inf}), F32({nan, inf, -inf})), "");
  EXPECT_NE(CompareTensors(F32({nan}), F32({0.f})), "");
  EXPECT_NE(CompareTensors(F32({1.f}), F32({nan})), "");
  EXPECT_NE(CompareTensors(F32({inf}), F32({-inf})), "");
  EXPECT_NE(CompareTensors(F32({inf}), F32({3e38f})), "");
}

TEST(CompareTensorsTest, DTypeAndShapeMustMatch) {
  EXPECT_NE(CompareTensors(F32({1.f}), Tensor::FromVector(std::vector<double>{1.0})).find("dtype"),
            std::string::npos);
  Tensor row(DType::kFloat32, {1, 2});
  Tensor col(DType::kFloat32, {2, 1});
  EXPECT_NE(CompareTensors(row, col).find("shape [2,1], expected [1,2]"), std::string::npos);
}

TEST(CompareTensorsTest, IntegersExact) {
  const int64_t big = int64_t{1} << 60;
  EXPECT_EQ(CompareTensors(Tensor::FromVector<int64_t>({big, -3}), Tensor::FromVector<int64_t>({big, -3})),
            "");
  EXPECT_NE(CompareTensors(Tensor::FromVector<int64_t>({big}), Tensor::FromVector<int64_t>({big + 1})), "");
  EXPECT_NE(CompareTensors(Tensor::FromVector<uint8_t>({255}), Tensor::FromVector<uint8_t>({254})), "");
  EXPECT_EQ(CompareTensors(Tensor::FromVector<bool>({true, false}), Tensor::FromVector<bool>({true, false})),
            "");
  EXPECT_NE(CompareTensors(Tensor::FromVector<bool>({true}), Tensor::FromVector<bool>({false})), "");
}

TEST(CompareTensorsTest, HalfPrecisionLooser) {
  // 1 ulp of f16 at 1.0 is 2^-10 ~ 9.8e-4: allowed for f16, and three ulp too; eight are not.
  Tensor e = F32({1.f}).CastTo(DType::kFloat16);
  EXPECT_EQ(CompareTensors(e, F32({1.f + 3 * 9.765625e-4f}).CastTo(DType::kFloat16)), "");
  EXPECT_NE(CompareTensors(e, F32({1.f + 8 * 9.765625e-4f}).CastTo(DType::kFloat16)), "");
  EXPECT_DOUBLE_EQ(ToleranceFor(DType::kFloat32).rtol, 1e-3);
  EXPECT_DOUBLE_EQ(ToleranceFor(DType::kFloat32).atol, 1e-7);
}

TEST(CompareTensorsTest, EmptyTensorsMatch) {
  Tensor a(DType::kFloat32, {0, 3});
  Tensor b(DType::kFloat32, {0, 3});
  EXPECT_EQ(CompareTensors(a, b), "");
}

}  // namespace
}  // namespace kiln::conformance
