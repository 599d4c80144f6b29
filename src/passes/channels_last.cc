// Channels-last layout, for backends whose convolution and pooling kernels are fastest on NHWC activations
// (oneDNN on x86 runs a depthwise 3x3 convolution 16 times faster on NHWC than on NCHW; see
// docs/PERFORMANCE.md). Run by the builder for CPU plans, after the optimizer's pipeline.
//
// Every Conv, kiln.FusedConv and pool over two spatial dims that the backend has an NHWC kernel for
// becomes kiln.ConvNhwc / kiln.PoolNhwc (src/ops/channels_last.cc), and a kiln.QConv gets `channels_last`
// (8-bit convolutions; per-tensor QuantizeLinear / DequantizeLinear and kiln.QAdd count as element-wise,
// so a quantized network stays NHWC and 8-bit from layer to layer); so does an inference
// BatchNormalization that no convolution absorbed (DenseNet's pre-activations), as a depthwise 1x1
// convolution with its ReLU fused. Layout-agnostic ops take the layout of their neighbours: values
// joined through an element-wise op (rank-4 inputs, broadcasting included, and constants, which are
// permuted with it), a Concat or a Split form a region that has one layout, NHWC if a channels-last node
// reads or writes any value of it. A value needed in the other layout (a graph input or output, an input
// of any other op) gets exactly one Transpose. So transposes sit at the edges of channels-last regions,
// never between two of their layers; a network of convolutions gets one at its input and one at its head.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>

