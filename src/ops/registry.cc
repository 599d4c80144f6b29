#include "ops/registry.h"

#include <cstring>

#include "ops/all_ops.h"

namespace kiln {

const OpRegistry& OpRegistry::Global() {
  static const OpRegistry* registry = [] {
    auto* r = new OpRegistry();
    RegisterAllOps(*r);
    return r;
  }();
  return *registry;
}

void OpRegistry::Register(OpSchema schema) {
  const size_t i = static_cast<size_t>(schema.op);
  schemas_[i] = std::make_unique<OpSchema>(std::move(schema));
}

const OpSchema* OpRegistry::Find(OpKind op) const { return schemas_[static_cast<size_t>(op)].get(); }

std::vector<OpKind> OpRegistry::RegisteredOps() const {
  std::vector<OpKind> out;
  for (size_t i = 0; i < schemas_.size(); ++i) {
    if (schemas_[i] && schemas_[i]->run) out.push_back(static_cast<OpKind>(i));
  }
  return out;
}

namespace {
std::string CountRange(int lo, int hi) {
  if (hi < 0) return "at least " + std::to_string(lo);
  if (lo == hi) return std::to_string(lo);
  return std::to_string(lo) + " to " + std::to_string(hi);
}
}  // namespace

Status ValidateNode(const Node& node) {
  const OpSchema* schema = OpRegistry::Global().Find(node.op());
  if (!schema) return Unsupported(node.Label() + ": operator " + std::string(node.op_name()) + " has no kernel");
  // Trailing omitted inputs do not count.
  int n_in = static_cast<int>(node.num_inputs());
  while (n_in > 0 && node.input(static_cast<size_t>(n_in - 1)) == nullptr) --n_in;
  if (n_in < schema->min_inputs || (schema->max_inputs >= 0 && n_in > schema->max_inputs)) {
    return InvalidArgument(node.Label() + ": has " + std::to_string(n_in) + " inputs, expected " +
                           CountRange(schema->min_inputs, schema->max_inputs));
  }
  for (int i = 0; i < schema->min_inputs; ++i) {
    if (!node.input(static_cast<size_t>(i))) {
      return InvalidArgument(node.Label() + ": required input " + std::to_string(i) + " is missing");
    }
  }
  const int n_out = static_cast<int>(node.num_outputs());
  if (n_out < schema->min_outputs || (schema->max_outputs >= 0 && n_out > schema->max_outputs)) {
    return InvalidArgument(node.Label() + ": has " + std::to_string(n_out) + " outputs, expected " +
                           CountRange(schema->min_outputs, schema->max_outputs));
  }
  for (const auto& [name, value] : node.attrs().all()) {
    const AttrSpec* spec = nullptr;
    for (const AttrSpec& s : schema->attrs) {
      if (s.name == name) spec = &s;
    }
    if (!spec) return Unsupported(node.Label() + ": unknown or unsupported attribute '" + name + "'");
    if (KindOf(value) != spec->kind) {
      return InvalidArgument(node.Label() + ": attribute '" + name + "' is " +
                             std::string(AttrKindName(KindOf(value))) + ", expected " +
                             std::string(AttrKindName(spec->kind)));
    }
  }
  for (const AttrSpec& s : schema->attrs) {
    if (s.required && !node.attrs().Has(s.name)) {
      return InvalidArgument(node.Label() + ": required attribute '" + s.name + "' is missing");
    }
  }
  if (schema->validate) {
    Status st = schema->validate(node);
    if (!st.ok()) return st.WithContext(node.Label());
  }
  return Status::Ok();
}

void InferContext::set_output(size_t i, DType dtype, std::optional<Shape> shape) {
  Value* v = node_.output(i);
  if (!v) return;
  v->set_dtype(dtype);
  v->set_shape(std::move(shape));
}

Expected<Tensor*> KernelContext::AllocateOutput(size_t i, DType dtype, std::vector<int64_t> sizes) {
  return Allocate(i, dtype, std::move(sizes), true);
}

Expected<Tensor*> KernelContext::AllocateOutputToOverwrite(size_t i, DType dtype, std::vector<int64_t> sizes) {
  return Allocate(i, dtype, std::move(sizes), false);
}

Expected<Tensor*> KernelContext::Allocate(size_t i, DType dtype, std::vector<int64_t> sizes, bool zero) {
  if (i >= outputs_.size()) return Internal("output index " + std::to_string(i) + " out of range");
  if (i < placements_.size() && placements_[i].buffer) {
    const OutputPlacement& p = placements_[i];
    auto n = CheckedNumElements(sizes);
    if (n && DTypeSize(dtype) > 0 && static_cast<uint64_t>(*n) * DTypeSize(dtype) == p.nbytes &&
        p.offset + p.nbytes <= p.buffer->size()) {
      outputs_[i] = Tensor(dtype, std::move(sizes), p.buffer, p.offset);
      if (zero && p.zero && p.nbytes > 0) std::memset(outputs_[i].raw_data(), 0, p.nbytes);
      return &outputs_[i];
    }
  }
  auto t = Tensor::Create(dtype, std::move(sizes), limits_.max_tensor_bytes);
  if (!t.ok()) return t.status();
  outputs_[i] = std::move(t).value();
  return &outputs_[i];
}

}  // namespace kiln
