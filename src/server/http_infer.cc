#include "server/http_infer.h"

#include <cstring>

namespace kiln::server {
namespace {

using nlohmann::json;

void Flatten(const json& j, std::vector<const json*>* out) {
  if (j.is_array()) {
    for (const json& e : j) Flatten(e, out);
  } else {
    out->push_back(&j);
  }
}

template <typename T>
bool Store(const json& v, void* dst) {
  T value;
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return false;
    value = v.get<bool>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return false;
    value = v.get<T>();
  } else {
    if (!v.is_number_integer()) return false;
    if constexpr (std::is_unsigned_v<T>) {
      if (v.is_number_unsigned() ? false : v.get<int64_t>() < 0) return false;
    }
    value = v.get<T>();
  }
  std::memcpy(dst, &value, sizeof(T));
  return true;
}

bool StoreAs(DataType dtype, const json& v, void* dst) {
  switch (dtype) {
    case DataType::kFloat32: return Store<float>(v, dst);
    case DataType::kFloat64: return Store<double>(v, dst);
    case DataType::kInt8: return Store<int8_t>(v, dst);
    case DataType::kInt16: return Store<int16_t>(v, dst);
    case DataType::kInt32: return Store<int32_t>(v, dst);
    case DataType::kInt64: return Store<int64_t>(v, dst);
    case DataType::kUInt8: return Store<uint8_t>(v, dst);
    case DataType::kUInt16: return Store<uint16_t>(v, dst);
    case DataType::kUInt32: return Store<uint32_t>(v, dst);
    case DataType::kUInt64: return Store<uint64_t>(v, dst);
    case DataType::kBool: return Store<bool>(v, dst);
    case DataType::kFloat16:
    case DataType::kBFloat16: return false;
  }
  return false;
}

template <typename T>
json ToJsonArray(const HostTensor& t) {
  json out = json::array();
  const T* p = t.data_as<T>();
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(p[i]);
  return out;
}

// Elements of a shape; -1 when absurdly large (no request body holds 2^40 elements).
int64_t Numel(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d > 0 && n > (int64_t{1} << 40) / d) return -1;
    n *= d;
  }
  return n;
}

const json* Param(const json& object, const char* name) {
  auto params = object.find("parameters");
  if (params == object.end() || !params->is_object()) return nullptr;
  auto it = params->find(name);
  return it == params->end() ? nullptr : &*it;
}

// The shared_memory_* parameters of an input or requested output; unused when it names no region.
Expected<SharedMemoryRef> SharedMemoryRefOf(const json& tensor, const std::string& what) {
  SharedMemoryRef ref;
  const json* region = Param(tensor, "shared_memory_region");
  const json* size = Param(tensor, "shared_memory_byte_size");
  const json* offset = Param(tensor, "shared_memory_offset");
  if (region == nullptr) {
    if (size != nullptr || offset != nullptr) {
      return InvalidArgument(what + ": shared_memory_byte_size/offset without shared_memory_region");
    }
    return ref;
  }
  if (!region->is_string() || region->get<std::string>().empty()) {
    return InvalidArgument(what + ": shared_memory_region must be a non-empty string");
  }
  if (size == nullptr || !size->is_number_unsigned()) {
    return InvalidArgument(what + ": shared_memory_byte_size must be given as a non-negative integer");
  }
  if (offset != nullptr && !offset->is_number_unsigned()) {
    return InvalidArgument(what + ": shared_memory_offset must be a non-negative integer");
  }
  ref.region = region->get<std::string>();
  ref.byte_size = size->get<uint64_t>();
  ref.offset = offset != nullptr ? offset->get<uint64_t>() : 0;
  return ref;
}

}  // namespace

