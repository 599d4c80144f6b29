// Quantized layers from the QDQ form. A model quantized by onnxruntime's quantize_static (QuantFormat.QDQ),
// TensorRT's or NNCF's tools keeps float ops and brackets them with DequantizeLinear on the inputs and
// QuantizeLinear on the output; this pass turns each bracket that an 8-bit kernel can run into one node:
//   Q(act(Conv(DQ(x), DQ(W), B))) -> kiln.QConv(x, W, B)     W a constant, B a float constant or the
//                                                            DQ of an i32 constant (the form tools write);
//   act(Conv(DQ(x), DQ(W), B))    -> kiln.QConv, f32 output  where no Q follows (TensorRT / NNCF style)
//   Q(MatMul(DQ(a), DQ(W)) + B)   -> kiln.QMatMul(a, W, B)   W a constant [K, N], B a float constant [N]
//                                                            (optional); without the Q, an f32 output
//   Q(act(Add(DQ(a), DQ(b))))     -> kiln.QAdd(a, b)         a, b the same shape
//   Q(op(DQ(x)))                  -> op(x)                   op MaxPool, Reshape, Flatten, Transpose,
//                                                            Squeeze, Unsqueeze or Concat (every input a DQ);
//                                                            Q and the DQs with the same scale and zero point
// act: none, Relu or Clip (onnxruntime drops the ReLU a Q with zero point 0 already applies; other tools
// keep it). Activations are 8-bit per tensor; weights 8-bit per tensor or per output channel. The ops are
// defined as the sub-graphs they replace (src/ops/quantized.cc), so a QDQ pair the pass does not fuse
// still runs as written. (Constant folding leaves Q and DQ nodes alone, so DQ(W) is still there.)
#include <cmath>
#include <cstring>

#include "ops/op_util.h"
#include "passes/match.h"
#include "passes/pass.h"

