#include "server/grpc_codec.h"

#include <algorithm>
#include <cstring>

#include "server/kserve_types.h"

namespace kiln::server {
namespace {

template <typename Dst, typename Field>
Status CopyTyped(const Field& values, const std::string& name, HostTensor* tensor) {
  if (static_cast<int64_t>(values.size()) != tensor->numel()) {
    return InvalidArgument("input '" + name + "': " + std::to_string(values.size()) + " values for a shape of " +
                           std::to_string(tensor->numel()) + " elements");
  }
  Dst* dst = tensor->data_as<Dst>();
  for (int i = 0; i < values.size(); ++i) dst[i] = static_cast<Dst>(values.Get(i));
  return Status::Ok();
}

// The typed contents of one input (the field of its datatype's family) into `tensor`.
Status FromContents(const inference::InferTensorContents& c, const std::string& name, HostTensor* tensor) {
  switch (tensor->dtype()) {
    case DataType::kBool: return CopyTyped<bool>(c.bool_contents(), name, tensor);
    case DataType::kInt8: return CopyTyped<int8_t>(c.int_contents(), name, tensor);
    case DataType::kInt16: return CopyTyped<int16_t>(c.int_contents(), name, tensor);
    case DataType::kInt32: return CopyTyped<int32_t>(c.int_contents(), name, tensor);
    case DataType::kInt64: return CopyTyped<int64_t>(c.int64_contents(), name, tensor);
    case DataType::kUInt8: return CopyTyped<uint8_t>(c.uint_contents(), name, tensor);
    case DataType::kUInt16: return CopyTyped<uint16_t>(c.uint_contents(), name, tensor);
    case DataType::kUInt32: return CopyTyped<uint32_t>(c.uint_contents(), name, tensor);
    case DataType::kUInt64: return CopyTyped<uint64_t>(c.uint64_contents(), name, tensor);
    case DataType::kFloat32: return CopyTyped<float>(c.fp32_contents(), name, tensor);
    case DataType::kFloat64: return CopyTyped<double>(c.fp64_contents(), name, tensor);
    case DataType::kFloat16:
    case DataType::kBFloat16: break;
  }
  return InvalidArgument("input '" + name + "': " + KServeTypeName(tensor->dtype()) +
                         " data must be sent in raw_input_contents");
}

using ParameterMap = google::protobuf::Map<std::string, inference::InferParameter>;

// A non-negative integer parameter (int64_param or uint64_param).
Expected<uint64_t> UnsignedParameter(const inference::InferParameter& p, const std::string& what) {
  if (p.has_uint64_param()) return p.uint64_param();
  if (p.has_int64_param() && p.int64_param() >= 0) return static_cast<uint64_t>(p.int64_param());
  return InvalidArgument(what + " must be a non-negative integer");
}

// The shared_memory_* parameters of an input or requested output; unused when it names no region.
Expected<SharedMemoryRef> SharedMemoryRefOf(const ParameterMap& params, const std::string& what) {
  SharedMemoryRef ref;
  auto region = params.find("shared_memory_region");
  auto size = params.find("shared_memory_byte_size");
  auto offset = params.find("shared_memory_offset");
  if (region == params.end()) {
    if (size != params.end() || offset != params.end()) {
      return InvalidArgument(what + ": shared_memory_byte_size/offset without shared_memory_region");
    }
    return ref;
  }
  if (!region->second.has_string_param() || region->second.string_param().empty()) {
    return InvalidArgument(what + ": shared_memory_region must be a non-empty string");
  }
  if (size == params.end()) return InvalidArgument(what + ": shared_memory_byte_size is missing");
  KILN_ASSIGN_OR_RETURN(ref.byte_size, UnsignedParameter(size->second, what + ": shared_memory_byte_size"));
  if (offset != params.end()) {
    KILN_ASSIGN_OR_RETURN(ref.offset, UnsignedParameter(offset->second, what + ": shared_memory_offset"));
  }
  ref.region = region->second.string_param();
  return ref;
}

}  // namespace

grpc::Status ToGrpc(const Status& status) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (status.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case StatusCode::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case StatusCode::kUnsupported: code = grpc::StatusCode::UNIMPLEMENTED; break;
    case StatusCode::kDataLoss:
    case StatusCode::kInternal: code = grpc::StatusCode::INTERNAL; break;
  }
  return grpc::Status(code, status.message());
}

