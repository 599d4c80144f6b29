// Kiln's channels-last ops, made by the channels_last pass (src/passes/channels_last.cc) for backends whose
// kernels are fastest on NHWC activations (oneDNN on x86: see docs/PERFORMANCE.md):
//   kiln.ConvNhwc  Y = act(Conv(X, W, B) + Z)  X [N, H, W, C]; Z and Y [N, OH, OW, M]; W stays [M, C/group,
//                  KH, KW] and B [M]. Attributes: kiln.FusedConv's (Conv's plus the fused activation).
//   kiln.PoolNhwc  Y = pool(X)  X [N, H, W, C], Y [N, OH, OW, C]; `pool` names the pool (MaxPool,
//                  AveragePool, GlobalAveragePool, GlobalMaxPool) and the other attributes are that op's.
// Two spatial dims only (rank-4 activations). The shape functions and reference kernels permute to NCHW,
// hand the work to the NCHW op (kiln.FusedConv or the named pool) on a scratch node, and permute back: the
// same definition as the op they replace by construction, and slow (the fast kernels are the backends').
#include "ops/kernels/nn_common.h"
#include "ops/op_util.h"
#include "ops/registry.h"

namespace kiln {
namespace {

const std::vector<int64_t> kToNchw = {0, 3, 1, 2};  // NHWC -> NCHW: out dim i is in dim perm[i]
const std::vector<int64_t> kToNhwc = {0, 2, 3, 1};  // NCHW -> NHWC

constexpr const char* kPools[] = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"};

// The NCHW op a channels-last node stands for.
Expected<OpKind> InnerOp(const Node& node) {
  if (node.op() == OpKind::kConvNhwc) return OpKind::kFusedConv;
  const std::string pool = node.attrs().GetString("pool", "");
  for (const char* p : kPools) {
    if (pool == p) return *OpKindFromName(p);
  }
  return InvalidArgument("kiln.PoolNhwc: unknown pool '" + pool + "'");
}

// Inputs that are activations in NHWC (the others, weights and bias, keep their layout).
bool IsActivationInput(const Node& node, size_t i) { return i == 0 || (node.op() == OpKind::kConvNhwc && i == 3); }

template <typename S>
S Permute(const S& sizes, const std::vector<int64_t>& perm) {
  S out;
  for (int64_t p : perm) out.push_back(sizes[static_cast<size_t>(p)]);
  return out;
}

// A one-node graph holding the NCHW form of `node`: its activation inputs and output permuted to NCHW,
// its other inputs as they are, its attributes less `pool`.
struct NchwNode {
  Graph graph;
  Node* node = nullptr;
};

Expected<std::unique_ptr<NchwNode>> MakeNchwNode(const Node& node) {
  KILN_ASSIGN_OR_RETURN(OpKind op, InnerOp(node));
  auto s = std::make_unique<NchwNode>();
  std::vector<Value*> inputs;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const Value* v = node.input(i);
    if (!v) {
      inputs.push_back(nullptr);
      continue;
    }
    std::optional<Shape> shape = v->shape();
    if (shape && IsActivationInput(node, i)) {
      if (shape->rank() != 4) return InvalidArgument("input " + std::to_string(i) + " must have rank 4, got " + shape->ToString());
      shape = Shape(Permute(shape->dims(), kToNchw));
    }
    inputs.push_back(s->graph.AddValue("in" + std::to_string(i), v->dtype(), shape));
  }
  std::vector<Value*> outputs;
  for (size_t i = 0; i < node.num_outputs(); ++i) {
    outputs.push_back(node.output(i) ? s->graph.AddValue("out" + std::to_string(i), DType::kFloat32) : nullptr);
  }
  s->node = s->graph.AddNode(op, node.name(), std::move(inputs), std::move(outputs), node.opset());
  s->node->attrs() = node.attrs();
  s->node->attrs().Erase("pool");
  return s;
}

Status Validate(const Node& node) {
  KILN_ASSIGN_OR_RETURN(OpKind op, InnerOp(node));
  if (node.op() == OpKind::kPoolNhwc && node.num_outputs() > 1 && node.output(1)) {
    return InvalidArgument("kiln.PoolNhwc has no Indices output");
  }
  const OpSchema* inner = OpRegistry::Global().Find(op);
  if (!inner) return Internal("no schema for the NCHW op");
  if (!inner->validate) return Status::Ok();
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<NchwNode> s, MakeNchwNode(node));
  return inner->validate(*s->node);
}

