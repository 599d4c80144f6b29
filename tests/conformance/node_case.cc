#include "conformance/node_case.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/shape.h"
#include "ir/op_kind.h"
#include "onnx/importer.h"
#include "ops/registry.h"
#include "kiln/engine.h"
#include "runtime/engine_impl.h"
#include "runtime/reference_executor.h"

namespace kiln::conformance {
namespace {

namespace fs = std::filesystem;

Expected<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Why Kiln refuses a TensorProto.DataType, or empty if Kiln stores it. The numbers are ONNX's (the
// system's onnx.proto is older than the test data, so the enum lacks float8 and int4).
std::string UnstoredDTypeReason(int onnx_dtype) {
  switch (onnx_dtype) {
    case 8: return "dtype string";
    case 14: case 15: return "dtype complex";
    case 17: case 18: case 19: case 20: return "dtype float8";
    case 21: case 22: return "dtype int4";
    default: break;
  }
  return onnx_dtype > 16 ? "dtype " + std::to_string(onnx_dtype) : "";
}

bool IsDefaultDomain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

std::string QualifiedOpType(const onnx::NodeProto& n) {
  return IsDefaultDomain(n.domain()) ? n.op_type() : n.domain() + ":" + n.op_type();
}

// Collects what makes a model legitimately unsupported into `reasons`, and every op into `ops`.
class ModelScanner {
 public:
  ModelScanner(std::set<std::string>& ops, std::set<std::string>& reasons) : ops_(ops), reasons_(reasons) {}

  void ScanType(const onnx::TypeProto& type) {
    if (type.has_tensor_type()) {
      AddDType(type.tensor_type().elem_type());
    } else if (type.has_sequence_type() || type.has_optional_type() || type.has_map_type()) {
      reasons_.insert("non-tensor value type (sequence/optional/map)");
    }
  }
  void AddDType(int dtype) {
    std::string r = UnstoredDTypeReason(dtype);
    if (!r.empty()) reasons_.insert(r);
  }

  void ScanGraph(const onnx::GraphProto& g, int opset) {
    for (const auto& v : g.input()) ScanType(v.type());
    for (const auto& v : g.output()) ScanType(v.type());
    for (const auto& v : g.value_info()) ScanType(v.type());
    for (const auto& t : g.initializer()) AddDType(t.data_type());
    for (const auto& n : g.node()) {
      ops_.insert(QualifiedOpType(n));
      if (IsDefaultDomain(n.domain())) CheckOpForm(n.op_type(), opset);
      for (const auto& a : n.attribute()) {
        if (a.has_t()) AddDType(a.t().data_type());
        for (const auto& t : a.tensors()) AddDType(t.data_type());
        if (a.has_g()) ScanGraph(a.g(), opset);
        for (const auto& sub : a.graphs()) ScanGraph(sub, opset);
        if (a.type() == onnx::AttributeProto::INT &&
            (a.name() == "to" || a.name() == "dtype" || a.name() == "output_dtype")) {
          AddDType(static_cast<int>(a.i()));
        }
      }
    }
  }

 private:
  void CheckOpForm(const std::string& op_type, int opset) {
    std::optional<OpKind> kind = OpKindFromName(op_type);
    if (!kind) return;
    const OpSchema* schema = OpRegistry::Global().Find(*kind);
    if (schema && opset < schema->min_opset) {
      reasons_.insert("opset " + std::to_string(opset) + " older than Kiln's " + op_type + " (from opset " +
                      std::to_string(schema->min_opset) + ")");
    }
  }

