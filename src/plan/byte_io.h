// Little-endian byte writer and a bounds-checked reader for the plan format. The reader never reads past
// its end: every read reports failure instead, and the first failure sticks (later reads return zeros), so
// a parser can read a whole record and check ok() once.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace kiln::plan {

class ByteWriter {
 public:
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    bytes_.append(raw, sizeof(T));
  }
  void PutU8(uint8_t v) { Put(v); }
  void PutU32(uint32_t v) { Put(v); }
  void PutI32(int32_t v) { Put(v); }
  void PutU64(uint64_t v) { Put(v); }
  void PutI64(int64_t v) { Put(v); }
  void PutF32(float v) { Put(v); }
  void PutString(std::string_view s) {
    PutU64(s.size());
    bytes_.append(s.data(), s.size());
  }
  void PutBytes(const void* data, size_t n) { bytes_.append(static_cast<const char*>(data), n); }
  void PadTo(size_t alignment) {
    while (bytes_.size() % alignment != 0) bytes_.push_back('\0');
  }
  // Overwrites sizeof(T) bytes at `offset` (for sizes and offsets known only after later sections).
  template <typename T>
  void PatchAt(size_t offset, T v) {
    std::memcpy(bytes_.data() + offset, &v, sizeof(T));
  }

  size_t size() const { return bytes_.size(); }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool ok() const { return ok_; }
  size_t position() const { return pos_; }
  size_t remaining() const { return ok_ ? size_ - pos_ : 0; }
  // What failed first ("" while ok).
  const std::string& error() const { return error_; }

  template <typename T>
  T Get(const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    T v{};
    if (!Need(sizeof(T), what)) return v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  uint8_t GetU8(const char* what) { return Get<uint8_t>(what); }
  uint32_t GetU32(const char* what) { return Get<uint32_t>(what); }
  int32_t GetI32(const char* what) { return Get<int32_t>(what); }
  uint64_t GetU64(const char* what) { return Get<uint64_t>(what); }
  int64_t GetI64(const char* what) { return Get<int64_t>(what); }
  float GetF32(const char* what) { return Get<float>(what); }
  std::string GetString(const char* what) {
    const uint64_t n = GetU64(what);
    if (!Need(n, what)) return {};
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  // Points at the next n bytes and skips them (null on failure).
  const uint8_t* GetSpan(uint64_t n, const char* what) {
    if (!Need(n, what)) return nullptr;
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  // A count of items, each at least `min_item_bytes` long: refused when the rest of the data cannot hold
  // that many, so a corrupted count never makes a parser reserve huge vectors.
  uint64_t GetCount(const char* what, size_t min_item_bytes) {
    const uint64_t n = GetU64(what);
    if (!ok_) return 0;
    if (min_item_bytes > 0 && n > remaining() / min_item_bytes) {
      Fail(std::string(what) + " count " + std::to_string(n) + " exceeds the data left");
      return 0;
    }
    return n;
  }
  void Fail(std::string message) {
    if (ok_) error_ = std::move(message);
    ok_ = false;
  }

 private:
  bool Need(uint64_t n, const char* what) {
    if (!ok_) return false;
    if (n > size_ - pos_) {
      Fail(std::string(what) + " runs past the end of its section (needs " + std::to_string(n) + " bytes, " +
           std::to_string(size_ - pos_) + " left)");
      return false;
    }
    return true;
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  bool ok_ = true;
  std::string error_;
};

}  // namespace kiln::plan
