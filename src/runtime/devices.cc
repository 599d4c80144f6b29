#include "runtime/devices.h"

#include <cstdio>
#include <mutex>

#include "backends/cuda/cuda_info.h"

namespace kiln {

DeviceKind ResolveDevice(DeviceKind requested) {
  if (requested == DeviceKind::kCpu) return DeviceKind::kCpu;
  const CudaInfo& info = QueryCuda();
  if (!info.devices.empty()) return DeviceKind::kCuda;
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr, "kiln: GPU not available (%s); using the CPU\n", info.unavailable_reason.c_str());
  });
  return DeviceKind::kCpu;
}

}  // namespace kiln
