// Status and Expected<T>: how every Kiln library call reports failure.
//
// Library code never throws across the public API and never exits on bad input. A failing call returns a
// Status whose message names what is at fault (model, node, tensor), and each layer that passes an error
// up may prefix what it knows with Status::WithContext():
//   "model resnet50.onnx: node conv1 (Conv): input W has 3 dims, expected 4".
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kiln {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad user input: malformed model, wrong shape or dtype, bad option
  kNotFound,         // a file, model, tensor or binding that does not exist
  kUnsupported,      // valid input that Kiln does not implement (an op, a dtype, an opset)
  kOutOfRange,       // an index, shape or size outside what is allowed
  kDataLoss,         // truncated or corrupted file
  kUnavailable,      // a resource (device, server queue) that cannot serve now
  kInternal,         // a bug in Kiln: an invariant did not hold
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "context: message". Ok statuses are returned unchanged.
  Status WithContext(std::string_view context) const;
  // "InvalidArgument: message" (or "OK").
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

Status InvalidArgument(std::string message);
Status NotFound(std::string message);
Status Unsupported(std::string message);
Status OutOfRange(std::string message);
Status DataLoss(std::string message);
Status Unavailable(std::string message);
Status Internal(std::string message);

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(data_).ok() && "Expected built from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return ok(); }

  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(data_);
  }
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace kiln

#define KILN_CONCAT_IMPL_(a, b) a##b
#define KILN_CONCAT_(a, b) KILN_CONCAT_IMPL_(a, b)

// Returns the Status of `expr` from the enclosing function if it is not ok.
#define KILN_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::kiln::Status kiln_status_ = (expr);           \
    if (!kiln_status_.ok()) return kiln_status_;    \
  } while (0)

// Evaluates `expr` (an Expected<T>); on error returns its Status, else moves the value into `lhs`,
// which may be a declaration: KILN_ASSIGN_OR_RETURN(auto graph, Import(path));
#define KILN_ASSIGN_OR_RETURN(lhs, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL_(KILN_CONCAT_(kiln_expected_, __LINE__), lhs, expr)
#define KILN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
