"""Builds test models with onnx.helper and seeded random weights (no PyTorch here).

Each builder returns an onnx.ModelProto whose first dim (and the sequence dim where there is one) is a
dim_param, so the same model runs at several batch sizes.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    """Collects nodes and initializers; each op call returns its output name(s)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, array, base="c"):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def op(self, op_type, inputs, num_outputs=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(num_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if num_outputs == 1 else outs

    def weight(self, shape, fan_in):
        # He-style scale keeps activations of order 1 through deep stacks, so errors stay comparable.
        return self.const((self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), "w")

    def conv(self, x, c_in, c_out, k, stride=1, group=1, bias=False):
        w = self.weight((c_out, c_in // group, k, k), c_in // group * k * k)
        inputs = [x, w]
        if bias:
            inputs.append(self.const((self.rng.standard_normal(c_out) * 0.1).astype(np.float32), "b"))
        return self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
                       group=group)

    def bn(self, x, c):
        r = self.rng
        params = [(1 + 0.1 * r.standard_normal(c)), 0.1 * r.standard_normal(c), 0.1 * r.standard_normal(c),
                  r.uniform(0.5, 1.5, c)]
        return self.op("BatchNormalization", [x] + [self.const(p.astype(np.float32), "bn") for p in params],
                       epsilon=1e-5)

    def gemm(self, x, k, n):
        w = self.weight((n, k), k)
        b = self.const((self.rng.standard_normal(n) * 0.1).astype(np.float32), "b")
        return self.op("Gemm", [x, w, b], transB=1)

    def linear(self, x, k, n):
        """x @ W + b as MatMul + Add (how exporters write projections of 3-D activations)."""
        w = self.weight((k, n), k)
        b = self.const((self.rng.standard_normal(n) * 0.1).astype(np.float32), "b")
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def model(self, inputs, outputs, name):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="kiln-tests")
        model.ir_version = 8
        return model


def f32_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def output(name, elem_type=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem_type, shape)


def resnet(seed=0, classes=10):
    """torchvision-style ResNet: 7x7/2 stem, BN, ReLU, 3x3/2 max pool, basic blocks (two 3x3 convs with BN,
    a 1x1/2 conv + BN shortcut where the shape changes), global average pool, Gemm."""
    g = GraphBuilder(seed)
    x = g.op("Relu", [g.bn(g.conv("image", 3, 32, 7, stride=2), 32)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 32
    for c_out, stride, blocks in [(32, 1, 2), (64, 2, 1), (128, 2, 1)]:
        for b in range(blocks):
            s = stride if b == 0 else 1
            y = g.op("Relu", [g.bn(g.conv(x, c, c_out, 3, stride=s), c_out)])
            y = g.bn(g.conv(y, c_out, c_out, 3), c_out)
            shortcut = x if (s == 1 and c == c_out) else g.bn(g.conv(x, c, c_out, 1, stride=s), c_out)
            x = g.op("Relu", [g.op("Add", [y, shortcut])])
            c = c_out
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    g.nodes.append(helper.make_node("Identity", [g.gemm(x, c, classes)], ["logits"]))
    return g.model([f32_input("image", ["batch", 3, 64, 64])], [output("logits", shape=["batch", classes])],
                   "resnet")


def mobilenet_v2(seed=1, classes=10):
    """MobileNetV2-style: Clip(0, 6) as ReLU6, inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1
    linear projection, residual Add when stride 1 and the width is kept)."""
    g = GraphBuilder(seed)
    lo, hi = g.const(np.float32(0.0), "lo"), g.const(np.float32(6.0), "hi")

    def relu6(t):
        return g.op("Clip", [t, lo, hi])

    x = relu6(g.bn(g.conv("image", 3, 16, 3, stride=2), 16))
    c = 16
    for expand, c_out, stride in [(1, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 2), (4, 32, 1)]:
        hidden = c * expand
        y = x
        if expand != 1:
            y = relu6(g.bn(g.conv(y, c, hidden, 1), hidden))
        y = relu6(g.bn(g.conv(y, hidden, hidden, 3, stride=stride, group=hidden), hidden))
        y = g.bn(g.conv(y, hidden, c_out, 1), c_out)
        x = g.op("Add", [x, y]) if (stride == 1 and c == c_out) else y
        c = c_out
    x = relu6(g.bn(g.conv(x, c, 128, 1), 128))
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    g.nodes.append(helper.make_node("Identity", [g.gemm(x, 128, classes)], ["logits"]))
    return g.model([f32_input("image", ["batch", 3, 64, 64])], [output("logits", shape=["batch", classes])],
                   "mobilenet_v2")


def inception_dense(seed=2):
    """An Inception block (1x1, 3x3, 5x5 and pool branches joined by Concat) followed by a DenseNet block
    (each layer's output concatenated to its input), a transition (1x1 conv + 2x2 average pool) and a
    global max pool."""
    g = GraphBuilder(seed)
    x = g.op("Relu", [g.conv("image", 3, 16, 3, bias=True)])
    b1 = g.op("Relu", [g.conv(x, 16, 8, 1, bias=True)])
    b3 = g.op("Relu", [g.conv(g.op("Relu", [g.conv(x, 16, 8, 1, bias=True)]), 8, 12, 3, bias=True)])
    b5 = g.op("Relu", [g.conv(g.op("Relu", [g.conv(x, 16, 4, 1, bias=True)]), 4, 6, 5, bias=True)])
    bp = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    bp = g.op("Relu", [g.conv(bp, 16, 6, 1, bias=True)])
    x = g.op("Concat", [b1, b3, b5, bp], axis=1)
    c = 8 + 12 + 6 + 6
    for _ in range(3):
        y = g.conv(g.op("Relu", [g.bn(x, c)]), c, 8, 3)
        x = g.op("Concat", [x, y], axis=1)
        c += 8
    x = g.conv(g.op("Relu", [g.bn(x, c)]), c, 24, 1)
    x = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    g.nodes.append(helper.make_node("GlobalMaxPool", [x], ["features"]))
    return g.model([f32_input("image", ["batch", 3, 32, 32])],
                   [output("features", shape=["batch", 24, 1, 1])], "inception_dense")


def transformer_encoder(seed=3, d_model=32, heads=4, d_ff=64, layers=2):
    """A BERT-style encoder: per layer, multi-head self-attention (MatMul+Add projections, Reshape/Transpose
    into heads, scaled dot product with an additive padding mask, Softmax), residual, LayerNormalization,
    an FFN with the Erf form of Gelu, residual, LayerNormalization. Batch and sequence dims are symbolic."""
    g = GraphBuilder(seed)
    dh = d_model // heads
    # mask [batch, seq] of 1 (keep) / 0 (pad) -> additive bias [batch, 1, 1, seq] of 0 / -10000.
    keep = g.op("Unsqueeze", ["mask", g.const(np.array([1, 2], np.int64), "axes")])
    pad = g.op("Sub", [g.const(np.float32(1.0), "one"), keep])
    bias = g.op("Mul", [pad, g.const(np.float32(-1e4), "neg")])
    to_heads = g.const(np.array([0, 0, heads, dh], np.int64), "shape")
    from_heads = g.const(np.array([0, 0, d_model], np.int64), "shape")
    scale = g.const(np.float32(1.0 / np.sqrt(dh)), "scale")
    x = "hidden"
    for _ in range(layers):
        q = g.op("Transpose", [g.op("Reshape", [g.linear(x, d_model, d_model), to_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [g.linear(x, d_model, d_model), to_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [g.linear(x, d_model, d_model), to_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), from_heads])
        x = g.op("Add", [x, g.linear(ctx, d_model, d_model)])
        x = layer_norm(g, x, d_model)
        h = g.linear(x, d_model, d_ff)
        erf = g.op("Erf", [g.op("Div", [h, g.const(np.float32(np.sqrt(2.0)), "sqrt2")])])
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const(np.float32(1.0), "one")])]),
                         g.const(np.float32(0.5), "half")])
        x = layer_norm(g, g.op("Add", [x, g.linear(h, d_ff, d_model)]), d_model)
    g.nodes.append(helper.make_node("Identity", [x], ["encoded"]))
    return g.model([f32_input("hidden", ["batch", "seq", d_model]), f32_input("mask", ["batch", "seq"])],
                   [output("encoded", shape=["batch", "seq", d_model])], "transformer_encoder")


def layer_norm(g, x, d):
    gamma = g.const((1 + 0.1 * g.rng.standard_normal(d)).astype(np.float32), "gamma")
    beta = g.const((0.1 * g.rng.standard_normal(d)).astype(np.float32), "beta")
    return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)


