#include "server/kserve_types.h"

namespace kiln::server {
namespace {

struct TypeName {
  DataType type;
  const char* name;
};
constexpr TypeName kNames[] = {
    {DataType::kBool, "BOOL"},     {DataType::kUInt8, "UINT8"},   {DataType::kUInt16, "UINT16"},
    {DataType::kUInt32, "UINT32"}, {DataType::kUInt64, "UINT64"}, {DataType::kInt8, "INT8"},
    {DataType::kInt16, "INT16"},   {DataType::kInt32, "INT32"},   {DataType::kInt64, "INT64"},
    {DataType::kFloat16, "FP16"},  {DataType::kFloat32, "FP32"},  {DataType::kFloat64, "FP64"},
    {DataType::kBFloat16, "BF16"},
};

}  // namespace

const char* KServeTypeName(DataType type) {
  for (const TypeName& t : kNames) {
    if (t.type == type) return t.name;
  }
  return "INVALID";
}

Expected<DataType> ParseKServeType(const std::string& name) {
  for (const TypeName& t : kNames) {
    if (name == t.name) return t.type;
  }
  return InvalidArgument("unsupported datatype '" + name + "'");
}

}  // namespace kiln::server