namespace kiln {
namespace {


// Whether `v` is a constant with `n` elements (n < 0: any count).
bool ConstWithCount(const Value* v, int64_t n) {
  const Tensor* t = ConstantOf(v);
  return t && (n < 0 || t->numel() == n);
}

// A per-tensor DequantizeLinear of an 8-bit activation: x's producer, with one-element constant scale and
// zero point (any number of readers; the DQ stays for the others).
Node* ActivationDq(const Value* x) {
  Node* dq = ProducerOf(x, OpKind::kDequantizeLinear, /*single_use=*/false);
  if (!dq || !Is8BitInteger(dq->input(0)->dtype()) || dq->input(0)->is_constant()) return nullptr;
  if (dq->attrs().GetInt("block_size", 0) != 0) return nullptr;
  if (!ConstWithCount(dq->input(1), 1) || ConstantOf(dq->input(1))->dtype() != DType::kFloat32) return nullptr;
  if (dq->input(2) && !ConstWithCount(dq->input(2), 1)) return nullptr;
  return dq;
}

// The ReLU or Clip that is the only reader of `y`, its parameters set in `act`; or null.
Node* FusedActivation(Value* y, Attributes& act) {
  Node* next = HasSingleUse(y) ? y->uses()[0].node : nullptr;
  if (!next || (next->op() != OpKind::kRelu && next->op() != OpKind::kClip)) return nullptr;
  return FusableActivation(next, act) ? next : nullptr;
}

// The per-tensor QuantizeLinear that is the only reader of `y`, with constant 8-bit parameters; or null.
Node* OutputQ(Value* y) {
  if (!HasSingleUse(y)) return nullptr;
  Node* next = y->uses()[0].node;
  if (next->op() != OpKind::kQuantizeLinear || next->attrs().GetInt("block_size", 0) != 0) return nullptr;
  if (!ConstWithCount(next->input(1), 1) || ConstantOf(next->input(1))->dtype() != DType::kFloat32) return nullptr;
  if (!next->input(2) || !ConstWithCount(next->input(2), 1) || !Is8BitInteger(next->input(2)->dtype())) return nullptr;
  if (!Is8BitInteger(next->output(0)->dtype())) return nullptr;
  return next;
}

void CopyActivation(const Attributes& from, Attributes& to) {
  for (const char* k : {"activation", "activation_alpha", "activation_beta"}) {
    if (const AttrValue* v = from.Find(k)) to.Set(k, *v);
  }
}

// The float bias of a Conv: a float constant, or DQ(i32 constant, constant scale, zero point 0) computed
// here. Returns false if B is something else.
bool FloatBias(Graph& g, Value* b, Value** out) {
  if (!b) {
    *out = nullptr;
    return true;
  }
  if (const Tensor* t = ConstantOf(b); t && t->dtype() == DType::kFloat32) {
    *out = b;
    return true;
  }
  Node* dq = ProducerOf(b, OpKind::kDequantizeLinear, /*single_use=*/false);
  if (!dq) return false;
  const Tensor* q = ConstantOf(dq->input(0));
  const Tensor* s = ConstantOf(dq->input(1));
  const Tensor* z = dq->input(2) ? ConstantOf(dq->input(2)) : nullptr;
  if (!q || !s || q->dtype() != DType::kInt32 || q->rank() != 1 || s->dtype() != DType::kFloat32) return false;
  if (dq->input(2) && !z) return false;
  if (s->numel() != 1 && s->numel() != q->numel()) return false;
  if (dq->attrs().GetInt("block_size", 0) != 0 || (s->numel() != 1 && dq->attrs().GetInt("axis", 1) != 0 &&
                                                   dq->attrs().GetInt("axis", 1) != -1)) {
    return false;
  }
  Expected<Tensor> f = RunAs(OpKind::kDequantizeLinear, *dq, {q, s, z});
  if (!f.ok()) return false;
  *out = NewConstant(g, b->name() + "_f32", std::move(*f));
  return true;
}

Expected<bool> FuseConv(Graph& g, Node* conv, PassReport& report) {
  if (conv->op() != OpKind::kConv || conv->num_outputs() != 1) return false;
  Node* dqx = ActivationDq(conv->input(0));
  Node* dqw = ProducerOf(conv->input(1), OpKind::kDequantizeLinear, /*single_use=*/false);
  if (!dqx || !dqw) return false;
  const Tensor* w = ConstantOf(dqw->input(0));
  const Tensor* ws = ConstantOf(dqw->input(1));
  if (!w || !Is8BitInteger(w->dtype()) || w->rank() < 3 || !ws || ws->dtype() != DType::kFloat32) return false;
  if (dqw->attrs().GetInt("block_size", 0) != 0) return false;
  if (ws->numel() != 1) {
    const int64_t axis = dqw->attrs().GetInt("axis", 1);
    if (ws->rank() != 1 || ws->numel() != w->size(0) || (axis != 0 && axis != -static_cast<int64_t>(w->rank()))) {
      return false;
    }
  }
  if (dqw->input(2) && !ConstantOf(dqw->input(2))) return false;
  Value* bias = nullptr;
  if (!FloatBias(g, conv->input(2), &bias)) return false;
  Attributes act;
  Node* act_node = FusedActivation(conv->output(0), act);
  Value* activated = act_node ? act_node->output(0) : conv->output(0);
  // Without a Q after it the model keeps this convolution's output in float (TensorRT's and NNCF's Q/DQ
  // placement): an 8-bit convolution with an f32 output.
  Node* q = OutputQ(activated);
  Value* out = q ? q->output(0) : activated;

  Attributes attrs = conv->attrs();
  CopyActivation(act, attrs);
  std::vector<Value*> inputs = {dqx->input(0), dqx->input(1), dqx->input(2), dqw->input(0), dqw->input(1),
                                dqw->input(2), q ? q->input(1) : nullptr, q ? q->input(2) : nullptr, bias};
  while (!inputs.back()) inputs.pop_back();
  std::vector<std::string> names = {NodeName(dqx), NodeName(dqw), NodeName(conv)};
  if (act_node) names.push_back(NodeName(act_node));
  if (q) names.push_back(NodeName(q));
  KILN_ASSIGN_OR_RETURN(Node * f, ReplaceNodes(g, {conv, act_node, q}, OpKind::kQConv, NodeName(conv), inputs,
                                               {out}, std::move(attrs), conv->opset()));
  report.Count(q ? "DQ -> Conv -> Q run as an 8-bit convolution (kiln.QConv)"
                 : "DQ -> Conv run as an 8-bit convolution with a float output (kiln.QConv)");
  report.Fused(f->name(), "kiln.QConv", names);
  return true;
}

// A per-tensor or per-column DQ of a 2-D 8-bit constant [K, N] with constant zero points (a MatMul's
// weights as onnxruntime writes them: axis 1, zero points 0, the only kind the 8-bit CPU kernel takes; the
// reference kernel takes any); or null.
Node* MatMulWeightsDq(const Value* b) {
  Node* dq = ProducerOf(b, OpKind::kDequantizeLinear, /*single_use=*/false);
  if (!dq || dq->attrs().GetInt("block_size", 0) != 0) return nullptr;
  const Tensor* w = ConstantOf(dq->input(0));
  const Tensor* ws = ConstantOf(dq->input(1));
  if (!w || !Is8BitInteger(w->dtype()) || w->rank() != 2 || !ws || ws->dtype() != DType::kFloat32) return nullptr;
  if (ws->numel() != 1) {
    const int64_t axis = dq->attrs().GetInt("axis", 1);
    if (ws->rank() != 1 || ws->numel() != w->size(1) || (axis != 1 && axis != -1)) return nullptr;
  }
  if (dq->input(2) && !ConstantOf(dq->input(2))) return nullptr;
  return dq;
}

// The Add of a float constant [N] (or [1, N]) that is the only reader of `y`, with the constant in *bias;
// or null.
Node* BiasAdd(Graph& g, Value* y, int64_t n, Value** bias) {
  Node* add = HasSingleUse(y) ? y->uses()[0].node : nullptr;
  if (!add || add->op() != OpKind::kAdd || add->num_inputs() != 2) return nullptr;
  Value* other = add->input(0) == y ? add->input(1) : add->input(0);
  const Tensor* t = ConstantOf(other);
  if (!t || t->dtype() != DType::kFloat32 || t->numel() != n || t->size(t->rank() - 1) != n) return nullptr;
  // [N] or [1, .., 1, N] of a rank no higher than Y's: adding it never broadcasts Y up.
  if (!y->shape() || t->rank() > y->shape()->rank()) return nullptr;
  if (t->rank() != 1) {
    Tensor flat(DType::kFloat32, {n});
    std::memcpy(flat.raw_data(), t->raw_data(), t->nbytes());
    other = NewConstant(g, other->name() + "_1d", std::move(flat));
  }
  *bias = other;
  return add;
}

// DQ(A) x DQ(B) -> MatMul [-> Add(bias)] [-> Q] with B a constant [K, N]: kiln.QMatMul (f32 output
// without the Q). MatMuls of two activations (attention's) stay float.
Expected<bool> FuseMatMul(Graph& g, Node* mm, PassReport& report) {
  if (mm->op() != OpKind::kMatMul) return false;
  Node* dqa = ActivationDq(mm->input(0));
  Node* dqb = MatMulWeightsDq(mm->input(1));
  if (!dqa || !dqb || !mm->input(0)->shape() || mm->input(0)->shape()->rank() < 2) return false;
  const Tensor* w = ConstantOf(dqb->input(0));
  Value* bias = nullptr;
  Node* add = BiasAdd(g, mm->output(0), w->size(1), &bias);
  Value* summed = add ? add->output(0) : mm->output(0);
  Node* q = OutputQ(summed);
  Value* out = q ? q->output(0) : summed;
  std::vector<Value*> inputs = {dqa->input(0), dqa->input(1), dqa->input(2), dqb->input(0), dqb->input(1),
                                dqb->input(2), q ? q->input(1) : nullptr, q ? q->input(2) : nullptr, bias};
  while (!inputs.back()) inputs.pop_back();
  std::vector<std::string> names = {NodeName(dqa), NodeName(dqb), NodeName(mm)};
  if (add) names.push_back(NodeName(add));
  if (q) names.push_back(NodeName(q));
  KILN_ASSIGN_OR_RETURN(Node * f, ReplaceNodes(g, {mm, add, q}, OpKind::kQMatMul, NodeName(mm), inputs, {out},
                                               Attributes{}, mm->opset()));
  report.Count(q ? "DQ -> MatMul -> Q run as an 8-bit matrix product (kiln.QMatMul)"
                 : "DQ -> MatMul run as an 8-bit matrix product with a float output (kiln.QMatMul)");
  report.Fused(f->name(), "kiln.QMatMul", names);
  return true;
}

Expected<bool> FuseAdd(Graph& g, Node* add, PassReport& report) {
  if (add->op() != OpKind::kAdd) return false;
  Node* da = ActivationDq(add->input(0));
  Node* db = ActivationDq(add->input(1));
  if (!da || !db || !SameKnownShape(add->input(0), add->input(1)) || !SameKnownShape(add->input(0), add->output(0))) {
    return false;
  }
  Attributes act;
  Node* act_node = FusedActivation(add->output(0), act);
  Node* q = OutputQ(act_node ? act_node->output(0) : add->output(0));
  if (!q) return false;
  if (act_node && act.GetString("activation", "") != "Relu") return false;
  Attributes attrs;
  CopyActivation(act, attrs);
  std::vector<std::string> names = {NodeName(da), NodeName(db), NodeName(add)};
  if (act_node) names.push_back(NodeName(act_node));
  names.push_back(NodeName(q));
  KILN_ASSIGN_OR_RETURN(
      Node * f, ReplaceNodes(g, {add, act_node, q}, OpKind::kQAdd, NodeName(add),
                             {da->input(0), da->input(1), da->input(2), db->input(0), db->input(1), db->input(2),
                              q->input(1), q->input(2)},
                             {q->output(0)}, std::move(attrs), add->opset()));
  report.Count("DQ -> Add -> Q run as an 8-bit addition (kiln.QAdd)");
  report.Fused(f->name(), "kiln.QAdd", names);
  return true;
}

// Ops that only move or select values (and MaxPool: dequantizing is monotonic for a positive scale).
// Between a DQ and a Q with equal parameters they give back exactly the 8-bit values they were given, so
// Q(op(DQ(x))) is op(x) on the 8-bit tensor. Inputs after the first (Reshape's shape, Squeeze's axes)
// stay; every data input of a Concat must come from a DQ with those parameters.
bool MovesValues(OpKind op) {
  return op == OpKind::kMaxPool || op == OpKind::kReshape || op == OpKind::kFlatten || op == OpKind::kTranspose ||
         op == OpKind::kSqueeze || op == OpKind::kUnsqueeze || op == OpKind::kConcat;
}

// Whether the per-tensor parameters of `dq` equal (scale, zero point, type).
bool SameParams(const Node* dq, double scale, int64_t zero, DType type) {
  const int64_t z = dq->input(2) ? ConstantOf(dq->input(2))->GetAsInt64(0) : 0;
  return dq->input(0)->dtype() == type && ConstantOf(dq->input(1))->GetAsDouble(0) == scale && z == zero;
}

Expected<bool> FuseDataMovement(Graph& g, Node* n, PassReport& report) {
  if (!MovesValues(n->op()) || n->num_outputs() < 1 || !n->output(0)) return false;
  for (size_t i = 1; i < n->num_outputs(); ++i) {
    if (n->output(i)) return false;  // MaxPool's Indices
  }
  Node* q = OutputQ(n->output(0));
  if (!q) return false;
  const double scale = ConstantOf(q->input(1))->GetAsDouble(0);
  const int64_t zero = ConstantOf(q->input(2))->GetAsInt64(0);
  const DType type = q->output(0)->dtype();
  if (!(scale > 0)) return false;
  const size_t data_inputs = n->op() == OpKind::kConcat ? n->num_inputs() : 1;
  std::vector<Value*> inputs = n->inputs();
  std::vector<std::string> names;
  for (size_t i = 0; i < data_inputs; ++i) {
    Node* dq = ActivationDq(n->input(i));
    if (!dq || !SameParams(dq, scale, zero, type)) return false;
    inputs[i] = dq->input(0);
    names.push_back(NodeName(dq));
  }
  names.push_back(NodeName(n));
  names.push_back(NodeName(q));
  const std::string op_name(n->op_name());  // (n is gone after ReplaceNodes)
  // (MaxPool takes 8-bit inputs from opset 12; the others have taken every type all along.)
  const int opset = n->op() == OpKind::kMaxPool ? std::max(n->opset(), 12) : n->opset();
  KILN_ASSIGN_OR_RETURN(Node * f, ReplaceNodes(g, {n, q}, n->op(), NodeName(n), inputs, {q->output(0)}, n->attrs(),
                                               opset));
  report.Count("DQ -> " + op_name + " -> Q run on the 8-bit values");
  report.Fused(f->name(), op_name, names);
  return true;
}

// DQ of constants that no 8-bit layer took (the weights of layers left in float: a classifier's Gemm) is
// computed once here rather than on every run.
Expected<bool> FoldConstantDq(Graph& g, Node* dq, PassReport& report) {
  if (dq->op() != OpKind::kDequantizeLinear || dq->output(0)->is_graph_output()) return false;
  std::vector<const Tensor*> ins;
  for (const Value* v : dq->inputs()) {
    if (v && !v->is_constant()) return false;
    ins.push_back(v ? v->constant() : nullptr);
  }
  KILN_ASSIGN_OR_RETURN(Tensor t, RunAs(OpKind::kDequantizeLinear, *dq, std::move(ins)));
  Value* out = dq->output(0);
  Value* folded = NewConstant(g, out->name(), std::move(t));
  g.ReplaceAllUsesWith(out, folded);
  g.RemoveNode(dq);
  report.Count("DequantizeLinear of a constant computed at build time (weights of layers left in float)");
  return true;
}

}  // namespace

Status FuseQdq(Graph& g, PassReport& report) {
  KILN_RETURN_IF_ERROR(RewriteSweep(g, [&](Node* n) -> Expected<bool> {
    KILN_ASSIGN_OR_RETURN(bool conv, FuseConv(g, n, report));
    if (conv) return true;
    KILN_ASSIGN_OR_RETURN(bool mm, FuseMatMul(g, n, report));
    if (mm) return true;
    KILN_ASSIGN_OR_RETURN(bool add, FuseAdd(g, n, report));
    if (add) return true;
    return FuseDataMovement(g, n, report);
  }));
  // The fused layers' DQ(W) are dead now; what is left of DQ on constants feeds float layers.
  RemoveDeadNodes(g);
  return RewriteSweep(g, [&](Node* n) { return FoldConstantDq(g, n, report); });
}

}  // namespace kiln
