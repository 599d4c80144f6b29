#include "server/http_json.h"

#include <google/protobuf/util/json_util.h>

#include "server/kserve_types.h"

namespace kiln::server {
namespace {

using nlohmann::json;

template <typename Tensor>
json TensorMetadata(const Tensor& t, bool batched) {
  std::vector<int64_t> shape(t.dims().begin(), t.dims().end());
  if (batched) shape.insert(shape.begin(), -1);
  Expected<DataType> dtype = FromConfigType(t.data_type());
  return {{"name", t.name()}, {"datatype", dtype.ok() ? KServeTypeName(*dtype) : "INVALID"}, {"shape", shape}};
}

json Duration(const DurationStat& d) { return {{"count", d.count.load()}, {"ns", d.ns.load()}}; }

// proto3 JSON prints 64-bit integers as strings; Triton's clients expect numbers.
void Int64StringsToNumbers(json& j, bool numeric_key) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      Int64StringsToNumbers(it.value(), k == "dims" || k == "versions" || k == "max_queue_delay_microseconds" ||
                                            k == "default_timeout_microseconds");
    }
  } else if (j.is_array()) {
    for (auto& e : j) Int64StringsToNumbers(e, numeric_key);
  } else if (numeric_key && j.is_string()) {
    j = std::stoll(j.get<std::string>());
  }
}

}  // namespace

json ModelMetadataJson(const ModelVersion& version, const std::vector<std::string>& versions) {
  const ModelConfig& config = *version.config;
  const bool batched = config.max_batch_size() > 0;
  json inputs = json::array(), outputs = json::array();
  for (const auto& in : config.input()) inputs.push_back(TensorMetadata(in, batched));
  for (const auto& out : config.output()) outputs.push_back(TensorMetadata(out, batched));
  std::string platform = !config.platform().empty() ? config.platform() : "kiln";
  return {{"name", version.model}, {"versions", versions}, {"platform", platform},
          {"inputs", inputs},      {"outputs", outputs}};
}

json ModelConfigJson(const ModelConfig& config) {
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(config, &text, options).ok()) return json::object();
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return json::object();
  Int64StringsToNumbers(j, false);
  return j;
}

json ModelStatsJson(const std::vector<std::shared_ptr<ModelVersion>>& versions) {
  json stats = json::array();
  for (const auto& v : versions) {
    const ModelStats& s = *v->stats;
    std::lock_guard<std::mutex> counting(s.group);  // one execution's counters all or none
    json batches = json::array();
    for (const auto& [size, b] : s.batches()) {
      batches.push_back({{"batch_size", size},
                         {"compute_input", {{"count", b.count}, {"ns", b.compute_input_ns}}},
                         {"compute_infer", {{"count", b.count}, {"ns", b.compute_infer_ns}}},
                         {"compute_output", {{"count", b.count}, {"ns", b.compute_output_ns}}}});
    }
    json zero = {{"count", 0}, {"ns", 0}};
    stats.push_back({{"name", v->model},
                     {"version", std::to_string(v->version)},
                     {"last_inference", s.last_inference_ms.load()},
                     {"inference_count", s.inference_count.load()},
                     {"execution_count", s.execution_count.load()},
                     {"inference_stats",
                      {{"success", Duration(s.success)},
                       {"fail", Duration(s.fail)},
                       {"queue", Duration(s.queue)},
                       {"compute_input", Duration(s.compute_input)},
                       {"compute_infer", Duration(s.compute_infer)},
                       {"compute_output", Duration(s.compute_output)},
                       {"cache_hit", zero},
                       {"cache_miss", zero}}},
                     {"batch_stats", batches}});
  }
  return {{"model_stats", stats}};
}

}  // namespace kiln::server