def lstm_classifier(seed=4, input_size=8, hidden=16, classes=5):
    """A bidirectional LSTM over [seq, batch, input] whose final hidden states feed a Gemm head."""
    g = GraphBuilder(seed)
    scale = 1.0 / np.sqrt(hidden)
    w = g.const(g.rng.uniform(-scale, scale, (2, 4 * hidden, input_size)).astype(np.float32), "W")
    r = g.const(g.rng.uniform(-scale, scale, (2, 4 * hidden, hidden)).astype(np.float32), "R")
    b = g.const(g.rng.uniform(-scale, scale, (2, 8 * hidden)).astype(np.float32), "B")
    y, y_h = g.op("LSTM", ["sequence", w, r, b], num_outputs=2, direction="bidirectional", hidden_size=hidden)
    g.nodes.append(helper.make_node("Identity", [y], ["states"]))
    h = g.op("Transpose", [y_h], perm=[1, 0, 2])  # [batch, 2, hidden]
    h = g.op("Reshape", [h, g.const(np.array([0, 2 * hidden], np.int64), "shape")])
    g.nodes.append(helper.make_node("Identity", [g.gemm(h, 2 * hidden, classes)], ["logits"]))
    return g.model([f32_input("sequence", ["seq", "batch", input_size])],
                   [output("states", shape=["seq", 2, "batch", hidden]),
                    output("logits", shape=["batch", classes])], "lstm_classifier")


