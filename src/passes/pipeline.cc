#include "passes/pipeline.h"

namespace kiln {

const std::vector<PassInfo>& OptimizerPasses() {
  static const std::vector<PassInfo> kPasses = {
      {"constant_folding", ConstantFolding,
       "computes nodes whose inputs are all constant, static dims of shape sub-graphs, Reshape targets"},
      {"elimination", Elimination,
       "removes Identity, Dropout, no-op Reshape/Transpose/Cast, cancelling Transposes, duplicates, dead nodes"},
      {"fuse_qdq", FuseQdq,
       "DQ -> Conv/MatMul/Add/MaxPool -> Q brackets of quantized models into 8-bit kiln.QConv / kiln.QMatMul / "
       "kiln.QAdd / MaxPool"},
      {"fuse_decomposed", FuseDecomposed,
       "rebuilds Gelu, LayerNormalization, Swish and HardSwish from their decomposed forms"},
      {"fold_into_conv", FoldIntoConv,
       "folds BatchNormalization and per-channel Mul/Add into Conv/ConvTranspose/Gemm weights and bias"},
      {"fuse_attention", FuseAttention, "MatMul -> scale -> mask Add -> Softmax -> MatMul into kiln.Attention"},
      {"fuse_conv", FuseConv, "Conv + residual Add + activation into kiln.FusedConv"},
      {"fuse_gemm", FuseGemm, "MatMul/Gemm + bias Add + residual Add + activation into kiln.FusedGemm"},
      {"horizontal_fusion", HorizontalFusion,
       "merges sibling Convs / GEMMs with one input and constant weights into one wider layer + Split"},
      {"cleanup", Elimination, "elimination again, after fusion"},
      {"concat_elimination", ConcatElimination,
       "finds Concats whose producers can write into their slices (recorded for the memory planner)"},
  };
  return kPasses;
}

Expected<PipelineReport> RunPipeline(Graph& graph, const PipelineOptions& options) {
  for (const std::string& name : options.disabled) {
    bool known = false;
    for (const PassInfo& p : OptimizerPasses()) known = known || name == p.name;
    if (!known) {
      std::string list;
      for (const PassInfo& p : OptimizerPasses()) list += std::string(list.empty() ? "" : ", ") + p.name;
      return InvalidArgument("unknown pass '" + name + "' (passes: " + list + ")");
    }
  }
  PipelineReport report;
  report.layers_before = CountLayers(graph);
  if (options.verify) {
    Status st = VerifyGraph(graph);
    if (!st.ok()) return st.WithContext("before optimization");
  }
  // Original node names behind each fused node, keyed by node name (deterministic).
  std::map<std::string, std::vector<std::string>> origins;
  for (const PassInfo& p : OptimizerPasses()) {
    if (options.disabled.count(p.name)) continue;
    PassReport r;
    r.pass = p.name;
    r.layers_before = CountLayers(graph);
    Status st = p.run(graph, r);
    if (!st.ok()) return st.WithContext("pass " + std::string(p.name));
    graph.RemoveUnusedValues();
    r.layers_after = CountLayers(graph);
    if (options.verify) {
      st = VerifyGraph(graph);
      if (!st.ok()) return st.WithContext("after pass " + std::string(p.name));
    }
    for (const FusedGroup& g : r.groups) {
      std::vector<std::string> expanded;
      for (const std::string& s : g.sources) {
        auto it = origins.find(s);
        if (it == origins.end()) {
          expanded.push_back(s);
        } else {
          expanded.insert(expanded.end(), it->second.begin(), it->second.end());
        }
      }
      origins[g.result] = std::move(expanded);
    }
    for (const InPlaceConcat& c : r.in_place_concats) report.in_place_concats.push_back(c);
    if (options.after_pass) options.after_pass(p, graph);
    report.passes.push_back(std::move(r));
  }
  report.layers_after = CountLayers(graph);
  KILN_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.TopologicalOrder());
  for (const Node* n : order) {
    auto it = origins.find(n->name());
    if (it != origins.end() && it->second.size() > 1) {
      report.fused.push_back({n->name(), std::string(n->op_name()), it->second});
    }
  }
  return report;
}

}  // namespace kiln
