// Helpers shared by the `kiln` subcommands: error reporting, option parsing, model loading and the
// random inputs `kiln run` makes.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ir/graph.h"
#include "kiln/status.h"
#include "onnx/importer.h"
#include "runtime/devices.h"

namespace kiln::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Prints "kiln: error: <message>" on stderr and returns kExitError.
int Fail(const std::string& message);
int Fail(const Status& status);
// Prints "kiln: <message>" on stderr (notes that are not errors).
void Note(const std::string& message);

// Splits "NAME=VALUE" at the first '='. Error if either side is empty.
Expected<std::pair<std::string, std::string>> SplitNameValue(const std::string& text,
                                                             const std::string& what);
// Parses "--dim NAME=SIZE" entries into a map; sizes must be non-negative integers.
Expected<std::map<std::string, int64_t>> ParseDimOverrides(const std::vector<std::string>& entries);

// A file name made from a tensor name: characters other than [A-Za-z0-9._-] become '_', a leading '.' too,
// and an empty name becomes "output". `taken` holds the names already used (compared case-insensitively,
// for case-insensitive file systems); a clash gets a "_2", "_3"... suffix. The chosen name is added.
std::string SafeFileName(const std::string& tensor_name, std::set<std::string>& taken);

// The graph's inputs that need a value (the non-constant ones).
std::vector<const Value*> RuntimeInputs(const Graph& graph);

// Concrete sizes for `input`: static dims as they are, symbolic dims from `dims` (by symbol name) or 1,
// unknown dims 1. Error if the rank is unknown.
Expected<std::vector<int64_t>> ConcreteSizes(const Value& input, const std::map<std::string, int64_t>& dims);

// A tensor of `dtype` and `sizes` with random values: floats uniform in [-1, 1), integers uniform in
// [0, 10) (small and non-negative, so they are valid indices and sizes more often), bools 0/1.
Expected<Tensor> RandomTensor(DType dtype, const std::vector<int64_t>& sizes, std::mt19937_64& rng);

// Imports a model, adding nothing to the importer's messages (they already name the model).
Expected<Model> LoadModel(const std::string& path);

// Maps the --device option to a device and says, once, what is used when that is not what was asked.
DeviceKind ChooseDevice(const std::string& device_option);

// "12.3 ms", "1.20 s"
std::string FormatDuration(double seconds);

}  // namespace kiln::cli
