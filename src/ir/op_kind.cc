#include "ir/op_kind.h"

#include <array>

namespace kiln {

namespace {
constexpr std::array<std::string_view, kNumOpKinds> kOpNames = {
#define KILN_OP_NAME_(name, onnx_name) onnx_name,
    KILN_OP_LIST(KILN_OP_NAME_)
#undef KILN_OP_NAME_
};
}  // namespace

std::string_view OpKindName(OpKind op) { return kOpNames[static_cast<size_t>(op)]; }

std::optional<OpKind> OpKindFromName(std::string_view onnx_name) {
  if (onnx_name.starts_with("kiln.")) return std::nullopt;  // Kiln's own ops never come from a model
  for (size_t i = 0; i < kOpNames.size(); ++i) {
    if (kOpNames[i] == onnx_name) return static_cast<OpKind>(i);
  }
  return std::nullopt;
}

}  // namespace kiln
