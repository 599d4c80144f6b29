#include "server/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>

#include "server/grpc_codec.h"
#include "server/grpc_service.grpc.pb.h"
#include "server/grpc_stream.h"
#include "server/kserve_types.h"

namespace kiln::server {
namespace {

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

// no gRPC thread waits while a request is queued or batched.
class Service final : public inference::GRPCInferenceService::CallbackService {
 public:
  Service(ModelRepository& repo, SharedMemoryManager& shm, const GrpcOptions& options,
          const std::atomic<bool>& ready)
      : repo_(repo), shm_(shm), options_(options), ready_(ready) {}

  using Reactor = grpc::ServerUnaryReactor;
  using Context = grpc::CallbackServerContext;

  Reactor* ServerLive(Context* ctx, const inference::ServerLiveRequest*, inference::ServerLiveResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kHealth)) return refused;
    res->set_live(true);
    return Done(ctx, Status::Ok());
  }

  Reactor* ServerReady(Context* ctx, const inference::ServerReadyRequest*,
                       inference::ServerReadyResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kHealth)) return refused;
    res->set_ready(ready_.load() && repo_.AllReady());
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelReady(Context* ctx, const inference::ModelReadyRequest* req,
                      inference::ModelReadyResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kHealth)) return refused;
    Expected<int64_t> version = ParseVersion(req->version());
    if (!version.ok()) return Done(ctx, version.status());
    res->set_ready(repo_.Find(req->name(), *version).ok());
    return Done(ctx, Status::Ok());
  }

  Reactor* ServerMetadata(Context* ctx, const inference::ServerMetadataRequest*,
                          inference::ServerMetadataResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kMetadata)) return refused;
    res->set_name("kiln");
    res->set_version(KILN_VERSION);
    for (const char* e : {"model_repository", "model_configuration", "statistics", "schedule_policy",
                          "system_shared_memory", "cuda_shared_memory"}) {
      res->add_extensions(e);
    }
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelMetadata(Context* ctx, const inference::ModelMetadataRequest* req,
                         inference::ModelMetadataResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kMetadata)) return refused;
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
    if (Reactor* refused = Refuse(ctx, ApiCategory::kModelConfig)) return refused;
    Expected<std::shared_ptr<ModelVersion>> v = Find(req->name(), req->version());
    if (!v.ok()) return Done(ctx, v.status());
    *res->mutable_config() = *(*v)->config;
    return Done(ctx, Status::Ok());
  }

  Reactor* ModelStatistics(Context* ctx, const inference::ModelStatisticsRequest* req,
                           inference::ModelStatisticsResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kStatistics)) return refused;
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
      std::lock_guard<std::mutex> counting(s.group);  // one execution's counters all or none
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
    if (Reactor* refused = Refuse(ctx, ApiCategory::kInference)) return refused;
    Expected<std::shared_ptr<ModelVersion>> v = Find(req->model_name(), req->model_version());
    if (!v.ok()) return Done(ctx, v.status());
    Expected<DecodedInfer> request = DecodeInfer(*req, shm_);
    if (!request.ok()) return Done(ctx, request.status());
    res->set_model_name((*v)->model);
    res->set_model_version(std::to_string((*v)->version));
    res->set_id(req->id());
    Reactor* reactor = ctx->DefaultReactor();
    // The callback holds no reference to the model version: the scheduler it belongs to may be the one
    // finishing its queue while the version is unloaded.
    (*v)->scheduler->Enqueue(std::move(request->request),
                             [this, reactor, res, output_shm = std::move(request->output_shm)](InferResult result) {
                               Status status = result.status;
                               if (status.ok()) status = EncodeInfer(result, output_shm, shm_, res);
                               reactor->Finish(ToGrpc(status));
                             });
    return reactor;
  }

  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>* ModelStreamInfer(
      Context* ctx) override {
    const std::optional<std::string> denied = Denial(ctx, ApiCategory::kInference);
    return StartInferStream(repo_, shm_,
                            denied ? grpc::Status(grpc::StatusCode::PERMISSION_DENIED, *denied) : grpc::Status::OK);
  }

  Reactor* RepositoryIndex(Context* ctx, const inference::RepositoryIndexRequest* req,
                           inference::RepositoryIndexResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kModelRepository)) return refused;
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
    if (Reactor* refused = Refuse(ctx, ApiCategory::kModelRepository)) return refused;
    return Done(ctx, Control(req->model_name(), true));
  }

  Reactor* RepositoryModelUnload(Context* ctx, const inference::RepositoryModelUnloadRequest* req,
                                 inference::RepositoryModelUnloadResponse*) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kModelRepository)) return refused;
    return Done(ctx, Control(req->model_name(), false));
  }

  Reactor* SystemSharedMemoryStatus(Context* ctx, const inference::SystemSharedMemoryStatusRequest* req,
                                    inference::SystemSharedMemoryStatusResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kSharedMemory)) return refused;
    Expected<std::vector<SystemRegionInfo>> regions = shm_.SystemStatus(req->name());
    if (!regions.ok()) return Done(ctx, regions.status());
    for (const SystemRegionInfo& r : *regions) {
      auto& row = (*res->mutable_regions())[r.name];
      row.set_name(r.name);
      row.set_key(r.key);
      row.set_offset(r.offset);
      row.set_byte_size(r.byte_size);
    }
    return Done(ctx, Status::Ok());
  }

  Reactor* SystemSharedMemoryRegister(Context* ctx, const inference::SystemSharedMemoryRegisterRequest* req,
                                      inference::SystemSharedMemoryRegisterResponse*) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kSharedMemory)) return refused;
    return Done(ctx, shm_.RegisterSystem(req->name(), req->key(), req->offset(), req->byte_size()));
  }

  Reactor* SystemSharedMemoryUnregister(Context* ctx, const inference::SystemSharedMemoryUnregisterRequest* req,
                                        inference::SystemSharedMemoryUnregisterResponse*) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kSharedMemory)) return refused;
    shm_.UnregisterSystem(req->name());
    return Done(ctx, Status::Ok());
  }

  Reactor* CudaSharedMemoryStatus(Context* ctx, const inference::CudaSharedMemoryStatusRequest* req,
                                  inference::CudaSharedMemoryStatusResponse* res) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kSharedMemory)) return refused;
    Expected<std::vector<CudaRegionInfo>> regions = shm_.CudaStatus(req->name());
    if (!regions.ok()) return Done(ctx, regions.status());
    for (const CudaRegionInfo& r : *regions) {
      auto& row = (*res->mutable_regions())[r.name];
      row.set_name(r.name);
      row.set_device_id(static_cast<uint64_t>(r.device_id));
      row.set_byte_size(r.byte_size);
    }
    return Done(ctx, Status::Ok());
  }

  Reactor* CudaSharedMemoryRegister(Context* ctx, const inference::CudaSharedMemoryRegisterRequest* req,
                                    inference::CudaSharedMemoryRegisterResponse*) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kSharedMemory)) return refused;
    return Done(ctx, shm_.RegisterCuda(req->name(), req->raw_handle(), req->device_id(), req->byte_size()));
  }

  Reactor* CudaSharedMemoryUnregister(Context* ctx, const inference::CudaSharedMemoryUnregisterRequest* req,
                                      inference::CudaSharedMemoryUnregisterResponse*) override {
    if (Reactor* refused = Refuse(ctx, ApiCategory::kSharedMemory)) return refused;
    shm_.UnregisterCuda(req->name());
    return Done(ctx, Status::Ok());
  }

 private:
  // Why a call of a restricted category is refused (its metadata lacks the key), or nullopt.
  std::optional<std::string> Denial(Context* ctx, ApiCategory category) const {
    if (options_.restricted.empty()) return std::nullopt;
    const auto& metadata = ctx->client_metadata();
    return options_.restricted.Denied(category, [&metadata](const std::string& key) {
      auto it = metadata.find(key);
      return it == metadata.end() ? std::string() : std::string(it->second.data(), it->second.size());
    });
  }

  // Finishes a call of a restricted category that lacks the required metadata; nullptr lets it through.
  Reactor* Refuse(Context* ctx, ApiCategory category) {
    const std::optional<std::string> denied = Denial(ctx, category);
    if (!denied) return nullptr;
    Reactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, *denied));
    return reactor;
  }

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
  SharedMemoryManager& shm_;
  const GrpcOptions& options_;
  const std::atomic<bool>& ready_;
};

}  // namespace

struct GrpcServer::Impl {
  ModelRepository& repo;
  SharedMemoryManager& shm;
  GrpcOptions options;
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool stopped = false;

  Impl(ModelRepository& r, SharedMemoryManager& m, GrpcOptions o) : repo(r), shm(m), options(std::move(o)) {}
};

GrpcServer::GrpcServer(ModelRepository& repository, SharedMemoryManager& shared_memory, GrpcOptions options)
    : impl_(std::make_unique<Impl>(repository, shared_memory, std::move(options))) {}

GrpcServer::~GrpcServer() { Stop(); }

Status GrpcServer::Start() {
  impl_->service = std::make_unique<Service>(impl_->repo, impl_->shm, impl_->options, ready_);
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
