#include "runtime/engine_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kiln::bench {
namespace {

double Percentile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

std::string Fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least v.
double NiceCeil(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

struct Series {
  std::string label;
  std::string color;
  std::vector<double> y;
};

// One panel at (x0, y0) of size w x h: batch on a log2 x axis (evenly spaced when batches are powers
// of two), values on a linear y axis from 0.
std::string Panel(double x0, double y0, double w, double h, const std::vector<int64_t>& batches,
                  const std::vector<Series>& series, const std::string& y_label) {
  std::string s;
  const double left = x0 + 60, right = x0 + w - 15, top = y0 + 30, bottom = y0 + h - 45;
  double ymax = 0;
  for (const Series& ser : series) {
    for (double v : ser.y) ymax = std::max(ymax, v);
  }
  ymax = NiceCeil(ymax * 1.05);
  const double bmin = std::log2(static_cast<double>(std::max<int64_t>(1, batches.front())));
  const double bmax = std::log2(static_cast<double>(std::max<int64_t>(1, batches.back())));
  auto px = [&](int64_t b) {
    if (bmax <= bmin) return (left + right) / 2;
    return left +
           (std::log2(static_cast<double>(std::max<int64_t>(1, b))) - bmin) / (bmax - bmin) * (right - left);
  };
  auto py = [&](double v) { return bottom - v / ymax * (bottom - top); };
  s += "<rect x=\"" + Fmt("%.1f", left) + "\" y=\"" + Fmt("%.1f", top) + "\" width=\"" +
       Fmt("%.1f", right - left) + "\" height=\"" + Fmt("%.1f", bottom - top) +
       "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = ymax * i / 4, y = py(v);
    s += "<line x1=\"" + Fmt("%.1f", left) + "\" y1=\"" + Fmt("%.1f", y) + "\" x2=\"" + Fmt("%.1f", right) +
         "\" y2=\"" + Fmt("%.1f", y) + "\" stroke=\"#ddd\"/>\n";
    s += "<text x=\"" + Fmt("%.1f", left - 5) + "\" y=\"" + Fmt("%.1f", y + 4) + "\" text-anchor=\"end\">" +
         Fmt("%.4g", v) + "</text>\n";
  }
  for (int64_t b : batches) {
    s += "<text x=\"" + Fmt("%.1f", px(b)) + "\" y=\"" + Fmt("%.1f", bottom + 16) +
         "\" text-anchor=\"middle\">" + std::to_string(b) + "</text>\n";
  }
  s += "<text x=\"" + Fmt("%.1f", (left + right) / 2) + "\" y=\"" + Fmt("%.1f", bottom + 34) +
       "\" text-anchor=\"middle\">batch size</text>\n";
  s += "<text x=\"" + Fmt("%.1f", left) + "\" y=\"" + Fmt("%.1f", top - 10) + "\">" + Escape(y_label) +
       "</text>\n";
  double legend_x = right - 150;
  for (const Series& ser : series) {
    std::string points;
    for (size_t i = 0; i < batches.size() && i < ser.y.size(); ++i) {
      points += Fmt("%.1f", px(batches[i])) + "," + Fmt("%.1f", py(ser.y[i])) + " ";
    }
    s += "<polyline fill=\"none\" stroke=\"" + ser.color + "\" stroke-width=\"2\" points=\"" + points +
         "\"/>\n";
    for (size_t i = 0; i < batches.size() && i < ser.y.size(); ++i) {
      s += "<circle cx=\"" + Fmt("%.1f", px(batches[i])) + "\" cy=\"" + Fmt("%.1f", py(ser.y[i])) +
           "\" r=\"3\" fill=\"" + ser.color + "\"/>\n";
    }
    s += "<text x=\"" + Fmt("%.1f", legend_x) + "\" y=\"" + Fmt("%.1f", top + 16) + "\" fill=\"" + ser.color +
         "\">" + Escape(ser.label) + "</text>\n";
    legend_x += 75;
  }
  return s;
}

}  // namespace

LatencyStats ComputeLatencyStats(std::vector<double> seconds) {
  LatencyStats st;
  if (seconds.empty()) return st;
  std::sort(seconds.begin(), seconds.end());
  st.count = static_cast<int64_t>(seconds.size());
  double sum = 0;
  for (double v : seconds) sum += v;
  st.mean = sum / static_cast<double>(seconds.size());
  double sq = 0;
  for (double v : seconds) sq += (v - st.mean) * (v - st.mean);
  st.stddev = std::sqrt(sq / static_cast<double>(seconds.size()));
  st.min = seconds.front();
  st.max = seconds.back();
  st.median = Percentile(seconds, 0.5);
  st.p90 = Percentile(seconds, 0.9);
  st.p99 = Percentile(seconds, 0.99);
  return st;
}

std::string FormatCsv(const std::vector<BatchResult>& results) {
  std::string s =
      "batch,throughput_per_s,latency_mean_ms,latency_median_ms,latency_p99_ms,latency_min_ms,latency_max_ms,"
      "latency_p90_ms,latency_std_ms,iterations,h2d_mean_ms,compute_mean_ms,d2h_mean_ms\n";
  for (const BatchResult& r : results) {
    const LatencyStats& l = r.latency;
    s += std::to_string(r.batch) + "," + Fmt("%.3f", r.throughput_per_s) + "," + Fmt("%.4f", l.mean * 1e3) +
         "," + Fmt("%.4f", l.median * 1e3) + "," + Fmt("%.4f", l.p99 * 1e3) + "," + Fmt("%.4f", l.min * 1e3) +
         "," + Fmt("%.4f", l.max * 1e3) + "," + Fmt("%.4f", l.p90 * 1e3) + "," + Fmt("%.4f", l.stddev * 1e3) +
         "," + std::to_string(l.count) + "," + Fmt("%.4f", r.h2d_mean_ms) + "," + Fmt("%.4f", r.compute_mean_ms) +
         "," + Fmt("%.4f", r.d2h_mean_ms) + "\n";
  }
  return s;
}

std::string RenderSvg(std::vector<BatchResult> results, const std::string& title) {
  std::sort(results.begin(), results.end(),
            [](const BatchResult& a, const BatchResult& b) { return a.batch < b.batch; });
  const double width = 900, height = 380;
  std::string s =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
      Fmt("%.0f", width) + "\" height=\"" + Fmt("%.0f", height) +
      "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n";
  s += "<text x=\"" + Fmt("%.0f", width / 2) + "\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">" +
       Escape(title) + "</text>\n";
  if (results.empty()) return s + "</svg>\n";
  std::vector<int64_t> batches;
  Series mean{"mean", "#1f77b4", {}}, p99{"p99", "#d62728", {}}, tput{"samples/s", "#2ca02c", {}};
  for (const BatchResult& r : results) {
    batches.push_back(r.batch);
    mean.y.push_back(r.latency.mean * 1e3);
    p99.y.push_back(r.latency.p99 * 1e3);
    tput.y.push_back(r.throughput_per_s);
  }
  s += Panel(0, 25, width / 2, height - 25, batches, {mean, p99}, "latency (ms)");
  s += Panel(width / 2, 25, width / 2, height - 25, batches, {tput}, "throughput (samples/s)");
  return s + "</svg>\n";
}

}  // namespace kiln::bench
