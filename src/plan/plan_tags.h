// Tags shared by the plan writer and reader.
#pragma once

#include <cstdint>

namespace kiln::plan {

inline constexpr uint8_t kDimStatic = 0;
inline constexpr uint8_t kDimSymbolic = 1;
inline constexpr uint8_t kDimUnknown = 2;

}  // namespace kiln::plan
