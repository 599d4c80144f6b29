#include "server/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "server/grpc_service.grpc.pb.h"
#include "server/http_infer.h"  // KServe datatype names, shared with the HTTP front end

namespace kiln::server {
namespace {

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

template <typename Tensor>
void FillTensorMetadata(const Tensor& t, bool batched, inference::ModelMetadataResponse::TensorMetadata* out) {
  out->set_name(t.name());
  Expected<DataType> dtype = FromConfigType(t.data_type());
  out->set_datatype(dtype.ok() ? KServeTypeName(*dtype) : "INVALID");
  if (batched) out->add_shape(-1);
  for (int64_t d : t.dims()) out->add_shape(d);
}

void FillDuration(uint64_t count, uint64_t ns, inference::StatisticDuration* out) {
  out->set_count(count);
  out->set_ns(ns);
}

void FillDuration(const DurationStat& d, inference::StatisticDuration* out) {
  FillDuration(d.count.load(), d.ns.load(), out);
}

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

Expected<InferRequest> DecodeInfer(const inference::ModelInferRequest& in) {
  const bool raw = in.raw_input_contents_size() > 0;
  if (raw && in.raw_input_contents_size() != in.inputs_size()) {
    return InvalidArgument("raw_input_contents has " + std::to_string(in.raw_input_contents_size()) +
                           " entries for " + std::to_string(in.inputs_size()) + " inputs");
  }
  InferRequest out;
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
    HostTensor host(*dtype, dims);
    if (raw) {
      const std::string& bytes = in.raw_input_contents(i);
      if (bytes.size() != host.nbytes()) {
        return InvalidArgument("input '" + name + "': " + std::to_string(bytes.size()) +
                               " bytes of raw contents for a shape of " + std::to_string(host.nbytes()) + " bytes");
      }
      if (!bytes.empty()) std::memcpy(host.data(), bytes.data(), bytes.size());
    } else {
      Status st = FromContents(tensor.contents(), name, &host);
      if (!st.ok()) return st;
    }
    out.inputs.push_back({name, std::move(host)});
  }
  for (const auto& o : in.outputs()) out.outputs.push_back(o.name());
  auto timeout = in.parameters().find("timeout");
  if (timeout != in.parameters().end()) {
    const inference::InferParameter& p = timeout->second;
    if (p.has_int64_param() && p.int64_param() > 0) out.timeout_us = static_cast<uint64_t>(p.int64_param());
    if (p.has_uint64_param()) out.timeout_us = p.uint64_param();
  }
  return out;
}

void EncodeInfer(const InferResult& result, inference::ModelInferResponse* out) {
  for (const NamedTensor& t : result.outputs) {
    auto* tensor = out->add_outputs();
    tensor->set_name(t.name);
    tensor->set_datatype(KServeTypeName(t.tensor.dtype()));
    for (int64_t d : t.tensor.dims()) tensor->add_shape(d);
    out->add_raw_output_contents(static_cast<const char*>(t.tensor.data()), t.tensor.nbytes());
  }
}

// Triton's GRPCInferenceService on the callback API: ModelInfer finishes from the scheduler's callback, so
// no gRPC thread waits while a request is queued or batched.
class Service final : public inference::GRPCInferenceService::CallbackService {
 public:
  Service(ModelRepository& repo, const GrpcOptions& options, const std::atomic<bool>& ready)
      : repo_(repo), options_(options), ready_(ready) {}

  using Reactor = grpc::ServerUnaryReactor;
  using Context = grpc::CallbackServerContext;

  Reactor* ServerLive(Context* ctx, const inference::ServerLiveRequest*, inference::ServerLiveResponse* res) override {
    res->set_live(true);
    return Done(ctx, Status::Ok());
  }

