#include "core/shape.h"

namespace kiln {

bool Dim::operator==(const Dim& o) const {
  if (is_static() || o.is_static()) return value_ == o.value_;
  if (is_symbolic() && o.is_symbolic()) return symbol_ == o.symbol_;
  return false;
}

std::string Dim::ToString() const {
  if (is_static()) return std::to_string(value_);
  if (is_symbolic()) return symbol_;
  return "?";
}

Shape Shape::FromSizes(const std::vector<int64_t>& sizes) {
  std::vector<Dim> dims(sizes.begin(), sizes.end());
  return Shape(std::move(dims));
}

bool Shape::is_static() const {
  for (const Dim& d : dims_) {
    if (!d.is_static()) return false;
  }
  return true;
}

std::optional<std::vector<int64_t>> Shape::sizes() const {
  if (!is_static()) return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(dims_.size());
  for (const Dim& d : dims_) out.push_back(d.value());
  return out;
}

std::optional<int64_t> Shape::numel() const {
  auto s = sizes();
  if (!s) return std::nullopt;
  return CheckedNumElements(*s);
}

std::string Shape::ToString() const {
  std::string out = "[";
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i) out += ",";
    out += dims_[i].ToString();
  }
  return out + "]";
}

std::string SizesToString(const std::vector<int64_t>& sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(sizes[i]);
  }
  return out + "]";
}

int64_t NumElements(const std::vector<int64_t>& sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

std::optional<int64_t> CheckedNumElements(const std::vector<int64_t>& sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) {
    if (s < 0) return std::nullopt;
    if (s != 0 && n > INT64_MAX / s) return std::nullopt;
    n *= s;
  }
  return n;
}

}  // namespace kiln
