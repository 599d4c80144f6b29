// The CUDA backend's entry points (src/backends/cuda/cuda_backend.h): support checks, the tactic tuner
// and the executor (one arena, pinned staging, CUDA graphs per input shape).
#include "backends/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <sys/mman.h>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_info.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_program.h"
#include "build/graph_clone.h"
#include "ops/infer.h"
#include "ops/registry.h"

namespace kiln::cuda {
namespace {

constexpr size_t kMaxPrograms = 16;

bool Verbose() {
  static const bool v = std::getenv("KILN_CUDA_VERBOSE") != nullptr;
  return v;
}

// memcpy between host buffers, split over several threads when large: one thread copies about 10 GB/s,
// so staging a batch of 128 images (77 MB) alone took longer than the GPU's whole forward pass.
void CopyHost(void* dst, const void* src, size_t bytes) {
  constexpr size_t kChunk = size_t{8} << 20;
  const size_t cores = std::max(1u, std::thread::hardware_concurrency() / 2);
  const size_t threads = std::min({bytes / kChunk, cores, size_t{8}});
  if (threads < 2) {
    if (bytes) std::memcpy(dst, src, bytes);
    return;
  }
  const size_t part = (bytes / threads + 63) / 64 * 64;
  auto copy = [&](size_t i) {
    const size_t begin = std::min(bytes, i * part), end = std::min(bytes, begin + part);
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, end - begin);
  };
  std::vector<std::thread> pool;
  for (size_t i = 1; i < threads; ++i) pool.emplace_back(copy, i);
  copy(0);
  for (std::thread& t : pool) t.join();
}

// A host tensor for a run's output, not zero-filled (CopyHost writes every byte; the zero fill of a new
// Tensor was a single-threaded pass over fresh pages that cost more than the copy: BERT's 50 MB output at
// batch 128 spent ~30 ms there). Large buffers are 2 MiB-aligned and asked for as transparent huge pages,
// so that the threads of CopyHost fault in 512 times fewer pages.
Tensor UninitializedTensor(DType dtype, const std::vector<int64_t>& sizes) {
  size_t bytes = DTypeSize(dtype);
  for (int64_t d : sizes) bytes *= static_cast<size_t>(d);
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t align = bytes >= 2 * kHuge ? kHuge : 64;
  const size_t rounded = std::max((bytes + align - 1) / align * align, align);
  void* mem = std::aligned_alloc(align, rounded);
  if (!mem) throw std::bad_alloc();
  if (align == kHuge) madvise(mem, rounded, MADV_HUGEPAGE);  // advice only: failure changes nothing
  std::shared_ptr<void> owner(mem, std::free);
  return Tensor(dtype, sizes, std::make_shared<Buffer>(mem, bytes, std::move(owner)), 0);
}

bool Profiling() {
  static const bool v = std::getenv("KILN_CUDA_PROFILE") != nullptr;
  return v;
}

bool GraphsEnabled() {
  static const bool on = [] {
    const char* e = std::getenv("KILN_CUDA_GRAPHS");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

// Pinned host memory that grows.
class PinnedBuffer {
 public:
  ~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
  }
  Status Reserve(size_t bytes) {
    if (bytes <= size_ && data_) return Status::Ok();
    if (data_) cudaFreeHost(data_);
    data_ = nullptr;
    size_ = 0;
    KILN_CUDA(cudaMallocHost(&data_, std::max<size_t>(bytes, 64)));
    size_ = bytes;
    return Status::Ok();
  }
  char* data() const { return static_cast<char*>(data_); }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Fills the random inputs of a tuning program.
Status FillRandomInputs(const Program& p, cudaStream_t s) {
  uint32_t seed = 12345;
  for (const Storage& st : p.storages) {
    if (!st.random_fill) continue;
    const DevTensor& t = p.tensors[static_cast<size_t>(st.tensor)];
    if (t.dtype != DType::kFloat32) {
      KILN_CUDA(cudaMemsetAsync(p.ptr(st.tensor), 0, t.bytes(), s));
    } else {
      KILN_CUDA(k::FillRandom(p.ptr(st.tensor), t.repr.half, t.numel(), seed++, s));
    }
  }
  return Status::Ok();
}

// ---- the timing cache ------------------------------------------------------------------------------------

std::string AttrString(const AttrValue& v) {
  std::ostringstream o;
  if (const auto* i = std::get_if<int64_t>(&v)) o << *i;
  if (const auto* f = std::get_if<float>(&v)) o << *f;
  if (const auto* s = std::get_if<std::string>(&v)) o << *s;
  if (const auto* is = std::get_if<std::vector<int64_t>>(&v)) {
    for (int64_t x : *is) o << x << ',';
  }
  return o.str();
}

std::string LayerKey(const Node& n, const std::string& precision) {
  std::ostringstream o;
  o << n.op_name() << '|' << precision;
  for (const Value* v : n.inputs()) {
    o << '|';
    if (!v) continue;
    o << (v->is_constant() ? "c" : "") << (v->shape() ? v->shape()->ToString() : "?");
  }
  for (const auto& a : n.attrs().all()) o << '|' << a.first << '=' << AttrString(a.second);
  return o.str();
}

std::string DeviceKey(int device) {
  const CudaInfo& info = QueryCuda();
  std::string name;
  for (const CudaDeviceInfo& d : info.devices) {
    if (d.index == device) name = d.name;
  }
  return name + "|driver " + info.driver_version + "|cudnn " + info.cudnn_version + "|cublaslt " + info.cublas_version;
}

std::map<std::string, std::string> LoadCache(const std::string& path) {
  std::map<std::string, std::string> cache;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    if (tab != std::string::npos) cache[line.substr(0, tab)] = line.substr(tab + 1);
  }
  return cache;
}

void SaveCache(const std::string& path, const std::map<std::string, std::string>& cache) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    for (const auto& e : cache) out << e.first << '\t' << e.second << '\n';
    if (!out) return;
  }
  std::rename(tmp.c_str(), path.c_str());
}

