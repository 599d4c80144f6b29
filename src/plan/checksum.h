// CRC32C (Castagnoli): the plan file's checksum. Uses the SSE4.2 crc32 instruction when the CPU has it
// (about 10 GB/s, so verifying a 100 MB plan costs ~10 ms), else a table.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::plan {

// CRC32C of `size` bytes, continuing from `crc` (0 to start).
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace kiln::plan
