// Shapes whose dimensions may be symbolic (a dynamic batch or sequence length).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

// One dimension: a known size (>= 0), a named symbol ("batch", "seq") or unknown (no name).
class Dim {
 public:
  Dim() = default;                                       // unknown
  Dim(int64_t value) : value_(value) {}                  // NOLINT: implicit from a size
  static Dim Symbol(std::string name) { Dim d; d.symbol_ = std::move(name); return d; }

  bool is_static() const { return value_ >= 0; }
  bool is_symbolic() const { return value_ < 0 && !symbol_.empty(); }
  bool is_unknown() const { return value_ < 0 && symbol_.empty(); }
  int64_t value() const { return value_; }  // -1 unless static
  const std::string& symbol() const { return symbol_; }

  // Static dims equal by value, symbolic by name; unknown dims equal nothing.
  bool operator==(const Dim& o) const;
  bool operator!=(const Dim& o) const { return !(*this == o); }
  std::string ToString() const;  // "3", "batch" or "?"

 private:
  int64_t value_ = -1;
  std::string symbol_;
};

// A shape of known rank. (A value whose rank is unknown has no Shape: std::optional<Shape>.)
class Shape {
 public:
  Shape() = default;  // rank 0: a scalar
  Shape(std::initializer_list<Dim> dims) : dims_(dims) {}
  explicit Shape(std::vector<Dim> dims) : dims_(std::move(dims)) {}
  static Shape FromSizes(const std::vector<int64_t>& sizes);

  size_t rank() const { return dims_.size(); }
  const Dim& operator[](size_t i) const { return dims_[i]; }
  Dim& operator[](size_t i) { return dims_[i]; }
  const std::vector<Dim>& dims() const { return dims_; }
  std::vector<Dim>& dims() { return dims_; }

  bool is_static() const;
  // Sizes if every dim is static.
  std::optional<std::vector<int64_t>> sizes() const;
  // Product of dims if all static.
  std::optional<int64_t> numel() const;
  bool operator==(const Shape& o) const { return dims_ == o.dims_; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string ToString() const;  // "[batch,3,224,224]"

 private:
  std::vector<Dim> dims_;
};

// "[1,3,224,224]"
std::string SizesToString(const std::vector<int64_t>& sizes);
// Product of sizes (1 for an empty vector). No overflow check: callers validate sizes first.
int64_t NumElements(const std::vector<int64_t>& sizes);
// Product of sizes, or nullopt if a size is negative or the product overflows int64.
std::optional<int64_t> CheckedNumElements(const std::vector<int64_t>& sizes);

}  // namespace kiln
