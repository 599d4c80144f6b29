#include "plan/target.h"

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_info.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace kiln::plan {
namespace {

#if defined(__x86_64__)
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs CpuId(unsigned leaf, unsigned sub) {
  Regs r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) return Regs{};
  return r;
}

uint64_t ReadXcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

std::string BrandString() {
  const unsigned max_ext = __get_cpuid_max(0x80000000u, nullptr);
  if (max_ext < 0x80000004u) return "";
  char brand[49] = {};
  for (unsigned i = 0; i < 3; ++i) {
    Regs r = CpuId(0x80000002u + i, 0);
    std::memcpy(brand + 16 * i, &r, 16);
  }
  std::string s(brand);
  const size_t first = s.find_first_not_of(' ');
  return first == std::string::npos ? "" : s.substr(first);
}
#endif

}  // namespace

std::vector<std::string> CpuFeatures() {
  std::vector<std::string> f;
#if defined(__x86_64__)
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  const Regs l1 = CpuId(1, 0);
  const bool osxsave = l1.c & (1u << 27);
  const uint64_t xcr0 = osxsave ? ReadXcr0() : 0;
  // The OS must save the wider registers' state, else using them faults: check XCR0 as well as cpuid.
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;
  if (l1.c & (1u << 20)) f.push_back("sse4_2");
  if (os_avx && (l1.c & (1u << 28))) f.push_back("avx");
  if (os_avx && (l1.c & (1u << 12))) f.push_back("fma");
  if (os_avx && (l1.c & (1u << 29))) f.push_back("f16c");
  if (max_leaf >= 7) {
    const Regs l7 = CpuId(7, 0);
    const Regs l7s1 = CpuId(7, 1);
    if (os_avx && (l7.b & (1u << 5))) f.push_back("avx2");
    if (os_avx512 && (l7.b & (1u << 16))) f.push_back("avx512f");
    if (os_avx512 && (l7.b & (1u << 30))) f.push_back("avx512bw");
    if (os_avx512 && (l7.b & (1u << 31))) f.push_back("avx512vl");
    if (os_avx512 && (l7.c & (1u << 11))) f.push_back("avx512_vnni");
    if (os_avx512 && (l7s1.a & (1u << 5))) f.push_back("avx512_bf16");
    if (os_avx512 && (l7.d & (1u << 23))) f.push_back("avx512_fp16");
    if (os_amx && (l7.d & (1u << 24))) f.push_back("amx_tile");
    if (os_amx && (l7.d & (1u << 25))) f.push_back("amx_int8");
    if (os_amx && (l7.d & (1u << 22))) f.push_back("amx_bf16");
  }
#endif
  return f;
}

std::vector<std::pair<std::string, std::string>> AvailableLibraries() {
  // The reference kernels' "version" changes when their results may change.
  std::vector<std::pair<std::string, std::string>> libs = {{"reference", "1"}};
  if (cpu::HaveOneDnn()) libs.emplace_back("onednn", cpu::OneDnnVersion());
  return libs;
}

TargetFingerprint CurrentTarget(const std::string& device) {
  TargetFingerprint t;
  t.device = device;
  if (device == "cuda") {
    const CudaInfo& cuda = QueryCuda();
    if (!cuda.devices.empty()) t.cuda_compute_capability = cuda.devices[0].sm_major * 10 + cuda.devices[0].sm_minor;
    t.libraries.emplace_back("cuda", cuda.runtime_version);
    t.libraries.emplace_back("cudnn", cuda.cudnn_version);
    t.libraries.emplace_back("cublaslt", cuda.cublas_version);
  }
#if defined(__x86_64__)
  t.arch = "x86_64";
  t.cpu_name = BrandString();
#elif defined(__aarch64__)
  t.arch = "aarch64";
#else
  t.arch = "unknown";
#endif
  t.cpu_features = CpuFeatures();
  for (auto& lib : AvailableLibraries()) t.libraries.push_back(std::move(lib));
#ifdef KILN_VERSION
  t.kiln_version = KILN_VERSION;
#endif
  return t;
}

Status CheckTargetCompatible(const TargetFingerprint& plan, const TargetFingerprint& here) {
  std::vector<std::string> problems;
  if (plan.device != here.device) {
    std::string d = plan.device;
    if (plan.cuda_compute_capability > 0) d += " sm_" + std::to_string(plan.cuda_compute_capability);
    problems.push_back("it was built for device " + d + ", this machine runs it on " + here.device);
  } else if (plan.device == "cuda" && plan.cuda_compute_capability != here.cuda_compute_capability) {
    problems.push_back("it was built for sm_" + std::to_string(plan.cuda_compute_capability) +
                       ", this GPU is sm_" + std::to_string(here.cuda_compute_capability));
  }
  if (plan.arch != here.arch) {
    problems.push_back("it was built for " + plan.arch + ", this CPU is " + here.arch);
  }
  std::string missing;
  for (const std::string& f : plan.required_features) {
    if (std::find(here.cpu_features.begin(), here.cpu_features.end(), f) == here.cpu_features.end()) {
      missing += (missing.empty() ? "" : " ") + f;
    }
  }
  if (!missing.empty()) problems.push_back("it needs CPU features this CPU lacks: " + missing);
  for (const auto& library : plan.libraries) {
    const std::string& name = library.first;  // named: clang 14 cannot capture structured bindings
    const std::string& version = library.second;
    auto it = std::find_if(here.libraries.begin(), here.libraries.end(),
                           [&](const auto& l) { return l.first == name; });
    if (it == here.libraries.end()) {
      problems.push_back("it uses kernel library " + name + " " + version + ", which this build lacks");
    } else if (it->second != version) {
      problems.push_back("it uses kernel library " + name + " " + version + ", this build has " + it->second);
    }
  }
  if (problems.empty()) return Status::Ok();
  std::string msg = "plan was built for another target: ";
  for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
  return Unsupported(msg + " (rebuild the plan on this machine)");
}

std::string DescribeTarget(const TargetFingerprint& t) {
  std::string s = t.device;
  if (t.cuda_compute_capability > 0) s += " sm_" + std::to_string(t.cuda_compute_capability);
  s += " " + t.arch;
  if (!t.cpu_name.empty()) s += " (" + t.cpu_name + ")";
  s += ", needs";
  if (t.required_features.empty()) s += " no extra CPU features";
  for (const auto& f : t.required_features) s += " " + f;
  s += "; libraries";
  for (const auto& [n, v] : t.libraries) s += " " + n + " " + v;
  return s;
}

}  // namespace kiln::plan
