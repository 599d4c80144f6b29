#include "server/grpc_stream.h"

#include <deque>
#include <memory>
#include <mutex>

#include "server/grpc_codec.h"

namespace kiln::server {
namespace {

using Request = inference::ModelInferRequest;
using Response = inference::ModelStreamInferResponse;

class InferStream final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  InferStream(ModelRepository& repo, SharedMemoryManager& shm, const grpc::Status& refused)
      : repo_(repo), shm_(shm) {
    if (!refused.ok()) {
      finished_ = true;
      Finish(refused);
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side (or the call ended)
      std::lock_guard<std::mutex> lock(mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    Handle(request_);
    request_.Clear();
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    outbox_.pop_front();
    if (!ok) {  // the call is broken: answers still to come are dropped
      broken_ = true;
      outbox_.clear();
    }
    WriteNextLocked();
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  void Handle(const Request& req) {
    auto response = std::make_shared<Response>();
    inference::ModelInferResponse* out = response->mutable_infer_response();
    out->set_id(req.id());
    out->set_model_name(req.model_name());
    Expected<int64_t> version = ParseVersion(req.model_version());
    using Found = Expected<std::shared_ptr<ModelVersion>>;
    Found v = version.ok() ? repo_.Find(req.model_name(), *version) : Found(version.status());
    Expected<DecodedInfer> decoded = v.ok() ? DecodeInfer(req, shm_) : Expected<DecodedInfer>(v.status());
    if (!decoded.ok()) {
      response->set_error_message(decoded.status().message());
      std::lock_guard<std::mutex> lock(mu_);
      PushLocked(std::move(*response));
      return;
    }
    out->set_model_version(std::to_string((*v)->version));
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++pending_;
    }
    // Not under mu_: a request refused at once is answered on this thread. The callback holds no reference
    // to the model version (its scheduler may be draining on unload); this reactor outlives the callback
    // because the stream finishes only when nothing is pending.
    auto done = [this, response, output_shm = std::move(decoded->output_shm)](InferResult result) {
      Status status = result.status;
      if (status.ok()) status = EncodeInfer(result, output_shm, shm_, response->mutable_infer_response());
      if (!status.ok()) {
        response->mutable_infer_response()->clear_outputs();
        response->mutable_infer_response()->clear_raw_output_contents();
        response->set_error_message(status.message());
      }
      std::lock_guard<std::mutex> lock(mu_);
      --pending_;
      PushLocked(std::move(*response));
      MaybeFinishLocked();
    };
    (*v)->scheduler->Enqueue(std::move(decoded->request), std::move(done));
  }

  void PushLocked(Response response) {
    if (broken_) return;
    outbox_.push_back(std::move(response));  // a deque keeps the element being written where it is
    WriteNextLocked();
  }

  void WriteNextLocked() {
    if (writing_ || outbox_.empty() || broken_) return;
    writing_ = true;
    StartWrite(&outbox_.front());
  }

  void MaybeFinishLocked() {
    if (finished_ || !reads_done_ || pending_ > 0 || writing_ || !outbox_.empty()) return;
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  ModelRepository& repo_;
  SharedMemoryManager& shm_;
  Request request_;  // the one being read
  std::mutex mu_;
  std::deque<Response> outbox_;  // front: being written
  int pending_ = 0;              // requests queued in a scheduler
  bool writing_ = false, reads_done_ = false, broken_ = false, finished_ = false;
};

}  // namespace

grpc::ServerBidiReactor<Request, Response>* StartInferStream(ModelRepository& repository,
                                                            SharedMemoryManager& shared_memory,
                                                            grpc::Status refused) {
  return new InferStream(repository, shared_memory, refused);
}

}  // namespace kiln::server