  std::set<std::string>& ops_;
  std::set<std::string>& reasons_;
};

std::string Join(const std::set<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

// input_N.pb / output_N.pb files of a data set, ordered by N.
std::vector<std::string> NumberedFiles(const std::string& dir, const std::string& prefix) {
  std::vector<std::pair<long, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    if (f.rfind(prefix, 0) != 0 || f.size() <= prefix.size() + 3 || f.substr(f.size() - 3) != ".pb") continue;
    const std::string num = f.substr(prefix.size(), f.size() - prefix.size() - 3);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stol(num), e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [n, path] : found) out.push_back(std::move(path));
  return out;
}

std::string IndexString(const std::vector<int64_t>& sizes, int64_t flat) {
  std::vector<int64_t> idx(sizes.size());
  for (size_t d = sizes.size(); d-- > 0;) {
    if (sizes[d] > 0) {
      idx[d] = flat % sizes[d];
      flat /= sizes[d];
    }
  }
  return SizesToString(idx);
}

std::string FormatDouble(double v) {
  std::ostringstream ss;
  ss.precision(9);
  ss << v;
  return ss.str();
}

std::string ElementString(const Tensor& t, int64_t i) {
  if (IsFloat(t.dtype())) return FormatDouble(t.GetAsDouble(i));
  if (t.dtype() == DType::kUInt64) return std::to_string(t.data<uint64_t>()[i]);
  return std::to_string(t.GetAsInt64(i));
}

bool ElementsEqualExactly(const Tensor& a, const Tensor& b, int64_t i) {
  if (a.dtype() == DType::kBool) return (a.data<uint8_t>()[i] != 0) == (b.data<uint8_t>()[i] != 0);
  const size_t n = DTypeSize(a.dtype());
  return std::memcmp(static_cast<const char*>(a.raw_data()) + i * n,
                     static_cast<const char*>(b.raw_data()) + i * n, n) == 0;
}

// ONNX's test data stores bfloat16 tensors as uint16 (NumPy has no bfloat16): where the model declares
// bf16, the bits are taken as bf16.
Tensor AsDeclared(Tensor t, DType declared) {
  if (declared != DType::kBFloat16 || t.dtype() != DType::kUInt16) return t;
  Tensor out(DType::kBFloat16, t.sizes());
  std::memcpy(out.raw_data(), t.raw_data(), t.nbytes());
  return out;
}

// An import or tensor-parsing failure: a skip when Kiln says Unsupported for a reason the model shows.
CaseResult Refused(const Status& st, const CaseInfo& info, const std::string& stage) {
  if (st.code() == StatusCode::kUnsupported && !info.skip_reason.empty()) {
    return {Outcome::kSkip, info.skip_reason, stage + ": " + st.ToString()};
  }
  return Failed(stage + ": " + st.ToString());
}

// Build -> serialize -> load -> run through the public API, for exactly the feeds' shapes.
Expected<TensorMap> RunThroughEngine(const CaseInfo& info, const TensorMap& feeds) {
  BuildOptions options;
  options.profiles.push_back(ExactProfile(feeds));
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<Engine> built, Engine::BuildFromOnnx(info.dir + "/model.onnx", options));
  KILN_ASSIGN_OR_RETURN(std::string bytes, built->Serialize());
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<Engine> engine, Engine::LoadFromMemory(bytes.data(), bytes.size()));
  return RunOnce(*engine, feeds);
}

CaseResult RunDataSet(const CaseInfo& info, const Graph& graph, const std::string& set_dir, RunMode mode) {
  const std::string set_name = fs::path(set_dir).filename().string();
  std::vector<const Value*> inputs;
  for (const Value* v : graph.inputs()) {
    if (!v->is_constant()) inputs.push_back(v);
  }
  const std::vector<std::string> in_files = NumberedFiles(set_dir, "input_");
  const std::vector<std::string> out_files = NumberedFiles(set_dir, "output_");
  if (in_files.size() != inputs.size()) {
    return Failed(set_name + ": " + std::to_string(in_files.size()) + " input files, but the graph has " +
                  std::to_string(inputs.size()) + " non-constant inputs");
  }
  if (out_files.size() != graph.outputs().size()) {
    return Failed(set_name + ": " + std::to_string(out_files.size()) + " output files, but the graph has " +
                  std::to_string(graph.outputs().size()) + " outputs");
  }
  auto parse = [&](const std::string& path) -> Expected<Tensor> {
    KILN_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
    return ParseOnnxTensor(bytes, path, set_dir);
  };
  TensorMap feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto t = parse(in_files[i]);
    if (!t.ok()) return Refused(t.status(), info, set_name + " input " + std::to_string(i));
    feeds[inputs[i]->name()] = AsDeclared(std::move(t).value(), inputs[i]->dtype());
  }
  auto results = mode == RunMode::kEngine ? RunThroughEngine(info, feeds) : RunReference(graph, feeds);
  if (!results.ok()) return Failed(set_name + ": run: " + results.status().ToString());
  for (size_t i = 0; i < out_files.size(); ++i) {
    const Value* out = graph.outputs()[i];
    const std::string& name = out->name();
    auto expected = parse(out_files[i]);
    if (!expected.ok()) return Refused(expected.status(), info, set_name + " output " + std::to_string(i));
    auto it = results->find(name);
    if (it == results->end()) return Failed(set_name + ": output '" + name + "' was not produced");
    std::string diff = CompareTensors(AsDeclared(std::move(expected).value(), out->dtype()), it->second);
    if (!diff.empty()) return Failed(set_name + ": output '" + name + "': " + diff);
  }
  return Passed();
}

}  // namespace

