// JSON documents of the KServe v2 HTTP API other than inference: model metadata, config, statistics.
#pragma once

#include <nlohmann/json.hpp>
#include <memory>
#include <vector>

#include "server/model_repository.h"

namespace kiln::server {

nlohmann::json ModelMetadataJson(const ModelVersion& version, const std::vector<std::string>& versions);
// The config as Triton prints it: protobuf JSON with field names kept and dims as numbers.
nlohmann::json ModelConfigJson(const ModelConfig& config);
// Triton's statistics extension: {"model_stats": [...]}.
nlohmann::json ModelStatsJson(const std::vector<std::shared_ptr<ModelVersion>>& versions);

}  // namespace kiln::server