#include "ops/infer.h"
#include "ops/op_util.h"
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {

const std::vector<int64_t> kToNchw = {0, 3, 1, 2};  // NHWC -> NCHW: output dim i is input dim perm[i]
const std::vector<int64_t> kToNhwc = {0, 2, 3, 1};  // NCHW -> NHWC

bool IsRank4(const Value* v) { return v && v->shape() && v->shape()->rank() == 4; }

// (If-chains and lists rather than switches over OpKind: a few ops each, every other op is not one.)
bool IsConv(OpKind op) { return op == OpKind::kConv || op == OpKind::kFusedConv || op == OpKind::kQConv; }
bool IsPool(OpKind op) {
  return op == OpKind::kMaxPool || op == OpKind::kAveragePool || op == OpKind::kGlobalAveragePool ||
         op == OpKind::kGlobalMaxPool;
}

bool IsChannelsLastCandidate(const Node* n, const std::function<bool(const Node&)>& has_kernel) {
  if (!IsConv(n->op()) && !IsPool(n->op())) return false;
  if (!IsRank4(n->input(0)) || n->input(0)->is_constant() || !IsRank4(n->output(0))) return false;
  if (n->num_outputs() > 1 && n->output(1)) return false;  // MaxPool's Indices
  if (n->op() == OpKind::kQConv && n->attrs().GetInt("channels_last", 0) != 0) return false;  // already NHWC
  if (const Value* z = n->op() == OpKind::kFusedConv ? n->input(3) : nullptr; z && (!IsRank4(z) || z->is_constant())) {
    return false;
  }
  return has_kernel(*n);
}

bool IsElementwise(OpKind op) {
  static constexpr OpKind kOps[] = {
      OpKind::kAdd,         OpKind::kSub,       OpKind::kMul,        OpKind::kDiv,      OpKind::kPow,
      OpKind::kMax,         OpKind::kMin,       OpKind::kSum,        OpKind::kMean,     OpKind::kNeg,
      OpKind::kAbs,         OpKind::kSqrt,      OpKind::kExp,        OpKind::kLog,      OpKind::kReciprocal,
      OpKind::kFloor,       OpKind::kCeil,      OpKind::kRound,      OpKind::kSign,     OpKind::kErf,
      OpKind::kIdentity,    OpKind::kCast,      OpKind::kRelu,       OpKind::kLeakyRelu, OpKind::kSigmoid,
      OpKind::kTanh,        OpKind::kHardSigmoid, OpKind::kHardSwish, OpKind::kElu,     OpKind::kSelu,
      OpKind::kCelu,        OpKind::kGelu,      OpKind::kClip,       OpKind::kSoftplus, OpKind::kSoftsign,
      OpKind::kMish,        OpKind::kThresholdedRelu, OpKind::kSwish,   OpKind::kQAdd,
      OpKind::kQuantizeLinear, OpKind::kDequantizeLinear};
  return std::find(std::begin(kOps), std::end(kOps), op) != std::end(kOps);
}

// Whether `n` computes the same thing on permuted inputs (permuting its output): element-wise ops on
// rank-4 values and constants of rank 4 or less (broadcasting is per dim, so permuting every operand the
// same way permutes the result), and Concat / Split of rank-4 values (the axis is renumbered).
bool IsLayoutAgnostic(const Node* n) {
  if (n->num_outputs() == 0) return false;
  for (const Value* o : n->outputs()) {
    if (!IsRank4(o)) return false;
  }
  if (n->op() == OpKind::kConcat) {
    for (const Value* v : n->inputs()) {
      if (!IsRank4(v) || v->is_constant()) return false;
    }
    return n->num_inputs() > 0;
  }
  if (n->op() == OpKind::kSplit) {
    return IsRank4(n->input(0)) && !n->input(0)->is_constant() && (!n->input(1) || n->input(1)->is_constant());
  }
  if (!IsElementwise(n->op()) || n->num_outputs() != 1) return false;
  if (n->op() == OpKind::kQuantizeLinear || n->op() == OpKind::kDequantizeLinear) {
    // Per tensor only: a per-axis scale names an axis (and is not broadcast like an operand).
    for (size_t i = 1; i < n->num_inputs(); ++i) {
      if (n->input(i) && (!n->input(i)->is_constant() || n->input(i)->constant()->numel() != 1)) return false;
    }
  }
  bool any = false;
  for (const Value* v : n->inputs()) {
    if (!v) continue;
    if (v->is_constant()) {
      if (v->constant()->rank() > 4) return false;
      continue;
    }
    if (!IsRank4(v)) return false;
    any = true;
  }
  return any;
}

// The activation inputs of a node the pass rewrites (the ones that change layout with it).
std::vector<size_t> ActivationInputs(const Node* n) {
  std::vector<size_t> out;
  for (size_t i = 0; i < n->num_inputs(); ++i) {
    const Value* v = n->input(i);
    if (!v || v->is_constant()) continue;
    if (n->op() == OpKind::kQConv) {
      if (i == 0) out.push_back(i);  // X; not the parameters
    } else if (IsConv(n->op())) {
      if (i == 0 || i == 3) out.push_back(i);  // X and the residual Z; not W or B
    } else if (IsPool(n->op()) || n->op() == OpKind::kSplit) {
      if (i == 0) out.push_back(i);  // not the split sizes
    } else {
      out.push_back(i);  // element-wise and Concat: every non-constant input is a rank-4 activation
    }
  }
  return out;
}

class UnionFind {
 public:
  int Add() {
    parent_.push_back(static_cast<int>(parent_.size()));
    return parent_.back();
  }
  int Find(int a) {
    while (parent_[a] != a) a = parent_[a] = parent_[parent_[a]];
    return a;
  }
  void Join(int a, int b) { parent_[Find(a)] = Find(b); }

 private:
  std::vector<int> parent_;
};

// An inference BatchNormalization with constant parameters over a rank-4 input, as the equivalent
// depthwise 1x1 kiln.FusedConv (W = gamma / sqrt(var + eps), B = beta - mean * W), with a ReLU that is
// its only reader fused in; kept only if the backend has a channels-last kernel for it. Returns whether
// it rewrote.
bool BatchNormAsDepthwiseConv(Graph& g, Node* bn, const std::function<bool(const Node&)>& has_kernel,
                              PassReport& report) {
  if (bn->op() != OpKind::kBatchNormalization || bn->attrs().GetInt("training_mode", 0) != 0) return false;
  if (!IsRank4(bn->input(0)) || bn->input(0)->dtype() != DType::kFloat32) return false;
  for (size_t i = 1; i < bn->num_outputs(); ++i) {
    if (bn->output(i)) return false;
  }
  const std::optional<Shape>& xs = bn->input(0)->shape();
  if (!xs->dims()[1].is_static()) return false;
  const int64_t c = xs->dims()[1].value();
  std::vector<std::vector<double>> p;
  for (size_t i = 1; i < 5; ++i) {
    const Tensor* t = ConstantOf(bn->input(i));
    if (!t || t->rank() != 1 || t->size(0) != c || !IsFloat(t->dtype())) return false;
    p.push_back(ToDoubles(*t));
  }
  const double eps = bn->attrs().GetFloat("epsilon", 1e-5f);
  Tensor w(DType::kFloat32, {c, 1, 1, 1});
  Tensor b(DType::kFloat32, {c});
  for (int64_t k = 0; k < c; ++k) {
    const double a = p[0][k] / std::sqrt(p[3][k] + eps);
    w.data<float>()[k] = static_cast<float>(a);
    b.data<float>()[k] = static_cast<float>(p[1][k] - p[2][k] * a);
  }
  Value* y = bn->output(0);
  Node* relu = nullptr;
  if (HasSingleUse(y) && !y->is_graph_output() && y->uses()[0].node->op() == OpKind::kRelu) relu = y->uses()[0].node;
  Value* out = relu ? relu->output(0) : y;
  Value* fresh = g.AddValue(g.UniqueValueName(out->name() + "_dw"), DType::kFloat32, out->shape());
  Node* conv = g.AddNode(OpKind::kFusedConv, NodeName(bn), {bn->input(0), NewConstant(g, NodeName(bn) + "_w", std::move(w)),
                                                          NewConstant(g, NodeName(bn) + "_b", std::move(b))},
                         {fresh}, std::max(bn->opset(), 11));
  conv->attrs().Set("group", c);
  conv->attrs().Set("kernel_shape", std::vector<int64_t>{1, 1});
  if (relu) conv->attrs().Set("activation", std::string("Relu"));
  if (!has_kernel(*conv)) {
    g.RemoveNode(conv);
    return false;
  }
  g.ReplaceAllUsesWith(out, fresh);
  if (relu) g.RemoveNode(relu);
  g.RemoveNode(bn);
  fresh->set_name(out->name());
  out->set_name(g.UniqueValueName(out->name() + "_replaced"));
  report.Count("BatchNormalization run as a depthwise 1x1 convolution");
  return true;
}

std::optional<Shape> Permuted(const std::optional<Shape>& s, const std::vector<int64_t>& perm) {
  if (!s) return std::nullopt;
  std::vector<Dim> dims;
  for (int64_t p : perm) dims.push_back(s->dims()[static_cast<size_t>(p)]);
  return Shape(std::move(dims));
}

}  // namespace

