// ONNX → Graph IR. Nothing downstream of the importer reads protobuf.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// Opsets of the default ONNX domain that Kiln imports.
inline constexpr int kMinOnnxOpset = 7;
inline constexpr int kMaxOnnxOpset = 21;

struct ImportOptions {
  // Directory that external-data locations are relative to. Empty: the model file's directory.
  std::string external_data_dir;
  // Models (the protobuf itself, not external data) larger than this are refused before parsing:
  // protobuf cannot parse messages of 2 GiB or more. Weights past that size must be external data.
  uint64_t max_model_bytes = (uint64_t{2} << 30) - 1;
  // Run op validation and shape inference after import (off only for tests of the importer itself).
  bool validate = true;
};

struct Model {
  Graph graph;
  int64_t ir_version = 0;
  int opset = 0;  // default-domain opset
  std::string producer;  // "pytorch 2.1"
  std::string source;    // the file it came from, for messages
};

// Imports a model file. Every error names the model; node errors name the node. Unsupported operators are
// all listed in one error. Never crashes on malformed input.
Expected<Model> ImportOnnxFile(const std::string& path, const ImportOptions& options = {});
// Imports serialized ModelProto bytes; `label` names the model in errors.
Expected<Model> ImportOnnxBytes(const std::string& bytes, const std::string& label,
                                const ImportOptions& options = {});
// Parses a serialized TensorProto (the input_N.pb / output_N.pb files of ONNX's backend tests).
// `external_data_dir` resolves external data, if any.
Expected<Tensor> ParseOnnxTensor(const std::string& bytes, const std::string& label,
                                 const std::string& external_data_dir = "");

}  // namespace kiln
