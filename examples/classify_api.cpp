// An application using Kiln's runtime API: build an engine from an ONNX model once (or load the saved
// plan), then classify with one context per thread.
//
//   classify_api MODEL.onnx [INPUT.f32]    INPUT.f32: raw float32 pixels of the model's input shape
//
// Without an input file it classifies a synthetic gradient image. It saves MODEL.plan next to the model
// and, on the next start, loads that plan instead of building again.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "kiln/engine.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.onnx [INPUT.f32]\n", argv[0]);
    return 2;
  }
  const std::string model = argv[1];
  const std::string plan = std::filesystem::path(model).replace_extension(".plan").string();

  std::shared_ptr<kiln::Engine> engine;
  if (std::filesystem::exists(plan)) {
    auto loaded = kiln::Engine::Load(plan);
    if (loaded.ok()) {
      engine = *loaded;
      std::printf("loaded %s\n", plan.c_str());
    } else {
      std::printf("rebuilding: %s\n", loaded.status().ToString().c_str());
    }
  }
  if (!engine) {
    kiln::BuildOptions options;
    options.progress = [](const std::string& line) { std::printf("  build: %s\n", line.c_str()); };
    auto built = kiln::Engine::BuildFromOnnx(model, options);
    if (!built.ok()) {
      std::fprintf(stderr, "error: %s\n", built.status().ToString().c_str());
      return 1;
    }
    engine = *built;
    if (kiln::Status st = engine->Save(plan); !st.ok()) {
      std::fprintf(stderr, "warning: %s\n", st.ToString().c_str());
    }
  }

  const kiln::BindingInfo& in = engine->inputs().at(0);
  const kiln::BindingInfo& out = engine->outputs().at(0);
  if (in.dtype != kiln::DataType::kFloat32) {
    std::fprintf(stderr, "error: this example feeds float32 images, input '%s' is %s\n", in.name.c_str(),
                 kiln::DataTypeName(in.dtype));
    return 1;
  }
  std::vector<int64_t> dims = in.profiles.at(0).opt;  // batch 1 by default
  int64_t numel = 1;
  for (int64_t d : dims) numel *= d;
  std::vector<float> pixels(static_cast<size_t>(numel));
  if (argc > 2) {
    std::ifstream f(argv[2], std::ios::binary);
    f.read(reinterpret_cast<char*>(pixels.data()),
           static_cast<std::streamsize>(pixels.size() * sizeof(float)));
    if (f.gcount() != static_cast<std::streamsize>(pixels.size() * sizeof(float))) {
      std::fprintf(stderr, "error: %s holds fewer than %lld floats\n", argv[2],
                   static_cast<long long>(numel));
      return 1;
    }
  } else {
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(i % 256) / 255.0f - 0.5f;
  }

  // Two threads, one context each, sharing the engine's weights.
  std::vector<kiln::Status> results(2);
  std::vector<std::vector<float>> scores(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      auto ctx = engine->CreateContext();
      kiln::Status st = ctx->SetInput(in.name, pixels.data(), kiln::DataType::kFloat32, dims);
      if (st.ok()) st = ctx->RunAsync().get();
      if (st.ok()) {
        auto y = ctx->GetOutput(out.name);
        if (!y.ok()) {
          st = y.status();
        } else {
          scores[t].assign(y->data_as<float>(), y->data_as<float>() + y->numel());
        }
      }
      results[t] = st;
    });
  }
  for (auto& th : threads) th.join();
  for (const kiln::Status& st : results) {
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  const std::vector<float>& s = scores[0];
  std::vector<size_t> idx(s.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  const size_t k = std::min<size_t>(5, idx.size());
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  std::printf("top-%zu of '%s':\n", k, out.name.c_str());
  for (size_t i = 0; i < k; ++i) std::printf("  class %5zu  score %.5f\n", idx[i], s[idx[i]]);
  std::printf("both threads agree: %s\n", scores[0] == scores[1] ? "yes" : "NO");
  const kiln::MemoryInfo m = engine->memory();
  std::printf("arena %.2f MiB (naive %.2f MiB), weights %.2f MiB\n", m.arena_bytes / 1048576.0,
              m.naive_bytes / 1048576.0, m.weight_bytes / 1048576.0);
  return 0;
}
