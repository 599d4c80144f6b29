// The arena layout of one set of static shapes: where every intermediate tensor of a schedule lives in
// the execution context's arena, with three ways of sharing memory beyond reuse over disjoint lifetimes:
//
//   view        Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout: the output is the input's memory
//               (the kernel may alias it); the input's block lives as long as the view is read.
//   in place    an element-wise op whose input dies at this op writes its output over that input
//               (same byte size): no new block, no copy.
//   concat      a Concat whose slices are contiguous (every dim before the axis is 1) is not executed:
//               each producer writes straight into its slice of the concat output, so no copy is made.
//
// Members sharing memory form a group; each group is one lifetime for PackLifetimes. Graph outputs are
// not in the arena (the caller keeps them after the next run), nor are graph inputs (the caller owns
// them), constants (the plan owns them) or tensors whose size depends on data.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::build {

enum class SlotKind : uint8_t {
  kOwn,      // the producer writes it at its slot (zero-filled before the kernel runs)
  kInPlace,  // the producer writes it over one of its inputs (not zero-filled: the input is still there)
  kView,     // the producer's output is its input's memory; the kernel may alias it or copy elsewhere
  kConcat,   // a Concat output whose inputs were placed in their slices: the Concat is skipped
};

struct Slot {
  SlotKind kind = SlotKind::kOwn;
  uint64_t offset = 0;  // bytes from the arena's start
  uint64_t size = 0;    // bytes
};

struct ArenaOptions {
  bool in_place = true;
  bool views = true;
  bool concat_elimination = true;
  uint64_t alignment = 64;
};

struct ArenaLayout {
  uint64_t arena_size = 0;
  uint64_t naive_size = 0;  // one buffer per intermediate tensor (each aligned)
  std::unordered_map<const Value*, Slot> slots;  // values of the schedule's graph
  int in_place = 0;                              // outputs written over an input
  int views = 0;                                 // outputs that share their input's memory
  int concats_eliminated = 0;                    // Concat nodes whose copy was removed
  int dynamic = 0;                               // tensors of data-dependent size (outside the arena)
};

// Lays out the values that `schedule` defines. Every value's shape must be static where it is known (the
// graph bound to one set of input sizes); values without a static shape are counted in `dynamic`.
Expected<ArenaLayout> LayOutArena(const std::vector<const Node*>& schedule, const ArenaOptions& options = {});

// Whether the op may run in place (its output written over an input of the same size): element-wise
// ops whose kernels read element i of each input before writing element i of the output.
bool RunsInPlace(OpKind op);
// Whether the op's output 0 is its input 0's data under another shape.
bool IsViewOp(OpKind op);

}  // namespace kiln::build
