// KServe v2 datatype names ("FP32", "INT64", ...) and Kiln's DataType, shared by the HTTP and gRPC front
// ends.
#pragma once

#include <string>

#include "kiln/engine.h"
#include "kiln/status.h"

namespace kiln::server {

// The KServe name of `type`; "INVALID" for none.
const char* KServeTypeName(DataType type);
// InvalidArgument for a name Kiln has no type for (BYTES among them).
Expected<DataType> ParseKServeType(const std::string& name);

}  // namespace kiln::server
