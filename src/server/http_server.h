// The HTTP front end: KServe v2 (health, metadata, config, ready, infer with JSON and binary tensors,
// statistics, repository index/load/unload, system and CUDA shared memory), TF-Serving-style /v1 predict
// and status, and a separate metrics listener serving /metrics. It only translates between HTTP and the
// repository, schedulers and shared-memory regions.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "server/model_repository.h"
#include "server/restricted_api.h"
#include "server/shared_memory.h"

namespace kiln::server {

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8000;          // 0: any free port (see port())
  int metrics_port = 8002;  // -1: no metrics listener
  size_t max_body_bytes = 64u << 20;  // larger requests get 413
  int threads = 64;  // each open connection holds one
  bool allow_model_control = false;  // --model-control-mode explicit
  RestrictedApis restricted;  // --http-restricted-api: endpoints answered only with a header (else 403)
};

class HttpServer {
 public:
  HttpServer(ModelRepository& repository, SharedMemoryManager& shared_memory, HttpOptions options);
  ~HttpServer();
  // Binds and starts serving on background threads.
  Status Start();
  // Stops accepting and waits until every request in flight has been answered. Returns false when idle
  // keep-alive connections still hold worker threads (they end at the keep-alive timeout): the caller may
  // then exit without waiting (std::_Exit) but must not destroy this object.
  bool Stop();
  // Health: ready once SetReady(true) and no model is loading.
  void SetReady(bool ready) { ready_ = ready; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> ready_{false};
};

}  // namespace kiln::server
