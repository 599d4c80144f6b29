#include "server/model_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <sstream>

namespace kiln::server {
namespace {

struct TypePair {
  config::DataType config;
  DataType kiln;
};
constexpr TypePair kTypes[] = {
    {config::TYPE_BOOL, DataType::kBool},       {config::TYPE_UINT8, DataType::kUInt8},
    {config::TYPE_UINT16, DataType::kUInt16},   {config::TYPE_UINT32, DataType::kUInt32},
    {config::TYPE_UINT64, DataType::kUInt64},   {config::TYPE_INT8, DataType::kInt8},
    {config::TYPE_INT16, DataType::kInt16},     {config::TYPE_INT32, DataType::kInt32},
    {config::TYPE_INT64, DataType::kInt64},     {config::TYPE_FP16, DataType::kFloat16},
    {config::TYPE_FP32, DataType::kFloat32},    {config::TYPE_FP64, DataType::kFloat64},
    {config::TYPE_BF16, DataType::kBFloat16},
};

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (text.empty()) text = std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + message;
  }
  std::string text;
};

std::string DimsText(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

template <typename Tensor>
std::vector<int64_t> DimsOf(const Tensor& t) {
  return std::vector<int64_t>(t.dims().begin(), t.dims().end());
}

// Checks one config tensor (input or output) against the engine's binding.
Status CheckTensor(const char* kind, const std::string& name, config::DataType type,
                   const std::vector<int64_t>& config_dims, const BindingInfo& binding, int batch_dims) {
  Expected<DataType> dtype = FromConfigType(type);
  if (!dtype.ok()) return dtype.status().WithContext(std::string(kind) + " '" + name + "'");
  if (*dtype != binding.dtype) {
    return InvalidArgument(std::string(kind) + " '" + name + "': data_type " + ConfigTypeName(type) +
                           " but the model's is " + ConfigTypeName(ToConfigType(binding.dtype)));
  }
  const std::vector<int64_t>& model_dims = binding.dims;
  bool ok = model_dims.size() == config_dims.size() + batch_dims;
  for (size_t i = 0; ok && i < config_dims.size(); ++i) {
    const int64_t c = config_dims[i], m = model_dims[i + batch_dims];
    ok = (c == -1 && m == -1) || (c >= 0 && (m == -1 || m == c));
  }
  if (!ok) {
    return InvalidArgument(std::string(kind) + " '" + name + "': dims " + DimsText(config_dims) +
                           (batch_dims ? " (without the batch dim)" : "") + " do not match the model's " +
                           DimsText(model_dims));
  }
  return Status::Ok();
}

}  // namespace

Expected<DataType> FromConfigType(config::DataType type) {
  for (const TypePair& p : kTypes) {
    if (p.config == type) return p.kiln;
  }
  return Unsupported("data_type " + ConfigTypeName(type) + " is not supported by Kiln");
}

config::DataType ToConfigType(DataType type) {
  for (const TypePair& p : kTypes) {
    if (p.kiln == type) return p.config;
  }
  return config::TYPE_INVALID;
}

std::string ConfigTypeName(config::DataType type) { return config::DataType_Name(type); }

Expected<ModelConfig> ParseModelConfig(const std::string& text, const std::string& what) {
  ModelConfig config;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return InvalidArgument(what + ":" + (errors.text.empty() ? std::string(" cannot parse") : errors.text));
  }
  return config;
}

Expected<ModelConfig> ReadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return ParseModelConfig(text.str(), path);
}

