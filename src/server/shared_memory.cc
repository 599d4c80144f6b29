#include "server/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "server/kserve_types.h"

namespace kiln::server {
namespace {

// A mapping of part of a POSIX shm object. The descriptor stays open so that every access can check that
// the object has not been shrunk since (touching a page past its end would raise SIGBUS).
class SystemRegion final : public SharedMemoryRegion {
 public:
  SystemRegion(int fd, void* map, size_t map_size, uint64_t map_skip, uint64_t end, uint64_t byte_size)
      : fd_(fd), map_(map), map_size_(map_size), skip_(map_skip), end_(end), byte_size_(byte_size) {}
  ~SystemRegion() override {
    munmap(map_, map_size_);
    close(fd_);
  }
  uint64_t byte_size() const override { return byte_size_; }
  void* host_data() const override { return static_cast<char*>(map_) + skip_; }
  Status Read(uint64_t offset, uint64_t size, void* dst) const override {
    KILN_RETURN_IF_ERROR(StillThere());
    if (size > 0) std::memcpy(dst, static_cast<const char*>(host_data()) + offset, size);
    return Status::Ok();
  }
  Status Write(uint64_t offset, const void* src, uint64_t size) const override {
    KILN_RETURN_IF_ERROR(StillThere());
    if (size > 0) std::memcpy(static_cast<char*>(host_data()) + offset, src, size);
    return Status::Ok();
  }

 private:
  Status StillThere() const {
    struct stat st {};
    if (fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) < end_) {
      return InvalidArgument("the shared memory object has shrunk below the registered region");
    }
    return Status::Ok();
  }

  int fd_;
  void* map_;
  size_t map_size_;
  uint64_t skip_;  // from the mapping's (page-aligned) start to the region's
  uint64_t end_;   // the region's end within the object
  uint64_t byte_size_;
};

// offset + size <= limit, without overflow.
bool Fits(uint64_t offset, uint64_t size, uint64_t limit) { return offset <= limit && size <= limit - offset; }

}  // namespace

Expected<std::unique_ptr<SharedMemoryRegion>> OpenSystemRegion(const std::string& key, uint64_t offset,
                                                               uint64_t byte_size) {
  if (key.empty()) return InvalidArgument("the shared memory key is empty");
  if (byte_size == 0) return InvalidArgument("byte_size must be positive");
  const int fd = shm_open(key.c_str(), O_RDWR, 0);
  if (fd < 0) {
    return InvalidArgument("cannot open shared memory object '" + key + "': " + std::strerror(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    return InvalidArgument("cannot stat shared memory object '" + key + "': " + why);
  }
  const uint64_t object_size = static_cast<uint64_t>(st.st_size);
  if (!Fits(offset, byte_size, object_size)) {
    close(fd);
    return InvalidArgument("offset " + std::to_string(offset) + " + byte_size " + std::to_string(byte_size) +
                           " exceeds the " + std::to_string(object_size) + " bytes of shared memory object '" +
                           key + "'");
  }
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page;
  const size_t map_size = static_cast<size_t>(offset + byte_size - start);
  void* map = mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(start));
  if (map == MAP_FAILED) {
    const std::string why = std::strerror(errno);
    close(fd);
    return InvalidArgument("cannot map shared memory object '" + key + "': " + why);
  }
  return std::unique_ptr<SharedMemoryRegion>(
      new SystemRegion(fd, map, map_size, offset - start, offset + byte_size, byte_size));
}

Status SharedMemoryManager::Register(const std::string& name, Entry entry) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!regions_.emplace(name, std::move(entry)).second) {
    return InvalidArgument("a shared memory region named '" + name + "' is already registered");
  }
  return Status::Ok();
}

Status SharedMemoryManager::RegisterSystem(const std::string& name, const std::string& key, uint64_t offset,
                                           uint64_t byte_size) {
  if (name.empty()) return InvalidArgument("a shared memory region needs a name");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (regions_.count(name) > 0) {
      return InvalidArgument("a shared memory region named '" + name + "' is already registered");
    }
  }
  Expected<std::unique_ptr<SharedMemoryRegion>> region = OpenSystemRegion(key, offset, byte_size);
  if (!region.ok()) return region.status().WithContext("system shared memory region '" + name + "'");
  Entry entry;
  entry.key = key;
  entry.offset = offset;
  entry.region = std::move(*region);
  return Register(name, std::move(entry));
}

Status SharedMemoryManager::RegisterCuda(const std::string& name, const std::string& raw_handle, int64_t device_id,
                                         uint64_t byte_size) {
  if (name.empty()) return InvalidArgument("a shared memory region needs a name");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (regions_.count(name) > 0) {
      return InvalidArgument("a shared memory region named '" + name + "' is already registered");
    }
  }
  Expected<std::unique_ptr<SharedMemoryRegion>> region = OpenCudaRegion(raw_handle, device_id, byte_size);
  if (!region.ok()) return region.status().WithContext("CUDA shared memory region '" + name + "'");
  Entry entry;
  entry.cuda = true;
  entry.device_id = device_id;
  entry.region = std::move(*region);
  return Register(name, std::move(entry));
}

