#include <algorithm>

#include "ops/kernels/dm_util.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln::dm {

Expected<const Tensor*> Input(const KernelContext& ctx, size_t i, const char* what) {
  const Tensor* t = ctx.input(i);
  if (!t || t->empty()) return InvalidArgument(std::string("input '") + what + "' is missing");
  return t;
}

Status RequireIndexDType(DType t, const char* what) {
  if (t != DType::kInt32 && t != DType::kInt64) {
    return InvalidArgument(std::string(what) + " must be int32 or int64, got " + std::string(DTypeName(t)));
  }
  return Status::Ok();
}

Status RequireScalar(const Tensor& t, const char* what) {
  if (t.numel() != 1 || t.rank() > 1) {
    return InvalidArgument(std::string(what) + " must be a scalar, got " + t.Description());
  }
  return Status::Ok();
}

Dim MulDims(const Dim& a, const Dim& b) {
  if (a.is_static() && b.is_static()) {
    int64_t p;
    if (__builtin_mul_overflow(a.value(), b.value(), &p)) return Dim();
    return p;
  }
  if (a.is_static() && a.value() == 1) return b;
  if (b.is_static() && b.value() == 1) return a;
  return Dim();
}

Dim DimProduct(const Shape& s, size_t begin, size_t end) {
  Dim p(1);
  for (size_t i = begin; i < end && i < s.rank(); ++i) p = MulDims(p, s[i]);
  return p;
}

Dim SumDims(const std::vector<Dim>& dims) {
  int64_t sum = 0;
  const Dim* other = nullptr;
  int non_static = 0;
  for (const Dim& d : dims) {
    if (d.is_static()) {
      sum += d.value();
    } else {
      ++non_static;
      other = &d;
    }
  }
  if (non_static == 0) return sum;
  if (non_static == 1 && sum == 0) return *other;
  return Dim();
}

Expected<Dim> MergeDims(const Dim& a, const Dim& b) {
  if (a.is_static() && b.is_static() && a.value() != b.value()) {
    return InvalidArgument("dims " + a.ToString() + " and " + b.ToString() + " differ");
  }
  if (a.is_static()) return a;
  if (b.is_static()) return b;
  if (a == b) return a;
  return Dim();
}

std::optional<std::vector<int64_t>> ConstInts(const InferContext& ctx, size_t i) {
  if (!ctx.has_input(i)) return std::nullopt;
  const Tensor* t = ctx.input_constant(i);
  if (!t) return std::nullopt;
  return t->ToInt64Vector();
}

std::optional<int64_t> StaticLength1D(const InferContext& ctx, size_t i) {
  if (!ctx.has_input(i)) return std::nullopt;
  const auto& s = ctx.input_shape(i);
  if (!s || s->rank() != 1 || !(*s)[0].is_static()) return std::nullopt;
  return (*s)[0].value();
}

Shape UnknownDims(size_t rank) { return Shape(std::vector<Dim>(rank)); }

namespace {

void GatherRec(const char* src, const std::vector<int64_t>& in_strides, const std::vector<int64_t>& out_strides,
               const std::vector<std::vector<int64_t>>& maps, size_t es, const char* fill, char* dst, size_t d,
               int64_t in_off) {
  const std::vector<int64_t>& m = maps[d];
  const int64_t n = static_cast<int64_t>(m.size());
  if (d + 1 == maps.size()) {
    for (int64_t o = 0; o < n; ++o) {
      const int64_t i = m[static_cast<size_t>(o)];
      CopyElem(dst + o * static_cast<int64_t>(es), i < 0 ? fill : src + (in_off + i) * static_cast<int64_t>(es), es);
    }
    return;
  }
  const int64_t block = out_strides[d];
  for (int64_t o = 0; o < n; ++o) {
    const int64_t i = m[static_cast<size_t>(o)];
    char* out = dst + o * block * static_cast<int64_t>(es);
    if (i < 0) {
      for (int64_t k = 0; k < block; ++k) CopyElem(out + k * static_cast<int64_t>(es), fill, es);
    } else {
      GatherRec(src, in_strides, out_strides, maps, es, fill, out, d + 1, in_off + i * in_strides[d]);
    }
  }
}

}  // namespace

void GatherByAxisMaps(const char* src, const std::vector<int64_t>& in_sizes,
                      const std::vector<std::vector<int64_t>>& maps, size_t es, const char* fill, char* dst) {
  if (maps.empty()) {
    CopyElem(dst, src, es);
    return;
  }
  std::vector<int64_t> out_sizes;
  for (const auto& m : maps) {
    if (m.empty()) return;
    out_sizes.push_back(static_cast<int64_t>(m.size()));
  }
  GatherRec(src, Strides(in_sizes), Strides(out_sizes), maps, es, fill, dst, 0, 0);
}

Tensor ScalarOf(DType dtype, double v) {
  Tensor t(dtype, {});
  VisitDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    *t.data<T>() = ConvertScalar<T>(v);
  });
  return t;
}

}  // namespace kiln::dm
