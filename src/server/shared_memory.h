// Shared-memory regions that clients register so that tensors need not travel in the request (KServe v2's
// shared-memory extension, Triton's API): system shared memory (a POSIX shm object named by its key) and
// CUDA shared memory (a cudaIpcMemHandle_t exported by the client's process).
//
// Front ends register and unregister regions here, read inputs from them when decoding a request and write
// outputs into them when encoding the result. Every offset and size is checked against the region before
// any byte is touched; errors are InvalidArgument naming the tensor and the region. A region unregistered
// while a request uses it stays mapped until that request is done. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "kiln/status.h"

namespace kiln::server {

// The bytes of one registered region, [0, byte_size()).
class SharedMemoryRegion {
 public:
  virtual ~SharedMemoryRegion() = default;
  virtual uint64_t byte_size() const = 0;
  // Host memory that holds the region, when it is host memory (nullptr for device memory).
  virtual void* host_data() const = 0;
  // Copies between the region and host memory. The caller has checked the range against byte_size().
  virtual Status Read(uint64_t offset, uint64_t size, void* dst) const = 0;
  virtual Status Write(uint64_t offset, const void* src, uint64_t size) const = 0;
};

// Maps [offset, offset + byte_size) of the POSIX shared-memory object `key` (shm_open), checking that the
// object is that large.
Expected<std::unique_ptr<SharedMemoryRegion>> OpenSystemRegion(const std::string& key, uint64_t offset,
                                                               uint64_t byte_size);
// Opens the device memory of a cudaIpcMemHandle_t (`raw_handle`, its bytes) on GPU `device_id`. In a build
// without CUDA, or without a usable GPU, answers Unsupported / Unavailable with the reason.
Expected<std::unique_ptr<SharedMemoryRegion>> OpenCudaRegion(const std::string& raw_handle, int64_t device_id,
                                                             uint64_t byte_size);

struct SystemRegionInfo {
  std::string name, key;
  uint64_t offset = 0, byte_size = 0;
};
struct CudaRegionInfo {
  std::string name;
  int64_t device_id = 0;
  uint64_t byte_size = 0;
};

// Where a tensor lives in shared memory: the request's shared_memory_region, shared_memory_offset and
// shared_memory_byte_size parameters.
struct SharedMemoryRef {
  std::string region;  // "": the tensor is not in shared memory
  uint64_t offset = 0;
  uint64_t byte_size = 0;
  bool used() const { return !region.empty(); }
};

class SharedMemoryManager {
 public:
  // InvalidArgument when the name is taken (by a region of either kind) or the region cannot be opened.
  Status RegisterSystem(const std::string& name, const std::string& key, uint64_t offset, uint64_t byte_size);
  Status RegisterCuda(const std::string& name, const std::string& raw_handle, int64_t device_id,
                      uint64_t byte_size);
  // "": every region of that kind. Unregistering a name that is not registered is not an error.
  void UnregisterSystem(const std::string& name);
  void UnregisterCuda(const std::string& name);
  // "": every region of that kind; NotFound for a name not registered.
  Expected<std::vector<SystemRegionInfo>> SystemStatus(const std::string& name) const;
  Expected<std::vector<CudaRegionInfo>> CudaStatus(const std::string& name) const;

  // An input of `dtype` and `dims` copied out of the region; the byte size must be the tensor's exactly.
  // (Copied rather than wrapped: a client that shrinks its shm object later would otherwise make the engine
  // fault on pages that no longer exist; the copy is made right after checking the object's size.)
  Expected<HostTensor> ReadTensor(const std::string& input, const SharedMemoryRef& ref, DataType dtype,
                                  const std::vector<int64_t>& dims) const;
  // Checks an output's target before the request runs: the region exists and the range lies inside it.
  Status CheckOutput(const std::string& output, const SharedMemoryRef& ref) const;
  // Writes an output into its target; the target must hold the tensor's bytes.
  Status WriteTensor(const std::string& output, const SharedMemoryRef& ref, const HostTensor& tensor) const;

 private:
  struct Entry {
    bool cuda = false;
    std::string key;  // system regions
    uint64_t offset = 0;
    int64_t device_id = 0;  // CUDA regions
    std::shared_ptr<SharedMemoryRegion> region;
  };
  Status Register(const std::string& name, Entry entry);
  void Unregister(const std::string& name, bool cuda);
  // The region named by `ref` with [offset, offset + byte_size) checked against it.
  Expected<std::shared_ptr<SharedMemoryRegion>> Resolve(const std::string& what, const SharedMemoryRef& ref) const;

  mutable std::mutex mu_;
  std::map<std::string, Entry> regions_;
};

}  // namespace kiln::server
