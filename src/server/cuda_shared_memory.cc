// CUDA shared memory regions (built only with the CUDA toolkit: KILN_HAVE_CUDA). The client exports device
// memory with cudaIpcGetMemHandle and registers the handle's bytes; the server opens it here and copies
// tensors in and out with cudaMemcpy. The one file of src/server that includes a CUDA header: the runtime
// API offers no way to open another process's device memory.
#include <cuda_runtime_api.h>

#include <cstring>

#include "server/shared_memory.h"

namespace kiln::server {
namespace {

std::string CudaError(const char* what, cudaError_t error) {
  return std::string(what) + ": " + cudaGetErrorString(error);
}

class CudaRegion final : public SharedMemoryRegion {
 public:
  CudaRegion(void* base, int device, uint64_t byte_size) : base_(base), device_(device), byte_size_(byte_size) {}
  ~CudaRegion() override {
    cudaSetDevice(device_);
    cudaIpcCloseMemHandle(base_);
  }
  uint64_t byte_size() const override { return byte_size_; }
  void* host_data() const override { return nullptr; }
  Status Read(uint64_t offset, uint64_t size, void* dst) const override {
    return Copy(dst, static_cast<const char*>(base_) + offset, size, cudaMemcpyDeviceToHost);
  }
  Status Write(uint64_t offset, const void* src, uint64_t size) const override {
    return Copy(static_cast<char*>(base_) + offset, src, size, cudaMemcpyHostToDevice);
  }

 private:
  Status Copy(void* dst, const void* src, uint64_t size, cudaMemcpyKind kind) const {
    if (size == 0) return Status::Ok();
    cudaError_t e = cudaSetDevice(device_);
    if (e == cudaSuccess) e = cudaMemcpy(dst, src, size, kind);
    return e == cudaSuccess ? Status::Ok() : Unavailable(CudaError("cudaMemcpy", e));
  }

  void* base_;
  int device_;
  uint64_t byte_size_;
};

}  // namespace

Expected<std::unique_ptr<SharedMemoryRegion>> OpenCudaRegion(const std::string& raw_handle, int64_t device_id,
                                                             uint64_t byte_size) {
  cudaIpcMemHandle_t handle;
  if (raw_handle.size() != sizeof(handle)) {
    return InvalidArgument("raw_handle has " + std::to_string(raw_handle.size()) + " bytes; a cudaIpcMemHandle_t has " +
                           std::to_string(sizeof(handle)));
  }
  if (byte_size == 0) return InvalidArgument("byte_size must be positive");
  int devices = 0;
  cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess) return Unavailable(CudaError("no usable GPU", e));
  if (device_id < 0 || device_id >= devices) {
    return InvalidArgument("device_id " + std::to_string(device_id) + " is not one of the " +
                           std::to_string(devices) + " GPUs");
  }
  std::memcpy(&handle, raw_handle.data(), sizeof(handle));
  e = cudaSetDevice(static_cast<int>(device_id));
  void* base = nullptr;
  if (e == cudaSuccess) e = cudaIpcOpenMemHandle(&base, handle, cudaIpcMemLazyEnablePeerAccess);
  if (e != cudaSuccess) return InvalidArgument(CudaError("cudaIpcOpenMemHandle", e));
  return std::unique_ptr<SharedMemoryRegion>(new CudaRegion(base, static_cast<int>(device_id), byte_size));
}

}  // namespace kiln::server