Expected<Precision> RequestedPrecision(const ModelConfig& config) {
  const auto parse = [](const std::string& text, const std::string& where) -> Expected<Precision> {
    std::string lower;
    for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "fp32") return Precision::kFp32;
    if (lower == "fp16") return Precision::kFp16;
    if (lower == "bf16") return Precision::kBf16;
    return InvalidArgument(where + ": precision '" + text + "' is not one Kiln builds (FP32, FP16, BF16)");
  };
  std::optional<Precision> chosen;
  const auto choose = [&chosen](Precision p, const std::string& where) -> Status {
    if (chosen && *chosen != p) return InvalidArgument(where + " contradicts an earlier precision request");
    chosen = p;
    return Status::Ok();
  };
  const auto& accelerators = config.optimization().execution_accelerators();
  for (const auto& a : accelerators.gpu_execution_accelerator()) {
    const std::string where = "optimization gpu_execution_accelerator '" + a.name() + "'";
    if (a.name() != "tensorrt" && a.name() != "kiln") {
      return InvalidArgument(where + " is not supported (Kiln understands 'tensorrt' and 'kiln')");
    }
    for (const auto& [key, value] : a.parameters()) {
      if (key != "precision_mode") {
        return InvalidArgument(where + ": parameter '" + key + "' is not supported (only precision_mode)");
      }
      KILN_ASSIGN_OR_RETURN(Precision p, parse(value, where));
      KILN_RETURN_IF_ERROR(choose(p, where));
    }
  }
  if (accelerators.cpu_execution_accelerator_size() > 0) {
    return InvalidArgument("optimization cpu_execution_accelerator '" +
                           accelerators.cpu_execution_accelerator(0).name() +
                           "' is not supported (Kiln's CPU kernels are its own)");
  }
  if (auto it = config.parameters().find("precision"); it != config.parameters().end()) {
    KILN_ASSIGN_OR_RETURN(Precision p, parse(it->second.string_value(), "parameters 'precision'"));
    KILN_RETURN_IF_ERROR(choose(p, "parameters 'precision'"));
  }
  return chosen.value_or(Precision::kFp32);
}

Expected<BuildOptions> BuildOptionsFor(const ModelConfig& config) {
  BuildOptions options;
  KILN_ASSIGN_OR_RETURN(options.precision, RequestedPrecision(config));
  for (const auto& group : config.instance_group()) {
    if (group.kind() == config::ModelInstanceGroup::KIND_GPU) options.device = DeviceType::kCuda;
  }
  if (config.max_batch_size() <= 0) return options;
  OptimizationProfile profile;
  for (const auto& input : config.input()) {
    std::vector<int64_t> dims = DimsOf(input);
    if (std::any_of(dims.begin(), dims.end(), [](int64_t d) { return d < 0; })) continue;
    InputProfile range;
    range.min.push_back(1);
    range.opt.push_back(config.max_batch_size());
    range.max.push_back(config.max_batch_size());
    for (int64_t d : dims) {
      range.min.push_back(d);
      range.opt.push_back(d);
      range.max.push_back(d);
    }
    profile.inputs[input.name()] = range;
  }
  if (!profile.inputs.empty()) options.profiles.push_back(profile);
  return options;
}

