#include "kiln/status.h"

namespace kiln {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kUnsupported: return "Unsupported";
    case StatusCode::kOutOfRange: return "OutOfRange";
    case StatusCode::kDataLoss: return "DataLoss";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kInternal: return "Internal";
  }
  return "Unknown";
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

Status InvalidArgument(std::string message) { return Status(StatusCode::kInvalidArgument, std::move(message)); }
Status NotFound(std::string message) { return Status(StatusCode::kNotFound, std::move(message)); }
Status Unsupported(std::string message) { return Status(StatusCode::kUnsupported, std::move(message)); }
Status OutOfRange(std::string message) { return Status(StatusCode::kOutOfRange, std::move(message)); }
Status DataLoss(std::string message) { return Status(StatusCode::kDataLoss, std::move(message)); }
Status Unavailable(std::string message) { return Status(StatusCode::kUnavailable, std::move(message)); }
Status Internal(std::string message) { return Status(StatusCode::kInternal, std::move(message)); }

}  // namespace kiln
