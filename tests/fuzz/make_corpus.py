"""Writes the importer fuzzer's seed corpus: tiny valid models and tensors (a few KB in all).

Run from the repository root: .venv/bin/python tests/fuzz/make_corpus.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def save(name, model_or_tensor):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(model_or_tensor.SerializeToString())


def model(nodes, inputs, outputs, inits=(), opset=13, value_info=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits), value_info=list(value_info))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="seed")


def main():
    os.makedirs(OUT, exist_ok=True)
    f32 = TensorProto.FLOAT
    rng = np.random.default_rng(0)

    # MatMul + Add with a symbolic batch; W as float_data, B as raw_data.
    w = helper.make_tensor("W", f32, [3, 2], rng.standard_normal(6).astype(np.float32).tolist())
    b = numpy_helper.from_array(np.array([0.5, -0.5], np.float32), "B")
    save("matmul_add.onnx", model(
        [helper.make_node("MatMul", ["X", "W"], ["XW"], name="mm"),
         helper.make_node("Add", ["XW", "B"], ["Y"], name="add")],
        [helper.make_tensor_value_info("X", f32, ["N", 3])],
        [helper.make_tensor_value_info("Y", f32, ["N", 2])], [w, b]))

    # Conv + Relu + MaxPool + Flatten + Gemm, attributes of several kinds, opset 11.
    cw = numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "CW")
    gw = numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "GW")
    save("conv_pool_gemm.onnx", model(
        [helper.make_node("Conv", ["X", "CW"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
         helper.make_node("Gemm", ["f", "GW"], ["Y"], name="fc", transB=1, alpha=1.0)],
        [helper.make_tensor_value_info("X", f32, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("Y", f32, [1, 3])], [cw, gw], opset=11))

    # Constant nodes and Shape/Gather/Concat/Reshape on int64 values, opset 12.
    save("shape_ops.onnx", model(
        [helper.make_node("Constant", [], ["minus1"], value_ints=[-1]),
         helper.make_node("Constant", [], ["zero"],
                          value=helper.make_tensor("z", TensorProto.INT64, [], [0])),
         helper.make_node("Shape", ["X"], ["s"]),
         helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
         helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
         helper.make_node("Reshape", ["X", "shape"], ["Y"])],
        [helper.make_tensor_value_info("X", f32, ["B", 2, 3])],
        [helper.make_tensor_value_info("Y", f32, ["B", 6])], opset=12))

    save("clip_optional.onnx", model(
        [helper.make_node("Clip", ["X", "", "hi"], ["Y"], name="clip")],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT16, [4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT16, [4])],
        [helper.make_tensor("hi", TensorProto.FLOAT16, [],
                            np.array([2.0], np.float16).view(np.uint16).tolist())]))

    # An unsupported op and an external-data initializer: the error paths.
    ext = numpy_helper.from_array(np.zeros(4, np.float32), "E")
    ext.ClearField("raw_data")
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        e = ext.external_data.add()
        e.key, e.value = k, v
    save("unsupported_external.onnx", model(
        [helper.make_node("FancyOp", ["X", "E"], ["Y"], name="fancy", domain="custom")],
        [helper.make_tensor_value_info("X", f32, [4])],
        [helper.make_tensor_value_info("Y", f32, [4])], [ext]))

    # Tensors, as the backend tests' input_N.pb files.
    save("tensor_f32.pb", numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "t"))
    save("tensor_i64.pb", helper.make_tensor("t", TensorProto.INT64, [3], [1, -2, 3]))
    save("tensor_bool.pb", helper.make_tensor("t", TensorProto.BOOL, [2], [True, False]))

    for name in sorted(os.listdir(OUT)):
        path = os.path.join(OUT, name)
        if name.endswith(".onnx") and not name.startswith("unsupported"):
            onnx.checker.check_model(onnx.load(path))
        print(f"{name}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
