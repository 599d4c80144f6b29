// CUDA shared memory as a client uses it: another process allocates device memory and exports it with
// cudaIpcGetMemHandle; the server's SharedMemoryManager registers the handle's bytes, reads an input tensor
// out of the region, writes an output into it (the exporting process then sees the bytes), and refuses
// ranges outside the region. Built only with the CUDA toolkit; skips when the machine has no GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "server/shared_memory.h"

namespace kiln::server {
namespace {

constexpr int kFloats = 16;
constexpr uint64_t kBytes = kFloats * sizeof(float);

bool ReadAll(int fd, void* dst, size_t n) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = read(fd, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool WriteAll(int fd, const void* src, size_t n) { return write(fd, src, n) == static_cast<ssize_t>(n); }

// The exporting client, in a child process (CUDA is not initialized in the parent before the fork).
// Exit codes: 0 the server's output arrived, 2 no GPU, 3 wrong output, 4 a CUDA call failed.
[[noreturn]] void Exporter(int to_parent, int from_parent) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    const char status = 0;
    WriteAll(to_parent, &status, 1);
    _exit(2);
  }
  void* dev = nullptr;
  std::vector<float> x(kFloats);
  for (int i = 0; i < kFloats; ++i) x[i] = 0.5f * static_cast<float>(i);
  cudaIpcMemHandle_t handle;
  if (cudaMalloc(&dev, kBytes) != cudaSuccess || cudaMemcpy(dev, x.data(), kBytes, cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaIpcGetMemHandle(&handle, dev) != cudaSuccess) {
    _exit(4);
  }
  const char status = 1;
  if (!WriteAll(to_parent, &status, 1) || !WriteAll(to_parent, &handle, sizeof(handle))) _exit(4);
  char done = 0;
  if (!ReadAll(from_parent, &done, 1)) _exit(4);
  std::vector<float> y(kFloats);
  if (cudaMemcpy(y.data(), dev, kBytes, cudaMemcpyDeviceToHost) != cudaSuccess) _exit(4);
  for (int i = 0; i < kFloats; ++i) {
    if (y[i] != 100.f + static_cast<float>(i)) _exit(3);
  }
  _exit(0);
}

TEST(CudaSharedMemory, RoundTripThroughAnotherProcess) {
  int to_parent[2], from_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(from_parent), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) Exporter(to_parent[1], from_parent[0]);
  close(to_parent[1]);
  close(from_parent[0]);
  auto finish = [&]() {
    close(from_parent[1]);
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  char status = 0;
  ASSERT_TRUE(ReadAll(to_parent[0], &status, 1));
  if (status == 0) {
    EXPECT_EQ(finish(), 2);
    GTEST_SKIP() << "no GPU on this machine";
  }
  std::string raw(sizeof(cudaIpcMemHandle_t), '\0');
  ASSERT_TRUE(ReadAll(to_parent[0], raw.data(), raw.size()));

  SharedMemoryManager shm;
  ASSERT_TRUE(shm.RegisterCuda("region", raw, 0, kBytes).ok());
  EXPECT_FALSE(shm.RegisterCuda("region", raw, 0, kBytes).ok()) << "a name registered twice";
  EXPECT_FALSE(shm.RegisterCuda("short", raw.substr(1), 0, kBytes).ok()) << "a truncated handle";
  auto listed = shm.CudaStatus("");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].byte_size, kBytes);

  auto x = shm.ReadTensor("x", SharedMemoryRef{"region", 0, kBytes}, DataType::kFloat32, {kFloats});
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  for (int i = 0; i < kFloats; ++i) EXPECT_EQ(static_cast<const float*>(x->data())[i], 0.5f * static_cast<float>(i));
  auto half = shm.ReadTensor("x", SharedMemoryRef{"region", kBytes / 2, kBytes / 2}, DataType::kFloat32, {kFloats / 2});
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(static_cast<const float*>(half->data())[0], 0.5f * kFloats / 2);
  // Ranges outside the region, sizes that are not the tensor's, unknown regions: errors, nothing read.
  EXPECT_FALSE(shm.ReadTensor("x", SharedMemoryRef{"region", 4, kBytes}, DataType::kFloat32, {kFloats}).ok());
  EXPECT_FALSE(shm.ReadTensor("x", SharedMemoryRef{"region", 0, kBytes}, DataType::kFloat32, {kFloats - 1}).ok());
  EXPECT_FALSE(shm.ReadTensor("x", SharedMemoryRef{"nope", 0, kBytes}, DataType::kFloat32, {kFloats}).ok());
  EXPECT_FALSE(shm.CheckOutput("y", SharedMemoryRef{"region", kBytes, 4}).ok());

  HostTensor y(DataType::kFloat32, {kFloats});
  for (int i = 0; i < kFloats; ++i) static_cast<float*>(y.data())[i] = 100.f + static_cast<float>(i);
  ASSERT_TRUE(shm.CheckOutput("y", SharedMemoryRef{"region", 0, kBytes}).ok());
  ASSERT_TRUE(shm.WriteTensor("y", SharedMemoryRef{"region", 0, kBytes}, y).ok());
  shm.UnregisterCuda("region");
  EXPECT_TRUE(shm.CudaStatus("").ok() && shm.CudaStatus("")->empty());

  const char done = 1;
  ASSERT_TRUE(WriteAll(from_parent[1], &done, 1));
  EXPECT_EQ(finish(), 0) << "the exporting process did not see the server's output (3: wrong bytes, 4: CUDA failed)";
}

}  // namespace
}  // namespace kiln::server
