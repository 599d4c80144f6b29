#include "ops/op_util.h"

#include <cstring>

#include <set>

#include "ops/registry.h"

namespace kiln {

Expected<int64_t> NormalizeAxis(int64_t axis, int64_t rank, const char* what) {
  if (axis < -rank || axis >= rank || (rank == 0 && axis != 0 && axis != -1)) {
    return InvalidArgument(std::string(what) + " " + std::to_string(axis) + " is out of range for rank " +
                           std::to_string(rank));
  }
  if (rank == 0) return 0;
  return axis < 0 ? axis + rank : axis;
}

Expected<std::vector<int64_t>> NormalizeAxes(const std::vector<int64_t>& axes, int64_t rank, const char* what) {
  std::vector<int64_t> out;
  std::set<int64_t> seen;
  for (int64_t a : axes) {
    KILN_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(a, rank, what));
    if (!seen.insert(n).second) return InvalidArgument(std::string(what) + " has duplicate axis " + std::to_string(a));
    out.push_back(n);
  }
  return out;
}

Expected<std::vector<int64_t>> BroadcastSizes(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const size_t r = std::max(a.size(), b.size());
  std::vector<int64_t> out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else {
      return InvalidArgument("shapes " + SizesToString(a) + " and " + SizesToString(b) + " cannot be broadcast");
    }
  }
  return out;
}

Expected<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.rank(), b.rank());
  std::vector<Dim> out(r);
  for (size_t i = 0; i < r; ++i) {
    const Dim da = i < r - a.rank() ? Dim(1) : a[i - (r - a.rank())];
    const Dim db = i < r - b.rank() ? Dim(1) : b[i - (r - b.rank())];
    if (da.is_static() && db.is_static()) {
      if (da.value() == db.value() || db.value() == 1) out[i] = da;
      else if (da.value() == 1) out[i] = db;
      else return InvalidArgument("shapes " + a.ToString() + " and " + b.ToString() + " cannot be broadcast");
    } else if (da.is_static() && da.value() == 1) {
      out[i] = db;
    } else if (db.is_static() && db.value() == 1) {
      out[i] = da;
    } else if (da.is_static()) {
      out[i] = da;
    } else if (db.is_static()) {
      out[i] = db;
    } else if (da == db) {
      out[i] = da;
    } else {
      out[i] = Dim();
    }
  }
  return Shape(std::move(out));
}

Expected<std::optional<Shape>> BroadcastInputShapes(const InferContext& ctx) {
  std::optional<Shape> result;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    const auto& s = ctx.input_shape(i);
    if (!s) return std::optional<Shape>();
    if (!result) {
      result = *s;
    } else {
      KILN_ASSIGN_OR_RETURN(Shape b, BroadcastShapes(*result, *s));
      result = std::move(b);
    }
  }
  return result;
}

std::vector<int64_t> Strides(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> s(sizes.size(), 1);
  for (size_t i = sizes.size(); i-- > 1;) s[i - 1] = s[i] * sizes[i];
  return s;
}

std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in_sizes, const std::vector<int64_t>& out_sizes) {
  std::vector<int64_t> out(out_sizes.size(), 0);
  const std::vector<int64_t> in_strides = Strides(in_sizes);
  const size_t off = out_sizes.size() - in_sizes.size();
  for (size_t i = 0; i < in_sizes.size(); ++i) {
    out[off + i] = in_sizes[i] == 1 ? 0 : in_strides[i];
  }
  return out;
}

MultiIndexer::MultiIndexer(std::vector<int64_t> sizes, std::vector<std::vector<int64_t>> strides)
    : sizes_(std::move(sizes)), strides_(std::move(strides)), index_(sizes_.size(), 0), offsets_(strides_.size(), 0) {}

void MultiIndexer::Next() {
  for (size_t d = sizes_.size(); d-- > 0;) {
    if (++index_[d] < sizes_[d]) {
      for (size_t k = 0; k < strides_.size(); ++k) offsets_[k] += strides_[k][d];
      return;
    }
    for (size_t k = 0; k < strides_.size(); ++k) offsets_[k] -= strides_[k][d] * (sizes_[d] - 1);
    index_[d] = 0;
  }
}

std::optional<std::vector<int64_t>> IntsFromInputOrAttr(const KernelContext& ctx, size_t input_index,
                                                        const std::string& attr) {
  if (const Tensor* t = ctx.input(input_index)) return t->ToInt64Vector();
  if (ctx.attrs().Has(attr)) return ctx.attrs().GetInts(attr);
  return std::nullopt;
}

std::optional<std::vector<int64_t>> IntsFromInputOrAttr(const InferContext& ctx, size_t input_index,
                                                        const std::string& attr) {
  if (input_index < ctx.num_inputs() && ctx.has_input(input_index)) {
    if (const Tensor* t = ctx.input_constant(input_index)) return t->ToInt64Vector();
    return std::nullopt;
  }
  if (ctx.attrs().Has(attr)) return ctx.attrs().GetInts(attr);
  return std::nullopt;
}

Status InferSameAsInput0(InferContext& ctx) {
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  return Status::Ok();
}

Tensor PermuteRank4(const Tensor& t, const std::vector<int64_t>& perm) {
  std::vector<int64_t> in(4 - std::min<size_t>(t.rank(), 4), 1);
  in.insert(in.end(), t.sizes().begin(), t.sizes().end());
  std::vector<int64_t> out_sizes;
  for (int64_t p : perm) out_sizes.push_back(in[static_cast<size_t>(p)]);
  Tensor out(t.dtype(), out_sizes);
  const int64_t strides[4] = {in[1] * in[2] * in[3], in[2] * in[3], in[3], 1};
  const size_t es = DTypeSize(t.dtype());
  const char* src = static_cast<const char*>(t.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  int64_t k = 0;
  for (int64_t a = 0; a < out_sizes[0]; ++a) {
    for (int64_t b = 0; b < out_sizes[1]; ++b) {
      for (int64_t c = 0; c < out_sizes[2]; ++c) {
        for (int64_t d = 0; d < out_sizes[3]; ++d, ++k) {
          const int64_t from = a * strides[perm[0]] + b * strides[perm[1]] + c * strides[perm[2]] + d * strides[perm[3]];
          std::memcpy(dst + k * es, src + from * es, es);
        }
      }
    }
  }
  return out;
}

Expected<Tensor> RunAs(OpKind op, const Node& node, std::vector<const Tensor*> inputs) {
  static const KernelLimits kLimits;
  const OpSchema* s = OpRegistry::Global().Find(op);
  if (!s || !s->run) return Unsupported(std::string(OpKindName(op)) + " has no reference kernel");
  KernelContext sub(node, std::move(inputs), kLimits);
  KILN_RETURN_IF_ERROR(s->run(sub));
  if (sub.outputs().empty() || sub.outputs()[0].empty()) return Internal("kernel produced no output");
  return std::move(sub.outputs()[0]);
}

}  // namespace kiln