Status ChannelsLast(Graph& g, PassReport& report, const std::function<bool(const Node&)>& has_nhwc_kernel) {
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, g.TopologicalOrder());
  // (The BatchNormalizations are collected first: a rewrite removes the ReLU after its BN, which may come
  // later in `order`.)
  std::vector<Node*> bns;
  for (Node* n : order) {
    if (n->op() == OpKind::kBatchNormalization) bns.push_back(n);
  }
  bool rewrote_bn = false;
  for (Node* n : bns) rewrote_bn = BatchNormAsDepthwiseConv(g, n, has_nhwc_kernel, report) || rewrote_bn;
  if (rewrote_bn) {
    g.RemoveUnusedValues();
    KILN_ASSIGN_OR_RETURN(order, g.TopologicalOrder());
  }

  // 1. Regions: values joined by layout-agnostic ops; a region is NHWC if a channels-last node touches it.
  UnionFind regions;
  std::map<int, int> region_of;  // Value::id() -> union-find element
  auto element = [&](const Value* v) {
    auto it = region_of.find(v->id());
    return it != region_of.end() ? it->second : region_of.emplace(v->id(), regions.Add()).first->second;
  };
  std::vector<Node*> convs;
  std::map<int, bool> rewritten;  // Node::id() -> whether the node changes layout
  for (Node* n : order) {
    if (IsChannelsLastCandidate(n, has_nhwc_kernel)) {
      convs.push_back(n);
      rewritten[n->id()] = true;
    } else if (IsLayoutAgnostic(n)) {
      const int out = element(n->output(0));
      for (const Value* o : n->outputs()) regions.Join(element(o), out);
      for (size_t i : ActivationInputs(n)) regions.Join(element(n->input(i)), out);
    }
  }
  std::map<int, bool> nhwc_region;  // root -> true
  for (Node* n : convs) {
    nhwc_region[regions.Find(element(n->output(0)))] = true;
    for (size_t i : ActivationInputs(n)) nhwc_region[regions.Find(element(n->input(i)))] = true;
  }
  if (convs.empty()) return Status::Ok();
  auto is_nhwc = [&](const Value* v) {
    auto it = region_of.find(v->id());
    return it != region_of.end() && nhwc_region.count(regions.Find(it->second)) != 0;
  };
  for (Node* n : order) {
    if (!rewritten.count(n->id()) && IsLayoutAgnostic(n) && is_nhwc(n->output(0))) rewritten[n->id()] = true;
  }

  // 2. Rewrite in topological order. nhwc_of maps a value to its NHWC twin.
  std::map<int, Value*> nhwc_of;
  int64_t transposes = 0;
  auto add_transpose = [&](Value* from, Value* to, const std::vector<int64_t>& perm) {
    Node* t = g.AddNode(OpKind::kTranspose, to->name() + "/transpose", {from}, {to}, 13);
    t->attrs().Set("perm", perm);
    ++transposes;
  };
  auto nhwc_twin = [&](Value* v) -> Value* {
    if (auto it = nhwc_of.find(v->id()); it != nhwc_of.end()) return it->second;
    Value* twin = g.AddValue(g.UniqueValueName(v->name() + "_nhwc"), v->dtype(), Permuted(v->shape(), kToNhwc));
    add_transpose(v, twin, kToNhwc);
    nhwc_of[v->id()] = twin;
    return twin;
  };
  int64_t layers = 0;
  for (Node* n : order) {
    if (!rewritten.count(n->id())) continue;
    std::vector<Value*> inputs = n->inputs();
    for (size_t i : ActivationInputs(n)) inputs[i] = nhwc_twin(n->input(i));
    if (IsElementwise(n->op())) {
      for (Value*& v : inputs) {
        if (!v || !v->is_constant() || v->constant()->numel() == 1) continue;
        v = NewConstant(g, v->name() + "_nhwc", PermuteRank4(*v->constant(), kToNhwc));
      }
    }
    Attributes attrs = n->attrs();
    OpKind op = n->op();
    if (op == OpKind::kQConv) {
      attrs.Set("channels_last", int64_t{1});  // the same op, told its X and Y are NHWC
    } else if (op == OpKind::kConv || op == OpKind::kFusedConv) {
      op = OpKind::kConvNhwc;
    } else if (op == OpKind::kConcat || op == OpKind::kSplit) {
      int64_t axis = attrs.GetInt("axis", 0);
      if (axis < 0) axis += 4;
      const int64_t to_nhwc_axis[] = {0, 3, 1, 2};  // NCHW axis a is NHWC axis to_nhwc_axis[a]
      attrs.Set("axis", to_nhwc_axis[axis]);
    } else if (!IsElementwise(op)) {
      attrs.Set("pool", std::string(n->op_name()));
      op = OpKind::kPoolNhwc;
    }
    const std::string name = n->name();
    const int opset = n->opset();
    const std::vector<Value*> outs = n->outputs();
    std::vector<Value*> twins;
    for (Value* out : outs) {
      twins.push_back(out ? g.AddValue(g.UniqueValueName(out->name() + "_nhwc"), out->dtype(),
                                       Permuted(out->shape(), kToNhwc))
                          : nullptr);
    }
    std::vector<bool> needs_nchw(outs.size(), false);
    for (size_t j = 0; j < outs.size(); ++j) {
      if (!outs[j]) continue;
      needs_nchw[j] = outs[j]->is_graph_output();
      for (const Use& u : outs[j]->uses()) needs_nchw[j] = needs_nchw[j] || !rewritten.count(u.node->id());
    }
    g.RemoveNode(n);
    Node* m = g.AddNode(op, name, std::move(inputs), twins, opset);
    m->attrs() = std::move(attrs);
    for (size_t j = 0; j < outs.size(); ++j) {
      if (!outs[j]) continue;
      nhwc_of[outs[j]->id()] = twins[j];
      if (needs_nchw[j]) add_transpose(twins[j], outs[j], kToNchw);
    }
    ++layers;
  }
  g.RemoveUnusedValues();
  KILN_RETURN_IF_ERROR(InferShapes(g));
  report.Count("layers made channels-last (NHWC)", layers);
  report.Count("transposes at the edges of NHWC regions", transposes);
  return Status::Ok();
}

}  // namespace kiln
