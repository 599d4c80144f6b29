// Shared pieces of the oneDNN tactics: the CPU engine, error translation, fused activations as eltwise
// post-ops, plain memory descriptors, and the fallback to the reference kernel for degenerate shapes.
//
// Threading: Debian's libdnnl (2.6) is built with DNNL_CPU_RUNTIME=OMP, i.e. it runs its primitives on
// libgomp's OpenMP pool. The thread count is OpenMP's (OMP_NUM_THREADS, default: all cores); Kiln adds no
// pool of its own. Two execution contexts running at once each call into the same OpenMP runtime.
#pragma once

#include <dnnl.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/registry.h"

namespace kiln::cpu::onednn {

// The process-wide CPU engine (created on first use; oneDNN engines are safe to share between threads).
const dnnl::engine& Engine();

// Runs `fn`, turning oneDNN and standard exceptions into an error Status naming `what`: oneDNN's C++ API
// throws, and nothing may be thrown across Kiln's interfaces.
Status Guard(const char* what, const std::function<Status()>& fn);

// The node's fused activation (`activation`, `activation_alpha`, `activation_beta`, defaults as in
// src/ops/fused.cc) appended to `po` as eltwise post-ops. Returns false for an activation oneDNN 2.6
// cannot express (the tactic then declines).
bool AppendActivation(const Attributes& attrs, dnnl::post_ops& po);

// A dense row-major f32 descriptor of `sizes` (the layout of a Kiln Tensor).
dnnl::memory::desc PlainDesc(const std::vector<int64_t>& sizes,
                             dnnl::memory::data_type dt = dnnl::memory::data_type::f32);
// Same dims with explicit element strides.
dnnl::memory::desc StridedDesc(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides,
                               dnnl::memory::data_type dt = dnnl::memory::data_type::f32);
// oneDNN's element type for f32, u8 and i8 tensors (the types the tactics take).
dnnl::memory::data_type DataTypeOf(DType t);

// A memory object over a tensor's storage (oneDNN takes a non-const handle; inputs are only read).
dnnl::memory Wrap(const dnnl::memory::desc& md, const Tensor& t);
dnnl::memory Wrap(const dnnl::memory::desc& md, void* data);

// Constant weights `w` (seen through `user`) packed into the layout `packed`, shared by every kernel of the
// process that asks for the same weights storage in the same layout: the contexts of one engine and the
// server's instances hold one copy, and a later context's first run packs nothing. The copy lives while
// any kernel holds it (the kernels keep their engine's weights alive, so a storage address cannot be
// reused by other weights while its entry is alive). Thread-safe.
std::shared_ptr<const dnnl::memory> SharedPackedWeights(const Tensor& w, const dnnl::memory::desc& user,
                                                        const dnnl::memory::desc& packed);
// Bytes of those shared copies alive now.
size_t LivePackedBytes();
// The shared packed copies of the weights stored at `storage` alive now, with their layout (the
// descriptor's bytes): what a plan stores so that loading it packs nothing.
std::vector<std::pair<std::string, std::shared_ptr<const dnnl::memory>>> LivePackedOf(const void* storage);
// Offers `data` (`size` bytes in the layout whose descriptor bytes are `layout`, from a plan) as the packed
// copy of the weights at `storage`, without copying: SharedPackedWeights then hands it to a kernel asking
// for exactly that layout instead of packing. The offer stands while the result is held. Null when
// `layout` cannot be a descriptor of this build.
std::shared_ptr<const void> OfferPacked(const void* storage, const std::string& layout, void* data, size_t size);
// How many copies SharedPackedWeights has packed itself (not taken from an offer), for tests.
uint64_t PackReorders();

// How the 8-bit kernels (kiln.QConv, kiln.QMatMul: src/ops/quantized.cc's input order, x at 0-2, the weights'
// scale at 4, y at 6-7, the bias at 8) have oneDNN requantize the i32 accumulation: output scales
// sx * sw[c] / sy per output channel c (set on the destination's dim 1; sy = 1 for an f32 output), the bias
// in the accumulator's units, B[c] / (sx * sw[c]) (oneDNN 2.x adds the bias before the scales), and the
// input's and output's zero points, passed at run time where they are not 0.
struct Requantization {
  double out_scale = 1;               // sy
  std::vector<float> bias;            // B / (sx * sw[c]); zeros without B
  int32_t src_zero = 0, dst_zero = 0;
  // The bias as a plain f32 memory of `md` (its [channels] elements).
  dnnl::memory BiasMemory(const dnnl::memory::desc& md) const;
  // The run-time zero points added to a primitive's arguments (the memories point into this object).
  void AddZeroPoints(std::unordered_map<int, dnnl::memory>& args);
};
// Fills `attr`'s output scales and zero points for `channels` output channels.
Requantization Requantize(const KernelContext& ctx, int64_t channels, dnnl::primitive_attr& attr);
// An error naming the tactic `what` unless the inputs those kernels require are given (X, its scale, W, its
// scale; y_scale and y_zero_point both or, for an f32 output, neither).
Status RequireQuantInputs(const KernelContext& ctx, const char* what);

// The node's reference kernel on `ctx`: used for shapes the primitives do not cover (zero-sized dims),
// so a tactic chosen on real shapes still answers every input the reference kernel answers.
Status RunReferenceKernel(KernelContext& ctx);

// Whether value `v` (may be null) has dtype f32.
bool IsF32(const Value* v);

// Input i's constant tensor, or null (absent or computed at run time).
const Tensor* ConstantInput(const Node& node, size_t i);

}  // namespace kiln::cpu::onednn
