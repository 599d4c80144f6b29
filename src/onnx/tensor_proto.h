// onnx::TensorProto → Tensor: every storage encoding (raw_data, the typed repeated fields, external data).
#pragma once

#include <onnx/onnx_pb.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "kiln/status.h"

namespace kiln {

std::optional<DType> OnnxDTypeToKiln(int32_t elem_type);
std::string OnnxDTypeName(int32_t elem_type);

// The external-data files of one model, resolved against one directory. Locations must be relative paths
// that stay inside it. Each file is memory-mapped once (copy-on-write) and shared by the tensors that live
// in it, so large weights are not copied.
class ExternalDataFiles {
 public:
  explicit ExternalDataFiles(std::string base_dir) : base_dir_(std::move(base_dir)) {}
  const std::string& base_dir() const { return base_dir_; }

  // The `nbytes` bytes of `tp`'s external data as a tensor of `dtype` and `sizes`.
  Expected<Tensor> Read(const onnx::TensorProto& tp, DType dtype, const std::vector<int64_t>& sizes,
                        size_t nbytes);

 private:
  struct Mapping;
  Expected<std::shared_ptr<Mapping>> Map(const std::string& path);

  std::string base_dir_;
  std::map<std::string, std::shared_ptr<Mapping>> mapped_;
};

// Converts a TensorProto. `external` resolves external data; null refuses it. The data size must match the
// dims exactly; nothing is allocated before the data is known to be there.
Expected<Tensor> TensorFromProto(const onnx::TensorProto& tp, ExternalDataFiles* external);

}  // namespace kiln
