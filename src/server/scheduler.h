// The scheduler of one model version: a bounded request queue, a dynamic batcher and one thread per
// instance (each with its own ExecutionContext of the shared engine).
//
// A request is checked against the config when queued. With dynamic batching, an idle instance forms a batch
// from the oldest request and every later one of the same non-batch shapes, up to max_batch_size; it runs
// the batch at once when it reaches max_batch_size or a preferred size, else when the oldest request has
// waited max_queue_delay_microseconds. Requests whose queue timeout passes are rejected (timeout_action
// REJECT). Without dynamic batching each request runs on its own.
//
// With priority_levels, the queue is ordered by level (1 first), then by arrival; each level has its own
// queue policy (priority_queue_policy, else default_queue_policy), whose max_queue_size bounds that level.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/inference.h"
#include "server/model_config.h"
#include "server/stats.h"

namespace kiln::server {

class Scheduler {
 public:
  // One instance per entry of `devices` (-1: CPU).
  static Expected<std::unique_ptr<Scheduler>> Create(std::shared_ptr<const Engine> engine, ModelConfig config,
                                                     std::shared_ptr<ModelStats> stats,
                                                     const std::vector<int>& devices);
  ~Scheduler();  // Stop()

  // Checks and queues `request`; `done` is called exactly once with its result.
  void Enqueue(InferRequest request, InferCallback done);
  // Refuses new requests, finishes the queued ones and joins the instance threads.
  void Stop();
  int instance_count() const { return static_cast<int>(threads_.size()); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    InferRequest request;
    InferCallback done;
    int64_t batch = 0;  // the request's batch size (1 for a model without batching)
    uint64_t level = 0;  // priority level; 0 when the model has none
    std::string shape_key;
    Clock::time_point enqueued;
    Clock::time_point deadline = Clock::time_point::max();
  };

  Scheduler(std::shared_ptr<const Engine> engine, ModelConfig config, std::shared_ptr<ModelStats> stats);
  Status Check(const InferRequest& request, int64_t* batch, std::string* shape_key) const;
  void InstanceLoop(ExecutionContext* context);
  // With mu_ held; may wait. Takes the next batch out of the queue (empty when every request expired).
  std::vector<Pending> FormBatch(std::unique_lock<std::mutex>& lock, std::vector<Pending>* expired);
  void Execute(ExecutionContext* context, std::vector<Pending>& batch);
  void Fail(Pending& p, Status status, FailureReason reason);
  const config::ModelQueuePolicy& PolicyFor(uint64_t level) const;
  // With mu_ held: removes queue_[i] and returns it.
  Pending Take(size_t i);

  std::shared_ptr<const Engine> engine_;
  ModelConfig config_;
  std::shared_ptr<ModelStats> stats_;
  bool batching_ = false;
  std::vector<int64_t> preferred_;
  Clock::duration max_delay_{};
  uint64_t levels_ = 0, default_level_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;  // by priority level, then arrival
  std::vector<size_t> queued_per_level_;  // indexed by level
  bool stopping_ = false;
  bool forming_ = false;  // an instance is forming a batch (one at a time)
  std::vector<std::unique_ptr<ExecutionContext>> contexts_;
  std::vector<std::thread> threads_;
};

}  // namespace kiln::server
