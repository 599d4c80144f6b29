// The channels_last pass (src/passes/channels_last.cc): convolutions and pools become kiln.ConvNhwc /
// kiln.PoolNhwc, layout-agnostic ops between them follow, and transposes appear only at the edges of
// the NHWC regions. Outputs are compared with the original graph's on the reference kernels (the NHWC
// ops' reference kernels are independent of the backends' tactics, which cpu_kernels_test checks).
#include "passes_test_util.h"

namespace kiln::testing {
namespace {

using Ints = std::vector<int64_t>;

// Every candidate has a channels-last kernel.
Status AllNhwc(Graph& g, PassReport& report) {
  return ChannelsLast(g, report, [](const Node&) { return true; });
}

// Every candidate but the nodes named "keep*".
Status AllButKeep(Graph& g, PassReport& report) {
  return ChannelsLast(g, report, [](const Node& n) { return n.name().rfind("keep", 0) != 0; });
}

int64_t Transposes(PassReport& r) { return r.counts["transposes at the edges of NHWC regions"]; }
int64_t Layers(PassReport& r) { return r.counts["layers made channels-last (NHWC)"]; }

Attributes Pads1() { return Attrs({{"pads", Ints{1, 1, 1, 1}}}); }

// A ResNet-style network: stem conv, max pool, a residual block (conv, conv, Add, Relu), global average
// pool, Flatten, Gemm. Everything between the input and the Flatten stays NHWC: two transposes in all.
TEST(ChannelsLastTest, ResidualNetworkHasTransposesOnlyAtItsEdges) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 3, 12, 12});
        Attributes stem = Attrs({{"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 1, 1}}, {"activation", std::string("Relu")}});
        Value* s = b.Op(OpKind::kFusedConv, "stem", {x, b.Random("ws", {8, 3, 3, 3}), b.Random("bs", {8})}, stem);
        Value* p = b.Op(OpKind::kMaxPool, "pool", {s},
                        Attrs({{"kernel_shape", Ints{3, 3}}, {"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 1, 1}}}));
        Value* c1 = b.Op(OpKind::kConv, "c1", {p, b.Random("w1", {8, 8, 3, 3}), b.Random("b1", {8})}, Pads1());
        Value* r1 = b.Op(OpKind::kRelu, "r1", {c1});
        Value* c2 = b.Op(OpKind::kConv, "c2", {r1, b.Random("w2", {8, 8, 3, 3})}, Pads1());
        Value* add = b.Op(OpKind::kAdd, "add", {c2, p});
        Value* r2 = b.Op(OpKind::kRelu, "r2", {add});
        Value* gap = b.Op(OpKind::kGlobalAveragePool, "gap", {r2});
        Value* flat = b.Op(OpKind::kFlatten, "flat", {gap});
        b.Output(b.Op(OpKind::kGemm, "fc", {flat, b.Random("wf", {5, 8}), b.Random("bf", {5})},
                      Attrs({{"transB", int64_t{1}}})));
      },
      AllNhwc, {{"x", RandomInput({2, 3, 12, 12})}}, g, 1e-6);
  EXPECT_EQ(Layers(report), 8);  // stem, pool, c1, r1, c2, add, r2, gap
  EXPECT_EQ(Transposes(report), 2);
  EXPECT_EQ(CountOp(g, OpKind::kTranspose), 2);
  EXPECT_EQ(CountOp(g, OpKind::kConvNhwc), 3);
  EXPECT_EQ(CountOp(g, OpKind::kPoolNhwc), 2);
  EXPECT_EQ(CountOp(g, OpKind::kConv) + CountOp(g, OpKind::kFusedConv) + CountOp(g, OpKind::kMaxPool), 0);
  for (const Node* n : g.nodes()) {
    if (n->op() == OpKind::kPoolNhwc && n->name() == "pool") EXPECT_EQ(n->attrs().GetString("pool"), "MaxPool");
  }
}

// A channel Concat of two convolutions runs on the NHWC last axis; an output that is also read inside
// the region is transposed back once, under its own name.
TEST(ChannelsLastTest, ConcatAxisFollowsAndGraphOutputsKeepTheirNames) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{1, 4, 7, 9});
        Value* a = b.Op(OpKind::kConv, "a", {x, b.Random("wa", {3, 4, 1, 1})});
        Value* c = b.Op(OpKind::kConv, "c", {x, b.Random("wc", {5, 4, 3, 3})}, Pads1());
        Value* cat = b.Op(OpKind::kConcat, "cat", {a, c}, Attrs({{"axis", int64_t{1}}}));
        b.Output(a);  // read by the Concat and by the caller
        b.Output(b.Op(OpKind::kConv, "d", {cat, b.Random("wd", {2, 8, 3, 3})}, Pads1()));
      },
      AllNhwc, {{"x", RandomInput({1, 4, 7, 9})}}, g, 1e-6);
  EXPECT_EQ(Layers(report), 4);
  EXPECT_EQ(Transposes(report), 3);  // x in; a and d out
  for (const Node* n : g.nodes()) {
    if (n->op() == OpKind::kConcat) EXPECT_EQ(n->attrs().GetInt("axis"), 3);
  }
  ASSERT_EQ(g.outputs().size(), 2u);
  EXPECT_EQ(g.outputs()[0]->name(), "a_out");
  EXPECT_EQ(g.outputs()[1]->name(), "d_out");
  EXPECT_EQ(g.outputs()[0]->producer()->op(), OpKind::kTranspose);
}

