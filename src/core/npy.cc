#include "core/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "core/shape.h"

namespace kiln {

namespace {

// Finds `'key': value` in the header dict and returns the raw value text.
bool FindField(const std::string& header, const std::string& key, std::string* out) {
  const std::string k = "'" + key + "'";
  size_t p = header.find(k);
  if (p == std::string::npos) return false;
  p = header.find(':', p + k.size());
  if (p == std::string::npos) return false;
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  if (p >= header.size()) return false;
  size_t end;
  if (header[p] == '\'') {
    end = header.find('\'', p + 1);
    if (end == std::string::npos) return false;
    *out = header.substr(p + 1, end - p - 1);
  } else if (header[p] == '(') {
    end = header.find(')', p);
    if (end == std::string::npos) return false;
    *out = header.substr(p + 1, end - p - 1);
  } else {
    end = header.find_first_of(",}", p);
    if (end == std::string::npos) return false;
    *out = header.substr(p, end - p);
  }
  return true;
}

}  // namespace

Expected<Tensor> ParseNpy(const std::string& bytes, const std::string& label) {
  auto bad = [&](const std::string& why) { return InvalidArgument(label + ": not a valid .npy file: " + why); };
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) return bad("missing magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, header_start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8;
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return bad("truncated header");
    header_len = 0;
    for (int i = 3; i >= 0; --i) header_len = header_len << 8 | static_cast<unsigned char>(bytes[8 + i]);
    header_start = 12;
  } else {
    return bad("unknown format version " + std::to_string(major));
  }
  if (header_start + header_len > bytes.size()) return bad("truncated header");
  const std::string header = bytes.substr(header_start, header_len);
  std::string descr, fortran, shape_text;
  if (!FindField(header, "descr", &descr) || !FindField(header, "fortran_order", &fortran) ||
      !FindField(header, "shape", &shape_text)) {
    return bad("header lacks descr, fortran_order or shape");
  }
  if (fortran.find("True") != std::string::npos) return Unsupported(label + ": Fortran-ordered .npy is not supported");
  auto dtype = DTypeFromNumpyDescr(descr);
  if (!dtype) return Unsupported(label + ": .npy dtype '" + descr + "' is not supported");
  std::vector<int64_t> sizes;
  std::stringstream ss(shape_text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" L");
    if (b == std::string::npos) continue;
    size_t e = item.find_last_not_of(" L");
    const std::string num = item.substr(b, e - b + 1);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos || num.size() > 18) {
      return bad("bad shape entry '" + num + "'");
    }
    sizes.push_back(std::stoll(num));
  }
  auto n = CheckedNumElements(sizes);
  if (!n) return bad("shape overflows");
  const size_t data_start = header_start + header_len;
  const uint64_t need = static_cast<uint64_t>(*n) * DTypeSize(*dtype);
  if (*n > 0 && need / static_cast<uint64_t>(*n) != DTypeSize(*dtype)) return bad("shape overflows");
  if (bytes.size() - data_start < need) {
    return DataLoss(label + ": .npy data is truncated: " + std::to_string(bytes.size() - data_start) +
                    " bytes, header says " + std::to_string(need));
  }
  KILN_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(*dtype, sizes));
  if (need > 0) std::memcpy(t.raw_data(), bytes.data() + data_start, need);
  return t;
}

Expected<Tensor> ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseNpy(ss.str(), path);
}

Status WriteNpy(const std::string& path, const Tensor& tensor) {
  const Tensor t = tensor.dtype() == DType::kBFloat16 ? tensor.CastTo(DType::kFloat32) : tensor;
  std::string shape = "(";
  for (size_t i = 0; i < t.rank(); ++i) shape += std::to_string(t.size(i)) + (t.rank() == 1 || i + 1 < t.rank() ? "," : "");
  shape += ")";
  std::string header = "{'descr': '" + std::string(DTypeNumpyDescr(t.dtype())) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot write '" + path + "'");
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char lenbytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(lenbytes, 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
  if (!f) return Internal("write to '" + path + "' failed");
  return Status::Ok();
}

}  // namespace kiln
