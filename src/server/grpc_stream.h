// ModelStreamInfer: Triton's bidirectional inference stream (tritonclient.grpc's start_stream /
// async_stream_infer). Each request read from the stream is queued as ModelInfer's are; its response, or
// its error in error_message, is written when its scheduler finishes it, in completion order. The stream
// ends once the client has closed its side and every request is answered.
#pragma once

#include <grpcpp/grpcpp.h>

#include "server/grpc_service.grpc.pb.h"
#include "server/model_repository.h"
#include "server/shared_memory.h"

namespace kiln::server {

// A reactor for one stream (it deletes itself when done). A non-OK `refused` ends the stream at once with it.
grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>* StartInferStream(
    ModelRepository& repository, SharedMemoryManager& shared_memory, grpc::Status refused);

}  // namespace kiln::server
