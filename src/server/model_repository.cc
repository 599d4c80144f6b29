#include "server/model_repository.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <random>
#include <sstream>

namespace kiln::server {
namespace fs = std::filesystem;
namespace {

bool IsNumber(const std::string& s) {
  return !s.empty() && s.size() < 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The versions to serve under the config's version_policy (default: the latest one).
std::vector<int64_t> ChooseVersions(const ModelConfig& config, std::vector<int64_t> found) {
  std::sort(found.begin(), found.end(), std::greater<int64_t>());
  const auto& policy = config.version_policy();
  if (policy.has_all()) return found;
  if (policy.has_specific()) {
    std::vector<int64_t> chosen;
    for (int64_t v : policy.specific().versions()) {
      if (std::find(found.begin(), found.end(), v) != found.end()) chosen.push_back(v);
    }
    return chosen;
  }
  size_t n = policy.has_latest() && policy.latest().num_versions() > 0 ? policy.latest().num_versions() : 1;
  found.resize(std::min(n, found.size()));
  return found;
}

// Runs the config's model_warmup samples through the scheduler before the version is reported ready.
Status Warmup(const ModelConfig& config, Scheduler& scheduler, const fs::path& model_dir) {
  std::mt19937 rng(1234);
  for (const auto& sample : config.model_warmup()) {
    InferRequest request;
    for (const auto& [name, spec] : sample.inputs()) {
      Expected<DataType> dtype = FromConfigType(spec.data_type());
      if (!dtype.ok()) return dtype.status().WithContext("model_warmup '" + sample.name() + "'");
      std::vector<int64_t> dims(spec.dims().begin(), spec.dims().end());
      if (config.max_batch_size() > 0) dims.insert(dims.begin(), std::max<int64_t>(1, sample.batch_size()));
      HostTensor tensor(*dtype, dims);
      if (spec.random_data()) {
        auto* bytes = static_cast<unsigned char*>(tensor.data());
        // Small floats stay finite: random bytes for integers, values in [0, 1) for FP32.
        if (*dtype == DataType::kFloat32) {
          std::uniform_real_distribution<float> u(0.f, 1.f);
          for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data_as<float>()[i] = u(rng);
        } else {
          for (size_t i = 0; i < tensor.nbytes(); ++i) bytes[i] = static_cast<unsigned char>(rng() % 2);
        }
      } else if (!spec.input_data_file().empty()) {
        std::ifstream in(model_dir / "warmup" / spec.input_data_file(), std::ios::binary);
        in.read(static_cast<char*>(tensor.data()), static_cast<std::streamsize>(tensor.nbytes()));
        if (!in) return InvalidArgument("model_warmup '" + sample.name() + "': cannot read enough bytes from warmup/" +
                                        spec.input_data_file());
      }
      request.inputs.push_back({name, tensor});
    }
    for (uint32_t i = 0; i < std::max<uint32_t>(1, sample.count()); ++i) {
      std::promise<InferResult> promise;
      std::future<InferResult> result = promise.get_future();
      scheduler.Enqueue(request, [&promise](InferResult r) { promise.set_value(std::move(r)); });
      Status status = result.get().status;
      if (!status.ok()) return status.WithContext("model_warmup '" + sample.name() + "'");
    }
  }
  return Status::Ok();
}

}  // namespace

Expected<std::shared_ptr<Engine>> LoadEngine(const std::string& version_dir, const ModelConfig& config) {
  const fs::path dir(version_dir);
  std::error_code ec;
  const std::string& named = config.default_model_filename();
  if (!named.empty() && fs::path(named).extension() != ".onnx") return Engine::Load((dir / named).string());
  if (named.empty() && fs::exists(dir / "model.plan", ec)) return Engine::Load((dir / "model.plan").string());
  const fs::path onnx = dir / (named.empty() ? "model.onnx" : named);
  if (!fs::exists(onnx, ec)) return NotFound("no model.plan or model.onnx in " + version_dir);
  KILN_ASSIGN_OR_RETURN(BuildOptions options, BuildOptionsFor(config));
  // The cached plan's name carries what the build depends on, so a config change rebuilds.
  std::string key = std::to_string(config.max_batch_size()) + ":" + std::to_string(static_cast<int>(options.device)) +
                    ":" + PrecisionName(options.precision);
  for (const auto& in : config.input()) {
    key += in.name();
    for (int64_t d : in.dims()) key += "," + std::to_string(d);
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016zx", std::hash<std::string>()(key));
  const fs::path cache = dir / ("." + onnx.filename().string() + "." + hex + ".kiln.plan");
  if (fs::exists(cache, ec) && fs::last_write_time(cache, ec) >= fs::last_write_time(onnx, ec)) {
    Expected<std::shared_ptr<Engine>> cached = Engine::Load(cache.string());
    if (cached.ok()) return cached;
  }
  Expected<std::shared_ptr<Engine>> engine = Engine::BuildFromOnnx(onnx.string(), options);
  if (!engine.ok()) return engine;
  // Without dims in the config the batch profile is known only now: rebuild when the default range is short.
  if (config.max_batch_size() > 0 && options.profiles.empty()) {
    OptimizationProfile profile;
    for (const BindingInfo& b : (*engine)->inputs()) {
      if (b.dims.empty() || b.dims[0] != -1 || b.profiles.empty()) continue;
      if (b.profiles[0].max[0] >= config.max_batch_size()) continue;
      if (std::any_of(b.dims.begin() + 1, b.dims.end(), [](int64_t d) { return d < 0; })) continue;
      InputProfile range{b.dims, b.dims, b.dims};
      range.min[0] = 1;
      range.opt[0] = range.max[0] = config.max_batch_size();
      profile.inputs[b.name] = range;
    }
    if (!profile.inputs.empty()) {
      options.profiles.push_back(profile);
      engine = Engine::BuildFromOnnx(onnx.string(), options);
      if (!engine.ok()) return engine;
    }
  }
  (void)(*engine)->Save(cache.string());  // a read-only repository only loses the cache
  return engine;
}

ModelRepository::ModelRepository(std::string root) : root_(std::move(root)) {}

ModelRepository::~ModelRepository() { UnloadAll(); }

std::vector<std::string> ModelRepository::ScanNames() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory(ec) && !name.empty() && name[0] != '.') names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ModelRepository::Fingerprint(const std::string& name) const {
  std::ostringstream out;
  std::error_code ec;
  std::vector<std::string> rows;
  for (auto it = fs::recursive_directory_iterator(fs::path(root_) / name, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string file = it->path().filename().string();
    if (!file.empty() && file[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    rows.push_back(it->path().string() + ":" + std::to_string(it->file_size(ec)) + ":" +
                   std::to_string(it->last_write_time(ec).time_since_epoch().count()));
  }
  std::sort(rows.begin(), rows.end());
  for (const std::string& r : rows) out << r << "\n";
  return out.str();
}

Expected<std::map<int64_t, std::shared_ptr<ModelVersion>>> ModelRepository::LoadFromDisk(const std::string& name) {
  const fs::path dir = fs::path(root_) / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("no model directory " + dir.string());
  const fs::path config_path = dir / "config.pbtxt";
  const bool has_config = fs::exists(config_path, ec);
  ModelConfig base;
  if (has_config) {
    KILN_ASSIGN_OR_RETURN(base, ReadModelConfig(config_path.string()));
  }
  if (base.name().empty()) base.set_name(name);
  if (base.name() != name) {
    return InvalidArgument("config.pbtxt names the model '" + base.name() + "' but its directory is '" + name + "'");
  }
  static const char* kPlatforms[] = {"", "kiln", "kiln_plan", "onnxruntime_onnx", "onnxruntime", "tensorrt_plan",
                                     "tensorrt"};
  for (const std::string& p : {base.platform(), base.backend()}) {
    if (std::find(std::begin(kPlatforms), std::end(kPlatforms), p) == std::end(kPlatforms)) {
      return Unsupported("platform/backend '" + p + "' is not served by Kiln");
    }
  }
  std::vector<int64_t> found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string v = e.path().filename().string();
    if (e.is_directory(ec) && IsNumber(v)) found.push_back(std::stoll(v));
  }
  const std::vector<int64_t> chosen = ChooseVersions(base, found);
  if (chosen.empty()) {
    return NotFound("no version directory (1/, 2/, ...) matching the version_policy in " + dir.string());
  }
  std::map<int64_t, std::shared_ptr<ModelVersion>> versions;
  for (int64_t v : chosen) {
    const std::string what = "version " + std::to_string(v);
    Expected<std::shared_ptr<Engine>> engine = LoadEngine((dir / std::to_string(v)).string(), base);
    if (!engine.ok()) return engine.status().WithContext(what);
    auto config = std::make_shared<ModelConfig>(base);
    Status status = CompleteConfig(**engine, !has_config, config.get());
    if (!status.ok()) return status.WithContext(has_config ? "config.pbtxt" : "inferred config");
    auto mv = std::make_shared<ModelVersion>();
    mv->model = name;
    mv->version = v;
    mv->config = config;
    mv->engine = *engine;
    mv->stats = std::make_shared<ModelStats>();
    Expected<std::unique_ptr<Scheduler>> scheduler =
        Scheduler::Create(mv->engine, *config, mv->stats, InstanceDevices(*config));
    if (!scheduler.ok()) return scheduler.status().WithContext(what);
    mv->scheduler = std::move(*scheduler);
    status = Warmup(*config, *mv->scheduler, dir);
    if (!status.ok()) return status.WithContext(what);
    mv->stats->Reset();
    versions[v] = mv;
  }
  return versions;
}

void ModelRepository::Replace(const std::string& name, Entry entry) {
  std::map<int64_t, std::shared_ptr<ModelVersion>> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& slot = models_[name];
    old.swap(slot.versions);
    slot = std::move(entry);
  }
  // Outside the lock: draining may take a while; requests already holding a version finish on it.
  for (auto& [v, mv] : old) mv->scheduler->Stop();
}

Status ModelRepository::Load(const std::string& name) {
  std::lock_guard<std::mutex> serial(load_mu_);
  const std::string fingerprint = Fingerprint(name);
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = models_[name];
    if (e.versions.empty()) e.state = "LOADING";
  }
  Expected<std::map<int64_t, std::shared_ptr<ModelVersion>>> versions = LoadFromDisk(name);
  Entry entry;
  entry.fingerprint = fingerprint;
  if (!versions.ok()) {
    entry.reason = versions.status().message();
    Replace(name, std::move(entry));
    return versions.status().WithContext("model '" + name + "'");
  }
  entry.state = "READY";
  entry.versions = std::move(*versions);
  Replace(name, std::move(entry));
  return Status::Ok();
}

Status ModelRepository::Unload(const std::string& name) {
  std::lock_guard<std::mutex> serial(load_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (models_.find(name) == models_.end()) return NotFound("unknown model '" + name + "'");
  }
  Entry entry;
  entry.reason = "unloaded";
  Replace(name, std::move(entry));
  return Status::Ok();
}

void ModelRepository::LoadAll() {
  for (const std::string& name : ScanNames()) (void)Load(name);
}

void ModelRepository::Poll() {
  const std::vector<std::string> names = ScanNames();
  std::map<std::string, std::string> fingerprints;  // read before locking: lookups need not wait on the disk
  for (const std::string& name : names) fingerprints[name] = Fingerprint(name);
  std::vector<std::string> gone, changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, entry] : models_) {
      if (fingerprints.count(name) == 0) gone.push_back(name);
    }
    for (const auto& [name, fingerprint] : fingerprints) {
      auto it = models_.find(name);
      if (it == models_.end() || it->second.fingerprint != fingerprint) changed.push_back(name);
    }
  }
  for (const std::string& name : gone) {
    (void)Unload(name);
    std::lock_guard<std::mutex> lock(mu_);
    models_.erase(name);
  }
  for (const std::string& name : changed) (void)Load(name);
}