void SharedMemoryManager::Unregister(const std::string& name, bool cuda) {
  std::vector<std::shared_ptr<SharedMemoryRegion>> dropped;  // released outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = regions_.begin(); it != regions_.end();) {
    if (it->second.cuda == cuda && (name.empty() || it->first == name)) {
      dropped.push_back(std::move(it->second.region));
      it = regions_.erase(it);
    } else {
      ++it;
    }
  }
}

void SharedMemoryManager::UnregisterSystem(const std::string& name) { Unregister(name, false); }
void SharedMemoryManager::UnregisterCuda(const std::string& name) { Unregister(name, true); }

Expected<std::vector<SystemRegionInfo>> SharedMemoryManager::SystemStatus(const std::string& name) const {
  std::vector<SystemRegionInfo> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [n, e] : regions_) {
    if (!e.cuda && (name.empty() || n == name)) out.push_back({n, e.key, e.offset, e.region->byte_size()});
  }
  if (!name.empty() && out.empty()) return NotFound("no system shared memory region named '" + name + "'");
  return out;
}

Expected<std::vector<CudaRegionInfo>> SharedMemoryManager::CudaStatus(const std::string& name) const {
  std::vector<CudaRegionInfo> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [n, e] : regions_) {
    if (e.cuda && (name.empty() || n == name)) out.push_back({n, e.device_id, e.region->byte_size()});
  }
  if (!name.empty() && out.empty()) return NotFound("no CUDA shared memory region named '" + name + "'");
  return out;
}

Expected<std::shared_ptr<SharedMemoryRegion>> SharedMemoryManager::Resolve(const std::string& what,
                                                                          const SharedMemoryRef& ref) const {
  std::shared_ptr<SharedMemoryRegion> region;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find(ref.region);
    if (it == regions_.end()) {
      return InvalidArgument(what + ": shared memory region '" + ref.region + "' is not registered");
    }
    region = it->second.region;
  }
  if (!Fits(ref.offset, ref.byte_size, region->byte_size())) {
    return InvalidArgument(what + ": shared_memory_offset " + std::to_string(ref.offset) +
                           " + shared_memory_byte_size " + std::to_string(ref.byte_size) + " exceeds the " +
                           std::to_string(region->byte_size()) + " bytes of region '" + ref.region + "'");
  }
  return region;
}

Expected<HostTensor> SharedMemoryManager::ReadTensor(const std::string& input, const SharedMemoryRef& ref,
                                                     DataType dtype, const std::vector<int64_t>& dims) const {
  const std::string what = "input '" + input + "'";
  int64_t numel = 1;
  for (int64_t d : dims) {
    if (d < 0) return InvalidArgument(what + ": negative dim in its shape");
    if (d > 0 && numel > (int64_t{1} << 40) / d) return InvalidArgument(what + ": shape too large");
    numel *= d;
  }
  const uint64_t want = static_cast<uint64_t>(numel) * DataTypeSize(dtype);
  if (ref.byte_size != want) {
    return InvalidArgument(what + ": shared_memory_byte_size " + std::to_string(ref.byte_size) + " for " +
                           std::to_string(numel) + " elements of " + KServeTypeName(dtype) + " (" +
                           std::to_string(want) + " bytes)");
  }
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<SharedMemoryRegion> region, Resolve(what, ref));
  HostTensor tensor(dtype, dims);
  Status status = region->Read(ref.offset, want, tensor.data());
  if (!status.ok()) return status.WithContext(what + ", region '" + ref.region + "'");
  return tensor;
}

Status SharedMemoryManager::CheckOutput(const std::string& output, const SharedMemoryRef& ref) const {
  return Resolve("output '" + output + "'", ref).status();
}

Status SharedMemoryManager::WriteTensor(const std::string& output, const SharedMemoryRef& ref,
                                        const HostTensor& tensor) const {
  const std::string what = "output '" + output + "'";
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<SharedMemoryRegion> region, Resolve(what, ref));
  if (tensor.nbytes() > ref.byte_size) {
    return InvalidArgument(what + ": " + std::to_string(tensor.nbytes()) +
                           " bytes do not fit shared_memory_byte_size " + std::to_string(ref.byte_size) +
                           " in region '" + ref.region + "'");
  }
  Status status = region->Write(ref.offset, tensor.data(), tensor.nbytes());
  return status.ok() ? status : status.WithContext(what + ", region '" + ref.region + "'");
}

}  // namespace kiln::server