// Shape arithmetic (Shape -> Gather -> Unsqueeze -> Slice ...) on a graph bound to static sizes is
// computed here on the host and its results made constants, so that shape inference can then give every
// later tensor (BERT's position embeddings and everything after them) a static shape.
Status FoldShapeArithmetic(Graph& graph, const std::vector<const Node*>& schedule) {
  static const KernelLimits kLimits;
  bool folded = false;
  for (const Node* n : schedule) {
    if (!HostEvaluable(*n)) continue;
    std::vector<Tensor> dummies;
    dummies.reserve(n->num_inputs());
    std::vector<const Tensor*> ins;
    bool ready = true;
    for (const Value* v : n->inputs()) {
      if (!v) {
        ins.push_back(nullptr);
      } else if (v->is_constant()) {
        ins.push_back(v->constant());
      } else if (n->op() == OpKind::kShape && v->shape() && v->shape()->is_static()) {
        dummies.emplace_back(v->dtype(), *v->shape()->sizes());
        ins.push_back(&dummies.back());
      } else {
        ready = false;
      }
    }
    if (!ready) continue;
    KernelContext ctx(*n, ins, kLimits);
    KILN_RETURN_IF_ERROR(OpRegistry::Global().Find(n->op())->run(ctx).WithContext(n->Label()));
    for (size_t j = 0; j < n->num_outputs(); ++j) {
      if (Value* o = n->output(j)) graph.SetConstant(o, std::make_shared<const Tensor>(ctx.outputs()[j].Clone()));
    }
    folded = true;
  }
  if (folded) KILN_RETURN_IF_ERROR(InferShapes(graph));
  return Status::Ok();
}

bool AllStatic(const Node& n) {
  for (const Value* v : n.inputs()) {
    if (v && (!v->shape() || !v->shape()->is_static())) return false;
  }
  for (const Value* v : n.outputs()) {
    if (v && (!v->shape() || !v->shape()->is_static())) return false;
  }
  return true;
}

