// kiln classify: ImageNet-style image classification with any model taking f32[N,3,H,W] and giving
// class scores [N,classes]. Prints the top-k classes per image and, when the true class is known (from
// labels.csv or the file name), the top-1/top-5 accuracy.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli_common.h"
#include "kiln/engine.h"
#include "runtime/engine_impl.h"
#include "commands.h"
#include "image_io.h"
#include "runtime/reference_executor.h"

namespace kiln::cli {
namespace {

struct ClassifyOptions {
  std::string model;
  std::vector<std::string> images;
  std::string labels;
  int top = 5;
  int batch = 8;
  std::string device = "cpu";
};

// Class names, and what tells an image's true class: its file name or the synset id it starts with.
struct Labels {
  std::vector<std::string> names;  // by class index
  std::map<std::string, int> by_file;
  std::map<std::string, int> by_synset;

  std::string Name(int index) const {
    return index >= 0 && index < static_cast<int>(names.size()) && !names[index].empty() ? names[index] : "";
  }
  std::optional<int> TrueClass(const std::string& path) const {
    const std::string file = std::filesystem::path(path).filename().string();
    if (auto it = by_file.find(file); it != by_file.end()) return it->second;
    // ImageNet file names start with the synset id: n01440764_tench.JPEG, n01440764_10026.JPEG.
    const std::string synset = file.substr(0, file.find_first_of("_."));
    if (auto it = by_synset.find(synset); it != by_synset.end()) return it->second;
    return std::nullopt;
  }
};

std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.push_back(field);
      field.clear();
    } else if (c != '\r') {
      field += c;
    }
  }
  fields.push_back(field);
  return fields;
}

// Reads either a CSV with a header naming `index` and some of `name`, `synset`, `file` (the layout of
// ../shared/data/imagenet-sample/labels.csv), or a plain list with one class name per line.
Expected<Labels> ReadLabels(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open labels file '" + path + "'");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  Labels labels;
  if (lines.empty()) return InvalidArgument("labels file '" + path + "' is empty");
  const std::vector<std::string> header = SplitCsvLine(lines[0]);
  auto column = [&](const std::string& name) -> int {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : static_cast<int>(it - header.begin());
  };
  const int index_col = column("index");
  if (index_col < 0) {
    labels.names = lines;
    return labels;
  }
  const int name_col = column("name"), synset_col = column("synset"), file_col = column("file");
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const std::vector<std::string> f = SplitCsvLine(lines[i]);
    auto get = [&](int col) { return col >= 0 && col < static_cast<int>(f.size()) ? f[col] : std::string(); };
    char* end = nullptr;
    const std::string index_text = get(index_col);
    const long index = std::strtol(index_text.c_str(), &end, 10);
    if (index_text.empty() || *end != '\0' || index < 0 || index > 1000000) {
      return InvalidArgument("labels file '" + path + "' line " + std::to_string(i + 1) + ": bad index '" +
                             index_text + "'");
    }
    if (static_cast<size_t>(index) >= labels.names.size()) labels.names.resize(index + 1);
    labels.names[index] = name_col >= 0 ? get(name_col) : get(synset_col);
    if (!get(file_col).empty()) labels.by_file[get(file_col)] = static_cast<int>(index);
    if (!get(synset_col).empty()) labels.by_synset[get(synset_col)] = static_cast<int>(index);
  }
  return labels;
}

// Expands directories into the images they hold (sorted); files are kept as given, whatever their name.
Expected<std::vector<std::string>> ExpandImagePaths(const std::vector<std::string>& args) {
  std::vector<std::string> paths;
  for (const std::string& arg : args) {
    std::error_code ec;
    if (!std::filesystem::is_directory(arg, ec)) {
      paths.push_back(arg);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator(arg, ec)) {
      if (entry.is_regular_file(ec) && HasImageExtension(entry.path().string())) {
        found.push_back(entry.path().string());
      }
    }
    if (ec) return NotFound("cannot list directory '" + arg + "': " + ec.message());
    if (found.empty()) return NotFound("directory '" + arg + "' holds no .jpg, .jpeg or .png image");
    std::sort(found.begin(), found.end());
    paths.insert(paths.end(), found.begin(), found.end());
  }
  return paths;
}

// What the model expects: one f32 input [N,3,H,W] and one output of class scores.
struct ModelSpec {
  std::string input;
  std::string output;
  PreprocessOptions preprocess;
  std::optional<int64_t> static_batch;  // set when the batch dim is fixed
};

