#include "server/http_server.h"

#include <httplib.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <condition_variable>
#include <future>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>

#include "server/http_infer.h"
#include "server/http_json.h"
#include "server/metrics_text.h"

namespace kiln::server {
namespace {

using nlohmann::json;

int HttpStatus(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kInvalidArgument:
    case StatusCode::kUnsupported:
    case StatusCode::kOutOfRange: return 400;
    case StatusCode::kDataLoss:
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

void SendJson(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

void SendError(httplib::Response& res, const Status& status) {
  SendJson(res, HttpStatus(status.code()), {{"error", status.message()}});
}

int64_t VersionOf(const httplib::Request& req, size_t index) {
  if (req.matches.size() <= index || req.matches[index].length() == 0) return -1;
  return std::stoll(req.matches[index].str());
}

InferResult RunSync(ModelVersion& version, InferRequest request) {
  std::promise<InferResult> promise;
  std::future<InferResult> future = promise.get_future();
  version.scheduler->Enqueue(std::move(request), [&promise](InferResult r) { promise.set_value(std::move(r)); });
  return future.get();
}

std::vector<std::string> VersionNames(const ModelRepository& repo, const std::string& model) {
  std::vector<std::string> names;
  for (const ModelIndexEntry& e : repo.Index()) {
    if (e.name == model && !e.version.empty()) names.push_back(e.version);
  }
  return names;
}

// The shape of a nested JSON array (by its first elements).
std::vector<int64_t> NestedShape(const json& j) {
  std::vector<int64_t> dims;
  const json* p = &j;
  while (p->is_array()) {
    dims.push_back(static_cast<int64_t>(p->size()));
    if (p->empty()) break;
    p = &(*p)[0];
  }
  return dims;
}

// Standard base64 (padding optional); nullopt for any other character.
std::optional<std::string> DecodeBase64(const std::string& text) {
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') break;
    else return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

// A JSON request body that must be an object; InvalidArgument otherwise.
Expected<json> BodyObject(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("the request body is not a JSON object");
  return j;
}

// A non-negative integer field of a JSON object; `fallback` when absent and allowed.
Expected<uint64_t> UnsignedField(const json& j, const char* name, std::optional<uint64_t> fallback = std::nullopt) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (fallback) return *fallback;
    return InvalidArgument(std::string("'") + name + "' is missing");
  }
  if (!it->is_number_unsigned()) return InvalidArgument(std::string("'") + name + "' must be a non-negative integer");
  return it->get<uint64_t>();
}

// The restricted-API category of an endpoint (Triton's grouping); nullopt for an unknown path (404 anyway).
std::optional<ApiCategory> CategoryOf(const std::string& method, const std::string& path) {
  const auto starts = [&path](const char* prefix) { return path.rfind(prefix, 0) == 0; };
  const auto ends = [&path](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (starts("/v2/health/")) return ApiCategory::kHealth;
  if (starts("/v2/repository/")) return ApiCategory::kModelRepository;
  if (starts("/v2/systemsharedmemory") || starts("/v2/cudasharedmemory")) return ApiCategory::kSharedMemory;
  if (starts("/v2/models")) {
    if (ends("/stats")) return ApiCategory::kStatistics;
    if (ends("/infer")) return ApiCategory::kInference;
    if (ends("/config")) return ApiCategory::kModelConfig;
    if (ends("/ready")) return ApiCategory::kHealth;
    return ApiCategory::kMetadata;
  }
  if (path == "/v2") return ApiCategory::kMetadata;
  if (starts("/v1/models/")) return method == "POST" ? ApiCategory::kInference : ApiCategory::kHealth;
  return std::nullopt;
}

// A flat JSON array as nested arrays of `dims`, from element `*offset` on.
json Nest(const json& flat, const std::vector<int64_t>& dims, size_t level, size_t* offset) {
  if (level == dims.size()) return flat[(*offset)++];
  json out = json::array();
  for (int64_t i = 0; i < dims[level]; ++i) out.push_back(Nest(flat, dims, level + 1, offset));
  return out;
}

}  // namespace

struct HttpServer::Impl {
  ModelRepository& repo;
  SharedMemoryManager& shm;
  HttpOptions options;
  httplib::Server http, metrics;
  std::thread http_thread, metrics_thread;
  std::future<void> http_done;
  std::atomic<bool>* ready = nullptr;
  // Requests between routing and the end of their response (the logger runs after the write).
  std::mutex active_mu;
  std::condition_variable active_cv;
  std::set<const httplib::Request*> active;

  Impl(ModelRepository& r, SharedMemoryManager& m, HttpOptions o) : repo(r), shm(m), options(std::move(o)) {}
  void Routes();
  void SharedMemoryRoutes();
  void Infer(const httplib::Request& req, httplib::Response& res);
  void Predict(const httplib::Request& req, httplib::Response& res);
};

HttpServer::HttpServer(ModelRepository& repository, SharedMemoryManager& shared_memory, HttpOptions options)
    : impl_(std::make_unique<Impl>(repository, shared_memory, std::move(options))) {
  impl_->ready = &ready_;
}

HttpServer::~HttpServer() {
  if (!Stop()) impl_->http_thread.join();  // the worker threads use impl_: wait them out
}

void HttpServer::Impl::Infer(const httplib::Request& req, httplib::Response& res) {
  Expected<std::shared_ptr<ModelVersion>> version = repo.Find(req.matches[1].str(), VersionOf(req, 2));
  if (!version.ok()) return SendError(res, version.status());
  size_t header_length = 0;
  const std::string header = req.get_header_value("Inference-Header-Content-Length");
  if (!header.empty()) {
    char* end = nullptr;
    header_length = std::strtoull(header.c_str(), &end, 10);
    if (end == header.c_str() || *end != '\0') {
      return SendError(res, InvalidArgument("bad Inference-Header-Content-Length '" + header + "'"));
    }
  }
  Expected<HttpInferRequest> request = DecodeInferRequest(req.body, header_length, shm);
  if (!request.ok()) return SendError(res, request.status());
  InferResult result = RunSync(**version, request->request);
  if (!result.status.ok()) return SendError(res, result.status);
  Expected<HttpBody> encoded =
      EncodeInferResponse(*request, result, (*version)->model, std::to_string((*version)->version), shm);
  if (!encoded.ok()) return SendError(res, encoded.status());
  const HttpBody& body = *encoded;
  if (body.header_length > 0) res.set_header("Inference-Header-Content-Length", std::to_string(body.header_length));
  res.set_content(body.content, body.content_type.c_str());
}

void HttpServer::Impl::Predict(const httplib::Request& req, httplib::Response& res) {
  Expected<std::shared_ptr<ModelVersion>> version = repo.Find(req.matches[1].str(), VersionOf(req, 2));
  if (!version.ok()) return SendError(res, version.status());
  const ModelConfig& config = *(*version)->config;
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("instances") || !body["instances"].is_array() ||
      body["instances"].empty()) {
    return SendError(res, InvalidArgument("the body must be a JSON object with a non-empty 'instances' array"));
  }
  const json& instances = body["instances"];
  const bool batched = config.max_batch_size() > 0;
  if (!batched && instances.size() != 1) {
    return SendError(res, InvalidArgument("model '" + config.name() + "' does not batch: give one instance"));
  }
  InferRequest request;
  for (const auto& in : config.input()) {
    json values = json::array();
    for (const json& instance : instances) {
      if (config.input_size() == 1 && !(instance.is_object() && instance.contains(in.name()))) {
        values.push_back(instance);
      } else if (instance.is_object() && instance.contains(in.name())) {
        values.push_back(instance[in.name()]);
      } else {
        return SendError(res, InvalidArgument("an instance lacks input '" + in.name() + "'"));
      }
    }
    std::vector<int64_t> dims = NestedShape(values[0]);
    if (batched) dims.insert(dims.begin(), static_cast<int64_t>(values.size()));
    Expected<DataType> dtype = FromConfigType(in.data_type());
    if (!dtype.ok()) return SendError(res, dtype.status());
    Expected<HostTensor> tensor = TensorFromJson(batched ? values : values[0], *dtype, dims, in.name());
    if (!tensor.ok()) return SendError(res, tensor.status());
    request.inputs.push_back({in.name(), *tensor});
  }
  InferResult result = RunSync(**version, std::move(request));
  if (!result.status.ok()) return SendError(res, result.status);
  json predictions = json::array();
  const size_t n = batched ? instances.size() : 1;
  std::vector<json> per_sample(n, json::object());
  for (const NamedTensor& out : result.outputs) {
    json flat = TensorToJson(out.tensor);
    std::vector<int64_t> dims = out.tensor.dims();
    if (batched) dims.erase(dims.begin());
    size_t offset = 0;
    for (size_t i = 0; i < n; ++i) per_sample[i][out.name] = Nest(flat, dims, 0, &offset);
  }
  for (json& sample : per_sample) {
    predictions.push_back(result.outputs.size() == 1 ? sample[result.outputs[0].name] : sample);
  }
  SendJson(res, 200, {{"predictions", predictions}});
}

// Triton's shared-memory extension: /v2/{system,cuda}sharedmemory[/region/<name>]/{status,register,unregister}.
void HttpServer::Impl::SharedMemoryRoutes() {
  using Req = httplib::Request;
  using Res = httplib::Response;
  const auto region_name = [](const Req& req) { return req.matches.size() > 1 ? req.matches[1].str() : ""; };
  for (const std::string kind : {"system", "cuda"}) {
    const bool cuda = kind == "cuda";
    const std::string base = "/v2/" + kind + "sharedmemory";
    const auto status = [this, cuda, region_name](const Req& req, Res& res) {
      json rows = json::array();
      if (cuda) {
        Expected<std::vector<CudaRegionInfo>> regions = shm.CudaStatus(region_name(req));
        if (!regions.ok()) return SendError(res, regions.status());
        for (const CudaRegionInfo& r : *regions) {
          rows.push_back({{"name", r.name}, {"device_id", r.device_id}, {"byte_size", r.byte_size}});
        }
      } else {
        Expected<std::vector<SystemRegionInfo>> regions = shm.SystemStatus(region_name(req));
        if (!regions.ok()) return SendError(res, regions.status());
        for (const SystemRegionInfo& r : *regions) {
          rows.push_back({{"name", r.name}, {"key", r.key}, {"offset", r.offset}, {"byte_size", r.byte_size}});
        }
      }
      SendJson(res, 200, rows);
    };
    const auto unregister = [this, cuda, region_name](const Req& req, Res& res) {
      cuda ? shm.UnregisterCuda(region_name(req)) : shm.UnregisterSystem(region_name(req));
      SendJson(res, 200, json::object());
    };
    http.Get(base + "/status", status);
    http.Get(base + "/region/([^/]+)/status", status);
    http.Post(base + "/unregister", unregister);
    http.Post(base + "/region/([^/]+)/unregister", unregister);
    http.Post(base + "/region/([^/]+)/register", [this, cuda](const Req& req, Res& res) {
      Expected<json> body = BodyObject(req.body);
      if (!body.ok()) return SendError(res, body.status());
      const std::string name = req.matches[1].str();
      Expected<uint64_t> byte_size = UnsignedField(*body, "byte_size");
      if (!byte_size.ok()) return SendError(res, byte_size.status());
      Status status;
      if (cuda) {
        const json* handle = nullptr;
        if (auto it = body->find("raw_handle"); it != body->end() && it->is_object() && it->contains("b64")) {
          handle = &(*it)["b64"];
        }
        if (handle == nullptr || !handle->is_string()) {
          return SendError(res, InvalidArgument("'raw_handle' must be {\"b64\": \"<base64>\"}"));
        }
        std::optional<std::string> raw = DecodeBase64(handle->get<std::string>());
        if (!raw) return SendError(res, InvalidArgument("'raw_handle' is not valid base64"));
        auto device = body->find("device_id");
        if (device == body->end() || !device->is_number_integer()) {
          return SendError(res, InvalidArgument("'device_id' must be an integer"));
        }
        status = shm.RegisterCuda(name, *raw, device->get<int64_t>(), *byte_size);
      } else {
        auto key = body->find("key");
        if (key == body->end() || !key->is_string()) return SendError(res, InvalidArgument("'key' must be a string"));
        Expected<uint64_t> offset = UnsignedField(*body, "offset", 0);
        if (!offset.ok()) return SendError(res, offset.status());
        status = shm.RegisterSystem(name, key->get<std::string>(), *offset, *byte_size);
      }
      if (!status.ok()) return SendError(res, status);
      SendJson(res, 200, json::object());
    });
  }
}

void HttpServer::Impl::Routes() {
  using Req = httplib::Request;
  using Res = httplib::Response;
  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([0-9]{1,18}))?)";
  http.Get("/v2/health/live", [](const Req&, Res& res) { SendJson(res, 200, json::object()); });
  http.Get("/v2/health/ready", [this](const Req&, Res& res) {
    const bool ok = ready->load() && repo.AllReady();
    SendJson(res, ok ? 200 : 503, ok ? json::object() : json{{"error", "the server is not ready"}});
  });
  http.Get("/v2", [](const Req&, Res& res) {
    SendJson(res, 200,
             {{"name", "kiln"},
              {"version", KILN_VERSION},
              {"extensions",
               {"binary_tensor_data", "model_repository", "model_configuration", "statistics", "schedule_policy",
                "system_shared_memory", "cuda_shared_memory"}}});
  });
  http.Get("/v2/models/stats", [this](const Req&, Res& res) { SendJson(res, 200, ModelStatsJson(repo.Ready())); });
  http.Get(model + "/stats", [this](const Req& req, Res& res) {
    Expected<std::shared_ptr<ModelVersion>> v = repo.Find(req.matches[1].str(), VersionOf(req, 2));
    if (!v.ok()) return SendError(res, v.status());
    std::vector<std::shared_ptr<ModelVersion>> list;
    for (const auto& r : repo.Ready()) {
      if (r->model == (*v)->model && (req.matches[2].length() == 0 || r->version == (*v)->version)) list.push_back(r);
    }
    SendJson(res, 200, ModelStatsJson(list));
  });
  http.Get(model, [this](const Req& req, Res& res) {
    Expected<std::shared_ptr<ModelVersion>> v = repo.Find(req.matches[1].str(), VersionOf(req, 2));
    if (!v.ok()) return SendError(res, v.status());
    SendJson(res, 200, ModelMetadataJson(**v, VersionNames(repo, (*v)->model)));
  });
  http.Get(model + "/ready", [this](const Req& req, Res& res) {
    Expected<std::shared_ptr<ModelVersion>> v = repo.Find(req.matches[1].str(), VersionOf(req, 2));
    if (!v.ok()) return SendError(res, v.status());
    SendJson(res, 200, {{"name", (*v)->model}, {"ready", true}});
  });
  http.Get(model + "/config", [this](const Req& req, Res& res) {
    Expected<std::shared_ptr<ModelVersion>> v = repo.Find(req.matches[1].str(), VersionOf(req, 2));
    if (!v.ok()) return SendError(res, v.status());
    SendJson(res, 200, ModelConfigJson(*(*v)->config));
  });
  http.Post(model + "/infer", [this](const Req& req, Res& res) { Infer(req, res); });
  SharedMemoryRoutes();
  http.Post("/v2/repository/index", [this](const Req& req, Res& res) {
    json body = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
    const bool ready_only = body.is_object() && body.value("ready", false);
    json rows = json::array();
    for (const ModelIndexEntry& e : repo.Index()) {
      if (ready_only && e.state != "READY") continue;
      json row = {{"name", e.name}, {"state", e.state}, {"reason", e.reason}};
      if (!e.version.empty()) row["version"] = e.version;
      rows.push_back(row);
    }
    SendJson(res, 200, rows);
  });
  http.Post(R"(/v2/repository/models/([^/]+)/(load|unload))", [this](const Req& req, Res& res) {
    if (!options.allow_model_control) {
      return SendError(res, InvalidArgument("explicit model load/unload needs --model-control-mode explicit"));
    }
    const std::string name = req.matches[1].str();
    Status status;
    if (req.matches[2].str() == "load") {
      const auto names = repo.ScanNames();
      status = std::find(names.begin(), names.end(), name) == names.end()
                   ? NotFound("no model '" + name + "' in the repository")
                   : repo.Load(name);
    } else {
      status = repo.Unload(name);
    }
    if (!status.ok()) {
      // A model that exists but fails to load is a bad request (Triton answers 400 too).
      return SendError(res, status.code() == StatusCode::kNotFound ? status
                                                                   : InvalidArgument(status.message()));
    }
    SendJson(res, 200, json::object());
  });
  const std::string v1 = R"(/v1/models/([^/:]+)(?:/versions/([0-9]{1,18}))?)";
  http.Post(v1 + ":predict", [this](const Req& req, Res& res) { Predict(req, res); });
  http.Get(v1, [this](const Req& req, Res& res) {
    const std::string name = req.matches[1].str();
    json rows = json::array();
    for (const ModelIndexEntry& e : repo.Index()) {
      if (e.name != name) continue;
      const bool ok = e.state == "READY";
      rows.push_back({{"version", e.version.empty() ? "0" : e.version},
                      {"state", ok ? "AVAILABLE" : e.state == "LOADING" ? "LOADING" : "END"},
                      {"status", {{"error_code", ok ? "OK" : "UNAVAILABLE"}, {"error_message", e.reason}}}});
    }
    if (rows.empty()) return SendError(res, NotFound("unknown model '" + name + "'"));
    SendJson(res, rows[0]["state"] == "AVAILABLE" ? 200 : 503, {{"model_version_status", rows}});
  });
  http.set_pre_routing_handler([this](const Req& req, Res& res) {
    {
      std::lock_guard<std::mutex> lock(active_mu);
      active.insert(&req);
    }
    if (options.restricted.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::optional<ApiCategory> category = CategoryOf(req.method, req.path);
    if (!category) return httplib::Server::HandlerResponse::Unhandled;
    const std::optional<std::string> denied =
        options.restricted.Denied(*category, [&req](const std::string& key) { return req.get_header_value(key); });
    if (!denied) return httplib::Server::HandlerResponse::Unhandled;
    SendJson(res, 403, {{"error", *denied}});
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_logger([this](const Req& req, const Res&) {
    std::lock_guard<std::mutex> lock(active_mu);
    if (active.erase(&req) > 0 && active.empty()) active_cv.notify_all();
  });
  const size_t limit = options.max_body_bytes;
  http.set_error_handler([limit](const Req&, Res& res) {
    if (!res.body.empty()) return;
    std::string message = "HTTP " + std::to_string(res.status);
    if (res.status == 404) message = "no such endpoint";
    if (res.status == 413) message = "the request body exceeds the limit of " + std::to_string(limit) + " bytes";
    res.set_content(json{{"error", message}}.dump(), "application/json");
  });
  metrics.Get("/metrics", [this](const Req&, Res& res) {
    res.set_content(RenderPrometheus(repo), "text/plain; version=0.0.4; charset=utf-8");
  });
}

Status HttpServer::Start() {
  Impl& s = *impl_;
  const int threads = s.options.threads;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.http.set_payload_max_length(s.options.max_body_bytes);
  // Nagle's algorithm with the client's delayed ACKs costs ~40 ms per response written in pieces;
  // Linux hands TCP_NODELAY on from the listening socket to the accepted ones.
  const auto socket_options = [](socket_t sock) {
    httplib::default_socket_options(sock);
    int one = 1;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  };
  s.http.set_socket_options(socket_options);
  s.metrics.set_socket_options(socket_options);
  s.http.set_keep_alive_max_count(100000);
  s.http.set_keep_alive_timeout(30);
  s.Routes();
  if (!s.http.bind_to_port(s.options.host, s.options.port)) {
    return Unavailable("cannot listen for HTTP on " + s.options.host + ":" + std::to_string(s.options.port));
  }
  auto done = std::make_shared<std::promise<void>>();
  s.http_done = done->get_future();
  s.http_thread = std::thread([&s, done] {
    s.http.listen_after_bind();
    done->set_value();
  });
  if (s.options.metrics_port >= 0) {
    s.metrics.new_task_queue = [] { return new httplib::ThreadPool(2); };
    if (!s.metrics.bind_to_port(s.options.host, s.options.metrics_port)) {
      return Unavailable("cannot listen for metrics on " + s.options.host + ":" +
                         std::to_string(s.options.metrics_port));
    }
    s.metrics_thread = std::thread([&s] { s.metrics.listen_after_bind(); });
  }
  return Status::Ok();
}

bool HttpServer::Stop() {
  Impl& s = *impl_;
  // stop() before the listener runs would be lost and leave the thread listening: wait for it (briefly).
  for (int i = 0; i < 1000 && s.http_thread.joinable() && !s.http.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int i = 0; i < 1000 && s.metrics_thread.joinable() && !s.metrics.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  s.http.stop();
  s.metrics.stop();
  {
    std::unique_lock<std::mutex> lock(s.active_mu);
    s.active_cv.wait_for(lock, std::chrono::seconds(30), [&s] { return s.active.empty(); });
  }
  if (s.metrics_thread.joinable()) s.metrics_thread.join();
  if (!s.http_thread.joinable()) return true;
  // Idle keep-alive connections hold their worker threads until the keep-alive timeout; with every
  // request answered there is nothing left to wait for.
  if (s.http_done.valid() && s.http_done.wait_for(std::chrono::milliseconds(500)) != std::future_status::ready) {
    return false;
  }
  s.http_thread.join();
  return true;
}

}  // namespace kiln::server
