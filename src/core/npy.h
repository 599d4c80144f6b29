// NumPy .npy files (format versions 1.0-3.0, little-endian, C order), so results compare with anything.
#pragma once

#include <string>

#include "core/tensor.h"
#include "kiln/status.h"

namespace kiln {

// Reads a .npy file. Refuses Fortran order, big-endian, object and unknown dtypes, and files whose data is
// shorter than the header says, with a message naming the file.
Expected<Tensor> ReadNpy(const std::string& path);
// Parses .npy bytes (for tests and fuzzing). `label` names the source in errors.
Expected<Tensor> ParseNpy(const std::string& bytes, const std::string& label);
// Writes a tensor as a version 1.0 .npy file. bf16 is written as f32 (NumPy has no bfloat16).
Status WriteNpy(const std::string& path, const Tensor& tensor);

}  // namespace kiln
