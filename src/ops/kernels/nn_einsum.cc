// Einsum: any equation over letters and '...' (broadcast), with repeated letters within an operand (a
// diagonal) and summed letters. The reference kernel walks every combination of label values once.
#include <algorithm>
#include <array>
#include <map>

#include "ops/kernels/nn_common.h"
#include "ops/kernels/nn_groups.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

constexpr int kEllipsis = -1;
constexpr int kNumLetters = 52;  // 'A'..'Z' then 'a'..'z': ids in ASCII order, as NumPy sorts them

// The equation split into terms: each a list of letter ids with kEllipsis for '...'.
struct EinsumTerms {
  std::vector<std::vector<int>> inputs;
  std::optional<std::vector<int>> output;  // absent: implicit output
};

Expected<std::vector<int>> ParseTerm(const std::string& term) {
  std::vector<int> out;
  bool seen_ellipsis = false;
  for (size_t i = 0; i < term.size(); ++i) {
    const char ch = term[i];
    if (ch == '.') {
      if (term.compare(i, 3, "...") != 0 || seen_ellipsis) {
        return InvalidArgument("einsum term '" + term + "' has a '.' that is not a single '...'");
      }
      seen_ellipsis = true;
      out.push_back(kEllipsis);
      i += 2;
    } else if (ch >= 'A' && ch <= 'Z') {
      out.push_back(ch - 'A');
    } else if (ch >= 'a' && ch <= 'z') {
      out.push_back(26 + (ch - 'a'));
    } else {
      return InvalidArgument("einsum term '" + term + "' has the character '" + std::string(1, ch) +
                             "'; only letters and '...' are allowed");
    }
  }
  return out;
}

Expected<EinsumTerms> ParseEquation(const std::string& equation) {
  std::string eq;
  for (char ch : equation) {
    if (ch != ' ') eq.push_back(ch);
  }
  EinsumTerms t;
  std::string lhs = eq;
  const size_t arrow = eq.find("->");
  if (arrow != std::string::npos) {
    lhs = eq.substr(0, arrow);
    KILN_ASSIGN_OR_RETURN(std::vector<int> out, ParseTerm(eq.substr(arrow + 2)));
    for (size_t i = 0; i < out.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (out[i] == out[j])
          return InvalidArgument("einsum output '" + eq.substr(arrow + 2) + "' repeats a label");
      }
    }
    t.output = std::move(out);
  }
  size_t start = 0;
  while (true) {
    const size_t comma = lhs.find(',', start);
    KILN_ASSIGN_OR_RETURN(std::vector<int> term, ParseTerm(lhs.substr(start, comma - start)));
    t.inputs.push_back(std::move(term));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return t;
}

// The equation resolved against operand ranks: every dim of every operand and of the output gets a label
// (letters 0..51, ellipsis dims 52 + j, right-aligned across operands).
struct EinsumPlan {
  std::vector<std::vector<int>> operands;
  std::vector<int> output;
  std::vector<int> summed;  // labels not in the output
};

