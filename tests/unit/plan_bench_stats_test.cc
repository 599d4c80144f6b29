// Statistics, CSV and SVG of `kiln bench`, against values computed with NumPy.
#include <gtest/gtest.h>

#include "runtime/engine_bench.h"

namespace kiln::bench {
namespace {

TEST(BenchStats, MatchesNumpy) {
  // np.mean / np.median / np.percentile(.., [90, 99]) / np.std of 1..10 (shuffled).
  const LatencyStats s = ComputeLatencyStats({3, 1, 4, 10, 5, 9, 2, 6, 8, 7});
  EXPECT_EQ(s.count, 10);
  EXPECT_DOUBLE_EQ(s.mean, 5.5);
  EXPECT_DOUBLE_EQ(s.median, 5.5);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 10);
  EXPECT_NEAR(s.p90, 9.1, 1e-12);
  EXPECT_NEAR(s.p99, 9.91, 1e-12);
  EXPECT_NEAR(s.stddev, 2.8722813232690143, 1e-12);
}

TEST(BenchStats, SmallInputs) {
  const LatencyStats one = ComputeLatencyStats({0.25});
  EXPECT_DOUBLE_EQ(one.median, 0.25);
  EXPECT_DOUBLE_EQ(one.p99, 0.25);
  EXPECT_DOUBLE_EQ(one.stddev, 0);
  const LatencyStats none = ComputeLatencyStats({});
  EXPECT_EQ(none.count, 0);
  EXPECT_DOUBLE_EQ(none.mean, 0);
  // np.percentile([1, 2], 90) = 1.9; np.median([1, 2, 4]) = 2.
  EXPECT_NEAR(ComputeLatencyStats({2, 1}).p90, 1.9, 1e-12);
  EXPECT_DOUBLE_EQ(ComputeLatencyStats({4, 1, 2}).median, 2);
}

TEST(BenchReport, CsvHasTheRequiredColumns) {
  BatchResult r;
  r.batch = 8;
  r.latency = ComputeLatencyStats({0.001, 0.003});
  r.throughput_per_s = 4000;
  const std::string csv = FormatCsv({r});
  const std::string header = csv.substr(0, csv.find('\n'));
  EXPECT_EQ(header.rfind("batch,throughput_per_s,latency_mean_ms,latency_median_ms,latency_p99_ms", 0), 0u);
  EXPECT_NE(csv.find("\n8,4000.000,2.0000,2.0000,2.9800,1.0000,3.0000,"), std::string::npos) << csv;
}

TEST(BenchReport, SvgDrawsBothPanels) {
  std::vector<BatchResult> rs(3);
  const int64_t batches[] = {32, 1, 8};
  for (int i = 0; i < 3; ++i) {
    rs[i].batch = batches[i];
    rs[i].latency = ComputeLatencyStats({0.001 * batches[i]});
    rs[i].throughput_per_s = 1000;
  }
  const std::string svg = RenderSvg(rs, "model <a&b>");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("model &lt;a&amp;b&gt;"), std::string::npos);
  size_t lines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++lines;
  EXPECT_EQ(lines, 3u);  // mean, p99, throughput
  EXPECT_NE(svg.find("latency (ms)"), std::string::npos);
  EXPECT_NE(svg.find("throughput"), std::string::npos);
}

}  // namespace
}  // namespace kiln::bench
