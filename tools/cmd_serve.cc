// kiln serve: an inference server for a model repository in Triton's layout, speaking KServe v2 over HTTP
// and, when built with gRPC, over gRPC (docs/SERVER.md). SIGINT/SIGTERM stop accepting requests, finish the
// ones in flight and exit 0.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "server/http_server.h"
#include "server/model_repository.h"
#ifdef KILN_SERVER_GRPC
#include <thread>

#include "server/grpc_server.h"
#endif

namespace kiln::cli {
namespace {

struct ServeOptions {
  std::string repository;
  std::string host = "0.0.0.0";
  int http_port = 8000;
  int grpc_port = 8001;
  std::string grpc_host;  // "": the --http-address
  bool allow_grpc = true;
  int metrics_port = 8002;
  bool allow_metrics = true;
  std::string control_mode = "none";
  std::vector<std::string> load_models;
  int poll_secs = 15;
  size_t max_input_size = 64u << 20;
  int http_threads = 64;
  std::vector<std::string> http_restricted, grpc_restricted;
};

int RunServe(const ServeOptions& o) {
  std::error_code ec;
  if (!std::filesystem::is_directory(o.repository, ec)) {
    return Fail("--model-repository " + o.repository + " is not a directory");
  }
  // Signals are taken synchronously by this thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  server::ModelRepository repository(o.repository);
  server::SharedMemoryManager shared_memory;
  server::HttpOptions http;
  http.host = o.host;
  http.port = o.http_port;
  http.metrics_port = o.allow_metrics ? o.metrics_port : -1;
  http.max_body_bytes = o.max_input_size;
  http.threads = o.http_threads;
  http.allow_model_control = o.control_mode == "explicit";
  for (const std::string& rule : o.http_restricted) {
    Status st = http.restricted.Add(rule);
    if (!st.ok()) return Fail(st.WithContext("--http-restricted-api"));
  }
  server::HttpServer front(repository, shared_memory, http);
  Status status = front.Start();
  if (!status.ok()) return Fail(status);
  std::string grpc_note;
#ifdef KILN_SERVER_GRPC
  server::GrpcOptions grpc;
  grpc.host = o.grpc_host.empty() ? o.host : o.grpc_host;
  grpc.port = o.grpc_port;
  grpc.max_message_bytes = static_cast<int>(std::min<size_t>(o.max_input_size, INT_MAX));
  grpc.allow_model_control = http.allow_model_control;
  for (const std::string& rule : o.grpc_restricted) {
    Status st = grpc.restricted.Add(rule);
    if (!st.ok()) return Fail(st.WithContext("--grpc-restricted-api"));
  }
  server::GrpcServer grpc_front(repository, shared_memory, grpc);
  if (o.allow_grpc) {
    status = grpc_front.Start();
    if (!status.ok()) {
      front.Stop();
      return Fail(status);
    }
    grpc_note = ", gRPC on " + grpc.host + ":" + std::to_string(grpc_front.port());
  }
#else
  if (o.allow_grpc) grpc_note = " (this build has no gRPC front end: --grpc-port is ignored)";
#endif
  Note("serving HTTP on " + o.host + ":" + std::to_string(o.http_port) + grpc_note +
       (o.allow_metrics ? ", metrics on :" + std::to_string(o.metrics_port) : std::string()));

  if (o.control_mode == "explicit") {
    for (const std::string& name : o.load_models) {
      if (name == "*") {
        repository.LoadAll();
        continue;
      }
      Status st = repository.Load(name);
      if (!st.ok()) Note("model '" + name + "' is unavailable: " + st.message());
    }
  } else {
    repository.LoadAll();
  }
  for (const server::ModelIndexEntry& e : repository.Index()) {
    Note("model " + e.name + (e.version.empty() ? "" : " version " + e.version) + ": " + e.state +
         (e.reason.empty() ? "" : " (" + e.reason + ")"));
  }
  front.SetReady(true);
#ifdef KILN_SERVER_GRPC
  grpc_front.SetReady(true);
#endif

  timespec tick{0, 200 * 1000 * 1000};
  std::time_t next_poll = std::time(nullptr) + o.poll_secs;
  for (;;) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (o.control_mode == "poll" && std::time(nullptr) >= next_poll) {
      repository.Poll();
      next_poll = std::time(nullptr) + o.poll_secs;
    }
  }
  Note("shutting down: finishing requests in flight");
  front.SetReady(false);
#ifdef KILN_SERVER_GRPC
  // Both front ends drain at once: gRPC waits for its calls in flight while HTTP waits for its requests.
  grpc_front.SetReady(false);
  std::thread grpc_stop([&grpc_front] { grpc_front.Stop(); });
  const bool joined = front.Stop();
  grpc_stop.join();
#else
  const bool joined = front.Stop();
#endif
  repository.UnloadAll();
  if (!joined) {
    // Idle keep-alive connections would hold the HTTP threads until their timeout; every request has
    // been answered, so leave without waiting for them.
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(kExitOk);
  }
  return kExitOk;
}

}  // namespace

void AddServeCommand(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* cmd =
      app.add_subcommand("serve", "Serve a model repository over KServe v2 (Triton's HTTP and gRPC protocols)");
  cmd->add_option("--model-repository,--model-store", options->repository,
                  "The repository: DIR/<model>/config.pbtxt and DIR/<model>/<version>/model.plan or model.onnx")
      ->required();
  cmd->add_option("--http-address", options->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--http-port", options->http_port, "HTTP port")->capture_default_str();
  cmd->add_option("--grpc-port", options->grpc_port, "gRPC port (0: any free port)")->capture_default_str();
  cmd->add_option("--grpc-address", options->grpc_host, "Address of the gRPC listener (default: --http-address)");
  cmd->add_option("--allow-grpc", options->allow_grpc, "Serve gRPC (Triton's GRPCInferenceService)")
      ->capture_default_str();
  cmd->add_option("--metrics-port", options->metrics_port, "Port of /metrics (Prometheus)")->capture_default_str();
  cmd->add_option("--allow-metrics", options->allow_metrics, "Serve /metrics")->capture_default_str();
  cmd->add_option("--model-control-mode", options->control_mode,
                  "none: load everything at start; poll: also pick up changes on disk; explicit: load and unload "
                  "through the repository API only")
      ->check(CLI::IsMember({"none", "poll", "explicit"}))
      ->capture_default_str();
  cmd->add_option("--load-model", options->load_models, "With explicit control: a model to load at start ('*': all)");
  cmd->add_option("--repository-poll-secs", options->poll_secs, "Seconds between polls (poll mode)")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  cmd->add_option("--http-max-input-size", options->max_input_size,
                  "Largest request body in bytes (larger ones get 413)")
      ->capture_default_str();
  cmd->add_option("--http-thread-count", options->http_threads, "HTTP worker threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--http-restricted-api", options->http_restricted,
                  "<category>[,<category>...]:<key>=<value>: those HTTP endpoints need header <key>: <value> "
                  "(else 403); categories: health, metadata, inference, shared-memory, model-config, "
                  "model-repository, statistics");
  cmd->add_option("--grpc-restricted-api", options->grpc_restricted,
                  "As --http-restricted-api, for gRPC methods and metadata (else PERMISSION_DENIED)");
  cmd->callback([options, &exit_code] { exit_code = RunServe(*options); });
}

}  // namespace kiln::cli
