#include "cli_common.h"

#include <cctype>
#include <charconv>
#include <cstdio>

#include "core/dtype.h"

namespace kiln::cli {

int Fail(const std::string& message) {
  std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
  return kExitError;
}

int Fail(const Status& status) { return Fail(status.message()); }

void Note(const std::string& message) { std::fprintf(stderr, "kiln: %s\n", message.c_str()); }

Expected<std::pair<std::string, std::string>> SplitNameValue(const std::string& text,
                                                             const std::string& what) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return InvalidArgument("bad " + what + " '" + text + "': expected NAME=" +
                           (what == "--dim" ? std::string("SIZE") : std::string("FILE")));
  }
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

Expected<std::map<std::string, int64_t>> ParseDimOverrides(const std::vector<std::string>& entries) {
  std::map<std::string, int64_t> dims;
  for (const std::string& entry : entries) {
    KILN_ASSIGN_OR_RETURN(auto name_value, SplitNameValue(entry, "--dim"));
    const std::string& text = name_value.second;
    int64_t size = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), size);
    if (ec != std::errc() || end != text.data() + text.size() || size < 0) {
      return InvalidArgument("bad --dim '" + entry + "': the size must be a non-negative integer");
    }
    dims[name_value.first] = size;
  }
  return dims;
}

std::string SafeFileName(const std::string& tensor_name, std::set<std::string>& taken) {
  std::string base;
  for (char c : tensor_name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    base += ok ? c : '_';
  }
  if (base.empty()) base = "output";
  if (base[0] == '.') base[0] = '_';
  if (base.size() > 200) base.resize(200);
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  std::string name = base;
  for (int n = 2; taken.count(lower(name)) != 0; ++n) name = base + "_" + std::to_string(n);
  taken.insert(lower(name));
  return name;
}

std::vector<const Value*> RuntimeInputs(const Graph& graph) {
  std::vector<const Value*> inputs;
  for (const Value* v : graph.inputs()) {
    if (!v->is_constant()) inputs.push_back(v);
  }
  return inputs;
}

Expected<std::vector<int64_t>> ConcreteSizes(const Value& input, const std::map<std::string, int64_t>& dims) {
  if (!input.shape()) {
    return InvalidArgument("input '" + input.name() + "' has an unknown rank: give its value with --input " +
                           input.name() + "=FILE.npy");
  }
  std::vector<int64_t> sizes;
  for (const Dim& d : input.shape()->dims()) {
    if (d.is_static()) {
      sizes.push_back(d.value());
    } else if (d.is_symbolic()) {
      auto it = dims.find(d.symbol());
      sizes.push_back(it == dims.end() ? 1 : it->second);
    } else {
      sizes.push_back(1);
    }
  }
  return sizes;
}

Expected<Tensor> RandomTensor(DType dtype, const std::vector<int64_t>& sizes, std::mt19937_64& rng) {
  // Random inputs are for trying a model out: refuse anything larger than 4 GiB rather than thrash.
  KILN_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(dtype, sizes, size_t{4} << 30));
  std::uniform_real_distribution<double> real(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 9);
  const bool known = VisitDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* data = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_same_v<T, bool>) {
        data[i] = (rng() & 1) != 0;
      } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> ||
                           std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>) {
        data[i] = ConvertScalar<T>(real(rng));
      } else {
        data[i] = static_cast<T>(small(rng));
      }
    }
  });
  if (!known) return Unsupported("cannot make random values of dtype " + std::string(DTypeName(dtype)));
  return t;
}

Expected<Model> LoadModel(const std::string& path) { return ImportOnnxFile(path); }

DeviceKind ChooseDevice(const std::string& device_option) {
  if (device_option != "cuda") return DeviceKind::kCpu;
  return ResolveDevice(DeviceKind::kCuda);  // says once why the GPU is not used, if it is not
}

std::string FormatDuration(double seconds) {
  char buf[32];
  if (seconds < 1e-3) {
    std::snprintf(buf, sizeof(buf), "%.1f us", seconds * 1e6);
  } else if (seconds < 1.0) {
    std::snprintf(buf, sizeof(buf), "%.1f ms", seconds * 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f s", seconds);
  }
  return buf;
}

}  // namespace kiln::cli
