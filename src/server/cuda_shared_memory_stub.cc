// CUDA shared memory in a build without the CUDA toolkit: registering a region says why it cannot be.
#include "server/shared_memory.h"

namespace kiln::server {

Expected<std::unique_ptr<SharedMemoryRegion>> OpenCudaRegion(const std::string&, int64_t, uint64_t) {
  return Unsupported("CUDA shared memory needs a Kiln build with CUDA (this one was built without the toolkit)");
}

}  // namespace kiln::server
