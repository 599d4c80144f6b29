// What the server core exchanges with its front ends: a request of named host tensors and its result.
// Front ends translate their wire formats into these; the core never sees HTTP or gRPC.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "kiln/status.h"

namespace kiln::server {

struct NamedTensor {
  std::string name;
  HostTensor tensor;
};

struct InferRequest {
  std::vector<NamedTensor> inputs;
  // The outputs wanted, in this order; empty: every output of the model's config.
  std::vector<std::string> outputs;
  // Queue timeout asked for by the client (used when the config allows overriding); 0: the default.
  uint64_t timeout_us = 0;
  // Priority level asked for by the client (1 first); 0: the model's default. Ignored by models without
  // priority_levels.
  uint64_t priority = 0;
};

struct InferResult {
  Status status;
  std::vector<NamedTensor> outputs;
};

// Called once per request, on a scheduler thread or (for a request refused at once) on the caller's.
using InferCallback = std::function<void(InferResult)>;

}  // namespace kiln::server
