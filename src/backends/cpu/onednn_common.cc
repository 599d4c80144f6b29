#include "backends/cpu/onednn_common.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>

namespace kiln::cpu::onednn {

using dnnl::algorithm;
using dnnl::memory;

const dnnl::engine& Engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

Status Guard(const char* what, const std::function<Status()>& fn) {
  try {
    return fn();
  } catch (const dnnl::error& e) {
    return Unsupported(std::string(what) + ": oneDNN: " + e.what());
  } catch (const std::bad_alloc&) {
    return OutOfRange(std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    return Internal(std::string(what) + ": " + e.what());
  }
}

bool AppendActivation(const Attributes& attrs, dnnl::post_ops& po) {
  const std::string act = attrs.GetString("activation", "");
  if (act.empty()) return true;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const bool is_clip = act == "Clip";
  const bool is_hsig = act == "HardSigmoid";
  const float alpha = attrs.GetFloat("activation_alpha",
                                     is_clip ? -kInf : (is_hsig ? 0.2f : (act == "LeakyRelu" ? 0.01f : 1.f)));
  const float beta = attrs.GetFloat("activation_beta", is_clip ? kInf : (is_hsig ? 0.5f : 0.f));
  if (act == "Relu") {
    po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  } else if (act == "Tanh") {
    po.append_eltwise(1.f, algorithm::eltwise_tanh, 0.f, 0.f);
  } else if (act == "Sigmoid") {
    po.append_eltwise(1.f, algorithm::eltwise_logistic, 0.f, 0.f);
  } else if (act == "Gelu") {
    po.append_eltwise(1.f, algorithm::eltwise_gelu_erf, 0.f, 0.f);
  } else if (act == "GeluTanh") {
    po.append_eltwise(1.f, algorithm::eltwise_gelu_tanh, 0.f, 0.f);
  } else if (act == "HardSwish") {
    // oneDNN 2.6's hardswish is x * relu6(x + 3) / 6, the ONNX definition (it ignores alpha and beta).
    po.append_eltwise(1.f, algorithm::eltwise_hardswish, 0.f, 0.f);
  } else if (act == "LeakyRelu") {
    po.append_eltwise(1.f, algorithm::eltwise_relu, alpha, 0.f);
  } else if (act == "Clip") {
    // An absent bound is infinite; the largest finite float clamps every finite value the same way and
    // keeps infinities out of the jit's constant tables.
    const float lo = std::isinf(alpha) && alpha < 0 ? std::numeric_limits<float>::lowest() : alpha;
    const float hi = std::isinf(beta) && beta > 0 ? std::numeric_limits<float>::max() : beta;
    po.append_eltwise(1.f, algorithm::eltwise_clip, lo, hi);
  } else if (act == "HardSigmoid") {
    // No hardsigmoid eltwise before oneDNN 2.7: clamp(alpha * x + beta, 0, 1) as linear then clip.
    po.append_eltwise(1.f, algorithm::eltwise_linear, alpha, beta);
    po.append_eltwise(1.f, algorithm::eltwise_clip, 0.f, 1.f);
  } else if (act == "Swish") {
    po.append_eltwise(1.f, algorithm::eltwise_swish, alpha, 0.f);
  } else {
    return false;
  }
  return true;
}

memory::desc PlainDesc(const std::vector<int64_t>& sizes, memory::data_type dt) {
  std::vector<int64_t> strides(sizes.size(), 1);
  for (size_t i = sizes.size(); i-- > 1;) strides[i - 1] = strides[i] * std::max<int64_t>(sizes[i], 1);
  return StridedDesc(sizes, strides, dt);
}

memory::desc StridedDesc(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides, memory::data_type dt) {
  return memory::desc(memory::dims(sizes.begin(), sizes.end()), dt, memory::dims(strides.begin(), strides.end()));
}

memory::data_type DataTypeOf(DType t) {
  switch (t) {
    case DType::kFloat32: return memory::data_type::f32;
    case DType::kUInt8: return memory::data_type::u8;
    case DType::kInt8: return memory::data_type::s8;
    default: return memory::data_type::undef;
  }
}

dnnl::memory Wrap(const memory::desc& md, const Tensor& t) {
  return dnnl::memory(md, Engine(), const_cast<void*>(t.raw_data()));
}

dnnl::memory Wrap(const memory::desc& md, void* data) { return dnnl::memory(md, Engine(), data); }

namespace {

// Packed bytes a plan offers for (weights storage, layout); used only when a kernel asks for exactly that
// layout, so the descriptor a memory object is made with is always one oneDNN produced itself.
struct PackedOffer {
  void* data;
  size_t size;
};

struct PackedCache {
  std::mutex mu;
  // (weights storage, packed descriptor's bytes) -> the packed copy.
  std::map<std::pair<const void*, std::string>, std::weak_ptr<const memory>> entries;
  std::map<std::pair<const void*, std::string>, std::weak_ptr<const PackedOffer>> offers;
  uint64_t reorders = 0;  // copies packed here (not taken from an offer)
};

PackedCache& ThePackedCache() {
  static PackedCache cache;
  return cache;
}

std::string DescKey(const memory::desc& md) {
  // oneDNN 2.x descriptors are plain C structs: equal bytes, equal layout.
  return std::string(reinterpret_cast<const char*>(&md.data), sizeof(md.data));
}

}  // namespace

std::shared_ptr<const memory> SharedPackedWeights(const Tensor& w, const memory::desc& user, const memory::desc& packed) {
  PackedCache& cache = ThePackedCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  const auto key = std::make_pair(w.raw_data(), DescKey(packed));
  if (auto it = cache.entries.find(key); it != cache.entries.end()) {
    if (auto alive = it->second.lock()) return alive;
  }
  std::erase_if(cache.entries, [](const auto& e) { return e.second.expired(); });
  if (auto it = cache.offers.find(key); it != cache.offers.end()) {
    if (auto offer = it->second.lock(); offer && offer->size == packed.get_size()) {
      // The plan's bytes as they are; the memory keeps the offer (and so the plan's mapping) alive.
      std::shared_ptr<const memory> mem(new memory(packed, Engine(), offer->data),
                                        [offer](const memory* m) { delete m; });
      cache.entries[key] = mem;
      return mem;
    }
  }
  ++cache.reorders;
  auto mem = std::make_shared<memory>(packed, Engine());
  memory src = Wrap(user, w);
  dnnl::stream s(Engine());
  dnnl::reorder(src, *mem).execute(s, src, *mem);
  s.wait();
  cache.entries[key] = mem;
  return mem;
}

std::vector<std::pair<std::string, std::shared_ptr<const memory>>> LivePackedOf(const void* storage) {
  PackedCache& cache = ThePackedCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  std::vector<std::pair<std::string, std::shared_ptr<const memory>>> out;
  for (auto it = cache.entries.lower_bound({storage, std::string()});
       it != cache.entries.end() && it->first.first == storage; ++it) {
    if (auto alive = it->second.lock()) out.emplace_back(it->first.second, std::move(alive));
  }
  return out;
}

std::shared_ptr<const void> OfferPacked(const void* storage, const std::string& layout, void* data, size_t size) {
  if (layout.size() != sizeof(dnnl_memory_desc_t) || !data) return nullptr;
  auto offer = std::make_shared<const PackedOffer>(PackedOffer{data, size});
  PackedCache& cache = ThePackedCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  std::erase_if(cache.offers, [](const auto& e) { return e.second.expired(); });
  cache.offers[std::make_pair(storage, layout)] = offer;
  return offer;
}

uint64_t PackReorders() {
  PackedCache& cache = ThePackedCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  return cache.reorders;
}

size_t LivePackedBytes() {
  PackedCache& cache = ThePackedCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  size_t bytes = 0;
  for (const auto& e : cache.entries) {
    if (auto alive = e.second.lock()) bytes += alive->get_desc().get_size();
  }
  return bytes;
}

Requantization Requantize(const KernelContext& ctx, int64_t channels, dnnl::primitive_attr& attr) {
  Requantization r;
  const bool float_out = !ctx.input(6) && !ctx.input(7);
  const double sx = ctx.input(1)->GetAsDouble(0);
  const Tensor& ws = *ctx.input(4);
  const Tensor* b = ctx.input(8);
  r.out_scale = float_out ? 1.0 : ctx.input(6)->GetAsDouble(0);  // f32 Y: the real value itself
  std::vector<float> scales(static_cast<size_t>(channels));
  r.bias.assign(static_cast<size_t>(channels), 0.f);
  for (int64_t c = 0; c < channels; ++c) {
    const double swc = ws.GetAsDouble(ws.numel() == 1 ? 0 : c);
    scales[static_cast<size_t>(c)] = static_cast<float>(sx * swc / r.out_scale);
    if (b) r.bias[static_cast<size_t>(c)] = static_cast<float>(b->GetAsDouble(c) / (sx * swc));
  }
  attr.set_output_scales(1 << 1, scales);
  r.src_zero = ctx.input(2) ? static_cast<int32_t>(ctx.input(2)->GetAsInt64(0)) : 0;
  r.dst_zero = float_out ? 0 : static_cast<int32_t>(ctx.input(7)->GetAsInt64(0));
  if (r.src_zero != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  if (r.dst_zero != 0) attr.set_zero_points(DNNL_ARG_DST, 0, {DNNL_RUNTIME_S32_VAL});
  return r;
}

Status RequireQuantInputs(const KernelContext& ctx, const char* what) {
  const bool float_out = !ctx.input(6) && !ctx.input(7);
  for (size_t i : {0, 1, 3, 4, 6, 7}) {
    if (float_out && (i == 6 || i == 7)) continue;
    if (!ctx.input(i)) return InvalidArgument(std::string(what) + ": input " + std::to_string(i) + " is missing");
  }
  return Status::Ok();
}

dnnl::memory Requantization::BiasMemory(const dnnl::memory::desc& md) const {
  dnnl::memory m(md, Engine());
  std::memcpy(m.get_data_handle(), bias.data(), bias.size() * sizeof(float));
  return m;
}

void Requantization::AddZeroPoints(std::unordered_map<int, dnnl::memory>& args) {
  const dnnl::memory::desc md({1}, dnnl::memory::data_type::s32, dnnl::memory::format_tag::a);
  if (src_zero != 0) args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, dnnl::memory(md, Engine(), &src_zero));
  if (dst_zero != 0) args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, dnnl::memory(md, Engine(), &dst_zero));
}

Status RunReferenceKernel(KernelContext& ctx) {
  const OpSchema* schema = OpRegistry::Global().Find(ctx.node().op());
  if (!schema || !schema->run) return Unsupported(ctx.node().Label() + ": no reference kernel");
  return schema->run(ctx);
}

bool IsF32(const Value* v) { return v && v->dtype() == DType::kFloat32; }

const Tensor* ConstantInput(const Node& node, size_t i) {
  const Value* v = node.input(i);
  return v ? v->constant() : nullptr;
}

}  // namespace kiln::cpu::onednn