// The tactic recorded for a layer whose sizes are not known at build time: the executor times the
// candidates when it first sees the layer's sizes.
std::string AutoTactic(const std::vector<std::string>& candidates) {
  const std::string& first = candidates.front();
  if (first.rfind("cudnn.", 0) == 0) return "cudnn.conv.auto";
  if (first.rfind("cublaslt.", 0) == 0) return "cublaslt.gemm.auto";
  if (first == "kiln.flash_attention") return "kiln.attention.auto";
  return first;
}

bool IsAuto(const std::string& tactic) {
  return tactic.size() >= 5 && tactic.compare(tactic.size() - 5, 5, ".auto") == 0;
}

// Times one candidate tactic of one layer on random inputs: milliseconds per run, or an error.
Expected<double> TimeCandidate(const Node& node, const std::string& tactic, const std::string& precision,
                               Resources& res, WeightStore& weights, DeviceBuffer& arena, DeviceBuffer& workspace,
                               cudaEvent_t start, cudaEvent_t stop) {
  Program prog;
  ProgramBuilder pb(prog, res, weights, /*tuning=*/true);
  KILN_RETURN_IF_ERROR(pb.AddLayer(node, tactic, precision));
  prog.LayOut();
  KILN_RETURN_IF_ERROR(arena.Reserve(prog.arena_size));
  KILN_RETURN_IF_ERROR(workspace.Reserve(prog.workspace_size));
  prog.Bind(arena.data(), workspace.data());
  cudaStream_t s = res.stream();
  KILN_RETURN_IF_ERROR(FillRandomInputs(prog, s));
  KILN_RETURN_IF_ERROR(prog.RunSteps(s));
  KILN_CUDA(cudaStreamSynchronize(s));
  // Enough repetitions for ~2 ms of work, at least 3.
  KILN_CUDA(cudaEventRecord(start, s));
  KILN_RETURN_IF_ERROR(prog.RunSteps(s));
  KILN_CUDA(cudaEventRecord(stop, s));
  KILN_CUDA(cudaEventSynchronize(stop));
  float first = 0;
  KILN_CUDA(cudaEventElapsedTime(&first, start, stop));
  const int reps = std::clamp(static_cast<int>(2.0 / std::max(first, 0.001f)), 3, 50);
  KILN_CUDA(cudaEventRecord(start, s));
  for (int i = 0; i < reps; ++i) KILN_RETURN_IF_ERROR(prog.RunSteps(s));
  KILN_CUDA(cudaEventRecord(stop, s));
  KILN_CUDA(cudaEventSynchronize(stop));
  float ms = 0;
  KILN_CUDA(cudaEventElapsedTime(&ms, start, stop));
  return static_cast<double>(ms) / reps;
}

// The process's timing cache (layer key -> tactic), filled by every tuning and by cache files.
std::mutex& CacheMutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::string>& SharedCache() {
  static std::map<std::string, std::string> cache;
  return cache;
}

// Picks the fastest candidate tactic of layers, timing each on the GPU (scratch memory of its own).
class Tuner {
 public:
  Tuner(Resources& res, WeightStore& weights) : res_(res), weights_(weights) {}
  ~Tuner() {
    if (start_) cudaEventDestroy(start_);
    if (stop_) cudaEventDestroy(stop_);
  }
  // The layer's tactic: its only candidate, the cached choice, or the fastest when timed (`*timed` set).
  Expected<std::string> Choose(const Node& node, const std::string& precision, bool* timed = nullptr) {
    const std::vector<std::string> candidates =
        CandidateTactics(node, res_, precision == "fp16", precision == "tf32");
    if (candidates.size() == 1) return candidates.front();
    if (!AllStatic(node)) return AutoTactic(candidates);
    const std::string key = DeviceKey(res_.device()) + "|" + LayerKey(node, precision);
    {
      std::lock_guard<std::mutex> lock(CacheMutex());
      auto hit = SharedCache().find(key);
      if (hit != SharedCache().end() &&
          std::find(candidates.begin(), candidates.end(), hit->second) != candidates.end()) {
        return hit->second;
      }
    }
    if (!start_) {
      KILN_CUDA(cudaEventCreate(&start_));
      KILN_CUDA(cudaEventCreate(&stop_));
    }
    double best = -1;
    std::string choice, errors;
    for (const std::string& c : candidates) {
      Expected<double> ms = TimeCandidate(node, c, precision, res_, weights_, arena_, workspace_, start_, stop_);
      if (!ms.ok()) {
        cudaGetLastError();
        if (Verbose()) std::fprintf(stderr, "kiln cuda: %s: %s failed: %s\n", node.Label().c_str(), c.c_str(), ms.status().message().c_str());
        if (errors.empty()) errors = ms.status().message();
        continue;
      }
      if (Verbose()) std::fprintf(stderr, "kiln cuda: %s: %s %.4f ms\n", node.Label().c_str(), c.c_str(), *ms);
      if (best < 0 || *ms < best) {
        best = *ms;
        choice = c;
      }
    }
    if (best < 0) return Unsupported(node.Label() + ": no GPU tactic runs (" + errors + ")");
    if (Verbose()) std::fprintf(stderr, "kiln cuda: %s -> %s\n", node.Label().c_str(), choice.c_str());
    if (timed) *timed = true;
    std::lock_guard<std::mutex> lock(CacheMutex());
    SharedCache()[key] = choice;
    return choice;
  }