Expected<ModelSpec> InspectModel(const Model& model) {
  const std::vector<const Value*> inputs = RuntimeInputs(model.graph);
  if (inputs.size() != 1) {
    return InvalidArgument(model.source + ": classify needs a model with one input, this one has " +
                           std::to_string(inputs.size()));
  }
  const Value& in = *inputs[0];
  const std::string expected = "expected f32[N,3,H,W]";
  if (in.dtype() != DType::kFloat32 || !in.shape() || in.shape()->rank() != 4) {
    return InvalidArgument(model.source + ": input '" + in.name() + "' is " + in.TypeString() + ", " +
                           expected);
  }
  const Shape& s = *in.shape();
  if (s[1].is_static() && s[1].value() != 3) {
    return InvalidArgument(model.source + ": input '" + in.name() + "' is " + in.TypeString() + ", " +
                           expected);
  }
  if (model.graph.outputs().empty()) return InvalidArgument(model.source + ": the model has no output");
  ModelSpec spec;
  spec.input = in.name();
  spec.output = model.graph.outputs()[0]->name();
  if (s[2].is_static() || s[3].is_static()) {
    const int64_t h = s[2].is_static() ? s[2].value() : s[3].value();
    const int64_t w = s[3].is_static() ? s[3].value() : h;
    if (h != w || h < 8 || h > 4096) {
      return InvalidArgument(model.source + ": input '" + in.name() + "' is " + in.TypeString() +
                             ": classify needs a square image size between 8 and 4096");
    }
    spec.preprocess.crop = static_cast<int>(h);
    spec.preprocess.resize_shorter = static_cast<int>(std::lround(h * 256.0 / 224.0));
  }
  if (s[0].is_static()) spec.static_batch = s[0].value();
  if (spec.static_batch && (*spec.static_batch < 1 || *spec.static_batch > 256)) {
    return InvalidArgument(model.source + ": input '" + in.name() + "' has a fixed batch size of " +
                           std::to_string(*spec.static_batch) + "; classify handles 1 to 256");
  }
  return spec;
}

struct Tally {
  int known = 0, top1 = 0, top5 = 0, failed = 0;
};

void PrintPrediction(const std::string& path, const float* scores, int64_t classes, const Labels* labels,
                     int top, Tally& tally) {
  std::vector<double> prob(classes);
  const float max_score = *std::max_element(scores, scores + classes);
  double sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += prob[c] = std::exp(static_cast<double>(scores[c]) - max_score);
  for (double& p : prob) {
    p /= sum;
    if (std::isnan(p)) p = 0;  // NaN scores (a broken model) would break the ordering below
  }
  std::vector<int> order(classes);
  std::iota(order.begin(), order.end(), 0);
  const int k = static_cast<int>(std::min<int64_t>(std::max(top, 5), classes));
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return prob[a] > prob[b] || (prob[a] == prob[b] && a < b); });

  const std::optional<int> truth = labels ? labels->TrueClass(path) : std::nullopt;
  std::string heading = path;
  if (truth) heading += "  (true class " + std::to_string(*truth) + " " + labels->Name(*truth) + ")";
  std::printf("%s\n", heading.c_str());
  for (int r = 0; r < std::min<int64_t>(top, classes); ++r) {
    const int c = order[r];
    char line[64];
    std::snprintf(line, sizeof(line), "  %d. %.4f  %4d", r + 1, prob[c], c);
    std::string text = line;
    if (labels && !labels->Name(c).empty()) text += "  " + labels->Name(c);
    if (truth && c == *truth) text += "  <- true";
    std::printf("%s\n", text.c_str());
  }
  if (truth) {
    const bool in1 = order[0] == *truth;
    const bool in5 =
        std::find(order.begin(), order.begin() + std::min(k, 5), *truth) != order.begin() + std::min(k, 5);
    ++tally.known;
    tally.top1 += in1;
    tally.top5 += in5;
    std::printf("  top-1 %s, top-5 %s\n", in1 ? "correct" : "wrong", in5 ? "correct" : "wrong");
  }
}

