// One ONNX backend node test case: what it contains (read from the protobuf, so that cases with ops Kiln
// does not have can still be counted) and how to run it against Kiln's reference executor.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kiln/status.h"

namespace kiln::conformance {

// A node test's folder, as read from its model.onnx without importing it.
struct CaseInfo {
  std::string name;  // the folder name, e.g. "test_conv_with_strides_padding"
  std::string dir;
  // Every op type in the model, sub-graphs included; ops of another domain are "domain:Op".
  std::set<std::string> ops;
  // The case's owner: the op of its single node, or "(composite)" for models of several nodes.
  std::string owner;
  // Why Kiln may rightly refuse this model, or empty: an unstored dtype, a non-tensor value type, an opset
  // outside what Kiln imports, or an op form older than the one Kiln implements.
  std::string skip_reason;
  std::vector<std::string> data_sets;  // test_data_set_* folders, sorted
};

inline constexpr const char* kCompositeOwner = "(composite)";

// Reads `dir`/model.onnx. Errors mean the case cannot even be read (counted as a failure by the caller).
Expected<CaseInfo> InspectCase(const std::string& dir);

// Comparison tolerances: a value passes if |actual - expected| <= atol + rtol * |expected|.
struct Tolerance {
  double rtol;
  double atol;
};
Tolerance ToleranceFor(DType dtype);

// Compares one output. Returns an empty string if it matches, else what differs.
std::string CompareTensors(const Tensor& expected, const Tensor& actual);

enum class Outcome { kPass, kFail, kSkip };
struct CaseResult {
  Outcome outcome = Outcome::kFail;
  std::string message;  // the failure, or the skip reason
  std::string detail;   // for a skip: Kiln's own error, to check that it says the same thing
};

inline CaseResult Failed(std::string message) { return {Outcome::kFail, std::move(message), ""}; }
inline CaseResult Passed() { return {Outcome::kPass, "", ""}; }

// How a case runs:
//   kReference  the imported graph through RunReference (the reference kernels, no optimizer);
//   kEngine     the whole deployment path: Engine::BuildFromOnnx (optimizer, tactics, memory plan) for
//               the data set's input shapes, Serialize, LoadFromMemory, then an ExecutionContext run
//               (the plan executor and its arena).
enum class RunMode { kReference, kEngine };

// Imports the model, runs every data set and compares the outputs.
CaseResult RunCase(const CaseInfo& info, RunMode mode = RunMode::kReference);

}  // namespace kiln::conformance
