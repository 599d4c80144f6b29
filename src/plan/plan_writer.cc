#include <cstdio>
#include <map>
#include <memory>

#include "plan/byte_io.h"
#include "plan/checksum.h"
#include "plan/plan.h"
#include "plan/plan_tags.h"

namespace kiln::plan {
namespace {

void PutStrings(ByteWriter& w, const std::vector<std::string>& v) {
  w.PutU64(v.size());
  for (const auto& s : v) w.PutString(s);
}

void PutInts(ByteWriter& w, const std::vector<int64_t>& v) {
  w.PutU64(v.size());
  for (int64_t x : v) w.PutI64(x);
}

void PutTarget(ByteWriter& w, const TargetFingerprint& t) {
  w.PutString(t.device);
  w.PutString(t.arch);
  w.PutString(t.cpu_name);
  PutStrings(w, t.cpu_features);
  PutStrings(w, t.required_features);
  w.PutU64(t.libraries.size());
  for (const auto& [name, version] : t.libraries) {
    w.PutString(name);
    w.PutString(version);
  }
  w.PutI32(t.cuda_compute_capability);
  w.PutString(t.kiln_version);
}

void PutShape(ByteWriter& w, const std::optional<Shape>& shape) {
  w.PutU8(shape ? 1 : 0);
  if (!shape) return;
  w.PutU64(shape->rank());
  for (const Dim& d : shape->dims()) {
    if (d.is_static()) {
      w.PutU8(kDimStatic);
      w.PutI64(d.value());
    } else if (d.is_symbolic()) {
      w.PutU8(kDimSymbolic);
      w.PutString(d.symbol());
    } else {
      w.PutU8(kDimUnknown);
    }
  }
}

void PutTensorInline(ByteWriter& w, const Tensor& t) {
  w.PutU8(static_cast<uint8_t>(t.dtype()));
  PutInts(w, t.sizes());
  w.PutU64(t.nbytes());
  if (t.nbytes() > 0) w.PutBytes(t.raw_data(), t.nbytes());
}

void PutAttribute(ByteWriter& w, const std::string& name, const AttrValue& v) {
  w.PutString(name);
  w.PutU8(static_cast<uint8_t>(KindOf(v)));
  switch (KindOf(v)) {
    case AttrKind::kInt: w.PutI64(std::get<int64_t>(v)); break;
    case AttrKind::kFloat: w.PutF32(std::get<float>(v)); break;
    case AttrKind::kString: w.PutString(std::get<std::string>(v)); break;
    case AttrKind::kInts: PutInts(w, std::get<std::vector<int64_t>>(v)); break;
    case AttrKind::kFloats: {
      const auto& f = std::get<std::vector<float>>(v);
      w.PutU64(f.size());
      for (float x : f) w.PutF32(x);
      break;
    }
    case AttrKind::kStrings: PutStrings(w, std::get<std::vector<std::string>>(v)); break;
    case AttrKind::kTensor: PutTensorInline(w, std::get<Tensor>(v)); break;
  }
}

struct WeightEntry {
  const Tensor* tensor;
  uint64_t offset;
};

// The metadata section, and the weights' placement in the weights section.
Expected<std::string> EncodeMetadata(const Plan& plan, std::vector<WeightEntry>& weights,
                                     uint64_t& weights_size) {
  const Graph& g = *plan.graph;
  if (plan.layers.size() != plan.schedule.size()) return Internal("plan has a tactic list of another length");
  if (plan.schedule.size() != g.num_nodes()) return Internal("plan schedule does not list every node");
  if (plan.memory.size() != plan.profiles.size())
    return Internal("plan has a memory plan per profile missing");
  ByteWriter w;
  PutTarget(w, plan.target);
  w.PutString(plan.source);
  w.Put<double>(plan.build_seconds);
  w.PutString(g.name());

  const std::vector<Value*> values = g.values();
  std::map<const Value*, uint64_t> index;
  for (size_t i = 0; i < values.size(); ++i) index[values[i]] = i;

  // Weight table, then values (constants refer to a weight by index).
  weights.clear();
  weights_size = 0;
  // Places `t` next in the weights section (64-byte aligned); returns its index in the weight table.
  auto place = [&](const Tensor* t) {
    weights.push_back({t, weights_size});
    weights_size += (t->nbytes() + kWeightAlignment - 1) / kWeightAlignment * kWeightAlignment;
    return static_cast<uint64_t>(weights.size() - 1);
  };
  std::map<const Value*, uint64_t> weight_of;
  for (const Value* v : values) {
    if (v->is_constant()) weight_of[v] = place(v->constant());
  }
  // Packed copies follow the constants in the weights section.
  std::vector<uint64_t> packed_weight;
  for (const PackedWeights& p : plan.packed) {
    const Value* v = g.FindValue(p.value);
    if (!v || !v->is_constant() || !p.bytes) return Internal("packed weights of '" + p.value + "', not a constant");
    packed_weight.push_back(place(p.bytes.get()));
  }
  w.PutU64(weights.size());
  for (const WeightEntry& e : weights) {
    w.PutU8(static_cast<uint8_t>(e.tensor->dtype()));
    PutInts(w, e.tensor->sizes());
    w.PutU64(e.offset);
    w.PutU64(e.tensor->nbytes());
  }
  w.PutU64(values.size());
  for (const Value* v : values) {
    w.PutString(v->name());
    w.PutU8(static_cast<uint8_t>(v->dtype()));
    PutShape(w, v->shape());
    if (v->is_constant()) {
      w.PutU8(1);
      w.PutU64(weight_of.at(v));
    } else {
      w.PutU8(0);
    }
  }

  w.PutU64(plan.schedule.size());
  auto value_ref = [&](const Value* v) -> int64_t {
    if (!v) return -1;
    auto it = index.find(v);
    return it == index.end() ? -2 : static_cast<int64_t>(it->second);
  };
  for (size_t i = 0; i < plan.schedule.size(); ++i) {
    const Node* n = plan.schedule[i];
    w.PutString(n->op_name());
    w.PutString(n->name());
    w.PutI32(n->opset());
    w.PutU64(n->num_inputs());
    for (const Value* v : n->inputs()) {
      if (value_ref(v) == -2) return Internal(n->Label() + ": input is not in the graph");
      w.PutI64(value_ref(v));
    }
    w.PutU64(n->num_outputs());
    for (const Value* v : n->outputs()) {
      if (value_ref(v) == -2) return Internal(n->Label() + ": output is not in the graph");
      w.PutI64(value_ref(v));
    }
    w.PutU64(n->attrs().all().size());
    for (const auto& [name, v] : n->attrs().all()) PutAttribute(w, name, v);
    w.PutString(plan.layers[i].tactic);
    w.PutString(plan.layers[i].precision);
  }
  w.PutU64(g.inputs().size());
  for (const Value* v : g.inputs()) w.PutU64(index.at(v));
  w.PutU64(g.outputs().size());
  for (const Value* v : g.outputs()) w.PutU64(index.at(v));

  w.PutU64(plan.profiles.size());
  for (const Profile& p : plan.profiles) {
    w.PutU64(p.inputs.size());
    for (const InputRange& r : p.inputs) {
      w.PutString(r.name);
      PutInts(w, r.min);
      PutInts(w, r.opt);
      PutInts(w, r.max);
    }
  }
  for (const PlanMemory& m : plan.memory) {
    w.PutU64(m.arena_size);
    w.PutU64(m.naive_size);
    w.PutU64(m.dynamic_count);
    w.PutU64(m.blocks.size());
    for (const PlannedBlock& b : m.blocks) {
      const Value* v = g.FindValue(b.value);
      if (!v) return Internal("memory plan names unknown value '" + b.value + "'");
      w.PutU64(index.at(v));
      w.PutU64(b.offset);
      w.PutU64(b.size);
    }
  }
  w.PutU64(plan.packed.size());
  for (size_t i = 0; i < plan.packed.size(); ++i) {
    w.PutU64(index.at(g.FindValue(plan.packed[i].value)));
    w.PutU64(packed_weight[i]);
    w.PutString(plan.packed[i].layout);
  }
  return std::move(w.bytes());
}

}  // namespace

Status WritePlan(const Plan& plan, const std::function<bool(const void*, size_t)>& sink) {
  if (!plan.graph) return Internal("plan has no graph");
  std::vector<WeightEntry> weights;
  uint64_t weights_size = 0;
  KILN_ASSIGN_OR_RETURN(std::string meta, EncodeMetadata(plan, weights, weights_size));

  const uint64_t meta_offset = kPlanHeaderSize;
  const uint64_t weights_offset =
      (meta_offset + meta.size() + kWeightAlignment - 1) / kWeightAlignment * kWeightAlignment;
  const uint64_t file_size = weights_offset + weights_size + kPlanTrailerSize;
  ByteWriter h;
  h.PutBytes(kPlanMagic, sizeof(kPlanMagic));
  h.PutU32(kPlanFormatVersion);
  h.PutU32(kPlanHeaderSize);
  h.PutU64(file_size);
  h.PutU64(meta_offset);
  h.PutU64(meta.size());
  h.PutU64(weights_offset);
  h.PutU64(weights_size);
  h.PadTo(kPlanHeaderSize);

  uint32_t crc = 0;
  uint64_t written = 0;
  auto emit = [&](const void* p, size_t n) {
    crc = Crc32c(p, n, crc);
    written += n;
    return n == 0 || sink(p, n);
  };
  static const char kZeros[kWeightAlignment] = {};
  bool good = emit(h.bytes().data(), h.size()) && emit(meta.data(), meta.size()) &&
              emit(kZeros, weights_offset - meta_offset - meta.size());
  for (const WeightEntry& e : weights) {
    if (!good) break;
    const size_t n = e.tensor->nbytes();
    good = emit(e.tensor->raw_data(), n) &&
           emit(kZeros, (kWeightAlignment - n % kWeightAlignment) % kWeightAlignment);
  }
  if (!good) return Unavailable("could not write the plan");
  if (written != file_size - kPlanTrailerSize) return Internal("plan layout computed wrongly");
  ByteWriter t;
  t.PutU32(crc);
  t.PutBytes("KEND", 4);
  if (!sink(t.bytes().data(), t.size())) return Unavailable("could not write the plan");
  return Status::Ok();
}

Status WritePlanFile(const Plan& plan, const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return NotFound("cannot open '" + path + "' for writing");
  Status st = WritePlan(plan, [&](const void* p, size_t n) { return std::fwrite(p, 1, n, f.get()) == n; });
  if (!st.ok()) return st.WithContext(path);
  if (std::fclose(f.release()) != 0) return Unavailable(path + ": could not write the plan (disk full?)");
  return Status::Ok();
}

Expected<std::string> SerializePlan(const Plan& plan) {
  std::string out;
  KILN_RETURN_IF_ERROR(WritePlan(plan, [&](const void* p, size_t n) {
    out.append(static_cast<const char*>(p), n);
    return true;
  }));
  return out;
}

}  // namespace kiln::plan