def detector_head(seed=5, top_k=12, size=16):
    """An FPN/SSD-style head: a stride-2 and a stride-4 feature map, the coarse one upsampled with Resize
    (nearest) and concatenated to the fine one, then objectness (Sigmoid) and box convs; TopK over the
    scores and NonMaxSuppression over the decoded boxes."""
    g = GraphBuilder(seed)
    # Few cells (an 8x8 grid for a 16x16 image): with many, some scores are inevitably closer than
    # float32 rounding differences, and the order of TopK and NonMaxSuppression would hinge on them.
    cells = size // 2
    f1 = g.op("Relu", [g.conv("image", 3, 16, 3, stride=2, bias=True)])     # [N,16,cells,cells]
    f2 = g.op("Relu", [g.conv(f1, 16, 16, 3, stride=2, bias=True)])         # [N,16,cells/2,cells/2]
    up = g.op("Resize", [f2, "", g.const(np.array([1, 1, 2, 2], np.float32), "scales")], mode="nearest")
    feat = g.op("Relu", [g.conv(g.op("Concat", [f1, up], axis=1), 32, 16, 3, bias=True)])
    # Logits scaled down so that sigmoid does not saturate: near-equal scores would make the order of
    # TopK and NonMaxSuppression depend on rounding.
    logits = g.op("Mul", [g.conv(feat, 16, 1, 1, bias=True), g.const(np.float32(0.25), "s")])
    scores = g.op("Sigmoid", [logits])                                      # [N,1,cells,cells]
    scores = g.op("Reshape", [scores, g.const(np.array([0, 1, -1], np.int64), "shape")])  # [N,1,cells^2]
    flat = g.op("Reshape", [scores, g.const(np.array([0, -1], np.int64), "shape")])
    values, indices = g.op("TopK", [flat, g.const(np.array([top_k], np.int64), "k")], num_outputs=2, axis=-1)
    g.nodes.append(helper.make_node("Identity", [values], ["top_scores"]))
    g.nodes.append(helper.make_node("Identity", [indices], ["top_indices"]))
    # Boxes: a cell's centre plus a predicted size, as (y1, x1, y2, x2) in cell units.
    size = g.op("Exp", [g.op("Mul", [g.conv(feat, 16, 2, 1, bias=True), g.const(np.float32(0.5), "s")])])
    grid = np.stack(np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")).astype(np.float32) + 0.5
    centre = g.const(grid[None], "grid")                                    # [1,2,cells,cells]
    half = g.op("Mul", [size, g.const(np.float32(1.5), "half")])
    boxes = g.op("Concat", [g.op("Sub", [centre, half]), g.op("Add", [centre, half])], axis=1)
    boxes = g.op("Transpose", [g.op("Reshape", [boxes, g.const(np.array([0, 4, -1], np.int64), "shape")])],
                 perm=[0, 2, 1])                                             # [N,cells^2,4]
    nms_inputs = [boxes, scores, g.const(np.array([20], np.int64), "max"),
                  g.const(np.array([0.5], np.float32), "iou"), g.const(np.array([0.55], np.float32), "thr")]
    g.nodes.append(helper.make_node("NonMaxSuppression", nms_inputs, ["selected"]))
    return g.model([f32_input("image", ["batch", 3, size, size])],
                   [output("top_scores", shape=["batch", top_k]),
                    output("top_indices", TensorProto.INT64, ["batch", top_k]),
                    output("selected", TensorProto.INT64, ["num_selected", 3])], "detector_head")
