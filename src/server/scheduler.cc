#include "server/scheduler.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

namespace kiln::server {
namespace {

uint64_t Ns(std::chrono::steady_clock::duration d) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

std::string DimsText(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

// Rows [begin, begin + rows) of a tensor along its first dim, copied.
HostTensor SliceRows(const HostTensor& t, int64_t begin, int64_t rows) {
  std::vector<int64_t> dims = t.dims();
  const size_t row_bytes = dims[0] == 0 ? 0 : t.nbytes() / static_cast<size_t>(dims[0]);
  dims[0] = rows;
  return HostTensor::Copy(t.dtype(), dims, static_cast<const char*>(t.data()) + row_bytes * begin);
}

}  // namespace

Scheduler::Scheduler(std::shared_ptr<const Engine> engine, ModelConfig config, std::shared_ptr<ModelStats> stats)
    : engine_(std::move(engine)), config_(std::move(config)), stats_(std::move(stats)) {
  batching_ = config_.max_batch_size() > 0 && config_.has_dynamic_batching();
  const auto& db = config_.dynamic_batching();
  preferred_.assign(db.preferred_batch_size().begin(), db.preferred_batch_size().end());
  max_delay_ = std::chrono::microseconds(db.max_queue_delay_microseconds());
  if (config_.has_dynamic_batching()) {
    levels_ = db.priority_levels();
    default_level_ = db.default_priority_level();
  }
  queued_per_level_.assign(levels_ + 1, 0);
}

const config::ModelQueuePolicy& Scheduler::PolicyFor(uint64_t level) const {
  const auto& db = config_.dynamic_batching();
  auto it = db.priority_queue_policy().find(level);
  return it != db.priority_queue_policy().end() ? it->second : db.default_queue_policy();
}

Scheduler::Pending Scheduler::Take(size_t i) {
  Pending p = std::move(queue_[i]);
  queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
  --queued_per_level_[p.level];
  return p;
}

Expected<std::unique_ptr<Scheduler>> Scheduler::Create(std::shared_ptr<const Engine> engine, ModelConfig config,
                                                       std::shared_ptr<ModelStats> stats,
                                                       const std::vector<int>& devices) {
  // parameters { key: "cpu_threads" value { string_value: "N" } }: the threads each CPU instance's runs
  // take from the process's budget (default: all of it, so instances take turns with every core; N =
  // cores / count lets `count` instances run side by side).
  int cpu_threads = 0;
  if (auto it = config.parameters().find("cpu_threads"); it != config.parameters().end()) {
    const std::string& text = it->second.string_value();
    size_t used = 0;
    try {
      cpu_threads = std::stoi(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || cpu_threads < 1) {
      return InvalidArgument("parameters 'cpu_threads': '" + text + "' is not a positive thread count");
    }
  }
  std::unique_ptr<Scheduler> s(new Scheduler(std::move(engine), std::move(config), std::move(stats)));
  for (int device : devices) {
    std::unique_ptr<ExecutionContext> context = s->engine_->CreateContext(device < 0 ? 0 : device);
    if (context == nullptr) {
      return Unavailable("cannot create execution context " + std::to_string(s->contexts_.size()) +
                         (device < 0 ? std::string(" on the CPU") : " on GPU " + std::to_string(device)));
    }
    if (cpu_threads > 0) KILN_RETURN_IF_ERROR(context->SetCpuThreads(cpu_threads));
    s->contexts_.push_back(std::move(context));
  }
  for (auto& context : s->contexts_) {
    ExecutionContext* raw = context.get();
    Scheduler* self = s.get();
    s->threads_.emplace_back([self, raw] { self->InstanceLoop(raw); });
  }
  return s;
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

Status Scheduler::Check(const InferRequest& request, int64_t* batch, std::string* shape_key) const {
  const int batch_dims = config_.max_batch_size() > 0 ? 1 : 0;
  *batch = batch_dims ? -1 : 1;
  for (const NamedTensor& t : request.inputs) {
    auto it = std::find_if(config_.input().begin(), config_.input().end(),
                           [&](const auto& in) { return in.name() == t.name; });
    if (it == config_.input().end()) return InvalidArgument("unexpected input '" + t.name + "'");
    for (const NamedTensor& other : request.inputs) {
      if (&other != &t && other.name == t.name) return InvalidArgument("input '" + t.name + "' given twice");
    }
    Expected<DataType> want = FromConfigType(it->data_type());
    if (!want.ok() || *want != t.tensor.dtype()) {
      return InvalidArgument("input '" + t.name + "': data type " +
                             ConfigTypeName(ToConfigType(t.tensor.dtype())) + ", expected " +
                             ConfigTypeName(it->data_type()));
    }
    const std::vector<int64_t>& dims = t.tensor.dims();
    bool ok = dims.size() == static_cast<size_t>(it->dims_size() + batch_dims);
    for (int i = 0; ok && i < it->dims_size(); ++i) {
      ok = it->dims(i) == -1 || it->dims(i) == dims[i + batch_dims];
    }
    if (ok && batch_dims) {
      ok = dims[0] >= 1 && dims[0] <= config_.max_batch_size() && (*batch == -1 || *batch == dims[0]);
      *batch = dims[0];
    }
    if (!ok) {
      std::vector<int64_t> want_dims(it->dims().begin(), it->dims().end());
      if (batch_dims) want_dims.insert(want_dims.begin(), -1);
      return InvalidArgument("input '" + t.name + "': shape " + DimsText(dims) + " does not match " +
                             DimsText(want_dims) +
                             (batch_dims ? " with batch 1.." + std::to_string(config_.max_batch_size()) +
                                               " (the same in every input)"
                                         : std::string()));
    }
    *shape_key += t.name + DimsText(std::vector<int64_t>(dims.begin() + batch_dims, dims.end()));
  }
  for (const auto& in : config_.input()) {
    bool given = std::any_of(request.inputs.begin(), request.inputs.end(),
                             [&](const NamedTensor& t) { return t.name == in.name(); });
    if (!given && !in.optional()) return InvalidArgument("missing input '" + in.name() + "'");
  }
  for (const std::string& name : request.outputs) {
    bool known = std::any_of(config_.output().begin(), config_.output().end(),
                             [&](const auto& out) { return out.name() == name; });
    if (!known) return InvalidArgument("unknown output '" + name + "'");
  }
  if (*batch < 0) *batch = 1;
  return Status::Ok();
}

void Scheduler::Enqueue(InferRequest request, InferCallback done) {
  Pending p;
  p.enqueued = Clock::now();
  Status status = Check(request, &p.batch, &p.shape_key);
  p.request = std::move(request);
  p.done = std::move(done);
  if (!status.ok()) return Fail(p, status, FailureReason::kOther);
  if (levels_ > 0) {
    p.level = p.request.priority == 0 ? default_level_ : p.request.priority;
    if (p.level > levels_) {
      return Fail(p,
                  InvalidArgument("priority " + std::to_string(p.level) + " is outside 1.." +
                                  std::to_string(levels_) + " (the model's priority_levels)"),
                  FailureReason::kOther);
    }
  }
  const config::ModelQueuePolicy& policy = PolicyFor(p.level);
  uint64_t timeout_us = policy.default_timeout_microseconds();
  if (policy.allow_timeout_override() && p.request.timeout_us > 0) timeout_us = p.request.timeout_us;
  if (timeout_us > 0 && policy.timeout_action() == config::ModelQueuePolicy::REJECT) {
    p.deadline = p.enqueued + std::chrono::microseconds(timeout_us);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) {
    lock.unlock();
    return Fail(p, Unavailable("the model is being unloaded"), FailureReason::kRejected);
  }
  if (policy.max_queue_size() > 0 && queued_per_level_[p.level] >= policy.max_queue_size()) {
    lock.unlock();
    return Fail(p, Unavailable("the queue is full (max_queue_size " + std::to_string(policy.max_queue_size()) +
                               (levels_ > 0 ? " at priority " + std::to_string(p.level) : std::string()) + ")"),
                FailureReason::kRejected);
  }
  stats_->pending.fetch_add(1);
  ++queued_per_level_[p.level];
  // After every request of the same or a higher priority (a lower level number), before the others.
  auto at = std::find_if(queue_.begin(), queue_.end(), [&p](const Pending& q) { return q.level > p.level; });
  queue_.insert(at, std::move(p));
  lock.unlock();
  cv_.notify_all();
}

void Scheduler::Fail(Pending& p, Status status, FailureReason reason) {
  stats_->AddFailure(reason, Ns(Clock::now() - p.enqueued));
  InferResult result;
  result.status = std::move(status);
  p.done(std::move(result));
}

void Scheduler::InstanceLoop(ExecutionContext* context) {
  for (;;) {
    std::vector<Pending> batch, expired;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return (!queue_.empty() && !forming_) || (stopping_ && queue_.empty()); });
      if (queue_.empty()) return;
      forming_ = true;
      batch = FormBatch(lock, &expired);
      forming_ = false;
    }
    cv_.notify_all();
    for (Pending& p : expired) {
      stats_->pending.fetch_sub(1);
      Fail(p, Unavailable("the request timed out in the queue"), FailureReason::kRejected);
    }
    if (!batch.empty()) Execute(context, batch);
  }
}

std::vector<Scheduler::Pending> Scheduler::FormBatch(std::unique_lock<std::mutex>& lock,
                                                     std::vector<Pending>* expired) {
  std::vector<Pending> batch;
  for (;;) {
    const Clock::time_point now = Clock::now();
    Clock::time_point wake = Clock::time_point::max();
    for (size_t i = 0; i < queue_.size();) {
      if (queue_[i].deadline <= now) {
        expired->push_back(Take(i));
      } else {
        wake = std::min(wake, queue_[i++].deadline);
      }
    }
    if (queue_.empty()) return batch;
    std::vector<size_t> chosen{0};
    int64_t total = queue_[0].batch;
    bool overflow = false;
    if (batching_) {
      for (size_t i = 1; i < queue_.size() && total < config_.max_batch_size(); ++i) {
        if (queue_[i].shape_key != queue_[0].shape_key) continue;
        if (total + queue_[i].batch > config_.max_batch_size()) {
          overflow = true;
          continue;
        }
        chosen.push_back(i);
        total += queue_[i].batch;
      }
    }
    const Clock::time_point due = queue_[0].enqueued + max_delay_;
    const bool ready = !batching_ || stopping_ || overflow || total >= config_.max_batch_size() || now >= due ||
                       std::find(preferred_.begin(), preferred_.end(), total) != preferred_.end();
    if (ready) {
      // Back to front, so that the indices still to take stay valid; then in queue order.
      for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) batch.push_back(Take(*it));
      std::reverse(batch.begin(), batch.end());
      return batch;
    }
    cv_.wait_until(lock, std::min(wake, due));
  }
}

