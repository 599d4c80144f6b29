// Element types of tensors, and the 16-bit float formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace kiln {

// Values match ONNX's TensorProto.DataType so conversion is a cast-free table lookup, but nothing outside
// src/onnx/ relies on that.
enum class DType : uint8_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
};

// Bytes per element (0 for kUndefined).
size_t DTypeSize(DType t);
// Short lowercase name: "f32", "f16", "bf16", "i8", "u8", "i32", "i64", "bool", ...
std::string_view DTypeName(DType t);
// NumPy's dtype descriptor for .npy headers ("<f4", "|b1", ...), and back.
std::string_view DTypeNumpyDescr(DType t);
std::optional<DType> DTypeFromNumpyDescr(std::string_view descr);
bool IsFloat(DType t);    // f16, bf16, f32, f64
bool IsInteger(DType t);  // signed or unsigned integers, not bool
bool Is8BitInteger(DType t);  // u8 or i8: the quantized types of the 8-bit kernels
bool IsSigned(DType t);   // signed integers and floats

// IEEE binary16, stored as raw bits. Arithmetic is done by converting to float.
struct Float16 {
  uint16_t bits = 0;
  Float16() = default;
  explicit Float16(float f) : bits(FromFloat(f)) {}
  operator float() const { return ToFloat(bits); }  // NOLINT: implicit widening is intended
  static uint16_t FromFloat(float f);
  static float ToFloat(uint16_t h);
};

// bfloat16: the top 16 bits of a float32, rounded to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(float f) : bits(FromFloat(f)) {}
  operator float() const { return ToFloat(bits); }  // NOLINT: implicit widening is intended
  static uint16_t FromFloat(float f);
  static float ToFloat(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

template <typename T>
struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kFloat32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::kFloat64; };
template <> struct DTypeOf<Float16> { static constexpr DType value = DType::kFloat16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::kBFloat16; };
template <> struct DTypeOf<int8_t> { static constexpr DType value = DType::kInt8; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::kUInt8; };
template <> struct DTypeOf<int16_t> { static constexpr DType value = DType::kInt16; };
template <> struct DTypeOf<uint16_t> { static constexpr DType value = DType::kUInt16; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::kInt32; };
template <> struct DTypeOf<uint32_t> { static constexpr DType value = DType::kUInt32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::kInt64; };
template <> struct DTypeOf<uint64_t> { static constexpr DType value = DType::kUInt64; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::kBool; };

// Calls fn(T{}) with T the C++ type of `t`, for every dtype Kiln stores. Returns false for kUndefined.
// Usage: VisitDType(t, [&](auto tag) { using T = decltype(tag); ... });
template <typename Fn>
bool VisitDType(DType t, Fn&& fn) {
  switch (t) {
    case DType::kFloat32: fn(float{}); return true;
    case DType::kFloat64: fn(double{}); return true;
    case DType::kFloat16: fn(Float16{}); return true;
    case DType::kBFloat16: fn(BFloat16{}); return true;
    case DType::kInt8: fn(int8_t{}); return true;
    case DType::kUInt8: fn(uint8_t{}); return true;
    case DType::kInt16: fn(int16_t{}); return true;
    case DType::kUInt16: fn(uint16_t{}); return true;
    case DType::kInt32: fn(int32_t{}); return true;
    case DType::kUInt32: fn(uint32_t{}); return true;
    case DType::kInt64: fn(int64_t{}); return true;
    case DType::kUInt64: fn(uint64_t{}); return true;
    case DType::kBool: fn(bool{}); return true;
    case DType::kUndefined: return false;
  }
  return false;
}

// Like VisitDType but only for the float types (f16, bf16, f32, f64); false for others.
template <typename Fn>
bool VisitFloatDType(DType t, Fn&& fn) {
  switch (t) {
    case DType::kFloat32: fn(float{}); return true;
    case DType::kFloat64: fn(double{}); return true;
    case DType::kFloat16: fn(Float16{}); return true;
    case DType::kBFloat16: fn(BFloat16{}); return true;
    default: return false;
  }
}

// Like VisitDType but for the numeric types (everything except bool).
template <typename Fn>
bool VisitNumericDType(DType t, Fn&& fn) {
  if (t == DType::kBool) return false;
  return VisitDType(t, std::forward<Fn>(fn));
}

// The type arithmetic on T is done in: float for the 16-bit floats, T otherwise.
template <typename T> struct ComputeType { using type = T; };
template <> struct ComputeType<Float16> { using type = float; };
template <> struct ComputeType<BFloat16> { using type = float; };
template <typename T> using ComputeT = typename ComputeType<T>::type;

// Converts between any two stored types (through double for floats, with ONNX Cast's rules for bool).
template <typename To, typename From>
To ConvertScalar(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, Float16> || std::is_same_v<To, BFloat16>) {
    return To(static_cast<float>(ComputeT<From>(v)));
  } else if constexpr (std::is_same_v<To, bool>) {
    return static_cast<ComputeT<From>>(v) != ComputeT<From>(0);
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<ComputeT<From>>) {
    // Saturates (NaN gives 0): a plain cast of an out-of-range float to an integer is undefined behaviour.
    const double d = static_cast<double>(static_cast<ComputeT<From>>(v));
    if (d != d) return To(0);
    if (d >= static_cast<double>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    if (d <= static_cast<double>(std::numeric_limits<To>::min())) return std::numeric_limits<To>::min();
    return static_cast<To>(d);
  } else {
    return static_cast<To>(static_cast<ComputeT<From>>(v));
  }
}

}  // namespace kiln
