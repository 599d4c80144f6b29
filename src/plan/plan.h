// A plan: the optimized graph lowered to a schedule of chosen kernels (tactics), with its bindings,
// optimization profiles, memory plans and weights, and the file format that stores it.
//
// File layout (little-endian; docs/PLANS.md has the full description):
//   header   64 bytes: "KILNPLAN", format version, header size, file size, metadata offset/size,
//            weights offset/size
//   metadata target fingerprint, source, graph (values, weight table, nodes in schedule order with their
//            tactic and precision, inputs, outputs), profiles, memory plans
//   weights  each constant's bytes at a 64-byte aligned offset, so a memory-mapped file serves them as-is,
//            then (format 2) the packed copies of layer weights in the CPU kernels' own layouts
//   trailer  CRC32C of everything before it, and "KEND"
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "plan/target.h"

namespace kiln::plan {

inline constexpr char kPlanMagic[8] = {'K', 'I', 'L', 'N', 'P', 'L', 'A', 'N'};
// 2: packed weights (format 1 plans still load; they just have none).
inline constexpr uint32_t kPlanFormatVersion = 2;
inline constexpr size_t kPlanHeaderSize = 64;
inline constexpr size_t kPlanTrailerSize = 8;
inline constexpr size_t kWeightAlignment = 64;

// One input's range in one profile (sizes per dim).
struct InputRange {
  std::string name;
  std::vector<int64_t> min, opt, max;
};
struct Profile {
  std::vector<InputRange> inputs;  // one per runtime (non-constant) graph input, in graph order
};

struct LayerChoice {
  std::string tactic = "reference";
  std::string precision = "fp32";
};

struct PlannedBlock {
  std::string value;  // value name
  uint64_t offset = 0;
  uint64_t size = 0;
};
// The memory plan of one profile's opt shapes.
struct PlanMemory {
  uint64_t arena_size = 0;
  uint64_t naive_size = 0;
  uint64_t dynamic_count = 0;  // tensors of data-dependent size, left out of the arena
  std::vector<PlannedBlock> blocks;
};

// A constant's copy in a kernel's own layout (oneDNN's blocked weights, 8-bit weights with their
// compensation), made at build time by the chosen kernel on the timed shapes: loading the plan registers
// it (src/backends/cpu/cpu_kernels.h, AdoptPackedWeights) so that no context packs those weights again.
struct PackedWeights {
  std::string value;                    // the constant
  std::string layout;                   // the backend's layout descriptor (opaque bytes)
  std::shared_ptr<const Tensor> bytes;  // u8 [size], in the weights section
};

struct Plan {
  TargetFingerprint target;
  std::string source;        // the model file it was built from
  double build_seconds = 0;  // informational
  std::shared_ptr<Graph> graph;
  std::vector<const Node*> schedule;  // every node of `graph`, in execution order
  std::vector<LayerChoice> layers;    // parallel to `schedule`
  std::vector<Profile> profiles;
  std::vector<PlanMemory> memory;  // parallel to `profiles`
  std::vector<PackedWeights> packed;
  // Keeps the memory-mapped file (or the bytes) that constants point into alive.
  std::shared_ptr<void> storage;
  uint32_t format_version = kPlanFormatVersion;
};

// Writes the plan's bytes to `sink` (which returns false on failure) in order.
Status WritePlan(const Plan& plan, const std::function<bool(const void*, size_t)>& sink);
Status WritePlanFile(const Plan& plan, const std::string& path);
Expected<std::string> SerializePlan(const Plan& plan);

struct ReadOptions {
  // Off only for the fuzzer, so it reaches the parser past the checksum.
  bool verify_checksum = true;
  // Off only for tests that read plans of a made-up target.
  bool check_target = true;
};

// Reads a plan file by memory-mapping it: constants point into the mapping (no copy).
Expected<Plan> ReadPlanFile(const std::string& path, const ReadOptions& options = {});
// Reads a plan from bytes (copied once into aligned storage).
Expected<Plan> ReadPlanBytes(const void* data, size_t size, const ReadOptions& options = {});

}  // namespace kiln::plan
