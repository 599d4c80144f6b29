// A build without oneDNN: no fast CPU tactics; every layer runs its reference kernel.
#include "backends/cpu/cpu_kernels.h"

namespace kiln::cpu {

std::vector<CpuTactic> CpuTacticsFor(const Node&) { return {}; }
std::unique_ptr<CpuKernel> CreateCpuKernel(const Node&, const std::string&) { return nullptr; }
bool HasChannelsLastKernel(const Node&) { return false; }
void SetKernelThreads(int) {}
size_t LivePackedWeightBytes() { return 0; }
std::vector<PackedWeightCopy> LivePackedWeights(const Tensor&) { return {}; }
std::shared_ptr<const void> AdoptPackedWeights(const Tensor&, const std::string&, const Tensor&) { return nullptr; }
uint64_t PackedWeightReorders() { return 0; }
bool HaveBf16() { return false; }
bool HaveInt8Dot() { return false; }
bool HaveWinograd() { return false; }
bool HaveOneDnn() { return false; }
std::string OneDnnVersion() { return ""; }

}  // namespace kiln::cpu