void Scheduler::Execute(ExecutionContext* context, std::vector<Pending>& batch) {
  const Clock::time_point t0 = Clock::now();
  const bool batched = config_.max_batch_size() > 0;
  int64_t total = 0;
  for (const Pending& p : batch) total += p.batch;
  Status status;
  for (const auto& in : config_.input()) {
    if (!status.ok()) break;
    const NamedTensor* first = nullptr;
    for (const NamedTensor& t : batch[0].request.inputs) {
      if (t.name == in.name()) first = &t;
    }
    if (first == nullptr) continue;  // an optional input not given
    if (batch.size() == 1) {
      status = context->SetInput(in.name(), first->tensor);
      continue;
    }
    std::vector<int64_t> dims = first->tensor.dims();
    dims[0] = total;
    HostTensor merged(first->tensor.dtype(), dims);
    char* dst = static_cast<char*>(merged.data());
    for (const Pending& p : batch) {
      for (const NamedTensor& t : p.request.inputs) {
        if (t.name != in.name()) continue;
        std::memcpy(dst, t.tensor.data(), t.tensor.nbytes());
        dst += t.tensor.nbytes();
      }
    }
    status = context->SetInput(in.name(), merged);
  }
  const Clock::time_point t1 = Clock::now();
  if (status.ok()) status = context->Run();
  const Clock::time_point t2 = Clock::now();
  // Every output some request wants, fetched once and split along the batch dim.
  std::vector<std::vector<NamedTensor>> results(batch.size());
  for (const auto& out : config_.output()) {
    if (!status.ok()) break;
    bool wanted = false;
    for (const Pending& p : batch) {
      const auto& names = p.request.outputs;
      wanted = wanted || names.empty() || std::find(names.begin(), names.end(), out.name()) != names.end();
    }
    if (!wanted) continue;
    Expected<HostTensor> tensor = context->GetOutput(out.name());
    if (!tensor.ok()) {
      status = tensor.status();
      break;
    }
    if (batched && (tensor->dims().empty() || tensor->dims()[0] != total)) {
      status = Internal("output '" + out.name() + "' has shape " + DimsText(tensor->dims()) +
                        ", expected a leading batch dim of " + std::to_string(total));
      break;
    }
    int64_t row = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      results[i].push_back({out.name(), batched ? SliceRows(*tensor, row, batch[i].batch)
                                                : HostTensor::Copy(tensor->dtype(), tensor->dims(),
                                                                   tensor->data())});
      row += batch[i].batch;
    }
  }
  const Clock::time_point t3 = Clock::now();
  std::unique_lock<std::mutex> counting(stats_->group);
  stats_->execution_count.fetch_add(1);
  stats_->AddBatch(total, Ns(t1 - t0), Ns(t2 - t1), Ns(t3 - t2));
  stats_->last_inference_ms.store(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count()));
  for (size_t i = 0; i < batch.size(); ++i) {
    Pending& p = batch[i];
    stats_->pending.fetch_sub(1);
    if (!status.ok()) continue;  // counted by Fail below
    stats_->inference_count.fetch_add(static_cast<uint64_t>(p.batch));
    stats_->queue.Add(Ns(t0 - p.enqueued));
    stats_->compute_input.Add(Ns(t1 - t0));
    stats_->compute_infer.Add(Ns(t2 - t1));
    stats_->compute_output.Add(Ns(t3 - t2));
    stats_->success.Add(Ns(t3 - p.enqueued));
  }
  counting.unlock();
  for (size_t i = 0; i < batch.size(); ++i) {
    Pending& p = batch[i];
    if (!status.ok()) {
      Fail(p, status, FailureReason::kBackend);
      continue;
    }
    InferResult result;
    // In the order the request asked for.
    if (p.request.outputs.empty()) {
      result.outputs = std::move(results[i]);
    } else {
      for (const std::string& name : p.request.outputs) {
        for (NamedTensor& t : results[i]) {
          if (t.name == name) result.outputs.push_back(t);
        }
      }
    }
    p.done(std::move(result));
  }
}

}  // namespace kiln::server