Expected<EinsumPlan> ResolveEquation(const std::string& equation, const std::vector<size_t>& ranks) {
  KILN_ASSIGN_OR_RETURN(EinsumTerms t, ParseEquation(equation));
  if (t.inputs.size() != ranks.size()) {
    return InvalidArgument("einsum equation '" + equation + "' has " + std::to_string(t.inputs.size()) +
                           " input terms but the node has " + std::to_string(ranks.size()) + " inputs");
  }
  size_t ell_rank = 0;
  std::vector<size_t> ell_of(ranks.size(), 0);
  for (size_t i = 0; i < ranks.size(); ++i) {
    const size_t letters = t.inputs[i].size() - std::count(t.inputs[i].begin(), t.inputs[i].end(), kEllipsis);
    const bool has_ell = letters != t.inputs[i].size();
    if (ranks[i] < letters || (!has_ell && ranks[i] != letters)) {
      return InvalidArgument("einsum operand " + std::to_string(i) + " has rank " + std::to_string(ranks[i]) +
                             " but its term names " + std::to_string(letters) + " dims");
    }
    ell_of[i] = ranks[i] - letters;
    ell_rank = std::max(ell_rank, ell_of[i]);
  }
  EinsumPlan plan;
  std::array<int, kNumLetters> count{};
  for (size_t i = 0; i < ranks.size(); ++i) {
    std::vector<int> labels;
    for (int l : t.inputs[i]) {
      if (l == kEllipsis) {
        for (size_t j = ell_rank - ell_of[i]; j < ell_rank; ++j)
          labels.push_back(kNumLetters + static_cast<int>(j));
      } else {
        labels.push_back(l);
        ++count[static_cast<size_t>(l)];
      }
    }
    plan.operands.push_back(std::move(labels));
  }
  std::vector<bool> in_output(kNumLetters + ell_rank, false);
  auto add_ellipsis = [&] {
    for (size_t j = 0; j < ell_rank; ++j) plan.output.push_back(kNumLetters + static_cast<int>(j));
  };
  if (t.output) {
    for (int l : *t.output) {
      if (l == kEllipsis) {
        add_ellipsis();
      } else if (count[static_cast<size_t>(l)] == 0) {
        return InvalidArgument("einsum output label '" +
                               std::string(1, static_cast<char>(l < 26 ? 'A' + l : 'a' + l - 26)) +
                               "' appears in no input");
      } else {
        plan.output.push_back(l);
      }
    }
  } else {
    add_ellipsis();
    for (int l = 0; l < kNumLetters; ++l) {
      if (count[static_cast<size_t>(l)] == 1) plan.output.push_back(l);
    }
  }
  for (int l : plan.output) in_output[static_cast<size_t>(l)] = true;
  for (int l = 0; l < kNumLetters + static_cast<int>(ell_rank); ++l) {
    const bool used = l < kNumLetters ? count[static_cast<size_t>(l)] > 0 : true;
    if (used && !in_output[static_cast<size_t>(l)]) plan.summed.push_back(l);
  }
  return plan;
}

Status ValidateEinsum(const Node& node) { return ParseEquation(node.attrs().GetString("equation")).status(); }

Status InferEinsum(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  const DType dt = ctx.input_dtype(0);
  if (dt == DType::kBool) return Unsupported("Einsum of bool tensors");
  std::vector<size_t> ranks;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return InvalidArgument("input " + std::to_string(i) + " is missing");
    KILN_RETURN_IF_ERROR(RequireSameDType(ctx, i, ("input " + std::to_string(i)).c_str()));
    if (!ctx.input_shape(i)) {
      KILN_RETURN_IF_ERROR(ParseEquation(ctx.attrs().GetString("equation")).status());
      ctx.set_output(0, dt, std::nullopt);
      return Status::Ok();
    }
    ranks.push_back(ctx.input_shape(i)->rank());
  }
  KILN_ASSIGN_OR_RETURN(EinsumPlan plan, ResolveEquation(ctx.attrs().GetString("equation"), ranks));
  // A label's dim: its static size other than 1 if any operand has one, else a symbolic dim, else 1.
  std::map<int, Dim> dims;
  auto rank_of = [](const Dim& d) {
    return d.is_static() ? (d.value() == 1 ? 1 : 3) : (d.is_symbolic() ? 2 : 0);
  };
  for (size_t i = 0; i < ranks.size(); ++i) {
    const Shape& s = *ctx.input_shape(i);
    for (size_t d = 0; d < s.rank(); ++d) {
      const int l = plan.operands[i][d];
      auto [it, inserted] = dims.emplace(l, s[d]);
      if (inserted) continue;
      if (rank_of(s[d]) == 3 && rank_of(it->second) == 3 && s[d] != it->second) {
        return InvalidArgument("einsum label sizes disagree: " + it->second.ToString() + " vs " +
                               s[d].ToString());
      }
      if (rank_of(s[d]) > rank_of(it->second)) it->second = s[d];
    }
  }
  std::vector<Dim> out;
  for (int l : plan.output) out.push_back(dims[l]);
  ctx.set_output(0, dt, Shape(std::move(out)));
  return Status::Ok();
}

