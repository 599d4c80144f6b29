#include "build/memory_planner.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace kiln::build {
namespace {

bool AlignUp(uint64_t v, uint64_t alignment, uint64_t* out) {
  if (v > std::numeric_limits<uint64_t>::max() - (alignment - 1)) return false;
  *out = (v + alignment - 1) / alignment * alignment;
  return true;
}

}  // namespace

Expected<MemoryPlan> PackLifetimes(const std::vector<TensorLifetime>& lifetimes, size_t alignment) {
  if (alignment == 0) return InvalidArgument("arena alignment must be positive");
  MemoryPlan plan;
  plan.blocks.resize(lifetimes.size());
  std::vector<uint64_t> sizes(lifetimes.size());
  for (size_t i = 0; i < lifetimes.size(); ++i) {
    const TensorLifetime& t = lifetimes[i];
    if (t.last < t.first) {
      return Internal("tensor " + std::to_string(t.id) + " has a lifetime that ends before it starts");
    }
    if (!AlignUp(t.size, alignment, &sizes[i]) ||
        plan.naive_size > std::numeric_limits<uint64_t>::max() - sizes[i]) {
      return OutOfRange("tensor sizes overflow the arena");
    }
    plan.naive_size += sizes[i];
    plan.blocks[i] = {t.id, 0, t.size};
  }

  std::vector<size_t> order(lifetimes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (sizes[a] != sizes[b]) return sizes[a] > sizes[b];
    return lifetimes[a].first < lifetimes[b].first;
  });

  std::vector<size_t> placed;
  std::vector<std::pair<uint64_t, uint64_t>> busy;  // [begin, end) of placed blocks overlapping in time
  for (size_t i : order) {
    const TensorLifetime& t = lifetimes[i];
    busy.clear();
    for (size_t j : placed) {
      const TensorLifetime& u = lifetimes[j];
      if (u.first <= t.last && t.first <= u.last) {
        busy.emplace_back(plan.blocks[j].offset, plan.blocks[j].offset + sizes[j]);
      }
    }
    std::sort(busy.begin(), busy.end());
    uint64_t best_offset = 0, best_gap = std::numeric_limits<uint64_t>::max();
    bool found = false;
    uint64_t cursor = 0;
    for (const auto& [begin, end] : busy) {
      if (begin > cursor && begin - cursor >= sizes[i] && begin - cursor < best_gap) {
        best_gap = begin - cursor;
        best_offset = cursor;
        found = true;
      }
      cursor = std::max(cursor, end);
    }
    if (!found) best_offset = cursor;
    if (best_offset > std::numeric_limits<uint64_t>::max() - sizes[i]) {
      return OutOfRange("tensor sizes overflow the arena");
    }
    plan.blocks[i].offset = best_offset;
    plan.arena_size = std::max(plan.arena_size, best_offset + sizes[i]);
    placed.push_back(i);
  }
  return plan;
}

Expected<std::vector<TensorLifetime>> ComputeLifetimes(const std::vector<const Node*>& schedule,
                                                       std::vector<const Value*>* dynamic) {
  std::unordered_map<const Value*, size_t> index;
  std::vector<TensorLifetime> out;
  const int end = static_cast<int>(schedule.size());
  for (int step = 0; step < end; ++step) {
    const Node* n = schedule[step];
    for (const Value* v : n->inputs()) {
      auto it = v ? index.find(v) : index.end();
      if (it != index.end()) out[it->second].last = std::max(out[it->second].last, step);
    }
    for (const Value* o : n->outputs()) {
      if (!o || o->is_constant() || o->is_graph_input()) continue;
      std::optional<int64_t> numel;
      if (o->shape()) numel = o->shape()->numel();
      const uint64_t elem = DTypeSize(o->dtype());
      if (!numel || *numel < 0 || elem == 0 ||
          static_cast<uint64_t>(*numel) > std::numeric_limits<uint64_t>::max() / elem) {
        if (dynamic) dynamic->push_back(o);
        continue;
      }
      if (index.count(o)) return Internal("value '" + o->name() + "' is defined twice in the schedule");
      index[o] = out.size();
      out.push_back({o->id(), static_cast<uint64_t>(*numel) * elem, step, o->is_graph_output() ? end : step});
    }
  }
  return out;
}

}  // namespace kiln::build
