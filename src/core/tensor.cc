#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/shape.h"

namespace kiln {

namespace {
constexpr size_t kAlignment = 64;
}

Buffer::Buffer(size_t nbytes) : size_(nbytes), owned_(true) {
  const size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  data_ = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (data_ == nullptr) throw std::bad_alloc();
  std::memset(data_, 0, rounded == 0 ? kAlignment : rounded);
}

Buffer::Buffer(void* external, size_t nbytes, std::shared_ptr<void> keep_alive)
    : data_(external), size_(nbytes), owned_(false), keep_alive_(std::move(keep_alive)) {}

Buffer::~Buffer() {
  if (owned_) std::free(data_);
}

Tensor::Tensor(DType dtype, std::vector<int64_t> sizes)
    : dtype_(dtype), sizes_(std::move(sizes)), numel_(NumElements(sizes_)) {
  buffer_ = std::make_shared<Buffer>(nbytes());
}

Tensor::Tensor(DType dtype, std::vector<int64_t> sizes, std::shared_ptr<Buffer> buffer, size_t offset)
    : dtype_(dtype), sizes_(std::move(sizes)), numel_(NumElements(sizes_)), buffer_(std::move(buffer)),
      offset_(offset) {}

Expected<Tensor> Tensor::Create(DType dtype, std::vector<int64_t> sizes, size_t max_bytes) {
  if (dtype == DType::kUndefined) return InvalidArgument("tensor of undefined dtype");
  auto n = CheckedNumElements(sizes);
  if (!n) return InvalidArgument("invalid tensor sizes " + SizesToString(sizes));
  const size_t elem = DTypeSize(dtype);
  if (static_cast<uint64_t>(*n) > max_bytes / elem) {
    return OutOfRange("tensor " + std::string(DTypeName(dtype)) + SizesToString(sizes) + " needs " +
                      std::to_string(static_cast<double>(*n) * elem) + " bytes, over the limit of " +
                      std::to_string(max_bytes));
  }
  try {
    return Tensor(dtype, std::move(sizes));
  } catch (const std::bad_alloc&) {
    return OutOfRange("out of memory allocating tensor " + std::string(DTypeName(dtype)) +
                      SizesToString(sizes));
  }
}

double Tensor::GetAsDouble(int64_t i) const {
  double out = 0;
  VisitDType(dtype_, [&](auto tag) {
    using T = decltype(tag);
    out = static_cast<double>(static_cast<ComputeT<T>>(data<T>()[i]));
  });
  return out;
}

int64_t Tensor::GetAsInt64(int64_t i) const {
  int64_t out = 0;
  VisitDType(dtype_, [&](auto tag) {
    using T = decltype(tag);
    out = static_cast<int64_t>(static_cast<ComputeT<T>>(data<T>()[i]));
  });
  return out;
}

std::vector<int64_t> Tensor::ToInt64Vector() const {
  std::vector<int64_t> out(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) out[static_cast<size_t>(i)] = GetAsInt64(i);
  return out;
}

Tensor Tensor::Reshaped(std::vector<int64_t> sizes) const {
  return Tensor(dtype_, std::move(sizes), buffer_, offset_);
}

Tensor Tensor::Clone() const {
  Tensor out(dtype_, sizes_);
  if (nbytes() > 0) std::memcpy(out.raw_data(), raw_data(), nbytes());
  return out;
}

Tensor Tensor::CastTo(DType dtype) const {
  Tensor out(dtype, sizes_);
  VisitDType(dtype_, [&](auto from_tag) {
    using From = decltype(from_tag);
    VisitDType(dtype, [&](auto to_tag) {
      using To = decltype(to_tag);
      const From* src = data<From>();
      To* dst = out.data<To>();
      for (int64_t i = 0; i < numel_; ++i) dst[i] = ConvertScalar<To>(src[i]);
    });
  });
  return out;
}

std::string Tensor::Description() const { return std::string(DTypeName(dtype_)) + SizesToString(sizes_); }

}  // namespace kiln
