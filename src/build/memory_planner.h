// The memory planner: tensor lifetimes from a schedule, packed into one arena by offset so that tensors
// never alive at the same time share memory.
//
// A lifetime is [first, last] in schedule steps: the step that defines the tensor and the last step that
// reads it (graph outputs live to the end). Packing is greedy: the largest tensors are placed first, each
// in the smallest gap (best fit) between the tensors already placed whose lifetimes overlap its own, or
// above them all. Offsets are multiples of `alignment`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::build {

inline constexpr size_t kArenaAlignment = 64;

struct TensorLifetime {
  int id = 0;         // the caller's key (a Value id)
  uint64_t size = 0;  // bytes
  int first = 0;      // step that defines it
  int last = 0;       // last step that reads it (>= first)
};

struct ArenaBlock {
  int id = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct MemoryPlan {
  std::vector<ArenaBlock> blocks;  // in the order of the lifetimes given
  uint64_t arena_size = 0;         // bytes the arena needs
  uint64_t naive_size = 0;         // sum of all tensor sizes (each aligned): one buffer per tensor
};

// Packs `lifetimes` into one arena. Error if a lifetime has last < first or sizes overflow.
Expected<MemoryPlan> PackLifetimes(const std::vector<TensorLifetime>& lifetimes,
                                   size_t alignment = kArenaAlignment);

// The lifetimes of the values that `schedule` (nodes in execution order) defines, keyed by Value::id(),
// with sizes from their shapes. Values whose shape is not fully static after binding (data-dependent
// sizes) are left out and listed in `dynamic` (if not null). Graph inputs and constants are not in the
// arena: applications own inputs and the plan owns weights.
Expected<std::vector<TensorLifetime>> ComputeLifetimes(const std::vector<const Node*>& schedule,
                                                       std::vector<const Value*>* dynamic = nullptr);

}  // namespace kiln::build