 private:
  Resources& res_;
  WeightStore& weights_;
  DeviceBuffer arena_, workspace_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

std::optional<bool> Tf32FromEnv() {
  const char* e = std::getenv("KILN_CUDA_TF32");
  if (!e || (std::string(e) != "1" && std::string(e) != "0")) return std::nullopt;
  return std::string(e) == "1";
}

// ---- the executor ---------------------------------------------------------------------------------------

class Executor final : public CudaExecutor {
 public:
  Executor(const plan::Plan& plan, int device) : plan_(plan), device_(device) {}
  ~Executor() override {
    cudaSetDevice(device_);
    if (res_) cudaStreamSynchronize(res_->stream());
    programs_.clear();
    for (cudaEvent_t e : events_) {
      if (e) cudaEventDestroy(e);
    }
  }

  Status Init() {
    if (device_ < 0 || device_ >= DeviceCount()) {
      return InvalidArgument("GPU " + std::to_string(device_) + " does not exist (" + std::to_string(DeviceCount()) +
                             " usable)");
    }
    KILN_ASSIGN_OR_RETURN(res_, Resources::Create(device_));
    for (cudaEvent_t& e : events_) KILN_CUDA(cudaEventCreate(&e));
    weights_ = SharedWeightStore(&plan_, device_);
    if (plan_.layers.size() != plan_.schedule.size()) return Internal("the plan's layer list does not match its schedule");
    return Status::Ok();
  }