Expected<HostTensor> TensorFromJson(const json& data, DataType dtype, const std::vector<int64_t>& dims,
                                    const std::string& name) {
  if (dtype == DataType::kFloat16 || dtype == DataType::kBFloat16) {
    return InvalidArgument("input '" + name + "': " + KServeTypeName(dtype) +
                           " data must be sent in binary (binary_data_size)");
  }
  std::vector<const json*> values;
  Flatten(data, &values);
  const int64_t numel = Numel(dims);
  if (static_cast<int64_t>(values.size()) != numel) {
    return InvalidArgument("input '" + name + "': " + std::to_string(values.size()) + " values for a shape of " +
                           (numel < 0 ? std::string("too many") : std::to_string(numel)) + " elements");
  }
  HostTensor tensor(dtype, dims);
  char* dst = static_cast<char*>(tensor.data());
  const size_t size = DataTypeSize(dtype);
  for (size_t i = 0; i < values.size(); ++i) {
    if (!StoreAs(dtype, *values[i], dst + i * size)) {
      return InvalidArgument("input '" + name + "': value " + values[i]->dump() + " is not a valid " +
                             KServeTypeName(dtype));
    }
  }
  return tensor;
}

json TensorToJson(const HostTensor& t) {
  switch (t.dtype()) {
    case DataType::kFloat32: return ToJsonArray<float>(t);
    case DataType::kFloat64: return ToJsonArray<double>(t);
    case DataType::kInt8: return ToJsonArray<int8_t>(t);
    case DataType::kInt16: return ToJsonArray<int16_t>(t);
    case DataType::kInt32: return ToJsonArray<int32_t>(t);
    case DataType::kInt64: return ToJsonArray<int64_t>(t);
    case DataType::kUInt8: return ToJsonArray<uint8_t>(t);
    case DataType::kUInt16: return ToJsonArray<uint16_t>(t);
    case DataType::kUInt32: return ToJsonArray<uint32_t>(t);
    case DataType::kUInt64: return ToJsonArray<uint64_t>(t);
    case DataType::kBool: return ToJsonArray<bool>(t);
    case DataType::kFloat16:
    case DataType::kBFloat16: return ToJsonArray<uint16_t>(t);  // raw bits; clients ask for binary
  }
  return json::array();
}

Expected<HttpInferRequest> DecodeInferRequest(const std::string& body, size_t header_length,
                                              const SharedMemoryManager& shm) {
  if (header_length > body.size()) {
    return InvalidArgument("Inference-Header-Content-Length " + std::to_string(header_length) +
                           " exceeds the body's " + std::to_string(body.size()) + " bytes");
  }
  const size_t json_size = header_length > 0 ? header_length : body.size();
  json j = json::parse(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(json_size), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("the request body is not a JSON object");
  HttpInferRequest out;
  if (auto id = j.find("id"); id != j.end() && id->is_string()) out.id = id->get<std::string>();
  if (const json* t = Param(j, "timeout"); t != nullptr && t->is_number_unsigned()) {
    out.request.timeout_us = t->get<uint64_t>();
  }
  if (const json* priority = Param(j, "priority"); priority != nullptr) {
    if (!priority->is_number_unsigned()) {
      return InvalidArgument("the 'priority' parameter must be a non-negative integer");
    }
    out.request.priority = priority->get<uint64_t>();
  }
  if (const json* b = Param(j, "binary_data_output"); b != nullptr && b->is_boolean()) {
    out.binary_default = b->get<bool>();
  }
  auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array()) return InvalidArgument("the request has no 'inputs' array");
  size_t offset = json_size;
  for (const json& in : *inputs) {
    if (!in.is_object() || !in.contains("name") || !in["name"].is_string()) {
      return InvalidArgument("an input has no 'name'");
    }
    const std::string name = in["name"].get<std::string>();
    if (!in.contains("datatype") || !in["datatype"].is_string()) {
      return InvalidArgument("input '" + name + "' has no 'datatype'");
    }
    Expected<DataType> dtype = ParseKServeType(in["datatype"].get<std::string>());
    if (!dtype.ok()) return dtype.status().WithContext("input '" + name + "'");
    if (!in.contains("shape") || !in["shape"].is_array()) {
      return InvalidArgument("input '" + name + "' has no 'shape'");
    }
    std::vector<int64_t> dims;
    for (const json& d : in["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return InvalidArgument("input '" + name + "': shape must hold non-negative integers");
      }
      dims.push_back(d.get<int64_t>());
    }
    KILN_ASSIGN_OR_RETURN(SharedMemoryRef ref, SharedMemoryRefOf(in, "input '" + name + "'"));
    if (ref.used()) {
      if (Param(in, "binary_data_size") != nullptr || in.contains("data")) {
        return InvalidArgument("input '" + name + "': shared memory and data in the request at once");
      }
      KILN_ASSIGN_OR_RETURN(HostTensor tensor, shm.ReadTensor(name, ref, *dtype, dims));
      out.request.inputs.push_back({name, std::move(tensor)});
      continue;
    }
    if (const json* size = Param(in, "binary_data_size"); size != nullptr) {
      if (!size->is_number_unsigned()) return InvalidArgument("input '" + name + "': bad binary_data_size");
      const size_t bytes = size->get<size_t>();
      const int64_t numel = Numel(dims);
      if (numel < 0 || bytes != static_cast<size_t>(numel) * DataTypeSize(*dtype)) {
        return InvalidArgument("input '" + name + "': binary_data_size " + std::to_string(bytes) + " for " +
                               std::to_string(numel) + " elements of " + KServeTypeName(*dtype));
      }
      if (offset + bytes > body.size()) {
        return InvalidArgument("input '" + name + "': binary data runs past the end of the body");
      }
      out.request.inputs.push_back({name, HostTensor::Copy(*dtype, dims, body.data() + offset)});
      offset += bytes;
      continue;
    }
    if (!in.contains("data")) return InvalidArgument("input '" + name + "' has no 'data'");
    Expected<HostTensor> tensor = TensorFromJson(in["data"], *dtype, dims, name);
    if (!tensor.ok()) return tensor.status();
    out.request.inputs.push_back({name, *tensor});
  }
  if (offset != body.size() && header_length > 0) {
    return InvalidArgument(std::to_string(body.size() - offset) + " bytes of binary data are not claimed by any input");
  }
  if (auto outputs = j.find("outputs"); outputs != j.end()) {
    if (!outputs->is_array()) return InvalidArgument("'outputs' must be an array");
    for (const json& o : *outputs) {
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
        return InvalidArgument("a requested output has no 'name'");
      }
      const std::string name = o["name"].get<std::string>();
      out.request.outputs.push_back(name);
      KILN_ASSIGN_OR_RETURN(SharedMemoryRef ref, SharedMemoryRefOf(o, "output '" + name + "'"));
      if (ref.used()) KILN_RETURN_IF_ERROR(shm.CheckOutput(name, ref));
      out.shared_memory.push_back(std::move(ref));
      const json* b = Param(o, "binary_data");
      out.binary.push_back(b != nullptr && b->is_boolean() ? b->get<bool>() : out.binary_default);
    }
  }
  return out;
}

