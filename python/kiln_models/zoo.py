"""Architectures for the optimizer report, built with onnx.helper and seeded random weights, in the form
torch.onnx.export (opset 13) emits them from eval-mode models exported without BN folding:
BatchNormalization kept, Gelu as its Erf formula, LayerNorm decomposed (ReduceMean/Sub/Pow/ReduceMean/Add/
Sqrt/Div/Mul/Add), SiLU as x * Sigmoid(x), ReLU6 as Clip(0, 6), x.view(x.size(0), -1) as a Shape ->
Gather -> Unsqueeze -> Concat -> Reshape chain, a dynamic batch dim ("batch", and "seq" for BERT).

    python -m kiln_models.zoo OUT_DIR [--models resnet50,googlenet,...] [--bert-layers 12] [--size 224]

Weights are random (seeded): the models are for layer counts and for checking that optimization leaves the
outputs unchanged, not for accuracy.
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


class Net:
    """A small graph builder: unique names, initializers, nodes in export order."""

    def __init__(self, name, seed=0):
        self.name = name
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.rng = np.random.default_rng(seed)
        self.count = {}

    def uid(self, base):
        n = self.count.get(base, 0)
        self.count[base] = n + 1
        return f"{base}_{n}"

    def const(self, base, array):
        name = self.uid(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, base, shape, fan_in):
        return self.const(base, (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))

    def op(self, op_type, inputs, n_out=1, **attrs):
        base = op_type
        outs = [self.uid(base + "_out") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.uid(base), **attrs))
        return outs[0] if n_out == 1 else outs

    def scalar(self, v, dtype=np.float32):
        return self.const("c", np.array(v, dtype=dtype))

    def ints(self, v):
        return self.const("i", np.array(v, dtype=np.int64))

    # ---- CNN pieces ----
    def conv(self, x, cin, cout, k, stride=1, pad=None, group=1, bias=False):
        pad = k // 2 if pad is None else pad
        ks = k if isinstance(k, tuple) else (k, k)
        pads = pad if isinstance(pad, tuple) else (pad, pad)
        w = self.weight("conv.weight", (cout, cin // group, *ks), cin // group * ks[0] * ks[1])
        ins = [x, w] + ([self.const("conv.bias", np.zeros(cout, np.float32) + 0.01)] if bias else [])
        return self.op("Conv", ins, kernel_shape=list(ks), strides=[stride, stride], group=group,
                       pads=[pads[0], pads[1], pads[0], pads[1]], dilations=[1, 1])

    def bn(self, x, c, eps=1e-5):
        r = self.rng
        p = [self.const("bn.weight", r.uniform(0.5, 1.5, c).astype(np.float32)),
             self.const("bn.bias", r.uniform(-0.2, 0.2, c).astype(np.float32)),
             self.const("bn.running_mean", r.uniform(-0.2, 0.2, c).astype(np.float32)),
             self.const("bn.running_var", r.uniform(0.5, 1.5, c).astype(np.float32))]
        return self.op("BatchNormalization", [x] + p, epsilon=eps, momentum=0.9)

    def relu(self, x):
        return self.op("Relu", [x])

    def relu6(self, x):
        return self.op("Clip", [x, self.scalar(0.0), self.scalar(6.0)])

    def silu(self, x):
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def cbr(self, x, cin, cout, k, stride=1, pad=None, group=1, act="relu", eps=1e-5):
        y = self.bn(self.conv(x, cin, cout, k, stride, pad, group), cout, eps)
        return {"relu": self.relu, "relu6": self.relu6, "silu": self.silu, None: lambda v: v}[act](y)

    def view_flat(self, x):
        """x.view(x.size(0), -1) as torch.onnx exports it."""
        n = self.op("Gather", [self.op("Shape", [x]), self.const("i", np.array(0, np.int64))], axis=0)
        target = self.op("Concat", [self.op("Unsqueeze", [n, self.ints([0])]), self.ints([-1])], axis=0)
        return self.op("Reshape", [x, target])

    def linear2d(self, x, cin, cout):
        return self.op("Gemm", [x, self.weight("fc.weight", (cout, cin), cin),
                                self.const("fc.bias", np.zeros(cout, np.float32))], alpha=1.0, beta=1.0, transB=1)

    def model(self):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiln zoo")
        m.ir_version = 8
        return m


def image_input(net, size):
    net.inputs.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size]))
    return "input"


def logits_output(net, x, classes=1000):
    net.outputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", classes]))


# ---- ResNet-50 (torchvision: Bottleneck with stride on the 3x3) --------------------------------------------
def resnet50(size=224):
    net = Net("resnet50", 50)
    x = image_input(net, size)
    x = net.cbr(x, 3, 64, 7, 2, 3)
    x = net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for b in range(blocks):
            s = stride if b == 0 else 1
            y = net.cbr(x, cin, width, 1)
            y = net.cbr(y, width, width, 3, s)
            y = net.cbr(y, width, width * 4, 1, act=None)
            skip = net.cbr(x, cin, width * 4, 1, s, 0, act=None) if b == 0 else x
            x = net.relu(net.op("Add", [y, skip]))
            cin = width * 4
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])], axis=1)
    logits_output(net, net.linear2d(x, 2048, 1000))
    return net.model()


# ---- GoogLeNet / Inception v1 (torchvision, BasicConv2d = conv + BN(eps 1e-3) + ReLU) ----------------------
def googlenet(size=224):
    net = Net("googlenet", 22)
    bc = lambda x, cin, cout, k, s=1, p=None: net.cbr(x, cin, cout, k, s, p, eps=1e-3)
    x = image_input(net, size)
    x = bc(x, 3, 64, 7, 2, 3)
    pool = lambda v: net.op("MaxPool", [v], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    x = pool(x)
    x = bc(x, 64, 64, 1)
    x = bc(x, 64, 192, 3)
    x = pool(x)

    def inception(x, cin, c1, c3r, c3, c5r, c5, pp):
        b1 = bc(x, cin, c1, 1)
        b2 = bc(bc(x, cin, c3r, 1), c3r, c3, 3)
        b3 = bc(bc(x, cin, c5r, 1), c5r, c5, 3)  # torchvision uses 3x3 here (a known quirk)
        b4 = bc(net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], ceil_mode=1),
                cin, pp, 1)
        return net.op("Concat", [b1, b2, b3, b4], axis=1), c1 + c3 + c5 + pp

    x, c = inception(x, 192, 64, 96, 128, 16, 32, 32)
    x, c = inception(x, c, 128, 128, 192, 32, 96, 64)
    x = pool(x)
    for cfg in [(192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
                (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128)]:
        x, c = inception(x, c, *cfg)
    x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    for cfg in [(256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)]:
        x, c = inception(x, c, *cfg)
    x = net.view_flat(net.op("GlobalAveragePool", [x]))
    logits_output(net, net.linear2d(x, 1024, 1000))
    return net.model()


# ---- DenseNet-121 (pre-activation BN-ReLU-Conv, concatenating features) ------------------------------------
def densenet121(size=224):
    net = Net("densenet121", 121)
    x = image_input(net, size)
    x = net.cbr(x, 3, 64, 7, 2, 3)
    x = net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c, growth = 64, 32
    for i, layers in enumerate([6, 12, 24, 16]):
        for _ in range(layers):
            y = net.conv(net.relu(net.bn(x, c)), c, 4 * growth, 1)
            y = net.conv(net.relu(net.bn(y, 4 * growth)), 4 * growth, growth, 3)
            x = net.op("Concat", [x, y], axis=1)
            c += growth
        if i < 3:
            x = net.conv(net.relu(net.bn(x, c)), c, c // 2, 1)
            x = net.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            c //= 2
    x = net.relu(net.bn(x, c))
    x = net.view_flat(net.op("GlobalAveragePool", [x]))
    logits_output(net, net.linear2d(x, c, 1000))
    return net.model()


# ---- MobileNetV2 ---------------------------------------------------------------------------------------------
def mobilenet_v2_features(net, x, stage_end=None):
    """MobileNetV2's stem and inverted-residual stages (up to 320 channels); calls stage_end(x, channels)
    after each stage. Returns (x, channels)."""
    x = net.cbr(x, 3, 32, 3, 2, act="relu6")
    c = 32
    for t, cout, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                          (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c * t
            y = x if t == 1 else net.cbr(x, c, hidden, 1, act="relu6")
            y = net.cbr(y, hidden, hidden, 3, stride, group=hidden, act="relu6")
            y = net.cbr(y, hidden, cout, 1, act=None)
            x = net.op("Add", [x, y]) if stride == 1 and c == cout else y
            c = cout
        if stage_end:
            stage_end(x, c)
    return x, c


def mobilenet_v2(size=224):
    net = Net("mobilenet_v2", 2)
    x, c = mobilenet_v2_features(net, image_input(net, size))
    x = net.cbr(x, c, 1280, 1, act="relu6")
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])], axis=1)
    logits_output(net, net.linear2d(x, 1280, 1000))
    return net.model()


# ---- EfficientNet-B0 (MBConv with squeeze-excitation, SiLU) -------------------------------------------------
def efficientnet_b0(size=224):
    net = Net("efficientnet_b0", 0)
    x = image_input(net, size)
    x = net.cbr(x, 3, 32, 3, 2, act="silu", eps=1e-3)
    c = 32
    for t, k, s, cout, n in [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c * t
            y = x if t == 1 else net.cbr(x, c, hidden, 1, act="silu", eps=1e-3)
            y = net.cbr(y, hidden, hidden, k, stride, group=hidden, act="silu", eps=1e-3)
            sq = max(1, c // 4)
            se = net.op("GlobalAveragePool", [y])
            se = net.silu(net.conv(se, hidden, sq, 1, bias=True))
            se = net.op("Sigmoid", [net.conv(se, sq, hidden, 1, bias=True)])
            y = net.op("Mul", [y, se])
            y = net.cbr(y, hidden, cout, 1, act=None, eps=1e-3)
            x = net.op("Add", [y, x]) if stride == 1 and c == cout else y
            c = cout
    x = net.cbr(x, c, 1280, 1, act="silu", eps=1e-3)
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])], axis=1)
    logits_output(net, net.linear2d(x, 1280, 1000))
    return net.model()


# ---- BERT-like encoder (HuggingFace BertModel as exported with dynamic batch and sequence) -----------------
def bert(layers=12, hidden=768, heads=12, ffn=3072, vocab=1000, max_pos=512):
    net = Net(f"bert_{layers}l", 7)
    head_dim = hidden // heads
    net.inputs.append(helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]))
    net.inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]))
    rnd = lambda shape, scale=0.02: (net.rng.standard_normal(shape) * scale).astype(np.float32)
    w = lambda shape: net.const("weight", rnd(shape))
    b = lambda n: net.const("bias", rnd((n,)))

    def dim(x, i):
        return net.op("Unsqueeze", [net.op("Gather", [net.op("Shape", [x]), net.const("i", np.array(i, np.int64))],
                                           axis=0), net.ints([0])])

    def layer_norm(x):
        mean = net.op("ReduceMean", [x], axes=[-1])
        d = net.op("Sub", [x, mean])
        var = net.op("ReduceMean", [net.op("Pow", [d, net.scalar(2.0)])], axes=[-1])
        n = net.op("Div", [d, net.op("Sqrt", [net.op("Add", [var, net.scalar(1e-12)])])])
        return net.op("Add", [net.op("Mul", [n, net.const("ln.weight", 1 + rnd((hidden,), 0.1))]),
                              net.const("ln.bias", rnd((hidden,), 0.1))])

    def linear(x, cin, cout):
        return net.op("Add", [net.op("MatMul", [x, w((cin, cout))]), b(cout)])

    def gelu(x):
        e = net.op("Erf", [net.op("Div", [x, net.scalar(1.4142135381698608)])])
        return net.op("Mul", [net.op("Mul", [x, net.op("Add", [e, net.scalar(1.0)])]), net.scalar(0.5)])

    ids = "input_ids"
    seq = dim(ids, 1)
    pos_ids = net.op("Slice", [net.const("position_ids", np.arange(max_pos, dtype=np.int64)[None, :]),
                               net.ints([0]), seq, net.ints([1]), net.ints([1])])
    h = net.op("Add", [net.op("Gather", [net.const("word_embeddings", rnd((vocab, hidden))), ids], axis=0),
                       net.const("token_type_embedding0", rnd((hidden,)))])
    h = net.op("Add", [h, net.op("Gather", [net.const("position_embeddings", rnd((max_pos, hidden))), pos_ids],
                                 axis=0)])
    h = layer_norm(h)
    m = net.op("Cast", [net.op("Unsqueeze", [net.op("Unsqueeze", ["attention_mask", net.ints([1])]),
                                             net.ints([2])])], to=TensorProto.FLOAT)
    mask = net.op("Mul", [net.op("Sub", [net.scalar(1.0), m]), net.scalar(-10000.0)])
    for _ in range(layers):
        def heads_of(x, perm):
            shape = net.op("Concat", [dim(x, 0), dim(x, 1), net.ints([heads]), net.ints([head_dim])], axis=0)
            return net.op("Transpose", [net.op("Reshape", [x, shape])], perm=perm)

        q = heads_of(linear(h, hidden, hidden), [0, 2, 1, 3])
        k = heads_of(linear(h, hidden, hidden), [0, 2, 1, 3])
        v = heads_of(linear(h, hidden, hidden), [0, 2, 1, 3])
        kt = net.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = net.op("Div", [net.op("MatMul", [q, kt]), net.scalar(float(np.sqrt(head_dim)))])
        probs = net.op("Softmax", [net.op("Add", [scores, mask])], axis=-1)
        ctx = net.op("Transpose", [net.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = net.op("Reshape", [ctx, net.op("Concat", [dim(ctx, 0), dim(ctx, 1), net.ints([hidden])], axis=0)])
        h = layer_norm(net.op("Add", [linear(ctx, hidden, hidden), h]))
        f = linear(gelu(linear(h, hidden, ffn)), ffn, hidden)
        h = layer_norm(net.op("Add", [f, h]))
    net.outputs.append(helper.make_tensor_value_info(h, TensorProto.FLOAT, ["batch", "seq", hidden]))
    first = net.op("Gather", [h, net.const("i", np.array(0, np.int64))], axis=1)
    pooled = net.op("Tanh", [net.op("Gemm", [first, w((hidden, hidden)), b(hidden)])])
    net.outputs.append(helper.make_tensor_value_info(pooled, TensorProto.FLOAT, ["batch", hidden]))
    return net.model()


# ---- VGG-16 (torchvision, no BN) --------------------------------------------------------------------------
def vgg16(size=224):
    net = Net("vgg16", 16)
    x = image_input(net, size)
    c = 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        else:
            x = net.relu(net.conv(x, c, v, 3, bias=True))
            c = v
    side = size // 32
    x = net.view_flat(x)
    x = net.relu(net.linear2d(x, 512 * side * side, 4096))
    x = net.relu(net.linear2d(x, 4096, 4096))
    logits_output(net, net.linear2d(x, 4096, 1000))
    return net.model()


# ---- SSD-style detector: MobileNetV2 features at two scales + extra layers, box/class heads per scale -------
def ssd_mobilenet(size=300, classes=91, anchors=6):
    net = Net("ssd_mobilenet", 91)
    feats = []
    x, c = mobilenet_v2_features(net, image_input(net, size),
                                 lambda f, fc: feats.append((f, fc)) if fc == 96 else None)  # stride 16
    feats.append((x, c))  # stride 32
    for cout in [512, 256, 256, 128]:  # extra layers: 1x1 reduce, 3x3 stride 2
        y = net.cbr(x, c, cout // 2, 1, act="relu6")
        x = net.cbr(y, cout // 2, cout, 3, 2, act="relu6")
        c = cout
        feats.append((x, c))
    boxes, scores = [], []
    for f, fc in feats:
        for out, per in [(boxes, 4), (scores, classes)]:
            h = net.conv(f, fc, anchors * per, 3, bias=True)
            h = net.op("Transpose", [h], perm=[0, 2, 3, 1])  # NHWC, then [batch, cells*anchors, per]
            out.append(net.op("Reshape", [h, net.ints([0, -1, per])]))
    b = net.op("Concat", boxes, axis=1)
    sc = net.op("Softmax", [net.op("Concat", scores, axis=1)], axis=-1)
    net.outputs.append(helper.make_tensor_value_info(b, TensorProto.FLOAT, ["batch", None, 4]))
    net.outputs.append(helper.make_tensor_value_info(sc, TensorProto.FLOAT, ["batch", None, classes]))
    return net.model()


MODELS = {
    "resnet50": resnet50,
    "googlenet": googlenet,
    "densenet121": densenet121,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_b0": efficientnet_b0,
    "bert": bert,
    "vgg16": vgg16,
    "ssd_mobilenet": ssd_mobilenet,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--bert-layers", type=int, default=12)
    ap.add_argument("--size", type=int, default=224, help="image size of the CNNs")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    for name in a.models.split(","):
        if name == "bert":
            model = bert(a.bert_layers)
        elif name == "ssd_mobilenet":
            model = ssd_mobilenet(300 if a.size == 224 else a.size)
        else:
            model = MODELS[name](a.size)
        onnx.checker.check_model(model)
        path = os.path.join(a.out_dir, f"{name}.onnx")
        onnx.save(model, path)
        print(f"{path}: {len(model.graph.node)} nodes")


if __name__ == "__main__":
    main()
