#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <set>

#include "ops/infer.h"
#include "plan/byte_io.h"
#include "plan/checksum.h"
#include "plan/plan.h"
#include "plan/plan_tags.h"

namespace kiln::plan {
namespace {

// Bounds on what one plan may declare; far above real models, low enough that a corrupted count cannot
// make the reader allocate without limit.
constexpr uint64_t kMaxRank = 64;

// Any op kind by its name, Kiln's own "kiln." ops included (OpKindFromName only maps names a model may use).
std::optional<OpKind> OpKindByName(std::string_view name) {
  for (int i = 0; i < kNumOpKinds; ++i) {
    if (OpKindName(static_cast<OpKind>(i)) == name) return static_cast<OpKind>(i);
  }
  return std::nullopt;
}

Status Corrupt(const std::string& what) { return DataLoss("corrupted plan: " + what); }

bool ValidDType(uint8_t raw, bool allow_undefined) {
  const DType t = static_cast<DType>(raw);
  if (t == DType::kUndefined) return allow_undefined;
  return DTypeSize(t) != 0;
}

std::vector<std::string> GetStrings(ByteReader& r, const char* what) {
  const uint64_t n = r.GetCount(what, 8);
  std::vector<std::string> out;
  for (uint64_t i = 0; i < n && r.ok(); ++i) out.push_back(r.GetString(what));
  return out;
}

std::vector<int64_t> GetInts(ByteReader& r, const char* what, uint64_t max_count) {
  const uint64_t n = r.GetCount(what, 8);
  if (n > max_count) {
    r.Fail(std::string(what) + " has " + std::to_string(n) + " entries (at most " +
           std::to_string(max_count) + ")");
    return {};
  }
  std::vector<int64_t> out(n);
  for (uint64_t i = 0; i < n && r.ok(); ++i) out[i] = r.GetI64(what);
  return out;
}

TargetFingerprint GetTarget(ByteReader& r) {
  TargetFingerprint t;
  t.device = r.GetString("target device");
  t.arch = r.GetString("target arch");
  t.cpu_name = r.GetString("target cpu name");
  t.cpu_features = GetStrings(r, "target cpu features");
  t.required_features = GetStrings(r, "target required features");
  const uint64_t n = r.GetCount("target libraries", 16);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string name = r.GetString("library name");
    std::string version = r.GetString("library version");
    t.libraries.emplace_back(std::move(name), std::move(version));
  }
  t.cuda_compute_capability = r.GetI32("cuda compute capability");
  t.kiln_version = r.GetString("kiln version");
  return t;
}

// Sizes that are non-negative with a byte count that fits; the byte count, or nullopt.
std::optional<uint64_t> ByteCount(DType dtype, const std::vector<int64_t>& sizes) {
  auto n = CheckedNumElements(sizes);
  const uint64_t elem = DTypeSize(dtype);
  if (!n || elem == 0 || static_cast<uint64_t>(*n) > std::numeric_limits<uint64_t>::max() / elem) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(*n) * elem;
}

Expected<Tensor> GetTensorInline(ByteReader& r) {
  const uint8_t raw = r.GetU8("tensor attribute dtype");
  std::vector<int64_t> sizes = GetInts(r, "tensor attribute sizes", kMaxRank);
  const uint64_t nbytes = r.GetU64("tensor attribute byte count");
  if (!r.ok()) return Corrupt(r.error());
  if (!ValidDType(raw, false)) return Corrupt("tensor attribute has unknown dtype " + std::to_string(raw));
  const DType dtype = static_cast<DType>(raw);
  auto expected = ByteCount(dtype, sizes);
  if (!expected || *expected != nbytes) {
    return Corrupt("tensor attribute of sizes " + SizesToString(sizes) + " has " + std::to_string(nbytes) +
                   " bytes");
  }
  const uint8_t* p = r.GetSpan(nbytes, "tensor attribute data");
  if (!p) return Corrupt(r.error());
  Tensor t(dtype, std::move(sizes));
  if (nbytes > 0) std::memcpy(t.raw_data(), p, nbytes);
  return t;
}

Expected<AttrValue> GetAttribute(ByteReader& r, uint8_t kind) {
  switch (kind) {
    case static_cast<uint8_t>(AttrKind::kInt): return AttrValue(r.GetI64("int attribute"));
    case static_cast<uint8_t>(AttrKind::kFloat): return AttrValue(r.GetF32("float attribute"));
    case static_cast<uint8_t>(AttrKind::kString): return AttrValue(r.GetString("string attribute"));
    case static_cast<uint8_t>(AttrKind::kInts): {
      const uint64_t n = r.GetCount("ints attribute", 8);
      std::vector<int64_t> v(n);
      for (uint64_t i = 0; i < n && r.ok(); ++i) v[i] = r.GetI64("ints attribute");
      return AttrValue(std::move(v));
    }
    case static_cast<uint8_t>(AttrKind::kFloats): {
      const uint64_t n = r.GetCount("floats attribute", 4);
      std::vector<float> v(n);
      for (uint64_t i = 0; i < n && r.ok(); ++i) v[i] = r.GetF32("floats attribute");
      return AttrValue(std::move(v));
    }
    case static_cast<uint8_t>(AttrKind::kStrings): return AttrValue(GetStrings(r, "strings attribute"));
    case static_cast<uint8_t>(AttrKind::kTensor): {
      KILN_ASSIGN_OR_RETURN(Tensor t, GetTensorInline(r));
      return AttrValue(std::move(t));
    }
    default: return Corrupt("attribute of unknown kind " + std::to_string(kind));
  }
}

Expected<std::optional<Shape>> GetShape(ByteReader& r) {
  const uint8_t has = r.GetU8("shape flag");
  if (has == 0) return std::optional<Shape>();
  if (has != 1) return Corrupt("bad shape flag " + std::to_string(has));
  const uint64_t rank = r.GetCount("shape rank", 1);
  if (rank > kMaxRank) return Corrupt("shape of rank " + std::to_string(rank));
  std::vector<Dim> dims;
  for (uint64_t i = 0; i < rank && r.ok(); ++i) {
    const uint8_t tag = r.GetU8("dim tag");
    if (tag == kDimStatic) {
      const int64_t v = r.GetI64("dim");
      if (v < 0) return Corrupt("negative dim " + std::to_string(v));
      dims.emplace_back(v);
    } else if (tag == kDimSymbolic) {
      std::string s = r.GetString("dim symbol");
      if (r.ok() && s.empty()) return Corrupt("symbolic dim without a name");
      dims.push_back(Dim::Symbol(std::move(s)));
    } else if (tag == kDimUnknown) {
      dims.emplace_back();
    } else {
      return Corrupt("bad dim tag " + std::to_string(tag));
    }
  }
  if (!r.ok()) return Corrupt(r.error());
  return std::optional<Shape>(Shape(std::move(dims)));
}

struct Header {
  uint32_t version = 0;
  uint64_t file_size = 0, meta_offset = 0, meta_size = 0, weights_offset = 0, weights_size = 0;
};

Expected<Header> CheckHeader(const uint8_t* data, size_t size, const ReadOptions& options) {
  if (size < sizeof(kPlanMagic)) {
    return DataLoss("not a Kiln plan: the file is " + std::to_string(size) +
                    " bytes, too short for a header");
  }
  if (std::memcmp(data, kPlanMagic, sizeof(kPlanMagic)) != 0) {
    return InvalidArgument("not a Kiln plan (the file does not start with \"KILNPLAN\")");
  }
  if (size < kPlanHeaderSize + kPlanTrailerSize) {
    return DataLoss("truncated plan: the file is " + std::to_string(size) + " bytes, shorter than a header");
  }
  ByteReader r(data + sizeof(kPlanMagic), kPlanHeaderSize - sizeof(kPlanMagic));
  Header h;
  h.version = r.GetU32("version");
  const uint32_t header_size = r.GetU32("header size");
  h.file_size = r.GetU64("file size");
  h.meta_offset = r.GetU64("metadata offset");
  h.meta_size = r.GetU64("metadata size");
  h.weights_offset = r.GetU64("weights offset");
  h.weights_size = r.GetU64("weights size");
  if (h.version > kPlanFormatVersion) {
    return Unsupported("plan format version " + std::to_string(h.version) +
                       " is newer than this Kiln reads (version " + std::to_string(kPlanFormatVersion) +
                       "): rebuild the plan with this Kiln or upgrade Kiln");
  }
  if (h.version == 0) return Corrupt("format version 0");
  if (header_size != kPlanHeaderSize) return Corrupt("header size " + std::to_string(header_size));
  if (h.file_size > size) {
    return DataLoss("truncated plan: the file is " + std::to_string(size) + " bytes, its header says " +
                    std::to_string(h.file_size));
  }
  if (h.file_size < size) {
    return Corrupt("the file is " + std::to_string(size) + " bytes, its header says " +
                   std::to_string(h.file_size));
  }
  if (options.verify_checksum) {
    const size_t body = size - kPlanTrailerSize;
    uint32_t stored;
    std::memcpy(&stored, data + body, 4);
    if (std::memcmp(data + body + 4, "KEND", 4) != 0) return Corrupt("the trailer is damaged");
    const uint32_t actual = Crc32c(data, body);
    if (stored != actual)
      return DataLoss("corrupted plan: checksum mismatch (the file was damaged or truncated)");
  }
  const uint64_t body_end = size - kPlanTrailerSize;
  if (h.meta_offset != kPlanHeaderSize || h.meta_size > body_end - h.meta_offset ||
      h.weights_offset < h.meta_offset + h.meta_size || h.weights_offset % kWeightAlignment != 0 ||
      h.weights_offset > body_end || h.weights_size != body_end - h.weights_offset) {
    return Corrupt("section offsets out of range");
  }
  return h;
}

struct ParsedWeight {
  DType dtype;
  std::vector<int64_t> sizes;
  uint64_t offset, nbytes;
};

Expected<Plan> Parse(const uint8_t* data, size_t size, std::shared_ptr<void> storage,
                     const ReadOptions& options) {
  KILN_ASSIGN_OR_RETURN(Header h, CheckHeader(data, size, options));
  ByteReader r(data + h.meta_offset, h.meta_size);
  Plan plan;
  plan.format_version = h.version;
  plan.storage = storage;
  plan.target = GetTarget(r);
  if (!r.ok()) return Corrupt(r.error());
  if (options.check_target) {
    KILN_RETURN_IF_ERROR(CheckTargetCompatible(plan.target, CurrentTarget(plan.target.device == "cuda" ? "cuda" : "cpu")));
  }
  plan.source = r.GetString("source");
  plan.build_seconds = r.Get<double>("build time");
  auto graph = std::make_shared<Graph>();
  graph->set_name(r.GetString("graph name"));

  const uint64_t num_weights = r.GetCount("weights", 25);
  std::vector<ParsedWeight> weights;
  for (uint64_t i = 0; i < num_weights && r.ok(); ++i) {
    ParsedWeight pw;
    const uint8_t raw = r.GetU8("weight dtype");
    pw.sizes = GetInts(r, "weight sizes", kMaxRank);
    pw.offset = r.GetU64("weight offset");
    pw.nbytes = r.GetU64("weight size");
    if (!r.ok()) break;
    if (!ValidDType(raw, false)) return Corrupt("weight " + std::to_string(i) + " has unknown dtype");
    pw.dtype = static_cast<DType>(raw);
    auto expected = ByteCount(pw.dtype, pw.sizes);
    if (!expected || *expected != pw.nbytes)
      return Corrupt("weight " + std::to_string(i) + " has a wrong size");
    if (pw.offset % kWeightAlignment != 0 || pw.offset > h.weights_size ||
        pw.nbytes > h.weights_size - pw.offset) {
      return Corrupt("weight " + std::to_string(i) + " lies outside the weights section");
    }
    weights.push_back(std::move(pw));
  }
  if (!r.ok()) return Corrupt(r.error());

  // A weight as a tensor over the file's bytes (no copy; the buffer keeps the storage alive).
  auto weight_tensor = [&](const ParsedWeight& pw) {
    void* p = const_cast<uint8_t*>(data + h.weights_offset + pw.offset);
    return std::make_shared<const Tensor>(pw.dtype, pw.sizes, std::make_shared<Buffer>(p, pw.nbytes, storage));
  };
  const uint64_t num_values = r.GetCount("values", 11);
  std::vector<Value*> values;
  std::set<std::string> names;
  for (uint64_t i = 0; i < num_values && r.ok(); ++i) {
    std::string name = r.GetString("value name");
    const uint8_t raw = r.GetU8("value dtype");
    KILN_ASSIGN_OR_RETURN(std::optional<Shape> shape, GetShape(r));
    const uint8_t is_const = r.GetU8("value kind");
    if (!r.ok()) break;
    if (!name.empty() && !names.insert(name).second) return Corrupt("value '" + name + "' is defined twice");
    if (is_const == 1) {
      const uint64_t w = r.GetU64("weight index");
      if (!r.ok()) break;
      if (w >= weights.size()) return Corrupt("value '" + name + "' refers to a missing weight");
      values.push_back(graph->AddConstant(std::move(name), weight_tensor(weights[w])));
    } else if (is_const == 0) {
      if (!ValidDType(raw, true))
        return Corrupt("value '" + name + "' has unknown dtype " + std::to_string(raw));
      values.push_back(graph->AddValue(std::move(name), static_cast<DType>(raw), std::move(shape)));
    } else {
      return Corrupt("bad value kind " + std::to_string(is_const));
    }
  }
  if (!r.ok()) return Corrupt(r.error());

  auto value_at = [&](int64_t ref, bool allow_null, Value** out) {
    if (ref == -1 && allow_null) {
      *out = nullptr;
      return true;
    }
    if (ref < 0 || static_cast<uint64_t>(ref) >= values.size()) return false;
    *out = values[ref];
    return true;
  };

  const uint64_t num_nodes = r.GetCount("nodes", 40);
  std::set<const Value*> defined;
  for (uint64_t i = 0; i < num_nodes && r.ok(); ++i) {
    std::string op_name = r.GetString("op name");
    std::string node_name = r.GetString("node name");
    const int32_t opset = r.GetI32("opset");
    std::vector<Value*> ins, outs;
    const uint64_t n_in = r.GetCount("node inputs", 8);
    for (uint64_t k = 0; k < n_in && r.ok(); ++k) {
      Value* v = nullptr;
      if (!value_at(r.GetI64("node input"), true, &v))
        return Corrupt("node '" + node_name + "' has a bad input");
      ins.push_back(v);
    }
    const uint64_t n_out = r.GetCount("node outputs", 8);
    for (uint64_t k = 0; k < n_out && r.ok(); ++k) {
      Value* v = nullptr;
      if (!value_at(r.GetI64("node output"), true, &v))
        return Corrupt("node '" + node_name + "' has a bad output");
      if (v && (v->is_constant() || v->producer() || !defined.insert(v).second)) {
        return Corrupt("value '" + v->name() + "' is produced twice");
      }
      outs.push_back(v);
    }
    if (!r.ok()) break;
    auto op = OpKindByName(op_name);
    if (!op) return Unsupported("plan uses op '" + op_name + "', which this build of Kiln does not know");
    Attributes attrs;
    const uint64_t n_attr = r.GetCount("node attributes", 9);
    for (uint64_t k = 0; k < n_attr && r.ok(); ++k) {
      std::string attr_name = r.GetString("attribute name");
      const uint8_t kind = r.GetU8("attribute kind");
      if (!r.ok()) break;
      KILN_ASSIGN_OR_RETURN(AttrValue v, GetAttribute(r, kind));
      if (attrs.Has(attr_name)) return Corrupt("node '" + node_name + "' repeats attribute " + attr_name);
      attrs.Set(attr_name, std::move(v));
    }
    LayerChoice choice;
    choice.tactic = r.GetString("tactic");
    choice.precision = r.GetString("precision");
    if (!r.ok()) break;
    Node* n = graph->AddNode(*op, std::move(node_name), std::move(ins), std::move(outs), opset);
    n->attrs() = std::move(attrs);
    plan.schedule.push_back(n);
    plan.layers.push_back(std::move(choice));
  }
  if (!r.ok()) return Corrupt(r.error());

  const uint64_t n_inputs = r.GetCount("graph inputs", 8);
  for (uint64_t i = 0; i < n_inputs && r.ok(); ++i) {
    Value* v = nullptr;
    if (!value_at(static_cast<int64_t>(r.GetU64("graph input")), false, &v) || v->is_graph_input() ||
        v->producer()) {
      if (r.ok()) return Corrupt("bad graph input");
      break;
    }
    graph->AddInput(v);
  }
  const uint64_t n_outputs = r.GetCount("graph outputs", 8);
  for (uint64_t i = 0; i < n_outputs && r.ok(); ++i) {
    Value* v = nullptr;
    if (!value_at(static_cast<int64_t>(r.GetU64("graph output")), false, &v)) {
      if (r.ok()) return Corrupt("bad graph output");
      break;
    }
    graph->AddOutput(v);
  }
  if (!r.ok()) return Corrupt(r.error());

  // Every non-constant input of the graph in order: the profiles must list exactly these.
  std::vector<const Value*> runtime_inputs;
  for (const Value* v : graph->inputs()) {
    if (!v->is_constant()) runtime_inputs.push_back(v);
  }
  const uint64_t n_profiles = r.GetCount("profiles", 8);
  for (uint64_t p = 0; p < n_profiles && r.ok(); ++p) {
    Profile prof;
    const uint64_t n = r.GetCount("profile inputs", 32);
    if (r.ok() && n != runtime_inputs.size()) return Corrupt("a profile does not cover every input");
    for (uint64_t i = 0; i < n && r.ok(); ++i) {
      InputRange range;
      range.name = r.GetString("profile input name");
      range.min = GetInts(r, "profile min", kMaxRank);
      range.opt = GetInts(r, "profile opt", kMaxRank);
      range.max = GetInts(r, "profile max", kMaxRank);
      if (!r.ok()) break;
      const Value* in = runtime_inputs[i];
      const size_t rank = in->shape() ? in->shape()->rank() : range.min.size();
      if (range.name != in->name() || range.min.size() != rank || range.opt.size() != rank ||
          range.max.size() != rank) {
        return Corrupt("profile entry for '" + range.name + "' does not match the input");
      }
      for (size_t d = 0; d < rank; ++d) {
        if (range.min[d] < 0 || range.min[d] > range.opt[d] || range.opt[d] > range.max[d]) {
          return Corrupt("profile range of '" + range.name + "' is not min <= opt <= max");
        }
      }
      prof.inputs.push_back(std::move(range));
    }
    plan.profiles.push_back(std::move(prof));
  }
  for (uint64_t p = 0; p < n_profiles && r.ok(); ++p) {
    PlanMemory m;
    m.arena_size = r.GetU64("arena size");
    m.naive_size = r.GetU64("naive size");
    m.dynamic_count = r.GetU64("dynamic tensor count");
    const uint64_t n = r.GetCount("memory blocks", 24);
    for (uint64_t i = 0; i < n && r.ok(); ++i) {
      Value* v = nullptr;
      const int64_t ref = static_cast<int64_t>(r.GetU64("block value"));
      PlannedBlock b;
      b.offset = r.GetU64("block offset");
      b.size = r.GetU64("block size");
      if (!r.ok()) break;
      if (!value_at(ref, false, &v) || v->name().empty()) return Corrupt("memory block of a missing value");
      if (b.offset > m.arena_size || b.size > m.arena_size - b.offset) {
        return Corrupt("memory block of '" + v->name() + "' lies outside the arena");
      }
      b.value = v->name();
      m.blocks.push_back(std::move(b));
    }
    plan.memory.push_back(std::move(m));
  }
  if (!r.ok()) return Corrupt(r.error());
  if (h.version >= 2) {
    const uint64_t n = r.GetCount("packed weights", 17);
    for (uint64_t i = 0; i < n && r.ok(); ++i) {
      Value* v = nullptr;
      const int64_t ref = static_cast<int64_t>(r.GetU64("packed value"));
      const uint64_t w = r.GetU64("packed weight index");
      std::string layout = r.GetString("packed layout");
      if (!r.ok()) break;
      if (!value_at(ref, false, &v) || !v->is_constant()) return Corrupt("packed weights of a missing constant");
      if (w >= weights.size() || weights[w].dtype != DType::kUInt8 || weights[w].sizes.size() != 1) {
        return Corrupt("packed weights of '" + v->name() + "' refer to a missing or malformed weight");
      }
      plan.packed.push_back({v->name(), std::move(layout), weight_tensor(weights[w])});
    }
    if (!r.ok()) return Corrupt(r.error());
  }
  if (r.remaining() != 0) return Corrupt(std::to_string(r.remaining()) + " unread bytes after the metadata");

  // The stored order must be a valid schedule: each node reads only values already computed.
  std::set<const Value*> ready;
  for (const Node* n : plan.schedule) {
    for (const Value* v : n->inputs()) {
      if (v && !v->is_constant() && !v->is_graph_input() && !ready.count(v)) {
        return Corrupt(n->Label() + " reads '" + v->name() + "' before it is computed");
      }
    }
    for (const Value* o : n->outputs()) {
      if (o) ready.insert(o);
    }
  }
  Status st = VerifyGraph(*graph);
  if (!st.ok()) return Corrupt(st.message());
  st = ValidateGraphOps(*graph);
  if (!st.ok()) return st.code() == StatusCode::kUnsupported ? st : Corrupt(st.message());
  st = InferShapes(*graph);
  if (!st.ok()) return Corrupt(st.message());
  plan.graph = std::move(graph);
  return plan;
}

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr) munmap(addr, size);
  }
};

}  // namespace