template <typename T>
void EinsumKernel(const std::vector<const Tensor*>& ins, const std::vector<std::vector<int64_t>>& strides,
                  const std::vector<int64_t>& loop_sizes, int64_t out_n, Tensor& y) {
  using A = std::conditional_t<std::is_integral_v<T>, T, double>;
  std::vector<A> acc(static_cast<size_t>(out_n), A(0));
  const int64_t total = NumElements(loop_sizes);
  MultiIndexer it(loop_sizes, strides);
  const size_t n_in = ins.size();
  std::vector<const T*> ptr(n_in);
  for (size_t i = 0; i < n_in; ++i) ptr[i] = ins[i]->data<T>();
  for (int64_t step = 0; step < total; ++step, it.Next()) {
    A prod = A(1);
    for (size_t i = 0; i < n_in; ++i)
      prod = MulAddWrap<A>(A(0), prod, static_cast<A>(ComputeT<T>(ptr[i][it.offset(i)])));
    A& a = acc[static_cast<size_t>(it.offset(n_in))];
    a = MulAddWrap<A>(a, prod, A(1));
  }
  T* dst = y.data<T>();
  for (int64_t i = 0; i < out_n; ++i) dst[i] = ConvertScalar<T>(acc[static_cast<size_t>(i)]);
}

// Two-operand contractions without diagonals or broadcasting are a batched matrix product: gather A into
// [batch, m, k] and B into [batch, k, n], multiply with the shared GEMM, scatter into the output order.
// Returns false (having done nothing) for equations of another form.
template <typename T>
bool TryEinsumAsMatMul(const std::vector<const Tensor*>& ins, const EinsumPlan& plan,
                       const std::map<int, int64_t>& size, Tensor& y) {
  using C = ComputeT<T>;
  if (ins.size() != 2) return false;
  std::map<int, std::array<int64_t, 3>> stride;  // label -> stride in A, B, output (0: absent)
  std::map<int, std::array<bool, 3>> has;
  for (size_t i = 0; i < 2; ++i) {
    const std::vector<int64_t> st = Strides(ins[i]->sizes());
    for (size_t d = 0; d < ins[i]->rank(); ++d) {
      const int l = plan.operands[i][d];
      if (has[l][i] || ins[i]->size(d) != size.at(l)) return false;  // a diagonal or a broadcast dim
      has[l][i] = true;
      stride[l][i] = st[d];
    }
  }
  const std::vector<int64_t> out_st = Strides(y.sizes());
  for (size_t d = 0; d < plan.output.size(); ++d) {
    has[plan.output[d]][2] = true;
    stride[plan.output[d]][2] = out_st[d];
  }
  std::vector<int> batch, ms, ns, ks;
  for (const auto& [l, h] : has) {
    if (h[0] && h[1]) {
      (h[2] ? batch : ks).push_back(l);
    } else if (h[2]) {
      (h[0] ? ms : ns).push_back(l);
    } else {
      return false;  // a label summed within one operand
    }
  }
  auto sizes_of = [&](std::initializer_list<const std::vector<int>*> groups) {
    std::vector<int64_t> out;
    for (const auto* g : groups) {
      for (int l : *g) out.push_back(size.at(l));
    }
    return out;
  };
  auto strides_of = [&](std::initializer_list<const std::vector<int>*> groups, size_t which) {
    std::vector<int64_t> out;
    for (const auto* g : groups) {
      for (int l : *g) out.push_back(stride[l][which]);
    }
    return out;
  };
  const int64_t nb = NumElements(sizes_of({&batch})), m = NumElements(sizes_of({&ms}));
  const int64_t n = NumElements(sizes_of({&ns})), k = NumElements(sizes_of({&ks}));
  auto gather = [&](size_t which, std::initializer_list<const std::vector<int>*> order) {
    const std::vector<int64_t> sz = sizes_of(order);
    std::vector<C> buf(static_cast<size_t>(NumElements(sz)));
    MultiIndexer it(sz, {strides_of(order, which)});
    const T* src = ins[which]->data<T>();
    for (size_t i = 0; i < buf.size(); ++i, it.Next()) buf[i] = static_cast<C>(src[it.offset(0)]);
    return buf;
  };
  const std::vector<C> a = gather(0, {&batch, &ms, &ks});
  const std::vector<C> b = gather(1, {&batch, &ks, &ns});
  std::vector<C> c(static_cast<size_t>(nb * m * n), C(0));
  for (int64_t i = 0; i < nb; ++i) {
    GemmAccumulate<C>(m, n, k, a.data() + i * m * k, k, 1, b.data() + i * k * n, n, c.data() + i * m * n, n);
  }
  MultiIndexer it(sizes_of({&batch, &ms, &ns}), {strides_of({&batch, &ms, &ns}, 2)});
  T* dst = y.data<T>();
  for (size_t i = 0; i < c.size(); ++i, it.Next()) dst[it.offset(0)] = T(c[i]);
  return true;
}

