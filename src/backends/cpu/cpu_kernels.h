// Fast CPU kernels ("tactics") for the heavy ops, used by the plan executor in place of the reference
// kernels where one applies. The builder times the candidates of each layer on the real shapes and
// records the fastest in the plan; the executor creates that tactic's kernel once per execution context.
//
// Contract of a CpuKernel: the same as the op's reference kernel (src/ops/registry.h). Run() reads the
// inputs from the KernelContext and produces every requested output through ctx.AllocateOutput (which
// may hand out memory in the context's arena, already sized and zero-filled), so results must agree with
// the reference kernel within float tolerance. A kernel object belongs to one execution context and is
// never called from two threads at once; it may cache primitives and pre-packed weights keyed by the
// input shapes it has seen (constant inputs, i.e. weights, never change for a node).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/registry.h"

namespace kiln::cpu {

class CpuKernel {
 public:
  virtual ~CpuKernel() = default;
  virtual Status Run(KernelContext& ctx) = 0;
};

// One candidate implementation of a node: a stable name recorded in plans ("onednn.conv", ...) and a
// factory for its kernel.
struct CpuTactic {
  std::string name;
  std::function<std::unique_ptr<CpuKernel>()> create;
  // "fp32", or "bf16" for tactics that round inputs and weights to bfloat16 (FP32 accumulation, FP32
  // outputs): offered only where the CPU has BF16 instructions, chosen only when the build asks for bf16;
  // "int8" for the kernels of layers the model quantized itself (always candidates).
  std::string precision = "fp32";
};

// The fast candidates for `node` given its input shapes and dtypes in the graph (empty: only the
// reference kernel applies). Cheap: called by the builder for every layer.
std::vector<CpuTactic> CpuTacticsFor(const Node& node);

// The tactic of CpuTacticsFor(node) named `name`, or null (a plan naming a tactic this build lacks).
std::unique_ptr<CpuKernel> CreateCpuKernel(const Node& node, const std::string& name);

// Whether the node (a Conv, kiln.FusedConv or pool) has a channels-last kernel here, i.e. is worth turning
// into kiln.ConvNhwc / kiln.PoolNhwc by the channels_last pass (src/passes/channels_last.cc).
bool HasChannelsLastKernel(const Node& node);

// Sets how many threads the fast kernels use when called from this thread (oneDNN's OpenMP team size;
// a no-op without oneDNN). Primitives keep the count they were created under.
void SetKernelThreads(int threads);

// Bytes of pre-packed constant weights alive in the process (shared by every context: see
// SharedPackedWeights in onednn_common.h). For tests and memory reports.
size_t LivePackedWeightBytes();

// A packed copy of constant weights as a plan stores it: `layout` identifies the backend's layout
// (opaque bytes), `bytes` the data in it.
struct PackedWeightCopy {
  std::string layout;
  Tensor bytes;  // u8 [size]
};
// The packed copies of `w` that kernels hold now (the builder stores them in the plan after tactic timing).
std::vector<PackedWeightCopy> LivePackedWeights(const Tensor& w);
// Offers `bytes` (laid out as `layout`) as the packed copy of `w` to every kernel that asks for exactly that
// layout, without copying. Returns a handle that keeps the offer standing while held, or null where the
// layout cannot be one of this build's. A kernel asking for another layout (another batch size's
// primitive, another CPU) packs `w` itself, as without a plan.
std::shared_ptr<const void> AdoptPackedWeights(const Tensor& w, const std::string& layout, const Tensor& bytes);
// How many times kernels have packed constant weights themselves since the process started (for tests: a
// plan's packed weights, once adopted, leave this unchanged).
uint64_t PackedWeightReorders();

// Whether the CPU has BF16 dot-product instructions the tactics can use (AVX512_BF16 or AMX).
bool HaveBf16();
// Whether the CPU has 8-bit dot-product instructions (AVX512_VNNI or AVX_VNNI). Without them oneDNN's
// 8-bit kernels multiply u8 by i8 into saturating 16-bit sums (vpmaddubsw), which can differ from the exact
// result, so the 8-bit tactics are offered only where this holds; elsewhere those layers run their
// reference kernels.
bool HaveInt8Dot();
// Whether oneDNN has its Winograd convolution kernels on this CPU (AVX-512 only).
bool HaveWinograd();

// Whether this build has oneDNN, and its version ("3.1.1") or "" without it.
bool HaveOneDnn();
std::string OneDnnVersion();

}  // namespace kiln::cpu