Expected<Plan> ReadPlanBytes(const void* data, size_t size, const ReadOptions& options) {
  try {
    auto copy = std::make_shared<Buffer>(size);
    if (size > 0) std::memcpy(copy->data(), data, size);
    const auto* p = static_cast<const uint8_t*>(copy->data());
    return Parse(p, size, copy, options);
  } catch (const std::bad_alloc&) {
    return OutOfRange("out of memory reading the plan");
  }
}

Expected<Plan> ReadPlanFile(const std::string& path, const ReadOptions& options) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("cannot open plan '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument("'" + path + "' is not a regular file");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size > 0) {
    // Private and writable: pages are shared with the page cache until written (which Kiln never does to
    // weights), and a stray write cannot reach the file.
    void* addr = mmap(nullptr, mapping->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      ::close(fd);
      return Unavailable("cannot map plan '" + path + "': " + std::strerror(errno));
    }
    mapping->addr = addr;
  }
  ::close(fd);
  try {
    auto plan = Parse(static_cast<const uint8_t*>(mapping->addr), mapping->size, mapping, options);
    if (!plan.ok()) return plan.status().WithContext(path);
    return plan;
  } catch (const std::bad_alloc&) {
    return OutOfRange(path + ": out of memory reading the plan");
  }
}

}  // namespace kiln::plan