  Reactor* ServerReady(Context* ctx, const inference::ServerReadyRequest*,
                       inference::ServerReadyResponse* res) override {
    res->set_ready(ready_.load() && repo_.AllReady());
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelReady(Context* ctx, const inference::ModelReadyRequest* req,
                      inference::ModelReadyResponse* res) override {
    Expected<int64_t> version = ParseVersion(req->version());
    if (!version.ok()) return Done(ctx, version.status());
    res->set_ready(repo_.Find(req->name(), *version).ok());
    return Done(ctx, Status::Ok());
  }

  Reactor* ServerMetadata(Context* ctx, const inference::ServerMetadataRequest*,
                          inference::ServerMetadataResponse* res) override {
    res->set_name("kiln");
    res->set_version(KILN_VERSION);
    for (const char* e : {"model_repository", "model_configuration", "statistics", "schedule_policy"}) {
      res->add_extensions(e);
    }
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelMetadata(Context* ctx, const inference::ModelMetadataRequest* req,
                         inference::ModelMetadataResponse* res) override {
    Expected<std::shared_ptr<ModelVersion>> v = Find(req->name(), req->version());
    if (!v.ok()) return Done(ctx, v.status());
    const config::ModelConfig& config = *(*v)->config;
    const bool batched = config.max_batch_size() > 0;
    res->set_name((*v)->model);
    for (const ModelIndexEntry& e : repo_.Index()) {
      if (e.name == (*v)->model && !e.version.empty()) res->add_versions(e.version);
    }
    res->set_platform(!config.platform().empty() ? config.platform() : "kiln");
    for (const auto& in : config.input()) FillTensorMetadata(in, batched, res->add_inputs());
    for (const auto& out : config.output()) FillTensorMetadata(out, batched, res->add_outputs());
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelConfig(Context* ctx, const inference::ModelConfigRequest* req,
                       inference::ModelConfigResponse* res) override {
    Expected<std::shared_ptr<ModelVersion>> v = Find(req->name(), req->version());
    if (!v.ok()) return Done(ctx, v.status());
    *res->mutable_config() = *(*v)->config;
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelStatistics(Context* ctx, const inference::ModelStatisticsRequest* req,
                           inference::ModelStatisticsResponse* res) override {
    std::vector<std::shared_ptr<ModelVersion>> list;
    if (req->name().empty()) {
      list = repo_.Ready();
    } else {
      Expected<std::shared_ptr<ModelVersion>> v = Find(req->name(), req->version());
      if (!v.ok()) return Done(ctx, v.status());
      for (const auto& r : repo_.Ready()) {
        if (r->model == (*v)->model && (req->version().empty() || r->version == (*v)->version)) list.push_back(r);
      }
    }
    for (const auto& v : list) {
      const ModelStats& s = *v->stats;
      inference::ModelStatistics* out = res->add_model_stats();
      out->set_name(v->model);
      out->set_version(std::to_string(v->version));
      out->set_last_inference(s.last_inference_ms.load());
      out->set_inference_count(s.inference_count.load());
      out->set_execution_count(s.execution_count.load());
      inference::InferStatistics* is = out->mutable_inference_stats();
      FillDuration(s.success, is->mutable_success());
      FillDuration(s.fail, is->mutable_fail());
      FillDuration(s.queue, is->mutable_queue());
      FillDuration(s.compute_input, is->mutable_compute_input());
      FillDuration(s.compute_infer, is->mutable_compute_infer());
      FillDuration(s.compute_output, is->mutable_compute_output());
      FillDuration(0, 0, is->mutable_cache_hit());
      FillDuration(0, 0, is->mutable_cache_miss());
      for (const auto& entry : s.batches()) {
        inference::InferBatchStatistics* b = out->add_batch_stats();
        b->set_batch_size(static_cast<uint64_t>(entry.first));
        FillDuration(entry.second.count, entry.second.compute_input_ns, b->mutable_compute_input());
        FillDuration(entry.second.count, entry.second.compute_infer_ns, b->mutable_compute_infer());
        FillDuration(entry.second.count, entry.second.compute_output_ns, b->mutable_compute_output());
      }
    }
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelInfer(Context* ctx, const inference::ModelInferRequest* req,
                      inference::ModelInferResponse* res) override {
    Expected<std::shared_ptr<ModelVersion>> v = Find(req->model_name(), req->model_version());
    if (!v.ok()) return Done(ctx, v.status());
    Expected<InferRequest> request = DecodeInfer(*req);
    if (!request.ok()) return Done(ctx, request.status());
    res->set_model_name((*v)->model);
    res->set_model_version(std::to_string((*v)->version));
    res->set_id(req->id());
    Reactor* reactor = ctx->DefaultReactor();
    // The callback holds no reference to the model version: the scheduler it belongs to may be the one
    // finishing its queue while the version is unloaded.
    (*v)->scheduler->Enqueue(std::move(*request), [reactor, res](InferResult result) {
      if (!result.status.ok()) {
        reactor->Finish(ToGrpc(result.status));
        return;
      }
      EncodeInfer(result, res);
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  Reactor* RepositoryIndex(Context* ctx, const inference::RepositoryIndexRequest* req,
                           inference::RepositoryIndexResponse* res) override {
    for (const ModelIndexEntry& e : repo_.Index()) {
      if (req->ready() && e.state != "READY") continue;
      auto* row = res->add_models();
      row->set_name(e.name);
      row->set_version(e.version);
      row->set_state(e.state);
      row->set_reason(e.reason);
    }
    return Done(ctx, Status::Ok());
  }

  Reactor* RepositoryModelLoad(Context* ctx, const inference::RepositoryModelLoadRequest* req,
                               inference::RepositoryModelLoadResponse*) override {
    return Done(ctx, Control(req->model_name(), true));
  }

  Reactor* RepositoryModelUnload(Context* ctx, const inference::RepositoryModelUnloadRequest* req,
                                 inference::RepositoryModelUnloadResponse*) override {
    return Done(ctx, Control(req->model_name(), false));
  }

 private:
  static Reactor* Done(Context* ctx, const Status& status) {
    Reactor* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpc(status));
    return reactor;
  }

  Expected<std::shared_ptr<ModelVersion>> Find(const std::string& name, const std::string& version_text) const {
    Expected<int64_t> version = ParseVersion(version_text);
    if (!version.ok()) return version.status();
    return repo_.Find(name, *version);
  }

  Status Control(const std::string& name, bool load) {
    if (!options_.allow_model_control) {
      return InvalidArgument("explicit model load/unload needs --model-control-mode explicit");
    }
    Status status;
    if (load) {
      const auto names = repo_.ScanNames();
      status = std::find(names.begin(), names.end(), name) == names.end()
                   ? NotFound("no model '" + name + "' in the repository")
                   : repo_.Load(name);
    } else {
      status = repo_.Unload(name);
    }
    // A model that exists but fails to load is a bad request, as over HTTP.
    if (!status.ok() && status.code() != StatusCode::kNotFound) return InvalidArgument(status.message());
    return status;
  }

  ModelRepository& repo_;
  const GrpcOptions& options_;
  const std::atomic<bool>& ready_;
};

}  // namespace

struct GrpcServer::Impl {
  ModelRepository& repo;
  GrpcOptions options;
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool stopped = false;

  Impl(ModelRepository& r, GrpcOptions o) : repo(r), options(std::move(o)) {}
};

GrpcServer::GrpcServer(ModelRepository& repository, GrpcOptions options)
    : impl_(std::make_unique<Impl>(repository, std::move(options))) {}

GrpcServer::~GrpcServer() { Stop(); }

Status GrpcServer::Start() {
  impl_->service = std::make_unique<Service>(impl_->repo, impl_->options, ready_);
  grpc::ServerBuilder builder;
  const std::string address = impl_->options.host + ":" + std::to_string(impl_->options.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl_->port);
  builder.RegisterService(impl_->service.get());
  builder.SetMaxReceiveMessageSize(impl_->options.max_message_bytes);
  builder.SetMaxSendMessageSize(std::numeric_limits<int>::max());
  impl_->server = builder.BuildAndStart();
  if (impl_->server == nullptr || impl_->port == 0) {
    impl_->server.reset();
    return Unavailable("gRPC: cannot listen on " + address);
  }
  return Status::Ok();
}

void GrpcServer::Stop(int drain_seconds) {
  if (impl_->server == nullptr || impl_->stopped) return;
  impl_->stopped = true;
  ready_ = false;
  // Refuses new calls at once; the calls in flight (queued inferences included) finish, up to the deadline.
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(drain_seconds));
  impl_->server->Wait();
}

int GrpcServer::port() const { return impl_->port; }

}  // namespace kiln::server
