// The target fingerprint a plan records: what it was built for and what it needs to run. A plan is refused
// (with a message naming what is missing) on a machine that lacks a CPU feature the plan's tactics need,
// lacks a kernel library the plan's tactics use or has another version of it, or is another device.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kiln/status.h"

namespace kiln::plan {

struct TargetFingerprint {
  std::string device = "cpu";  // "cpu" or "cuda"
  std::string arch;            // "x86_64", "aarch64"
  std::string cpu_name;        // brand string of the build machine (informational)
  // ISA features of the build machine (informational: what the builder could choose from).
  std::vector<std::string> cpu_features;
  // ISA features the chosen tactics need; the loader refuses the plan on a CPU without one of them.
  std::vector<std::string> required_features;
  // Kernel libraries the chosen tactics use, with versions ("reference" "1", "onednn" "3.4.1").
  std::vector<std::pair<std::string, std::string>> libraries;
  int cuda_compute_capability = 0;  // e.g. 86 for sm_86; 0 for CPU plans
  std::string kiln_version;         // informational
};

// The machine this process runs on, with the kernel libraries this build has. For device "cuda": GPU 0's
// compute capability (0 without a GPU) and the CUDA libraries' versions.
TargetFingerprint CurrentTarget(const std::string& device = "cpu");
// The x86-64 ISA features of this CPU that the OS also enables (AVX state saved, ...), by cpuid names:
// "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
// "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16". Empty on other architectures.
std::vector<std::string> CpuFeatures();
// The kernel libraries (name, version) this build of Kiln offers tactics from.
std::vector<std::pair<std::string, std::string>> AvailableLibraries();

// Ok if a plan built for `plan` can run on `here`; otherwise one message listing every mismatch.
Status CheckTargetCompatible(const TargetFingerprint& plan, const TargetFingerprint& here);

// "cpu x86_64 (Intel Xeon ...), needs avx2 fma; libraries reference 1"
std::string DescribeTarget(const TargetFingerprint& t);

}  // namespace kiln::plan