Status Infer(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(RequireInputs(ctx, ctx.node().op() == OpKind::kConvNhwc ? 2 : 1));
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<NchwNode> s, MakeNchwNode(ctx.node()));
  const OpSchema* inner = OpRegistry::Global().Find(s->node->op());
  if (!inner || !inner->infer) return Internal("no shape function for the NCHW op");
  InferContext sub(*s->node);
  KILN_RETURN_IF_ERROR(inner->infer(sub));
  const Value* y = s->node->output(0);
  std::optional<Shape> shape = y->shape();
  if (shape && shape->rank() != 4) return Internal("the NCHW op's output is not rank 4");
  if (shape) shape = Shape(Permute(shape->dims(), kToNhwc));
  ctx.set_output(0, y->dtype(), shape);
  return Status::Ok();
}

Status Run(KernelContext& ctx) {
  static const KernelLimits kLimits;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<NchwNode> s, MakeNchwNode(ctx.node()));
  std::vector<Tensor> permuted(ctx.num_inputs());
  std::vector<const Tensor*> inputs(ctx.num_inputs(), nullptr);
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor* t = ctx.input(i);
    if (t && IsActivationInput(ctx.node(), i)) {
      if (t->rank() != 4) return InvalidArgument("input " + std::to_string(i) + " must have rank 4, got " + t->Description());
      permuted[i] = PermuteRank4(*t, kToNchw);
      t = &permuted[i];
    }
    inputs[i] = t;
  }
  const OpSchema* inner = OpRegistry::Global().Find(s->node->op());
  if (!inner || !inner->run) return Internal("no reference kernel for the NCHW op");
  KernelContext sub(*s->node, std::move(inputs), kLimits);
  KILN_RETURN_IF_ERROR(inner->run(sub));
  if (sub.outputs().empty() || sub.outputs()[0].empty()) return Internal("the NCHW kernel produced no output");
  ctx.SetOutput(0, PermuteRank4(sub.outputs()[0], kToNhwc));
  return Status::Ok();
}

}  // namespace

void RegisterChannelsLastOps(OpRegistry& r) {
  const OpSchema* fused = r.Find(OpKind::kFusedConv);
  r.Register(OpSchema{.op = OpKind::kConvNhwc,
                      .min_inputs = 2,
                      .max_inputs = 4,
                      .attrs = fused ? fused->attrs : std::vector<AttrSpec>{},
                      .validate = Validate,
                      .infer = Infer,
                      .run = Run});
  std::vector<AttrSpec> pool_attrs = {{"pool", AttrKind::kString, true}};
  for (OpKind op : {OpKind::kMaxPool, OpKind::kAveragePool}) {
    if (const OpSchema* s = r.Find(op)) {
      for (AttrSpec a : s->attrs) {
        a.required = false;  // required by the NCHW op's own check, not for every pool
        bool seen = false;
        for (const AttrSpec& b : pool_attrs) seen = seen || b.name == a.name;
        if (!seen) pool_attrs.push_back(a);
      }
    }
  }
  r.Register(OpSchema{.op = OpKind::kPoolNhwc,
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .min_outputs = 1,
                      .max_outputs = 1,
                      .attrs = pool_attrs,
                      .validate = Validate,
                      .infer = Infer,
                      .run = Run});
}

}  // namespace kiln
