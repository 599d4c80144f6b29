// A dense, row-major (C-contiguous) CPU tensor: dtype, sizes and shared storage.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kiln/status.h"

namespace kiln {

// Owned bytes, or a view of bytes owned elsewhere (e.g. a memory-mapped file) kept alive by `keep_alive`.
class Buffer {
 public:
  // Zero-initialized owned storage, 64-byte aligned.
  explicit Buffer(size_t nbytes);
  Buffer(void* external, size_t nbytes, std::shared_ptr<void> keep_alive);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = false;
  std::shared_ptr<void> keep_alive_;
};

class Tensor {
 public:
  Tensor() = default;  // empty: dtype undefined, no storage
  // New zero-filled tensor. Sizes must be non-negative (checked by callers; see Tensor::Create).
  Tensor(DType dtype, std::vector<int64_t> sizes);
  // Wraps existing storage at `offset` bytes (must hold the elements).
  Tensor(DType dtype, std::vector<int64_t> sizes, std::shared_ptr<Buffer> buffer, size_t offset = 0);

  // Like the constructor, but refuses negative sizes or sizes whose byte count overflows or exceeds
  // `max_bytes`, with a clear message.
  static Expected<Tensor> Create(DType dtype, std::vector<int64_t> sizes, size_t max_bytes = SIZE_MAX);
  // A scalar (rank 0) tensor.
  template <typename T>
  static Tensor Scalar(T v) {
    Tensor t(DTypeOf<T>::value, {});
    *t.data<T>() = v;
    return t;
  }
  // A rank-1 tensor holding `values`.
  template <typename T>
  static Tensor FromVector(const std::vector<T>& values) {
    Tensor t(DTypeOf<T>::value, {static_cast<int64_t>(values.size())});
    for (size_t i = 0; i < values.size(); ++i) t.data<T>()[i] = values[i];
    return t;
  }

  bool empty() const { return dtype_ == DType::kUndefined; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  size_t rank() const { return sizes_.size(); }
  int64_t size(size_t dim) const { return sizes_[dim]; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }

  void* raw_data() { return buffer_ ? static_cast<char*>(buffer_->data()) + offset_ : nullptr; }
  const void* raw_data() const {
    return buffer_ ? static_cast<const char*>(buffer_->data()) + offset_ : nullptr;
  }
  template <typename T>
  T* data() { return static_cast<T*>(raw_data()); }
  template <typename T>
  const T* data() const { return static_cast<const T*>(raw_data()); }

  // Element i (flat index) converted to double / int64, whatever the dtype. For shape and index inputs.
  double GetAsDouble(int64_t i) const;
  int64_t GetAsInt64(int64_t i) const;
  // All elements as int64 (for shape/axes/indices tensors).
  std::vector<int64_t> ToInt64Vector() const;

  // The storage this tensor views (null if empty), and whether another tensor shares it.
  const Buffer* buffer() const { return buffer_.get(); }
  bool shares_storage() const { return buffer_ && buffer_.use_count() > 1; }

  // Same storage with other sizes (same element count). Does not copy.
  Tensor Reshaped(std::vector<int64_t> sizes) const;
  // A deep copy.
  Tensor Clone() const;
  // A new tensor of `dtype` holding this tensor's values converted.
  Tensor CastTo(DType dtype) const;

  // "f32[1,3,224,224]"
  std::string Description() const;

 private:
  DType dtype_ = DType::kUndefined;
  std::vector<int64_t> sizes_;
  int64_t numel_ = 0;
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;
};

}  // namespace kiln
