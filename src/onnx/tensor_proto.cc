#include "onnx/tensor_proto.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include "core/shape.h"

namespace kiln {

// raw_data and external data are little-endian; they are copied or mapped as they are.
static_assert(std::endian::native == std::endian::little,
              "Kiln's ONNX importer assumes a little-endian host");

namespace fs = std::filesystem;

std::optional<DType> OnnxDTypeToKiln(int32_t t) {
  switch (t) {
    case onnx::TensorProto::FLOAT: return DType::kFloat32;
    case onnx::TensorProto::UINT8: return DType::kUInt8;
    case onnx::TensorProto::INT8: return DType::kInt8;
    case onnx::TensorProto::UINT16: return DType::kUInt16;
    case onnx::TensorProto::INT16: return DType::kInt16;
    case onnx::TensorProto::INT32: return DType::kInt32;
    case onnx::TensorProto::INT64: return DType::kInt64;
    case onnx::TensorProto::BOOL: return DType::kBool;
    case onnx::TensorProto::FLOAT16: return DType::kFloat16;
    case onnx::TensorProto::DOUBLE: return DType::kFloat64;
    case onnx::TensorProto::UINT32: return DType::kUInt32;
    case onnx::TensorProto::UINT64: return DType::kUInt64;
    case onnx::TensorProto::BFLOAT16: return DType::kBFloat16;
    default: return std::nullopt;
  }
}

std::string OnnxDTypeName(int32_t t) {
  // Numbers rather than the generated enum: Debian's onnx.proto (1.12) predates float8 and int4.
  switch (t) {
    case 0: return "UNDEFINED";
    case 8: return "STRING";
    case 14: return "COMPLEX64";
    case 15: return "COMPLEX128";
    case 17: return "FLOAT8E4M3FN";
    case 18: return "FLOAT8E4M3FNUZ";
    case 19: return "FLOAT8E5M2";
    case 20: return "FLOAT8E5M2FNUZ";
    case 21: return "UINT4";
    case 22: return "INT4";
    default: break;
  }
  if (auto d = OnnxDTypeToKiln(t)) return std::string(DTypeName(*d));
  return "type #" + std::to_string(t);
}

namespace {

// Strict: the whole string is a non-negative decimal integer.
std::optional<uint64_t> ParseUnsigned(const std::string& s) {
  uint64_t v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || p != end) return std::nullopt;
  return v;
}

// Copies stored bytes into `t`. Bools are stored as bytes; anything but 0 is true (a bool object holding
// another byte value would be undefined behaviour).
void CopyElements(const char* src, size_t nbytes, Tensor* t) {
  if (t->dtype() == DType::kBool) {
    for (size_t i = 0; i < nbytes; ++i) t->data<bool>()[i] = src[i] != 0;
  } else if (nbytes) {
    std::memcpy(t->raw_data(), src, nbytes);
  }
}

// Mapped tensors share the file's pages; below this size a copy is cheaper than keeping a view.
constexpr size_t kMapThreshold = 4096;
// Views are handed out only at offsets this aligned, like Buffer's own storage.
constexpr uint64_t kViewAlignment = 64;

}  // namespace

struct ExternalDataFiles::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr) munmap(addr, size);
  }
};

Expected<std::shared_ptr<ExternalDataFiles::Mapping>> ExternalDataFiles::Map(const std::string& path) {
  auto it = mapped_.find(path);
  if (it != mapped_.end()) return it->second;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("cannot open external data file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return InvalidArgument("external data '" + path + "' is not a regular file");
  }
  auto m = std::make_shared<Mapping>();
  m->size = static_cast<size_t>(st.st_size);
  if (m->size > 0) {
    // Private and writable: a pass that modifies a weight in place gets its own copy of the page, and the
    // file is never written.
    void* addr = mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      close(fd);
      return DataLoss("cannot map external data file '" + path + "': " + std::strerror(err));
    }
    m->addr = addr;
  }
  close(fd);
  mapped_.emplace(path, m);
  return m;
}