int RunClassify(const ClassifyOptions& opt) {
  std::optional<Labels> labels;
  if (!opt.labels.empty()) {
    auto read = ReadLabels(opt.labels);
    if (!read.ok()) return Fail(read.status());
    labels = std::move(read).value();
  }
  auto paths = ExpandImagePaths(opt.images);
  if (!paths.ok()) return Fail(paths.status());
  for (const std::string& p : *paths) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) return Fail(p + ": no such file");
  }
  auto model = LoadModel(opt.model);
  if (!model.ok()) return Fail(model.status());
  auto spec = InspectModel(*model);
  if (!spec.ok()) return Fail(spec.status());
  const DeviceKind device = ChooseDevice(opt.device);

  const int64_t batch = spec->static_batch ? *spec->static_batch : std::max(1, opt.batch);
  const int64_t crop = spec->preprocess.crop;
  // One engine (optimizer, tactics, arena) for batches of 1..batch images.
  BuildOptions build;
  build.device = device == DeviceKind::kCuda ? DeviceType::kCuda : DeviceType::kCpu;
  if (!spec->static_batch) {
    OptimizationProfile profile;
    profile.inputs[spec->input] = InputProfile{{1, 3, crop, crop}, {batch, 3, crop, crop}, {batch, 3, crop, crop}};
    build.profiles.push_back(std::move(profile));
  }
  auto engine = Engine::BuildFromOnnx(opt.model, build);
  if (!engine.ok()) return Fail(engine.status());
  auto ctx = (*engine)->CreateContext();
  if (!ctx) return Fail("out of memory creating an execution context");
  const int64_t image_floats = 3 * crop * crop;
  Tally tally;
  double run_seconds = 0;
  int runs = 0;
  for (size_t begin = 0; begin < paths->size();) {
    // Decode up to `batch` images; one that cannot be read is reported and skipped.
    std::vector<std::string> names;
    std::vector<float> data;
    for (; begin < paths->size() && static_cast<int64_t>(names.size()) < batch; ++begin) {
      const std::string& path = (*paths)[begin];
      auto image = DecodeImageFile(path);
      std::vector<float> pixels(image_floats);
      Status st = image.ok() ? PreprocessImageNet(*image, spec->preprocess, pixels.data()) : image.status();
      if (!st.ok()) {
        Fail(st.message().rfind(path, 0) == 0 ? st.message() : path + ": " + st.message());
        ++tally.failed;
        continue;
      }
      if (!image->warning.empty())
        Note(path + ": damaged image, decoded what was readable (" + image->warning + ")");
      names.push_back(path);
      data.insert(data.end(), pixels.begin(), pixels.end());
    }
    if (names.empty()) continue;
    const int64_t n = spec->static_batch ? batch : static_cast<int64_t>(names.size());
    data.resize(n * image_floats, 0.f);  // a fixed batch is padded with zero images
    Tensor input(DType::kFloat32, {n, 3, crop, crop});
    std::copy(data.begin(), data.end(), input.data<float>());
    const auto start = std::chrono::steady_clock::now();
    Status st = ctx->SetInput(spec->input, input.raw_data(), DataType::kFloat32, input.sizes());
    if (st.ok()) st = ctx->Run();
    run_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++runs;
    if (!st.ok()) return Fail(st.WithContext(opt.model));
    auto out = ctx->GetOutput(spec->output);
    if (!out.ok()) return Fail(out.status().WithContext(opt.model));
    const Tensor raw = ToTensor(*out);
    Tensor scores = raw.dtype() == DType::kFloat32 ? raw : raw.CastTo(DType::kFloat32);
    if (scores.rank() < 1 || scores.size(0) != n || scores.numel() % n != 0 || scores.numel() == 0) {
      return Fail(opt.model + ": output '" + spec->output + "' is " + scores.Description() +
                  ", expected class scores [" + std::to_string(n) + ",classes]");
    }
    const int64_t classes = scores.numel() / n;
    for (size_t i = 0; i < names.size(); ++i) {
      PrintPrediction(names[i], scores.data<float>() + i * classes, classes, labels ? &*labels : nullptr,
                      opt.top, tally);
    }
  }
  const int classified = static_cast<int>(paths->size()) - tally.failed;
  std::printf("classified %d image%s in %d run%s (%zu layers; %s), %s\n", classified, classified == 1 ? "" : "s",
              runs, runs == 1 ? "" : "s", (*engine)->layers().size(), (*engine)->target_description().c_str(),
              FormatDuration(run_seconds).c_str());
  if (tally.known > 0) {
    std::printf("accuracy over %d labelled image%s: top-1 %d/%d (%.1f%%), top-5 %d/%d (%.1f%%)\n",
                tally.known, tally.known == 1 ? "" : "s", tally.top1, tally.known,
                100.0 * tally.top1 / tally.known, tally.top5, tally.known, 100.0 * tally.top5 / tally.known);
  }
  if (tally.failed > 0) {
    return Fail(std::to_string(tally.failed) + " image" + (tally.failed == 1 ? "" : "s") +
                " could not be read");
  }
  return kExitOk;
}

}  // namespace

void AddClassifyCommand(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<ClassifyOptions>();
  CLI::App* cmd = app.add_subcommand("classify", "Classify images (JPEG/PNG) with an ImageNet-style model");
  cmd->add_option("model", opt->model, "The ONNX model: input f32[N,3,H,W], output class scores")->required();
  cmd->add_option("images", opt->images, "Image files or directories of images")->required();
  cmd->add_option("-l,--labels", opt->labels,
                  "Class names: CSV with index,synset,name,file columns, or one "
                  "name per line");
  cmd->add_option("-k,--top", opt->top, "How many classes to show per image")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("-b,--batch", opt->batch, "Images per run when the model's batch size is dynamic")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--device", opt->device, "Where to run")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->callback([opt, &exit_code] { exit_code = RunClassify(*opt); });
}

}  // namespace kiln::cli
