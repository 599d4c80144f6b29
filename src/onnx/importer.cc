#include "onnx/importer.h"

#include <google/protobuf/io/coded_stream.h>
#include <onnx/onnx_pb.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "onnx/tensor_proto.h"
#include "ops/infer.h"

namespace kiln {

namespace fs = std::filesystem;

namespace {

// A protobuf message cannot be 2 GiB or larger, whatever the options allow.
constexpr uint64_t kProtobufLimit = INT_MAX;

std::string TooLargeMessage(uint64_t size, uint64_t limit) {
  return "model is " + std::to_string(size) + " bytes, over the limit of " + std::to_string(limit) +
         " bytes; protobuf cannot parse models of 2 GiB or more, so weights must be stored as ONNX external "
         "data" +
         " (onnx.save_model(..., save_as_external_data=True))";
}

Expected<std::string> ReadFileBytes(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return NotFound("model file '" + path + "' does not exist");
  if (fs::is_directory(st)) return InvalidArgument("'" + path + "' is a directory, not a model file");
  if (!fs::is_regular_file(st)) return InvalidArgument("'" + path + "' is not a regular file");
  const uint64_t size = fs::file_size(path, ec);
  if (ec) return NotFound("cannot read '" + path + "': " + ec.message());
  const uint64_t limit = std::min(max_bytes, kProtobufLimit);
  if (size > limit) return Unsupported(TooLargeMessage(size, limit));
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open '" + path + "'");
  std::string bytes(size, '\0');
  f.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(f.gcount()) != size) return DataLoss("short read of '" + path + "'");
  return bytes;
}

bool IsDefaultDomain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// Everything Kiln cannot import, grouped by kind ("Loop", "com.microsoft.FusedGelu", "element type STRING"),
// so that one error lists all of it.
class Problems {
 public:
  void Add(const std::string& what, const std::string& where, const std::string& noun = "node") {
    auto& e = entries_[what];
    e.noun = noun;
    e.names.push_back(where);
  }
  bool empty() const { return entries_.empty(); }
  Status ToStatus() const {
    std::string msg = "unsupported operators or constructs: ";
    bool first = true;
    for (const auto& [what, e] : entries_) {
      const size_t n = e.names.size();
      msg +=
          (first ? "" : "; ") + what + " (" + std::to_string(n) + " " + e.noun + (n == 1 ? "" : "s") + ": ";
      for (size_t i = 0; i < n && i < kMaxNames; ++i) msg += (i ? ", " : "") + e.names[i];
      if (n > kMaxNames) msg += ", ...";
      msg += ")";
      first = false;
    }
    return Unsupported(msg);
  }