Status CompleteConfig(const Engine& engine, bool inferred, ModelConfig* config) {
  const auto& inputs = engine.inputs();
  const auto& outputs = engine.outputs();
  if (config->max_batch_size() < 0) return InvalidArgument("max_batch_size must not be negative");
  if (inferred && config->max_batch_size() == 0) {
    // A model batches when every input and output has a dynamic leading dim; its limit is the profile's.
    bool batches = !inputs.empty();
    int64_t limit = INT32_MAX;
    for (const BindingInfo& b : inputs) {
      batches = batches && !b.dims.empty() && b.dims[0] == -1 && !b.profiles.empty();
      if (batches) limit = std::min(limit, b.profiles[0].max[0]);
    }
    for (const BindingInfo& b : outputs) batches = batches && !b.dims.empty() && b.dims[0] == -1;
    if (batches && limit > 1) config->set_max_batch_size(static_cast<int32_t>(limit));
  }
  const int batch_dims = config->max_batch_size() > 0 ? 1 : 0;
  if (batch_dims) {
    for (const BindingInfo& b : inputs) {
      if (b.dims.empty() || b.dims[0] != -1) {
        return InvalidArgument("max_batch_size " + std::to_string(config->max_batch_size()) +
                               " but the model's input '" + b.name + "' has no dynamic batch dim (dims " +
                               DimsText(b.dims) + ")");
      }
      if (!b.profiles.empty() && b.profiles[0].max[0] < config->max_batch_size()) {
        return InvalidArgument("max_batch_size " + std::to_string(config->max_batch_size()) +
                               " exceeds the engine's batch limit " + std::to_string(b.profiles[0].max[0]) +
                               " for input '" + b.name + "'");
      }
    }
  }
  auto tail = [&](const BindingInfo& b) {
    return std::vector<int64_t>(b.dims.begin() + std::min<size_t>(batch_dims, b.dims.size()), b.dims.end());
  };
  if (config->input_size() == 0) {
    for (const BindingInfo& b : inputs) {
      auto* in = config->add_input();
      in->set_name(b.name);
      in->set_data_type(ToConfigType(b.dtype));
      for (int64_t d : tail(b)) in->add_dims(d);
    }
  }
  if (config->output_size() == 0) {
    for (const BindingInfo& b : outputs) {
      auto* out = config->add_output();
      out->set_name(b.name);
      out->set_data_type(ToConfigType(b.dtype));
      for (int64_t d : tail(b)) out->add_dims(d);
    }
  }
  auto find = [](const std::vector<BindingInfo>& list, const std::string& name) -> const BindingInfo* {
    for (const BindingInfo& b : list) {
      if (b.name == name) return &b;
    }
    return nullptr;
  };
  for (const auto& in : config->input()) {
    const BindingInfo* b = find(inputs, in.name());
    if (b == nullptr) return InvalidArgument("input '" + in.name() + "' is not an input of the model");
    KILN_RETURN_IF_ERROR(CheckTensor("input", in.name(), in.data_type(), DimsOf(in), *b, batch_dims));
  }
  for (const BindingInfo& b : inputs) {
    bool listed = std::any_of(config->input().begin(), config->input().end(),
                              [&](const auto& in) { return in.name() == b.name; });
    if (!listed) return InvalidArgument("the model's input '" + b.name + "' is missing from the config");
  }
  for (const auto& out : config->output()) {
    const BindingInfo* b = find(outputs, out.name());
    if (b == nullptr) return InvalidArgument("output '" + out.name() + "' is not an output of the model");
    KILN_RETURN_IF_ERROR(CheckTensor("output", out.name(), out.data_type(), DimsOf(out), *b, batch_dims));
  }
  if (config->has_dynamic_batching()) {
    if (!batch_dims) return InvalidArgument("dynamic_batching needs max_batch_size > 0");
    const auto& db = config->dynamic_batching();
    for (int32_t size : db.preferred_batch_size()) {
      if (size < 1 || size > config->max_batch_size()) {
        return InvalidArgument("preferred_batch_size " + std::to_string(size) + " is outside 1.." +
                               std::to_string(config->max_batch_size()));
      }
    }
    const uint64_t levels = db.priority_levels();
    if (levels == 0 && (db.default_priority_level() != 0 || db.priority_queue_policy_size() > 0)) {
      return InvalidArgument("default_priority_level and priority_queue_policy need priority_levels > 0");
    }
    if (levels > 0 && (db.default_priority_level() < 1 || db.default_priority_level() > levels)) {
      return InvalidArgument("default_priority_level " + std::to_string(db.default_priority_level()) +
                             " is outside 1.." + std::to_string(levels) + " (priority_levels)");
    }
    for (const auto& [level, policy] : db.priority_queue_policy()) {
      if (level < 1 || level > levels) {
        return InvalidArgument("priority_queue_policy for level " + std::to_string(level) + " outside 1.." +
                               std::to_string(levels) + " (priority_levels)");
      }
    }
  }
  // Checked for plans too (they were built already), so that a mistyped request never passes silently.
  KILN_RETURN_IF_ERROR(RequestedPrecision(*config).status());
  for (const auto& group : config->instance_group()) {
    if (group.count() < 0) return InvalidArgument("instance_group count must not be negative");
    if (group.kind() == config::ModelInstanceGroup::KIND_CPU && group.gpus_size() > 0) {
      return InvalidArgument("instance_group of KIND_CPU cannot list gpus");
    }
  }
  return Status::Ok();
}

std::vector<int> InstanceDevices(const ModelConfig& config) {
  std::vector<int> devices;
  for (const auto& group : config.instance_group()) {
    const int count = group.count() > 0 ? group.count() : 1;
    const bool gpu = group.kind() == config::ModelInstanceGroup::KIND_GPU;
    std::vector<int> gpus(group.gpus().begin(), group.gpus().end());
    if (gpu && gpus.empty()) gpus.push_back(0);
    if (!gpu) gpus.assign(1, -1);
    for (int g : gpus) devices.insert(devices.end(), count, g);
  }
  if (devices.empty()) devices.push_back(-1);
  return devices;
}

}  // namespace kiln::server
