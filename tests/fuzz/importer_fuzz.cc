// libFuzzer target: arbitrary bytes as a serialized ModelProto and as a TensorProto. Build and run as
// described in tests/fuzz/CMakeLists.txt. Every input must give a model or an error, never a crash, a hang, a
// sanitizer report or an allocation far beyond the input's size.
#include <cstddef>
#include <cstdint>
#include <string>

#include "onnx/importer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // Validation on: the op schemas' checks and shape functions see the fuzzed graphs too. No
  // external_data_dir, so external data is refused rather than read from the working directory.
  kiln::ImportOptions options;
  auto model = kiln::ImportOnnxBytes(bytes, "fuzz", options);
  if (model.ok()) (void)kiln::PrintGraph(model->graph);
  (void)kiln::ParseOnnxTensor(bytes, "fuzz");
  return 0;
}
