// Which execution devices this process can use.
#pragma once

#include <string>

namespace kiln {

enum class DeviceKind { kCpu, kCuda };

// Resolves a requested device: CUDA when asked for and usable; otherwise the CPU, printing once per
// process to stderr why the GPU is not used ("kiln: no CUDA device found; using the CPU").
DeviceKind ResolveDevice(DeviceKind requested);

}  // namespace kiln
