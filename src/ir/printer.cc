#include <sstream>

#include "ir/graph.h"

namespace kiln {

namespace {

std::string FormatAttr(const AttrValue& v) {
  std::ostringstream os;
  auto list = [&](const auto& xs) {
    os << "[";
    for (size_t i = 0; i < xs.size(); ++i) os << (i ? "," : "") << xs[i];
    os << "]";
  };
  switch (KindOf(v)) {
    case AttrKind::kInt: os << std::get<int64_t>(v); break;
    case AttrKind::kFloat: os << std::get<float>(v); break;
    case AttrKind::kString: os << '"' << std::get<std::string>(v) << '"'; break;
    case AttrKind::kInts: list(std::get<std::vector<int64_t>>(v)); break;
    case AttrKind::kFloats: list(std::get<std::vector<float>>(v)); break;
    case AttrKind::kStrings: list(std::get<std::vector<std::string>>(v)); break;
    case AttrKind::kTensor: os << "tensor " << std::get<Tensor>(v).Description(); break;
  }
  return os.str();
}

std::string ValueName(const Value* v) { return v ? "%" + v->name() : "_"; }

}  // namespace

std::string PrintGraph(const Graph& graph) {
  std::ostringstream os;
  os << "graph " << (graph.name().empty() ? "(unnamed)" : graph.name()) << " {\n";
  for (const Value* v : graph.inputs()) os << "  input  " << ValueName(v) << ": " << v->TypeString() << "\n";
  size_t n_const = 0, const_bytes = 0;
  for (const Value* v : graph.values()) {
    if (v->is_constant()) {
      ++n_const;
      const_bytes += v->constant()->nbytes();
    }
  }
  os << "  constants: " << n_const << " (" << const_bytes << " bytes)\n";
  auto order = graph.TopologicalOrder();
  const std::vector<Node*> nodes = order.ok() ? order.value() : graph.nodes();
  for (const Node* n : nodes) {
    os << "  ";
    for (size_t i = 0; i < n->num_outputs(); ++i) {
      const Value* o = n->output(i);
      os << (i ? ", " : "") << ValueName(o);
      if (o) os << ": " << o->TypeString();
    }
    os << " = " << n->op_name() << "(";
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      const Value* in = n->input(i);
      os << (i ? ", " : "") << ValueName(in);
      if (in && in->is_constant()) os << "{const " << in->constant()->Description() << "}";
    }
    os << ")";
    if (!n->attrs().all().empty()) {
      os << " {";
      bool first = true;
      for (const auto& [k, v] : n->attrs().all()) {
        os << (first ? "" : ", ") << k << "=" << FormatAttr(v);
        first = false;
      }
      os << "}";
    }
    if (!n->name().empty()) os << "  # " << n->name();
    os << "\n";
  }
  for (const Value* v : graph.outputs()) os << "  output " << ValueName(v) << ": " << v->TypeString() << "\n";
  os << "}\n";
  return os.str();
}

}  // namespace kiln
