// The model repository in Triton's layout: <root>/<model>/config.pbtxt and <root>/<model>/<version>/model.plan
// or model.onnx (built into an engine at load, the plan cached beside it as .model.onnx.kiln.plan).
//
// A model that fails to load is kept in the index as UNAVAILABLE with the reason; the others serve. Loading
// and unloading are serialized; lookups are not blocked by a load. A version being replaced or unloaded
// finishes its queued requests first (its scheduler drains).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "server/model_config.h"
#include "server/scheduler.h"
#include "server/stats.h"

namespace kiln::server {

struct ModelVersion {
  std::string model;
  int64_t version = 0;
  std::shared_ptr<const ModelConfig> config;
  std::shared_ptr<const Engine> engine;
  std::shared_ptr<ModelStats> stats;
  std::unique_ptr<Scheduler> scheduler;
};

// One row of the repository index.
struct ModelIndexEntry {
  std::string name;
  std::string version;  // "" when the model has no ready version
  std::string state;    // "READY", "UNAVAILABLE", "LOADING"
  std::string reason;
};

class ModelRepository {
 public:
  explicit ModelRepository(std::string root);
  ~ModelRepository();  // UnloadAll()

  // Names of the model directories under the root.
  std::vector<std::string> ScanNames() const;
  // (Re)loads a model from disk. On failure the model is recorded UNAVAILABLE (a loaded older copy is
  // unloaded) and the error returned.
  Status Load(const std::string& name);
  Status Unload(const std::string& name);
  // Loads every model found (errors are recorded, not returned).
  void LoadAll();
  // Picks up changes on disk: loads new and changed models, unloads removed ones.
  void Poll();
  void UnloadAll();

  std::vector<ModelIndexEntry> Index() const;
  // A ready version: `version` -1 is the highest loaded. NotFound (unknown model or version) or Unavailable.
  Expected<std::shared_ptr<ModelVersion>> Find(const std::string& name, int64_t version = -1) const;
  // Every ready version (for metrics).
  std::vector<std::shared_ptr<ModelVersion>> Ready() const;
  // True when no model is loading (a model that failed to load does not hold the server back).
  bool AllReady() const;
  const std::string& root() const { return root_; }

 private:
  struct Entry {
    std::string state = "UNAVAILABLE";
    std::string reason;
    std::string fingerprint;  // of the files on disk when last loaded
    std::map<int64_t, std::shared_ptr<ModelVersion>> versions;
  };
  Expected<std::map<int64_t, std::shared_ptr<ModelVersion>>> LoadFromDisk(const std::string& name);
  std::string Fingerprint(const std::string& name) const;
  void Replace(const std::string& name, Entry entry);

  std::string root_;
  mutable std::mutex mu_;       // guards models_
  std::mutex load_mu_;          // serializes loads and unloads
  std::map<std::string, Entry> models_;
};

// Builds or loads the engine of one version directory (exposed for tests and tools).
Expected<std::shared_ptr<Engine>> LoadEngine(const std::string& version_dir, const ModelConfig& config);

}  // namespace kiln::server
