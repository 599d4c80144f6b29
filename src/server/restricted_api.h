// Triton's restricted APIs: --http-restricted-api / --grpc-restricted-api "<category>[,<category>...]:<key>=<value>"
// make every endpoint of those categories answer only requests that carry the header (gRPC: metadata) `key`
// with that value; others get HTTP 403 / gRPC PERMISSION_DENIED. Categories are Triton's: health, metadata,
// inference, shared-memory, model-config, model-repository, statistics (trace and logging are accepted;
// Kiln has no such endpoints).
#pragma once

#include <array>
#include <functional>
#include <optional>
#include <string>

#include "kiln/status.h"

namespace kiln::server {

enum class ApiCategory {
  kHealth,
  kMetadata,
  kInference,
  kSharedMemory,
  kModelConfig,
  kModelRepository,
  kStatistics,
  kTrace,
  kLogging,
};
inline constexpr size_t kApiCategoryCount = 9;

class RestrictedApis {
 public:
  // Adds one "<category>[,...]:<key>=<value>" rule. InvalidArgument for an unknown category, a malformed
  // rule or a category restricted twice.
  Status Add(const std::string& rule);
  // Why a request of `category` is refused, or nullopt when it may pass. `header` returns the value of a
  // request header by its lower-case name ("" when absent).
  std::optional<std::string> Denied(ApiCategory category,
                                    const std::function<std::string(const std::string&)>& header) const;
  bool empty() const;

 private:
  struct Rule {
    std::string key;  // lower case
    std::string value;
  };
  std::array<std::optional<Rule>, kApiCategoryCount> rules_;
};

}  // namespace kiln::server