void ModelRepository::UnloadAll() {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, entry] : models_) names.push_back(name);
  }
  for (const std::string& name : names) (void)Unload(name);
}

std::vector<ModelIndexEntry> ModelRepository::Index() const {
  std::vector<ModelIndexEntry> rows;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, entry] : models_) {
    if (entry.versions.empty()) {
      rows.push_back({name, "", entry.state, entry.reason});
      continue;
    }
    for (const auto& [v, mv] : entry.versions) rows.push_back({name, std::to_string(v), entry.state, entry.reason});
  }
  return rows;
}

Expected<std::shared_ptr<ModelVersion>> ModelRepository::Find(const std::string& name, int64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) return NotFound("unknown model '" + name + "'");
  const Entry& e = it->second;
  if (e.versions.empty()) {
    return Unavailable("model '" + name + "' is not ready" + (e.reason.empty() ? "" : ": " + e.reason));
  }
  if (version < 0) return e.versions.rbegin()->second;
  auto v = e.versions.find(version);
  if (v == e.versions.end()) return NotFound("model '" + name + "' has no version " + std::to_string(version));
  return v->second;
}

std::vector<std::shared_ptr<ModelVersion>> ModelRepository::Ready() const {
  std::vector<std::shared_ptr<ModelVersion>> all;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, entry] : models_) {
    for (const auto& [v, mv] : entry.versions) all.push_back(mv);
  }
  return all;
}

bool ModelRepository::AllReady() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::none_of(models_.begin(), models_.end(), [](const auto& kv) { return kv.second.state == "LOADING"; });
}

}  // namespace kiln::server