  Expected<TensorMap> Run(const TensorMap& inputs) override {
    KILN_CUDA(cudaSetDevice(device_));
    std::map<std::string, std::vector<int64_t>> sizes;
    for (const Value* v : plan_.graph->inputs()) {
      if (v->is_constant()) continue;
      auto it = inputs.find(v->name());
      if (it == inputs.end()) return InvalidArgument("input '" + v->name() + "' was not given");
      if (it->second.dtype() != v->dtype()) {
        return InvalidArgument("input '" + v->name() + "' has dtype " + std::string(DTypeName(it->second.dtype())) +
                               ", expected " + std::string(DTypeName(v->dtype())));
      }
      sizes[v->name()] = it->second.sizes();
    }
    KILN_ASSIGN_OR_RETURN(Program * prog, GetProgram(sizes));
    const void* old_arena = arena_.data();
    const void* old_ws = workspace_.data();
    KILN_RETURN_IF_ERROR(arena_.Reserve(prog->arena_size));
    KILN_RETURN_IF_ERROR(workspace_.Reserve(std::max<size_t>(prog->workspace_size, 256)));
    if (arena_.data() != old_arena || workspace_.data() != old_ws) DropGraphs();
    prog->Bind(arena_.data(), workspace_.data());

    size_t staging = 0;
    for (const auto& in : prog->inputs) staging += prog->tensors[static_cast<size_t>(in.second)].bytes() + 64;
    for (const auto& out : prog->outputs) staging += prog->tensors[static_cast<size_t>(out.second)].bytes() + 64;
    KILN_RETURN_IF_ERROR(pinned_.Reserve(staging));
    cudaStream_t s = res_->stream();
    char* host = pinned_.data();
    // Stage every input in pinned memory first, so host_to_device_ms is the transfer alone.
    std::vector<char*> staged_in;
    for (const auto& in : prog->inputs) {
      const Tensor& t = inputs.at(in.first);
      CopyHost(host, t.raw_data(), t.nbytes());
      staged_in.push_back(host);
      host += (t.nbytes() + 63) / 64 * 64;
    }
    KILN_CUDA(cudaEventRecord(events_[0], s));
    size_t k = 0;
    for (const auto& in : prog->inputs) {
      const size_t bytes = inputs.at(in.first).nbytes();
      if (bytes) KILN_CUDA(cudaMemcpyAsync(prog->ptr(in.second), staged_in[k], bytes, cudaMemcpyHostToDevice, s));
      ++k;
    }
    KILN_CUDA(cudaEventRecord(events_[1], s));
    KILN_RETURN_IF_ERROR(Compute(*prog, s));
    KILN_CUDA(cudaEventRecord(events_[2], s));
    std::vector<std::pair<std::string, char*>> staged;
    for (const auto& out : prog->outputs) {
      const size_t bytes = prog->tensors[static_cast<size_t>(out.second)].bytes();
      if (bytes) KILN_CUDA(cudaMemcpyAsync(host, prog->ptr(out.second), bytes, cudaMemcpyDeviceToHost, s));
      staged.push_back({out.first, host});
      host += (bytes + 63) / 64 * 64;
    }
    KILN_CUDA(cudaEventRecord(events_[3], s));
    KILN_CUDA(cudaStreamSynchronize(s));
    KILN_CUDA(cudaGetLastError());
    TensorMap result;
    for (const auto& st : staged) {
      const DevTensor& dt = prog->tensors[static_cast<size_t>(prog->outputs.at(st.first))];
      Tensor t = UninitializedTensor(dt.dtype, dt.sizes);
      CopyHost(t.raw_data(), st.second, t.nbytes());
      result[st.first] = std::move(t);
    }
    float ms[3] = {0, 0, 0};
    for (int i = 0; i < 3; ++i) KILN_CUDA(cudaEventElapsedTime(&ms[i], events_[i], events_[i + 1]));
    timings_ = {ms[0], ms[1], ms[2]};
    ++prog->runs;
    return result;
  }

  CudaRunTimings last_timings() const override { return timings_; }

 private:
  using Sizes = std::map<std::string, std::vector<int64_t>>;

  void DropGraphs() {
    for (auto& p : programs_) {
      if (p.second->graph) cudaGraphExecDestroy(p.second->graph);
      p.second->graph = nullptr;
    }
  }