Expected<CaseInfo> InspectCase(const std::string& dir) {
  CaseInfo info;
  info.dir = dir;
  info.name = fs::path(dir).filename().string();
  KILN_ASSIGN_OR_RETURN(std::string bytes, ReadFile(dir + "/model.onnx"));
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) return DataLoss(dir + "/model.onnx: not a valid ModelProto");

  int opset = 0;
  for (const auto& imp : model.opset_import()) {
    if (IsDefaultDomain(imp.domain())) opset = static_cast<int>(imp.version());
  }
  std::set<std::string> reasons;
  if (opset < kMinOnnxOpset || opset > kMaxOnnxOpset) {
    reasons.insert("opset " + std::to_string(opset) + " outside " + std::to_string(kMinOnnxOpset) + ".." +
                   std::to_string(kMaxOnnxOpset));
  }
  ModelScanner scanner(info.ops, reasons);
  scanner.ScanGraph(model.graph(), opset);
  info.owner = model.graph().node_size() == 1 ? QualifiedOpType(model.graph().node(0)) : kCompositeOwner;

  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) {
      info.data_sets.push_back(e.path().string());
    }
  }
  std::sort(info.data_sets.begin(), info.data_sets.end());
  for (const std::string& set : info.data_sets) {
    for (const char* prefix : {"input_", "output_"}) {
      for (const std::string& f : NumberedFiles(set, prefix)) {
        auto pb = ReadFile(f);
        onnx::TensorProto t;
        // Sequence and optional data files do not parse as tensors; the model's types already say so.
        if (pb.ok() && t.ParseFromString(*pb)) scanner.AddDType(t.data_type());
      }
    }
  }
  info.skip_reason = Join(reasons, ", ");
  return info;
}

Tolerance ToleranceFor(DType dtype) {
  // f32/f64: the ONNX backend runner's defaults. The 16-bit formats get about 4 ulp of relative error
  // (f16: 2^-10, bf16: 2^-7 per ulp) because test data was computed in higher precision and rounded once,
  // while a kernel that computes in float and rounds per op may land an ulp or two away.
  switch (dtype) {
    case DType::kFloat16: return {4e-3, 1e-5};
    case DType::kBFloat16: return {3e-2, 1e-5};
    default: return {1e-3, 1e-7};
  }
}

std::string CompareTensors(const Tensor& expected, const Tensor& actual) {
  if (expected.dtype() != actual.dtype()) {
    return "dtype " + std::string(DTypeName(actual.dtype())) + ", expected " +
           std::string(DTypeName(expected.dtype()));
  }
  if (expected.sizes() != actual.sizes()) {
    return "shape " + SizesToString(actual.sizes()) + ", expected " + SizesToString(expected.sizes());
  }
  const bool is_float = IsFloat(expected.dtype());
  const Tolerance tol = ToleranceFor(expected.dtype());
  int64_t bad = 0;
  int64_t first_bad = -1;
  double max_abs = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    bool ok;
    if (is_float) {
      const double e = expected.GetAsDouble(i);
      const double a = actual.GetAsDouble(i);
      if (std::isnan(e) || std::isnan(a)) {
        ok = std::isnan(e) && std::isnan(a);
      } else if (std::isinf(e) || std::isinf(a)) {
        ok = e == a;
      } else {
        const double err = std::fabs(a - e);
        max_abs = std::max(max_abs, err);
        ok = err <= tol.atol + tol.rtol * std::fabs(e);
      }
    } else {
      ok = ElementsEqualExactly(expected, actual, i);
    }
    if (!ok) {
      ++bad;
      if (first_bad < 0) first_bad = i;
    }
  }
  if (bad == 0) return "";
  std::string msg = std::to_string(bad) + " of " + std::to_string(expected.numel()) + " values differ";
  if (is_float) msg += " (rtol " + FormatDouble(tol.rtol) + ", atol " + FormatDouble(tol.atol) + ")";
  msg += "; first at " + IndexString(expected.sizes(), first_bad) + ": got " +
         ElementString(actual, first_bad) + ", expected " + ElementString(expected, first_bad);
  if (is_float) msg += "; max abs error " + FormatDouble(max_abs);
  return msg;
}

CaseResult RunCase(const CaseInfo& info, RunMode mode) {
  auto model = ImportOnnxFile(info.dir + "/model.onnx");
  if (!model.ok()) return Refused(model.status(), info, "import");
  if (info.data_sets.empty()) return Failed("no test_data_set_* folder");
  for (const std::string& set : info.data_sets) {
    CaseResult r = RunDataSet(info, model->graph, set, mode);
    if (r.outcome != Outcome::kPass) return r;
  }
  return Passed();
}

}  // namespace kiln::conformance
