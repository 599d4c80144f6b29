// The gRPC front end: Triton's GRPCInferenceService (src/server/grpc_service.proto) over the repository and
// schedulers — health, metadata, config, statistics, inference (typed or raw tensors, or in shared memory),
// the repository index/load/unload and the system/CUDA shared-memory methods. Like the HTTP front end it
// only translates; kiln::Status codes map to gRPC codes.
// Built only when gRPC is found at configure time (KILN_SERVER_GRPC is then defined).
#pragma once

#include <atomic>
#include <climits>
#include <memory>
#include <string>

#include "server/model_repository.h"
#include "server/restricted_api.h"
#include "server/shared_memory.h"

namespace kiln::server {

struct GrpcOptions {
  std::string host = "0.0.0.0";
  int port = 8001;  // 0: any free port (see port())
  int max_message_bytes = INT_MAX;  // larger requests get RESOURCE_EXHAUSTED
  bool allow_model_control = false;  // --model-control-mode explicit
  RestrictedApis restricted;  // --grpc-restricted-api: methods answered only with metadata (else PERMISSION_DENIED)
};

class GrpcServer {
 public:
  GrpcServer(ModelRepository& repository, SharedMemoryManager& shared_memory, GrpcOptions options);
  ~GrpcServer();  // Stop()
  // Binds and starts serving on gRPC's threads.
  Status Start();
  // Stops accepting and waits (up to `drain_seconds`, then cancels) until every call in flight is answered.
  void Stop(int drain_seconds = 60);
  int port() const;
  // ServerReady: true once SetReady(true) and no model is loading.
  void SetReady(bool ready) { ready_ = ready; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> ready_{false};
};

}  // namespace kiln::server
