// A model's configuration: Triton's config.pbtxt (the subset in model_config.proto), parsed, completed from
// the engine where it leaves things out, and checked against the engine.
#pragma once

#include <string>
#include <vector>

#include "kiln/engine.h"
#include "kiln/status.h"
#include "server/model_config.pb.h"

namespace kiln::server {

using config::ModelConfig;

// TYPE_FP32 <-> kiln::DataType. TYPE_STRING and TYPE_INVALID have no Kiln type.
Expected<DataType> FromConfigType(config::DataType type);
config::DataType ToConfigType(DataType type);
// "TYPE_FP32"
std::string ConfigTypeName(config::DataType type);

// Parses protobuf text; errors carry `what` (the file) with line and column.
Expected<ModelConfig> ParseModelConfig(const std::string& text, const std::string& what);
Expected<ModelConfig> ReadModelConfig(const std::string& path);

// The precision the config asks ONNX builds for: Triton's optimization { execution_accelerators {
// gpu_execution_accelerator [{ name: "tensorrt" (or "kiln") parameters { key: "precision_mode" value: "FP16" }
// }] } } or Kiln's parameters { key: "precision" value { string_value: "fp16" } }; FP32 when neither.
// InvalidArgument for an accelerator, parameter or precision Kiln does not know, or two that disagree.
Expected<Precision> RequestedPrecision(const ModelConfig& config);

// Build options for an ONNX model under `config`: the requested precision, the device of its instances
// and, when it batches, a profile with batch 1..max_batch_size for every input whose other dims are known.
Expected<BuildOptions> BuildOptionsFor(const ModelConfig& config);

// Fills what `config` leaves out from the engine's bindings (inputs, outputs and, when `inferred` — no
// config.pbtxt —, max_batch_size from a dynamic leading dim), then checks that the config and the engine
// agree (names, dtypes, dims, batch range) and that the scheduling settings are valid.
Status CompleteConfig(const Engine& engine, bool inferred, ModelConfig* config);

// The devices of the model's instances, one entry per instance (-1: CPU). At least one.
std::vector<int> InstanceDevices(const ModelConfig& config);

}  // namespace kiln::server