  Expected<Program*> GetProgram(const Sizes& sizes) {
    auto it = programs_.find(sizes);
    if (it != programs_.end()) return it->second.get();
    std::vector<const Node*> bound_schedule;
    KILN_ASSIGN_OR_RETURN(std::unique_ptr<Graph> bound,
                          build::CloneWithInputSizes(*plan_.graph, sizes, &bound_schedule, &plan_.schedule));
    KILN_RETURN_IF_ERROR(FoldShapeArithmetic(*bound, bound_schedule));
    auto prog = std::make_unique<Program>();
    ProgramBuilder pb(*prog, *res_, *weights_, /*tuning=*/false);
    for (const Value* v : bound->inputs()) {
      if (!v->is_constant()) pb.AddGraphInput(v);
    }
    // Tactics were timed at the first profile's opt sizes; other sizes are timed on first use (like
    // cudnn.benchmark), unless KILN_CUDA_RETUNE=0.
    bool retune = !plan_.profiles.empty();
    if (retune) {
      const char* e = std::getenv("KILN_CUDA_RETUNE");
      bool at_opt = true;
      for (const plan::InputRange& r : plan_.profiles[0].inputs) {
        auto it = sizes.find(r.name);
        if (it == sizes.end() || it->second != r.opt) at_opt = false;
      }
      retune = !at_opt && !(e && std::string(e) == "0");
    }
    std::unique_ptr<Tuner> tuner;
    if (retune) tuner = std::make_unique<Tuner>(*res_, *weights_);
    std::vector<std::string> tactics, precisions;
    for (size_t i = 0; i < bound_schedule.size(); ++i) {
      std::string tactic = plan_.layers[i].tactic;
      if (!tuner && IsAuto(tactic) && !(std::getenv("KILN_CUDA_RETUNE") && std::string(std::getenv("KILN_CUDA_RETUNE")) == "0")) {
        tuner = std::make_unique<Tuner>(*res_, *weights_);
      }
      if (tuner && (retune || IsAuto(tactic))) {
        KILN_ASSIGN_OR_RETURN(tactic, tuner->Choose(*bound_schedule[i], plan_.layers[i].precision));
      }
      tactics.push_back(tactic);
      precisions.push_back(plan_.layers[i].precision);
    }
    tuner.reset();
    // Layers whose work a later layer does in place (the head split/merge around fused attention).
    std::unordered_set<const Node*> folded = FoldedLayers(bound_schedule, tactics, precisions);
    pb.SetDeferredClips(DeferredClips(bound_schedule, tactics, folded));
    pb.SetFolded(std::move(folded));
    for (size_t i = 0; i < bound_schedule.size(); ++i) {
      KILN_RETURN_IF_ERROR(pb.AddLayer(*bound_schedule[i], tactics[i], precisions[i]));
    }
    KILN_RETURN_IF_ERROR(pb.FinishOutputs(bound->outputs()));
    prog->LayOut();
    if (programs_.size() >= kMaxPrograms) {
      KILN_CUDA(cudaStreamSynchronize(res_->stream()));
      programs_.clear();
    }
    return programs_.emplace(sizes, std::move(prog)).first->second.get();
  }

  // Runs the steps: eagerly the first time, then as a CUDA graph captured on the second run.
  Status Compute(Program& prog, cudaStream_t s) {
    if (!prog.graph && GraphsEnabled() && !Profiling() && prog.runs >= 1 && !prog.capture_failed) {
      cudaGraph_t g = nullptr;
      KILN_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      Status st = prog.RunSteps(s);
      const cudaError_t end = cudaStreamEndCapture(s, &g);
      if (st.ok() && end == cudaSuccess && g) {
        if (cudaGraphInstantiate(&prog.graph, g, 0) != cudaSuccess) prog.graph = nullptr;
      }
      if (g) cudaGraphDestroy(g);
      if (!prog.graph) {
        prog.capture_failed = true;
        cudaGetLastError();  // clear the capture's error; run eagerly from now on
        if (Verbose()) std::fprintf(stderr, "kiln cuda: graph capture failed (%s); running eagerly\n", st.message().c_str());
      }
    }
    if (prog.graph) return CudaStatus(cudaGraphLaunch(prog.graph, s), "cudaGraphLaunch");
    if (Profiling() && prog.runs >= 2) return Profile(prog, s);
    return prog.RunSteps(s);
  }