Expected<Tensor> ExternalDataFiles::Read(const onnx::TensorProto& tp, DType dtype,
                                         const std::vector<int64_t>& sizes, size_t nbytes) {
  std::string location;
  uint64_t offset = 0;
  std::optional<uint64_t> length;
  for (const auto& kv : tp.external_data()) {
    if (kv.key() == "location") {
      location = kv.value();
    } else if (kv.key() == "offset" || kv.key() == "length") {
      auto v = ParseUnsigned(kv.value());
      if (!v) {
        return InvalidArgument("external data " + kv.key() + " '" + kv.value() +
                               "' is not a non-negative integer");
      }
      (kv.key() == "offset" ? offset : length.emplace()) = *v;
    }
  }
  if (location.empty()) return InvalidArgument("external data has no location");
  if (location.find('\0') != std::string::npos) {
    return InvalidArgument("external data location contains a NUL character");
  }
  const fs::path rel(location);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory()) {
    return InvalidArgument("external data location '" + location + "' must be a relative path");
  }
  for (const auto& part : rel) {
    if (part == "..") {
      return InvalidArgument("external data location '" + location + "' leaves the model's directory");
    }
  }
  if (length && *length != nbytes) {
    return InvalidArgument("external data length " + std::to_string(*length) + " does not match the " +
                           std::to_string(nbytes) + " bytes its dims need");
  }
  if (base_dir_.empty()) {
    return InvalidArgument("tensor data is stored externally in '" + location +
                           "', but no directory to find it in was given");
  }
  const std::string full = (fs::path(base_dir_) / rel).string();
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<Mapping> m, Map(full));
  if (offset > m->size || m->size - offset < nbytes) {
    return DataLoss("external data file '" + full + "' is too short: needs " + std::to_string(nbytes) +
                    " bytes at offset " + std::to_string(offset) + ", the file has " +
                    std::to_string(m->size));
  }
  const char* src = static_cast<const char*>(m->addr) + offset;
  if (nbytes >= kMapThreshold && offset % kViewAlignment == 0 && dtype != DType::kBool) {
    auto buffer = std::make_shared<Buffer>(const_cast<char*>(src), nbytes, std::shared_ptr<void>(m, m.get()));
    return Tensor(dtype, sizes, std::move(buffer));
  }
  Tensor t(dtype, sizes);
  CopyElements(src, nbytes, &t);
  return t;
}

