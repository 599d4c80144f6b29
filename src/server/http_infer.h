// KServe v2 inference requests and responses over HTTP: JSON tensors and Triton's binary tensor extension
// (a JSON header of Inference-Header-Content-Length bytes followed by the raw tensors, each sized by its
// binary_data_size parameter). Translation only: the checks against the model are the scheduler's.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "server/inference.h"
#include "server/kserve_types.h"
#include "server/shared_memory.h"

namespace kiln::server {

struct HttpInferRequest {
  InferRequest request;
  std::string id;
  // Per requested output (request.outputs order) or, when none is named, for all: whether it goes binary.
  std::vector<bool> binary;
  bool binary_default = false;
  // Per requested output: where it goes in shared memory (unused: in the response).
  std::vector<SharedMemoryRef> shared_memory;
};

// `body` is the whole request body; `header_length` the Inference-Header-Content-Length (0: all JSON).
// Inputs in shared memory are read from `shm`; outputs to go there are checked against it.
Expected<HttpInferRequest> DecodeInferRequest(const std::string& body, size_t header_length,
                                              const SharedMemoryManager& shm);

struct HttpBody {
  std::string content;
  std::string content_type;
  size_t header_length = 0;  // > 0: send Inference-Header-Content-Length
};
// Writes the outputs asked for in shared memory into their regions (an error when one does not fit).
Expected<HttpBody> EncodeInferResponse(const HttpInferRequest& request, const InferResult& result,
                                       const std::string& model, const std::string& version,
                                       const SharedMemoryManager& shm);

// Values of a (nested) JSON array into a tensor of `dtype` with `dims`; checks the element count.
Expected<HostTensor> TensorFromJson(const nlohmann::json& data, DataType dtype, const std::vector<int64_t>& dims,
                                    const std::string& name);
// A tensor's values as a flat JSON array.
nlohmann::json TensorToJson(const HostTensor& tensor);

}  // namespace kiln::server