  // KILN_CUDA_PROFILE=1: runs step by step with events between steps and prints where the time went
  // (by step, and summed by kind of step), once per program.
  Status Profile(Program& prog, cudaStream_t s) {
    std::vector<cudaEvent_t> ev(prog.steps.size() + 1);
    for (cudaEvent_t& e : ev) KILN_CUDA(cudaEventCreate(&e));
    std::shared_ptr<void> cleanup(nullptr, [&](void*) {
      for (cudaEvent_t e : ev) cudaEventDestroy(e);
    });
    KILN_CUDA(cudaEventRecord(ev[0], s));
    for (size_t i = 0; i < prog.steps.size(); ++i) {
      KILN_RETURN_IF_ERROR(prog.steps[i](prog, s));
      KILN_CUDA(cudaEventRecord(ev[i + 1], s));
    }
    KILN_CUDA(cudaStreamSynchronize(s));
    if (prog.profiled) return Status::Ok();
    prog.profiled = true;
    std::vector<std::pair<float, std::string>> rows;
    float total = 0;
    for (size_t i = 0; i < prog.steps.size(); ++i) {
      float ms = 0;
      KILN_CUDA(cudaEventElapsedTime(&ms, ev[i], ev[i + 1]));
      rows.push_back({ms, prog.step_names[i]});
      total += ms;
    }
    std::fprintf(stderr, "kiln cuda profile: %zu steps, %.3f ms (eager, with launch gaps)\n", rows.size(), total);
    for (const auto& r : rows) std::fprintf(stderr, "  %8.4f ms  %s\n", r.first, r.second.c_str());
    return Status::Ok();
  }

  const plan::Plan& plan_;
  int device_;
  std::unique_ptr<Resources> res_;
  std::shared_ptr<WeightStore> weights_;
  DeviceBuffer arena_, workspace_;
  PinnedBuffer pinned_;
  std::map<Sizes, std::unique_ptr<Program>> programs_;
  cudaEvent_t events_[4] = {nullptr, nullptr, nullptr, nullptr};
  CudaRunTimings timings_;
};

}  // namespace

bool BackendCompiled() { return true; }
int DeviceCount() { return static_cast<int>(QueryCuda().devices.size()); }

std::string WhyUnsupported(const Node& node) { return WhyUnsupportedOp(node); }

Expected<std::vector<CudaLayerChoice>> ChooseCudaTactics(const std::vector<const Node*>& schedule,
                                                         const CudaBuildOptions& options) {
  if (DeviceCount() == 0) return Unsupported("no usable GPU: " + QueryCuda().unavailable_reason);
  if (options.device < 0 || options.device >= DeviceCount()) {
    return InvalidArgument("GPU " + std::to_string(options.device) + " does not exist");
  }
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Resources> res, Resources::Create(options.device));
  WeightStore weights(options.device);
  // The environment overrides the options (KILN_CUDA_TIMING_CACHE=FILE, KILN_CUDA_TF32=1|0).
  std::string cache_path = options.timing_cache;
  if (const char* e = std::getenv("KILN_CUDA_TIMING_CACHE")) cache_path = e;
  if (!cache_path.empty()) {
    std::lock_guard<std::mutex> lock(CacheMutex());
    for (const auto& e : LoadCache(cache_path)) SharedCache().insert(e);
  }
  const bool tf32 = Tf32FromEnv().value_or(options.tf32);
  int timed = 0;
  std::vector<CudaLayerChoice> choices;
  {
    Tuner tuner(*res, weights);
    for (const Node* node : schedule) {
      CudaLayerChoice choice;
      choice.precision = LayerPrecision(*node, options.fp16, tf32);
      bool was_timed = false;
      KILN_ASSIGN_OR_RETURN(choice.tactic, tuner.Choose(*node, choice.precision, &was_timed));
      timed += was_timed ? 1 : 0;
      choices.push_back(choice);
    }
    KILN_CUDA(cudaStreamSynchronize(res->stream()));
  }
  if (!cache_path.empty() && timed > 0) {
    std::lock_guard<std::mutex> lock(CacheMutex());
    SaveCache(cache_path, SharedCache());
  }
  if (Verbose()) std::fprintf(stderr, "kiln cuda: %d of %zu layers timed\n", timed, schedule.size());
  return choices;
}

Expected<std::unique_ptr<CudaExecutor>> CudaExecutor::Create(const plan::Plan& plan, int device) {
  if (plan.target.device != "cuda") return InvalidArgument("the plan was built for " + plan.target.device + ", not cuda");
  if (DeviceCount() == 0) return Unsupported("no usable GPU: " + QueryCuda().unavailable_reason);
  auto e = std::make_unique<Executor>(plan, device);
  KILN_RETURN_IF_ERROR(e->Init());
  return std::unique_ptr<CudaExecutor>(std::move(e));
}

}  // namespace kiln::cuda
