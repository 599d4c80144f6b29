// Translation between Triton's gRPC messages and the server core, shared by the unary methods
// (grpc_server.cc) and the inference stream (grpc_stream.cc): status codes, versions, inference requests
// (typed, raw or shared-memory tensors) and responses.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "server/grpc_service.grpc.pb.h"
#include "server/inference.h"
#include "server/shared_memory.h"

namespace kiln::server {

grpc::Status ToGrpc(const Status& status);

// "" -> -1 (the latest ready version); otherwise a non-negative decimal number.
Expected<int64_t> ParseVersion(const std::string& text);

struct DecodedInfer {
  InferRequest request;
  std::vector<SharedMemoryRef> output_shm;  // per requested output
};

// A ModelInferRequest as the core's request; inputs in shared memory are read from `shm` and outputs to go
// there are checked against it. The "timeout" and "priority" parameters are read.
Expected<DecodedInfer> DecodeInfer(const inference::ModelInferRequest& in, const SharedMemoryManager& shm);

// Outputs into `out` (raw_output_contents, or their shared-memory regions).
Status EncodeInfer(const InferResult& result, const std::vector<SharedMemoryRef>& output_shm,
                   const SharedMemoryManager& shm, inference::ModelInferResponse* out);

}  // namespace kiln::server