 private:
  static constexpr size_t kMaxNames = 3;
  struct Entry {
    std::string noun;
    std::vector<std::string> names;
  };
  std::map<std::string, Entry> entries_;
};

std::string TypeCaseName(const onnx::TypeProto& t) {
  switch (t.value_case()) {
    case onnx::TypeProto::kTensorType: return "tensor";
    case onnx::TypeProto::kSequenceType: return "sequence";
    case onnx::TypeProto::kMapType: return "map";
    case onnx::TypeProto::kOptionalType: return "optional";
    case onnx::TypeProto::kSparseTensorType: return "sparse tensor";
    default: return "unknown";
  }
}

Expected<std::optional<Shape>> ImportShape(const onnx::TypeProto_Tensor& t) {
  if (!t.has_shape()) return std::optional<Shape>();
  std::vector<Dim> dims;
  for (const auto& d : t.shape().dim()) {
    if (d.has_dim_value()) {
      if (d.dim_value() < 0) return InvalidArgument("negative dimension " + std::to_string(d.dim_value()));
      dims.emplace_back(d.dim_value());
    } else if (d.has_dim_param() && !d.dim_param().empty()) {
      dims.push_back(Dim::Symbol(d.dim_param()));
    } else {
      dims.emplace_back();
    }
  }
  return std::optional<Shape>(Shape(std::move(dims)));
}

struct DeclaredType {
  DType dtype = DType::kUndefined;
  std::optional<Shape> shape;
};

// The tensor type a ValueInfoProto declares. Non-tensor and unsupported element types go to `problems`
// (nullopt returned); a missing type gives kUndefined.
Expected<std::optional<DeclaredType>> ImportValueInfo(const onnx::ValueInfoProto& vi, const std::string& noun,
                                                      Problems* problems) {
  DeclaredType out;
  if (!vi.has_type() || vi.type().value_case() == onnx::TypeProto::VALUE_NOT_SET) return {out};
  const auto& type = vi.type();
  if (!type.has_tensor_type()) {
    problems->Add(TypeCaseName(type) + "-typed value", "'" + vi.name() + "'", noun);
    return {std::nullopt};
  }
  const int32_t et = type.tensor_type().elem_type();
  if (et != onnx::TensorProto::UNDEFINED) {
    auto dt = OnnxDTypeToKiln(et);
    if (!dt) {
      problems->Add("element type " + OnnxDTypeName(et), "'" + vi.name() + "'", noun);
      return {std::nullopt};
    }
    out.dtype = *dt;
  }
  auto shape = ImportShape(type.tensor_type());
  if (!shape.ok()) return shape.status().WithContext(noun + " '" + vi.name() + "'");
  out.shape = std::move(shape).value();
  return {out};
}

Expected<AttrValue> ImportAttribute(const onnx::AttributeProto& a) {
  switch (a.type()) {
    case onnx::AttributeProto::INT: return AttrValue(static_cast<int64_t>(a.i()));
    case onnx::AttributeProto::FLOAT: return AttrValue(a.f());
    case onnx::AttributeProto::STRING: return AttrValue(a.s());
    case onnx::AttributeProto::INTS: return AttrValue(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
    case onnx::AttributeProto::FLOATS:
      return AttrValue(std::vector<float>(a.floats().begin(), a.floats().end()));
    case onnx::AttributeProto::STRINGS:
      return AttrValue(std::vector<std::string>(a.strings().begin(), a.strings().end()));
    case onnx::AttributeProto::TENSOR: {
      auto t = TensorFromProto(a.t(), nullptr);
      if (!t.ok()) return t.status();
      return AttrValue(std::move(t).value());
    }
    case onnx::AttributeProto::UNDEFINED:
      // IR version 1 models may leave `type` unset; take the one field that is filled.
      if (a.has_i()) return AttrValue(static_cast<int64_t>(a.i()));
      if (a.has_f()) return AttrValue(a.f());
      if (a.has_s()) return AttrValue(a.s());
      if (a.ints_size()) return AttrValue(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
      if (a.floats_size()) return AttrValue(std::vector<float>(a.floats().begin(), a.floats().end()));
      if (a.strings_size())
        return AttrValue(std::vector<std::string>(a.strings().begin(), a.strings().end()));
      return InvalidArgument("attribute has no type and no value");
    default: break;
  }
  return Unsupported("attributes of type " + onnx::AttributeProto::AttributeType_Name(a.type()));
}

// A Constant node's value as a tensor.
Expected<Tensor> ConstantNodeValue(const onnx::NodeProto& n, ExternalDataFiles* external) {
  if (n.attribute_size() != 1) {
    return InvalidArgument("Constant has " + std::to_string(n.attribute_size()) +
                           " attributes; it needs exactly one value attribute");
  }
  const auto& a = n.attribute(0);
  const std::string& name = a.name();
  auto expect = [&](onnx::AttributeProto::AttributeType t) -> Status {
    if (a.type() != t && a.type() != onnx::AttributeProto::UNDEFINED) {
      return InvalidArgument("Constant attribute '" + name + "' has type " +
                             onnx::AttributeProto::AttributeType_Name(a.type()) + ", expected " +
                             onnx::AttributeProto::AttributeType_Name(t));
    }
    return Status::Ok();
  };
  if (name == "value") {
    KILN_RETURN_IF_ERROR(expect(onnx::AttributeProto::TENSOR));
    if (!a.has_t()) return InvalidArgument("Constant attribute 'value' holds no tensor");
    return TensorFromProto(a.t(), external);
  }
  if (name == "value_float") {
    KILN_RETURN_IF_ERROR(expect(onnx::AttributeProto::FLOAT));
    return Tensor::Scalar<float>(a.f());
  }
  if (name == "value_int") {
    KILN_RETURN_IF_ERROR(expect(onnx::AttributeProto::INT));
    return Tensor::Scalar<int64_t>(a.i());
  }
  if (name == "value_floats") {
    KILN_RETURN_IF_ERROR(expect(onnx::AttributeProto::FLOATS));
    return Tensor::FromVector(std::vector<float>(a.floats().begin(), a.floats().end()));
  }
  if (name == "value_ints") {
    KILN_RETURN_IF_ERROR(expect(onnx::AttributeProto::INTS));
    return Tensor::FromVector(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
  }
  if (name == "value_string" || name == "value_strings" || name == "sparse_value") {
    return Unsupported("Constant with attribute '" + name + "'");
  }
  return InvalidArgument("Constant has unknown attribute '" + name + "'");
}

std::string NodeDisplayName(const onnx::NodeProto& n, int index) {
  return n.name().empty() ? "#" + std::to_string(index) : n.name();
}

std::string NodeLabel(const onnx::NodeProto& n, int index) {
  return "node " + NodeDisplayName(n, index) + " (" + (IsDefaultDomain(n.domain()) ? "" : n.domain() + ".") +
         n.op_type() + ")";
}

// The default-domain opset, or 0 for a model that imports none and has no default-domain nodes (all its
// nodes are then reported as unsupported ops of their domains).
Expected<int> DefaultOpset(const onnx::ModelProto& mp) {
  std::optional<int64_t> opset;
  for (const auto& imp : mp.opset_import()) {
    if (IsDefaultDomain(imp.domain())) opset = imp.version();
  }
  const std::string range =
      "Kiln imports opsets " + std::to_string(kMinOnnxOpset) + " to " + std::to_string(kMaxOnnxOpset);
  if (!opset) {
    bool default_nodes = false;
    for (const auto& n : mp.graph().node()) default_nodes |= IsDefaultDomain(n.domain());
    if (!default_nodes) return 0;
    // IR version 1-2 models had no opset_import: they are older than anything Kiln imports.
    return Unsupported("model imports no default-domain ONNX opset (" + range + ")");
  }
  if (*opset < kMinOnnxOpset || *opset > kMaxOnnxOpset) {
    return Unsupported("model uses ONNX opset " + std::to_string(*opset) + "; " + range);
  }
  return static_cast<int>(*opset);
}

class ModelImporter {
 public:
  ModelImporter(const onnx::ModelProto& mp, const std::string& base_dir, const ImportOptions& options)
      : mp_(mp), gp_(mp.graph()), external_(base_dir), options_(options) {}

  Expected<Model> Run() {
    Model model;
    model.ir_version = mp_.ir_version();
    model.producer =
        mp_.producer_name() + (mp_.producer_version().empty() ? "" : " " + mp_.producer_version());
    KILN_ASSIGN_OR_RETURN(opset_, DefaultOpset(mp_));
    model.opset = opset_;
    if (!mp_.has_graph()) return InvalidArgument("model has no graph");
    g_.set_name(gp_.name());

    for (const auto& f : mp_.functions()) {
      problems_.Add("model-local function " + (f.domain().empty() ? "" : f.domain() + ".") + f.name(), "-",
                    "definition");
    }
    for (const auto& s : gp_.sparse_initializer()) {
      problems_.Add("sparse initializer", "'" + s.values().name() + "'", "tensor");
    }
    KILN_RETURN_IF_ERROR(ImportInitializers());
    KILN_RETURN_IF_ERROR(ImportInputs());
    KILN_RETURN_IF_ERROR(DefineNodeOutputs());
    for (int i = 0; i < gp_.node_size(); ++i) KILN_RETURN_IF_ERROR(ImportNode(i));
    KILN_RETURN_IF_ERROR(ImportOutputs());
    if (!problems_.empty()) return problems_.ToStatus();
    if (g_.outputs().empty()) return InvalidArgument("model has no outputs");
    KILN_RETURN_IF_ERROR(VerifyGraph(g_));
    KILN_RETURN_IF_ERROR(ApplyDeclaredTypes());
    model.graph = std::move(g_);
    return model;
  }

 private:
  Status Define(const std::string& name, Value* v) {
    if (!defined_.emplace(name, v).second)
      return InvalidArgument("tensor '" + name + "' is defined more than once");
    return Status::Ok();
  }

  Status ImportInitializers() {
    for (const auto& init : gp_.initializer()) {
      if (init.name().empty()) return InvalidArgument("an initializer has no name");
      auto t = TensorFromProto(init, &external_);
      if (!t.ok()) {
        if (t.status().code() == StatusCode::kUnsupported && !OnnxDTypeToKiln(init.data_type())) {
          problems_.Add("element type " + OnnxDTypeName(init.data_type()), "'" + init.name() + "'",
                        "initializer");
          skipped_.insert(init.name());
          continue;
        }
        return t.status().WithContext("initializer '" + init.name() + "'");
      }
      KILN_RETURN_IF_ERROR(Define(init.name(), g_.AddConstant(init.name(), std::move(t).value())));
    }
    return Status::Ok();
  }

  Status ImportInputs() {
    std::map<std::string, const onnx::TensorProto*> initializers;
    for (const auto& init : gp_.initializer()) initializers[init.name()] = &init;
    for (const auto& in : gp_.input()) {
      if (in.name().empty()) return InvalidArgument("a graph input has no name");
      // An initializer listed as an input (exporters for IR < 4 did this): a constant.
      if (initializers.count(in.name())) continue;
      KILN_ASSIGN_OR_RETURN(std::optional<DeclaredType> type, ImportValueInfo(in, "graph input", &problems_));
      if (!type) {
        skipped_.insert(in.name());
        continue;
      }
      if (type->dtype == DType::kUndefined) {
        return InvalidArgument("graph input '" + in.name() + "' has no element type");
      }
      Value* v = g_.AddValue(in.name(), type->dtype, std::move(type->shape));
      KILN_RETURN_IF_ERROR(Define(in.name(), v));
      g_.AddInput(v);
    }
    return Status::Ok();
  }

  // Values for the outputs of every node first, so that a node may name a value produced later in the list:
  // a GraphProto's nodes should be topologically sorted, but misordering is tolerated and cycles are reported
  // by name rather than assumed away.
  Status DefineNodeOutputs() {
    node_outputs_.resize(static_cast<size_t>(gp_.node_size()));
    for (int i = 0; i < gp_.node_size(); ++i) {
      const auto& n = gp_.node(i);
      for (const auto& o : n.output()) {
        Value* v = nullptr;
        if (!o.empty()) {
          v = g_.AddValue(o, DType::kUndefined);
          KILN_RETURN_IF_ERROR(Define(o, v).WithContext(NodeLabel(n, i)));
        }
        node_outputs_[static_cast<size_t>(i)].push_back(v);
      }
    }
    return Status::Ok();
  }

  Status ImportNode(int i) {
    const auto& n = gp_.node(i);
    const std::string label = NodeLabel(n, i);
    const std::string where = NodeDisplayName(n, i);
    if (n.op_type().empty()) return InvalidArgument(label + ": node has no op_type");
    std::optional<OpKind> op;
    // "kiln." ops are made by Kiln's own passes; a model cannot name them.
    if (IsDefaultDomain(n.domain()) && n.op_type().rfind("kiln.", 0) != 0) op = OpKindFromName(n.op_type());
    if (!op) {
      problems_.Add(IsDefaultDomain(n.domain()) ? n.op_type() : n.domain() + "." + n.op_type(), where);
      return Status::Ok();
    }
    bool ok = true;
    Attributes attrs;
    if (*op != OpKind::kConstant) {
      for (const auto& a : n.attribute()) {
        if (!a.ref_attr_name().empty()) {
          problems_.Add("attribute reference (ref_attr_name)", where);
          ok = false;
          continue;
        }
        if (a.type() == onnx::AttributeProto::GRAPH || a.type() == onnx::AttributeProto::GRAPHS) {
          problems_.Add(n.op_type() + " with a sub-graph attribute", where);
          ok = false;
          continue;
        }
        auto v = ImportAttribute(a);
        if (!v.ok()) {
          if (v.status().code() == StatusCode::kUnsupported) {
            problems_.Add(n.op_type() + " attribute '" + a.name() + "': " + v.status().message(), where);
            ok = false;
            continue;
          }
          return v.status().WithContext(label + ": attribute '" + a.name() + "'");
        }
        if (attrs.Has(a.name()))
          return InvalidArgument(label + ": attribute '" + a.name() + "' is given twice");
        attrs.Set(a.name(), std::move(v).value());
      }
    }
    std::vector<Value*> inputs;
    for (const auto& in : n.input()) {
      if (in.empty()) {
        inputs.push_back(nullptr);
        continue;
      }
      auto it = defined_.find(in);
      if (it == defined_.end()) {
        // A value that failed to import (an unsupported initializer or input) is already reported.
        if (skipped_.count(in)) return Status::Ok();
        return InvalidArgument(label + ": input '" + in +
                               "' is not produced by any node, nor a graph input or initializer");
      }
      inputs.push_back(it->second);
    }
    if (!ok) return Status::Ok();
    std::vector<Value*>& outs = node_outputs_[static_cast<size_t>(i)];
    if (*op == OpKind::kConstant) {
      if (outs.size() != 1 || !outs[0]) return InvalidArgument(label + ": Constant must have one output");
      if (!inputs.empty()) return InvalidArgument(label + ": Constant takes no inputs");
      auto t = ConstantNodeValue(n, &external_);
      if (!t.ok()) {
        if (t.status().code() == StatusCode::kUnsupported) {
          problems_.Add(t.status().message(), where);
          return Status::Ok();
        }
        return t.status().WithContext(label);
      }
      g_.SetConstant(outs[0], std::make_shared<const Tensor>(std::move(t).value()));
      return Status::Ok();
    }
    Node* node = g_.AddNode(*op, n.name().empty() ? n.op_type() + "_" + std::to_string(i) : n.name(), inputs,
                            outs, opset_);
    node->attrs() = std::move(attrs);
    return Status::Ok();
  }

  Status ImportOutputs() {
    for (const auto& out : gp_.output()) {
      auto it = defined_.find(out.name());
      if (it == defined_.end()) {
        if (!problems_.empty()) continue;  // its producer may be an unsupported node
        return InvalidArgument("graph output '" + out.name() + "' is not produced by any node");
      }
      Value* v = it->second;
      if (v->producer() == nullptr && !v->is_graph_input() && !v->is_constant()) {
        if (!problems_.empty()) continue;
        return InvalidArgument("graph output '" + out.name() + "' is not produced by any node");
      }
      g_.AddOutput(v);
    }
    return Status::Ok();
  }

  // Types declared for graph outputs and intermediate values (value_info). Without validation they are the
  // only types node outputs get; with it, inference runs first and declarations fill in only what inference
  // could not tell (data-dependent shapes), while a declared dtype that contradicts inference is an error.
  Status ApplyDeclaredTypes() {
    if (options_.validate) {
      KILN_RETURN_IF_ERROR(ValidateGraphOps(g_));
      KILN_RETURN_IF_ERROR(InferShapes(g_));
    }
    Problems ignored;
    auto apply = [&](const onnx::ValueInfoProto& vi, bool is_output) -> Status {
      auto it = defined_.find(vi.name());
      if (it == defined_.end()) return Status::Ok();
      Value* v = it->second;
      if (v->is_constant() || v->is_graph_input()) return Status::Ok();
      auto declared = ImportValueInfo(vi, is_output ? "graph output" : "value_info", &ignored);
      if (!declared.ok()) return declared.status();
      if (!declared.value()) return Status::Ok();
      const DeclaredType& d = *declared.value();
      if (v->dtype() == DType::kUndefined) {
        v->set_dtype(d.dtype);
      } else if (is_output && d.dtype != DType::kUndefined && d.dtype != v->dtype()) {
        return InvalidArgument("graph output '" + vi.name() + "' is declared " +
                               std::string(DTypeName(d.dtype)) + " but computes " +
                               std::string(DTypeName(v->dtype())));
      }
      if (!v->shape() && d.shape) v->set_shape(d.shape);
      return Status::Ok();
    };
    for (const auto& vi : gp_.value_info()) KILN_RETURN_IF_ERROR(apply(vi, false));
    for (const auto& vi : gp_.output()) KILN_RETURN_IF_ERROR(apply(vi, true));
    return Status::Ok();
  }

  const onnx::ModelProto& mp_;
  const onnx::GraphProto& gp_;
  ExternalDataFiles external_;
  const ImportOptions& options_;
  int opset_ = 0;
  Graph g_;
  Problems problems_;
  std::map<std::string, Value*> defined_;
  std::set<std::string> skipped_;
  std::vector<std::vector<Value*>> node_outputs_;
};

Expected<Model> ParseAndImport(const std::string& bytes, const std::string& base_dir,
                               const ImportOptions& options) {
  const uint64_t limit = std::min(options.max_model_bytes, kProtobufLimit);
  if (bytes.size() > limit) return Unsupported(TooLargeMessage(bytes.size(), limit));
  if (bytes.empty()) return InvalidArgument("model is empty (0 bytes)");
  onnx::ModelProto mp;
  google::protobuf::io::CodedInputStream stream(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                static_cast<int>(bytes.size()));
  stream.SetTotalBytesLimit(static_cast<int>(bytes.size()));
  if (!mp.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage()) {
    return DataLoss("not a valid ONNX model: the protobuf does not parse (truncated or corrupted file?)");
  }
  if (!mp.has_graph()) {
    return InvalidArgument("not a valid ONNX model: no graph" +
                           std::string(mp.ir_version() == 0 ? " and no IR version (not an ONNX file?)" : ""));
  }
  return ModelImporter(mp, base_dir, options).Run();
}

}  // namespace

Expected<Model> ImportOnnxFile(const std::string& path, const ImportOptions& options) {
  auto bytes = ReadFileBytes(path, options.max_model_bytes);
  if (!bytes.ok()) return bytes.status().WithContext("model " + path);
  std::string base = options.external_data_dir;
  if (base.empty()) base = fs::path(path).parent_path().string();
  if (base.empty()) base = ".";
  auto m = ParseAndImport(bytes.value(), base, options);
  if (!m.ok()) return m.status().WithContext("model " + path);
  m->source = path;
  return m;
}

Expected<Model> ImportOnnxBytes(const std::string& bytes, const std::string& label,
                                const ImportOptions& options) {
  auto m = ParseAndImport(bytes, options.external_data_dir, options);
  if (!m.ok()) return m.status().WithContext("model " + label);
  m->source = label;
  return m;
}

Expected<Tensor> ParseOnnxTensor(const std::string& bytes, const std::string& label,
                                 const std::string& external_data_dir) {
  onnx::TensorProto tp;
  if (bytes.size() > kProtobufLimit || !tp.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DataLoss(label + ": not a valid ONNX TensorProto (truncated or corrupted file?)");
  }
  ExternalDataFiles external(external_data_dir);
  auto t = TensorFromProto(tp, &external);
  if (!t.ok()) return t.status().WithContext(label);
  return t;
}

}  // namespace kiln