Status RunEinsum(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, 1));
  std::vector<const Tensor*> ins;
  std::vector<size_t> ranks;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.input(i)) return InvalidArgument("input " + std::to_string(i) + " is missing");
    if (ctx.input(i)->dtype() != ctx.input(0)->dtype())
      return InvalidArgument("inputs have different dtypes");
    ins.push_back(ctx.input(i));
    ranks.push_back(ctx.input(i)->rank());
  }
  if (ins.empty()) return InvalidArgument("Einsum needs at least one input");
  KILN_ASSIGN_OR_RETURN(EinsumPlan plan, ResolveEquation(ctx.attrs().GetString("equation"), ranks));
  std::map<int, int64_t> size;
  for (size_t i = 0; i < ins.size(); ++i) {
    for (size_t d = 0; d < ranks[i]; ++d) {
      const int l = plan.operands[i][d];
      const int64_t s = ins[i]->size(d);
      auto [it, inserted] = size.emplace(l, s);
      if (!inserted && it->second != s) {
        if (it->second == 1) {
          it->second = s;
        } else if (s != 1) {
          return InvalidArgument("einsum label sizes disagree (" + std::to_string(it->second) + " vs " +
                                 std::to_string(s) + ") in operand " + std::to_string(i));
        }
      }
    }
  }
  std::vector<int> loop = plan.output;
  loop.insert(loop.end(), plan.summed.begin(), plan.summed.end());
  std::vector<int64_t> loop_sizes, out_sizes;
  for (int l : loop) loop_sizes.push_back(size[l]);
  for (int l : plan.output) out_sizes.push_back(size[l]);
  // Per-operand strides along the loop labels (a label repeated within an operand adds its strides: the
  // diagonal); broadcast size-1 dims read stride 0. The output comes last.
  std::vector<std::vector<int64_t>> strides;
  for (size_t i = 0; i < ins.size(); ++i) {
    const std::vector<int64_t> st = Strides(ins[i]->sizes());
    std::vector<int64_t> s(loop.size(), 0);
    for (size_t d = 0; d < ranks[i]; ++d) {
      if (ins[i]->size(d) == 1) continue;
      const size_t pos =
          static_cast<size_t>(std::find(loop.begin(), loop.end(), plan.operands[i][d]) - loop.begin());
      s[pos] += st[d];
    }
    strides.push_back(std::move(s));
  }
  const std::vector<int64_t> out_st = Strides(out_sizes);
  std::vector<int64_t> os(loop.size(), 0);
  for (size_t d = 0; d < plan.output.size(); ++d) os[d] = out_st[d];
  strides.push_back(std::move(os));
  KILN_ASSIGN_OR_RETURN(Tensor * y, ctx.AllocateOutput(0, ins[0]->dtype(), out_sizes));
  if (CheckedNumElements(loop_sizes) == std::nullopt) return OutOfRange("einsum loop is too large");
  if (y->numel() == 0 || NumElements(loop_sizes) == 0) return Status::Ok();
  if (!VisitNumericDType(ins[0]->dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (!std::is_same_v<T, bool>) {
          if (!TryEinsumAsMatMul<T>(ins, plan, size, *y))
            EinsumKernel<T>(ins, strides, loop_sizes, y->numel(), *y);
        }
      })) {
    return Unsupported("Einsum of dtype " + std::string(DTypeName(ins[0]->dtype())));
  }
  return Status::Ok();
}

}  // namespace

void RegisterNnEinsumOps(OpRegistry& r) {
  r.Register(OpSchema{.op = OpKind::kEinsum,
                      .min_inputs = 1,
                      .max_inputs = -1,
                      .attrs = {{"equation", AttrKind::kString, true}},
                      .min_opset = 12,
                      .validate = ValidateEinsum,
                      .infer = InferEinsum,
                      .run = RunEinsum});
}

}  // namespace kiln