// "" -> -1 (the latest ready version); otherwise a non-negative decimal number.
Expected<int64_t> ParseVersion(const std::string& text) {
  if (text.empty()) return int64_t{-1};
  if (text.size() > 18 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return InvalidArgument("bad model version '" + text + "'");
  }
  return static_cast<int64_t>(std::stoll(text));
}
Expected<DecodedInfer> DecodeInfer(const inference::ModelInferRequest& in, const SharedMemoryManager& shm) {
  const bool raw = in.raw_input_contents_size() > 0;
  int shm_inputs = 0;
  DecodedInfer out;
  for (int i = 0; i < in.inputs_size(); ++i) {
    const auto& tensor = in.inputs(i);
    const std::string& name = tensor.name();
    Expected<DataType> dtype = ParseKServeType(tensor.datatype());
    if (!dtype.ok()) return dtype.status().WithContext("input '" + name + "'");
    std::vector<int64_t> dims;
    int64_t numel = 1;
    for (int64_t d : tensor.shape()) {
      if (d < 0) return InvalidArgument("input '" + name + "': negative dim " + std::to_string(d) + " in its shape");
      if (d > 0 && numel > (int64_t{1} << 40) / d) return InvalidArgument("input '" + name + "': shape too large");
      numel *= d;
      dims.push_back(d);
    }
    KILN_ASSIGN_OR_RETURN(SharedMemoryRef ref, SharedMemoryRefOf(tensor.parameters(), "input '" + name + "'"));
    if (ref.used()) {
      ++shm_inputs;
      KILN_ASSIGN_OR_RETURN(HostTensor host, shm.ReadTensor(name, ref, *dtype, dims));
      out.request.inputs.push_back({name, std::move(host)});
      continue;
    }
    HostTensor host(*dtype, dims);
    if (raw) {
      // raw_input_contents holds one entry per input not in shared memory, in order.
      const int index = i - shm_inputs;
      if (index >= in.raw_input_contents_size()) {
        return InvalidArgument("raw_input_contents has " + std::to_string(in.raw_input_contents_size()) +
                               " entries for more inputs");
      }
      const std::string& bytes = in.raw_input_contents(index);
      if (bytes.size() != host.nbytes()) {
        return InvalidArgument("input '" + name + "': " + std::to_string(bytes.size()) +
                               " bytes of raw contents for a shape of " + std::to_string(host.nbytes()) + " bytes");
      }
      if (!bytes.empty()) std::memcpy(host.data(), bytes.data(), bytes.size());
    } else {
      Status st = FromContents(tensor.contents(), name, &host);
      if (!st.ok()) return st;
    }
    out.request.inputs.push_back({name, std::move(host)});
  }
  if (raw && in.raw_input_contents_size() != in.inputs_size() - shm_inputs) {
    return InvalidArgument("raw_input_contents has " + std::to_string(in.raw_input_contents_size()) +
                           " entries for " + std::to_string(in.inputs_size() - shm_inputs) +
                           " inputs not in shared memory");
  }
  for (const auto& o : in.outputs()) {
    out.request.outputs.push_back(o.name());
    KILN_ASSIGN_OR_RETURN(SharedMemoryRef ref, SharedMemoryRefOf(o.parameters(), "output '" + o.name() + "'"));
    if (ref.used()) KILN_RETURN_IF_ERROR(shm.CheckOutput(o.name(), ref));
    out.output_shm.push_back(std::move(ref));
  }
  auto timeout = in.parameters().find("timeout");
  if (timeout != in.parameters().end()) {
    const inference::InferParameter& p = timeout->second;
    if (p.has_int64_param() && p.int64_param() > 0) out.request.timeout_us = static_cast<uint64_t>(p.int64_param());
    if (p.has_uint64_param()) out.request.timeout_us = p.uint64_param();
  }
  if (auto priority = in.parameters().find("priority"); priority != in.parameters().end()) {
    KILN_ASSIGN_OR_RETURN(out.request.priority, UnsignedParameter(priority->second, "the 'priority' parameter"));
  }
  return out;
}

// Outputs go in raw_output_contents, one entry per output in order; an output written to shared memory
// keeps an empty entry there (so clients can still match entries to outputs by position).
Status EncodeInfer(const InferResult& result, const std::vector<SharedMemoryRef>& output_shm,
                   const SharedMemoryManager& shm, inference::ModelInferResponse* out) {
  for (size_t i = 0; i < result.outputs.size(); ++i) {
    const NamedTensor& t = result.outputs[i];
    auto* tensor = out->add_outputs();
    tensor->set_name(t.name);
    tensor->set_datatype(KServeTypeName(t.tensor.dtype()));
    for (int64_t d : t.tensor.dims()) tensor->add_shape(d);
    if (i < output_shm.size() && output_shm[i].used()) {
      KILN_RETURN_IF_ERROR(shm.WriteTensor(t.name, output_shm[i], t.tensor));
      auto& params = *tensor->mutable_parameters();
      params["shared_memory_region"].set_string_param(output_shm[i].region);
      params["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(t.tensor.nbytes()));
      if (output_shm[i].offset > 0) {
        params["shared_memory_offset"].set_int64_param(static_cast<int64_t>(output_shm[i].offset));
      }
      out->add_raw_output_contents();
      continue;
    }
    out->add_raw_output_contents(static_cast<const char*>(t.tensor.data()), t.tensor.nbytes());
  }
  return Status::Ok();
}

// Triton's GRPCInferenceService on the callback API: ModelInfer finishes from the scheduler's callback, so

}  // namespace kiln::server