Expected<HttpBody> EncodeInferResponse(const HttpInferRequest& request, const InferResult& result,
                                       const std::string& model, const std::string& version,
                                       const SharedMemoryManager& shm) {
  json j = {{"model_name", model}, {"model_version", version}};
  if (!request.id.empty()) j["id"] = request.id;
  json outputs = json::array();
  std::string binary;
  for (size_t i = 0; i < result.outputs.size(); ++i) {
    const HostTensor& t = result.outputs[i].tensor;
    json o = {{"name", result.outputs[i].name}, {"datatype", KServeTypeName(t.dtype())}, {"shape", t.dims()}};
    const bool as_binary = i < request.binary.size() ? request.binary[i] : request.binary_default;
    if (i < request.shared_memory.size() && request.shared_memory[i].used()) {
      const SharedMemoryRef& ref = request.shared_memory[i];
      KILN_RETURN_IF_ERROR(shm.WriteTensor(result.outputs[i].name, ref, t));
      o["parameters"] = {{"shared_memory_region", ref.region}, {"shared_memory_byte_size", t.nbytes()}};
      if (ref.offset > 0) o["parameters"]["shared_memory_offset"] = ref.offset;
    } else if (as_binary) {
      o["parameters"] = {{"binary_data_size", t.nbytes()}};
      binary.append(static_cast<const char*>(t.data()), t.nbytes());
    } else {
      o["data"] = TensorToJson(t);
    }
    outputs.push_back(std::move(o));
  }
  j["outputs"] = std::move(outputs);
  HttpBody body;
  body.content = j.dump();
  if (binary.empty()) {
    body.content_type = "application/json";
    return body;
  }
  body.header_length = body.content.size();
  body.content += binary;
  body.content_type = "application/octet-stream";
  return body;
}

}  // namespace kiln::server