namespace {

template <typename Field>
Status CheckCount(const Field& field, int64_t n, const char* name) {
  if (static_cast<int64_t>(field.size()) != n) {
    return InvalidArgument(std::string(name) + " has " + std::to_string(field.size()) +
                           " values, its dims need " + std::to_string(n));
  }
  return Status::Ok();
}

// Values of the typed repeated fields, checked against the element count before anything is allocated.
Expected<Tensor> FromTypedFields(const onnx::TensorProto& tp, DType dtype, const std::vector<int64_t>& sizes,
                                 int64_t n) {
  switch (dtype) {
    case DType::kFloat32: {
      KILN_RETURN_IF_ERROR(CheckCount(tp.float_data(), n, "float_data"));
      Tensor t(dtype, sizes);
      if (n) std::memcpy(t.raw_data(), tp.float_data().data(), t.nbytes());
      return t;
    }
    case DType::kFloat64: {
      KILN_RETURN_IF_ERROR(CheckCount(tp.double_data(), n, "double_data"));
      Tensor t(dtype, sizes);
      if (n) std::memcpy(t.raw_data(), tp.double_data().data(), t.nbytes());
      return t;
    }
    case DType::kInt64: {
      KILN_RETURN_IF_ERROR(CheckCount(tp.int64_data(), n, "int64_data"));
      Tensor t(dtype, sizes);
      if (n) std::memcpy(t.raw_data(), tp.int64_data().data(), t.nbytes());
      return t;
    }
    case DType::kUInt32:
    case DType::kUInt64: {
      KILN_RETURN_IF_ERROR(CheckCount(tp.uint64_data(), n, "uint64_data"));
      Tensor t(dtype, sizes);
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t v = tp.uint64_data(static_cast<int>(i));
        if (dtype == DType::kUInt32) {
          t.data<uint32_t>()[i] = static_cast<uint32_t>(v);
        } else {
          t.data<uint64_t>()[i] = v;
        }
      }
      return t;
    }
    case DType::kInt32:
    case DType::kInt16:
    case DType::kUInt16:
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool:
    case DType::kFloat16:
    case DType::kBFloat16: {
      // ONNX stores these widened in int32_data (16-bit floats as their bit patterns).
      KILN_RETURN_IF_ERROR(CheckCount(tp.int32_data(), n, "int32_data"));
      Tensor t(dtype, sizes);
      for (int64_t i = 0; i < n; ++i) {
        const int32_t v = tp.int32_data(static_cast<int>(i));
        switch (dtype) {
          case DType::kInt32: t.data<int32_t>()[i] = v; break;
          case DType::kInt16: t.data<int16_t>()[i] = static_cast<int16_t>(v); break;
          case DType::kUInt16: t.data<uint16_t>()[i] = static_cast<uint16_t>(v); break;
          case DType::kInt8: t.data<int8_t>()[i] = static_cast<int8_t>(v); break;
          case DType::kUInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
          case DType::kBool: t.data<bool>()[i] = v != 0; break;
          case DType::kFloat16: t.data<Float16>()[i].bits = static_cast<uint16_t>(v); break;
          case DType::kBFloat16: t.data<BFloat16>()[i].bits = static_cast<uint16_t>(v); break;
          default: break;
        }
      }
      return t;
    }
    case DType::kUndefined: break;
  }
  return Unsupported("no element type");
}

}  // namespace

Expected<Tensor> TensorFromProto(const onnx::TensorProto& tp, ExternalDataFiles* external) {
  const std::string name = "tensor '" + tp.name() + "'";
  auto dtype = OnnxDTypeToKiln(tp.data_type());
  if (!dtype) {
    return Unsupported(name + " has element type " + OnnxDTypeName(tp.data_type()) +
                       ", which Kiln does not support");
  }
  if (tp.has_segment()) return Unsupported(name + " is segmented, which Kiln does not support");
  std::vector<int64_t> sizes(tp.dims().begin(), tp.dims().end());
  auto n = CheckedNumElements(sizes);
  const size_t elem = DTypeSize(*dtype);
  if (!n) return InvalidArgument(name + " has invalid dims " + SizesToString(sizes));
  if (static_cast<uint64_t>(*n) > (uint64_t{1} << 48) / elem) {
    return OutOfRange(name + " dims " + SizesToString(sizes) + " are too large");
  }
  const size_t nbytes = static_cast<size_t>(*n) * elem;

  if (tp.data_location() == onnx::TensorProto::EXTERNAL) {
    if (!external) return InvalidArgument(name + " has external data, which is not allowed here");
    auto t = external->Read(tp, *dtype, sizes, nbytes);
    if (!t.ok()) return t.status().WithContext(name);
    return t;
  }
  if (tp.has_raw_data()) {
    if (tp.raw_data().size() != nbytes) {
      return InvalidArgument(name + " raw_data has " + std::to_string(tp.raw_data().size()) +
                             " bytes, dims " + SizesToString(sizes) + " of " +
                             std::string(DTypeName(*dtype)) + " need " + std::to_string(nbytes));
    }
    Tensor t(*dtype, sizes);
    CopyElements(tp.raw_data().data(), nbytes, &t);
    return t;
  }
  auto t = FromTypedFields(tp, *dtype, sizes, *n);
  if (!t.ok()) return t.status().WithContext(name);
  return t;
}

}  // namespace kiln
