// The small pattern-matching and rewriting vocabulary every fusion is written in.
//
// A fusion reads as its pattern: start from an anchor node, walk to producers and consumers with
// ProducerOf / SoleConsumer (which also check the op kind and that intermediate values have no other
// use), check constant inputs with ConstantOf / ScalarNear and attributes with AttrIntIs, then call
// ReplaceNodes with the matched nodes and the new op. Example (x * sigmoid(x) -> Swish(x)):
//
//   Node* sig = ProducerOf(mul->input(1), OpKind::kSigmoid);          // single-use by default
//   if (!sig || sig->input(0) != mul->input(0)) return false;
//   ReplaceNodes(g, {sig, mul}, OpKind::kSwish, mul->name(), {sig->input(0)}, mul->output(0), {});
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// ---- matching ------------------------------------------------------------------------------------------

// Whether `v` has exactly one use and is not a graph output: the value can disappear inside a fusion.
bool HasSingleUse(const Value* v);
// v's producer if it is of kind `op` and (when `single_use`) v has a single use; else null.
Node* ProducerOf(const Value* v, OpKind op, bool single_use = true);
// The one node reading `v` if v has a single use and that node is of kind `op`; else null.
Node* SoleConsumer(const Value* v, OpKind op);
// v's constant tensor, or null.
const Tensor* ConstantOf(const Value* v);
// The value of a one-element numeric constant (any rank), or nullopt.
std::optional<double> ScalarConstant(const Value* v);
// Whether `v` is a one-element constant within `rel_tol` (relative) of `want`.
bool ScalarNear(const Value* v, double want, double rel_tol = 1e-4);
// The input of binary node `n` that is not input `i` (i in {0, 1}).
inline Value* OtherInput(const Node* n, size_t i) { return n->input(1 - i); }
// For a commutative binary node: the index i of the first input for which pred(input(i)) holds, or -1.
int FindInput(const Node* n, const std::function<bool(const Value*)>& pred);
// Integer attribute `name` (default `fallback`) equals `want`.
inline bool AttrIntIs(const Node* n, const std::string& name, int64_t want, int64_t fallback = 0) {
  return n->attrs().GetInt(name, fallback) == want;
}
// For a binary node: the index of the input that is a one-element constant near `want`, or -1.
int ScalarInput(const Node* n, double want, double rel_tol = 1e-4);
// Clip's (min, max) when they are constants (attributes before opset 11, inputs after; absent = +-inf).
std::optional<std::pair<double, double>> ClipBounds(const Node* clip);
// A Reduce* node's axes normalized to [0, rank) and sorted, if constant and the input rank is known
// (absent axes: all dims).
std::optional<std::vector<int64_t>> ReduceAxes(const Node* n);
// Whether `act` is an activation a fused Conv/Gemm can apply; if so sets `activation`,
// `activation_alpha` and `activation_beta` in `attrs` (see src/ops/fused.cc for the names).
bool FusableActivation(const Node* act, Attributes& attrs);
// Whether the value of `v` is computed (transitively) from an output of `n`.
bool DependsOn(const Value* v, const Node* n);
// Whether both values have known, equal shapes (symbolic dims equal by name; no unknown dims).
bool SameKnownShape(const Value* a, const Value* b);
// Weaker: equal ranks and no two dims known to differ (unknown dims match anything). For epilogue fusions
// whose fused kernels check at run time that the extra operand broadcasts to the output without growing it
// (kiln.FusedGemm, kiln.Attention), so a wrong guess is an error, never a wrong result.
bool CompatibleShapes(const Value* a, const Value* b);

// Byte-exact keys (dtype, sizes and bytes; every attribute) for finding equal constants and nodes.
std::string TensorKey(const Tensor& t);
std::string AttributesKey(const Attributes& attrs);

// ---- rewriting -----------------------------------------------------------------------------------------

// The node's name, or "#<id>" for unnamed nodes (for reports).
std::string NodeName(const Node* n);
// Removes `old` (each once; null entries skipped) and adds `op` reading `inputs` and producing `output`
// (normally an output of the last old node, so graph outputs and names are kept), with `attrs` and
// `opset`; validates the new node and runs its shape function. Intermediate values are left unused;
// RemoveDeadNodes / Graph::RemoveUnusedValues clean them up.
Expected<Node*> ReplaceNodes(Graph& g, const std::vector<Node*>& old, OpKind op, std::string name,
                             std::vector<Value*> inputs, std::vector<Value*> outputs, Attributes attrs,
                             int opset);
// Re-creates `n` with other outputs (same op, name, inputs, attributes, opset).
Expected<Node*> ReplaceOutputs(Graph& g, Node* n, std::vector<Value*> outputs);
// Makes every reader of `out` (the output of `n`) read `in` instead and removes `n`. When `out` is a graph
// output, `in`'s producer is re-created to produce `out` instead (keeping the output's name); returns false
// (and changes nothing) when that is impossible.
Expected<bool> Bypass(Graph& g, Node* n, Value* in, Value* out);
// Validates `n` against its schema and runs its shape function.
Status InferNode(Node* n);
// Removes nodes none of whose outputs is used or a graph output, repeatedly. Returns how many.
size_t RemoveDeadNodes(Graph& g);
// Calls fn on every node in topological order, sweeping again until a sweep changes nothing; fn returns
// whether it rewrote the graph. Nodes removed during a sweep are not visited.
Status RewriteSweep(Graph& g, const std::function<Expected<bool>(Node*)>& fn);
// A new constant value named after `base`.
Value* NewConstant(Graph& g, const std::string& base, Tensor t);
// A new float tensor of `dtype` from doubles (dtype must be a float type).
Tensor FloatTensor(DType dtype, const std::vector<int64_t>& sizes, const std::vector<double>& values);
// A float constant's elements as doubles (empty if `t` is not a float tensor).
std::vector<double> ToDoubles(const Tensor& t);

}  // namespace kiln