// A layer the backend cannot run channels-last stays NCHW, with a transpose on each side of it; so does
// an op that is not layout-agnostic (a Softmax over channels).
TEST(ChannelsLastTest, UnsupportedLayersAndBroadcastsStayNchw) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{2, 3, 6, 6});
        Value* c1 = b.Op(OpKind::kConv, "c1", {x, b.Random("w1", {4, 3, 3, 3})}, Pads1());
        Value* k = b.Op(OpKind::kConv, "keep", {c1, b.Random("wk", {4, 4, 1, 1})});
        Value* c2 = b.Op(OpKind::kConv, "c2", {k, b.Random("w2", {4, 4, 3, 3})}, Pads1());
        Value* soft = b.Op(OpKind::kSoftmax, "soft", {c2}, Attrs({{"axis", int64_t{1}}}));
        Value* c3 = b.Op(OpKind::kConv, "c3", {soft, b.Random("w3", {2, 4, 1, 1})});
        b.Output(b.Op(OpKind::kMul, "half", {c3, b.Scalar("h", 0.5f)}));
      },
      AllButKeep, {{"x", RandomInput({2, 3, 6, 6})}}, g, 1e-6);
  EXPECT_EQ(CountOp(g, OpKind::kConv), 1);      // keep
  EXPECT_EQ(CountOp(g, OpKind::kConvNhwc), 3);  // c1, c2, c3
  // x in, c1 out (to keep), keep's output in, c2 out (to soft), soft's output in, half's output out;
  // the scalar Mul follows c3 into NHWC.
  EXPECT_EQ(Transposes(report), 6);
  EXPECT_EQ(Layers(report), 4);
}

// DenseNet's and EfficientNet's patterns stay inside one NHWC region: a BatchNormalization no convolution
// absorbed (run as a depthwise 1x1 convolution with its ReLU), a squeeze-excite Mul that broadcasts
// [N, C, 1, 1] over [N, C, H, W], a per-channel constant, a Split over channels.
TEST(ChannelsLastTest, BatchNormBroadcastsAndSplitStayInTheRegion) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{Dim::Symbol("batch"), 3, 6, 6});
        Value* c = b.Op(OpKind::kConv, "c", {x, b.Random("wc", {6, 3, 3, 3})}, Pads1());
        Value* bn = b.Op(OpKind::kBatchNormalization, "bn",
                         {c, b.Random("gamma", {6}), b.Random("beta", {6}), b.Random("mean", {6}),
                          b.Random("var", {6}, 0.5f, 2.f)});
        Value* r = b.Op(OpKind::kRelu, "r", {bn});
        Value* gap = b.Op(OpKind::kGlobalAveragePool, "gap", {r});
        Value* se = b.Op(OpKind::kConv, "se", {gap, b.Random("wse", {6, 6, 1, 1})});
        Value* gate = b.Op(OpKind::kSigmoid, "gate", {se});
        Value* excited = b.Op(OpKind::kMul, "excite", {r, gate});
        Value* scaled = b.Op(OpKind::kMul, "scale", {excited, b.Random("s", {6, 1, 1})});
        Value* sizes = b.Ints("sizes", {2, 4});
        std::vector<Value*> parts = b.OpN(OpKind::kSplit, "split", {scaled, sizes}, 2, Attrs({{"axis", int64_t{1}}}));
        b.Output(b.Op(OpKind::kConv, "after", {parts[1], b.Random("wa", {2, 4, 3, 3})}, Pads1()));
        b.Output(parts[0]);
      },
      AllNhwc, {{"x", RandomInput({2, 3, 6, 6})}}, g, 1e-5);
  EXPECT_EQ(CountOp(g, OpKind::kBatchNormalization), 0);
  EXPECT_EQ(CountOp(g, OpKind::kRelu), 0);  // fused into the depthwise convolution
  EXPECT_EQ(report.counts["BatchNormalization run as a depthwise 1x1 convolution"], 1);
  EXPECT_EQ(Transposes(report), 3);  // x in; the split's first output and the last convolution's out
  for (const Node* n : g.nodes()) {
    if (n->op() == OpKind::kSplit) EXPECT_EQ(n->attrs().GetInt("axis"), 3);
  }
}

// Nothing to do: a graph without candidates is left exactly as it was.
TEST(ChannelsLastTest, NoCandidatesNoChange) {
  Graph g;
  auto report = CheckPass(
      [](Builder& b) {
        Value* x = b.Input("x", Shape{2, 3, 5});
        Value* c = b.Op(OpKind::kConv, "conv1d", {x, b.Random("w", {4, 3, 3})});
        b.Output(b.Op(OpKind::kRelu, "r", {c}));
      },
      AllNhwc, {{"x", RandomInput({2, 3, 5})}}, g);
  EXPECT_FALSE(report.changed());
  EXPECT_EQ(CountOp(g, OpKind::kConv), 1);
  EXPECT_EQ(CountOp(g, OpKind::kTranspose), 0);
}

}  // namespace
}  // namespace kiln::testing
