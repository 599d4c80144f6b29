"""Kiln's Python bindings against onnxruntime on small models built with onnx.helper.

Run with the bindings on the path, e.g. PYTHONPATH=build/python pytest tests/python (ctest does this).
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

if os.environ.get("KILN_PYTHON_DIR"):
    sys.path.insert(0, os.environ["KILN_PYTHON_DIR"])
kiln = pytest.importorskip("kiln")


def _cnn_model(path):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b1")
    wf = numpy_helper.from_array(rng.standard_normal((6, 10)).astype(np.float32), "wf")
    bf = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "bf")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=-1, name="softmax"),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0, name="argmax"),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 10]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        initializer=[w1, b1, wf, bf])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture()
def cnn(tmp_path):
    return _cnn_model(str(tmp_path / "cnn.onnx"))


def _ort(path, feeds):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


@pytest.mark.parametrize("batch", [1, 4, 32])
def test_build_save_load_run_matches_onnxruntime(cnn, tmp_path, batch):
    engine = kiln.build(cnn)
    plan = str(tmp_path / "cnn.plan")
    engine.save(plan)
    loaded = kiln.load(plan)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
    expected = _ort(cnn, {"x": x})
    for e in (engine, loaded):
        out = e.create_context().run({"x": x})
        assert set(out) == {"prob", "label"}
        assert out["prob"].dtype == np.float32 and out["prob"].shape == (batch, 10)
        np.testing.assert_allclose(out["prob"], expected["prob"], rtol=1e-4, atol=1e-6)
        assert out["label"].dtype == np.int64
        np.testing.assert_array_equal(out["label"], expected["label"])


def test_engine_description(cnn):
    engine = kiln.build(cnn, optimize=False, fast_kernels=False)
    (inp,) = engine.inputs
    assert inp["name"] == "x" and inp["dtype"] == "f32"
    assert inp["shape"] == ["batch", 3, 16, 16]
    assert inp["profiles"] == [{"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [32, 3, 16, 16]}]
    assert [o["name"] for o in engine.outputs] == ["prob", "label"]
    assert [layer["op"] for layer in engine.layers][:2] == ["Conv", "Relu"]
    assert all(layer["tactic"] == "reference" and layer["precision"] == "fp32" for layer in engine.layers)
    mem = engine.memory()
    assert 0 < mem["arena_bytes"] <= mem["naive_bytes"]
    # c and r are 6x16x16 floats (6 KiB each) at batch 1; r runs in place over c: one buffer holds both.
    assert mem["arena_bytes"] >= 6 * 16 * 16 * 4
    assert mem["in_place_tensors"] >= 1
    assert engine.target.startswith("cpu")
    # The optimizer fuses Conv+Relu: fewer layers, same results (checked above).
    optimized = kiln.build(cnn, channels_last=False)
    assert len(optimized.layers) < len(engine.layers)
    assert "kiln.FusedConv" in [layer["op"] for layer in optimized.layers]
    # With fast kernels (the default) the conv gets a oneDNN tactic when this build has oneDNN.
    conv = next(layer for layer in optimized.layers if layer["op"] == "kiln.FusedConv")
    assert conv["tactic"] == "reference" or conv["tactic"].startswith("onednn.")
    if "onednn" in optimized.target:
        assert conv["tactic"].startswith("onednn.")
        # By default the CPU build runs it channels-last, with transposes at the edges of that region.
        nhwc = kiln.build(cnn)
        ops = [layer["op"] for layer in nhwc.layers]
        assert "kiln.ConvNhwc" in ops and "kiln.FusedConv" not in ops and "Transpose" in ops
        x = np.random.default_rng(3).random((2, 3, 16, 16), dtype=np.float32)
        a = nhwc.create_context().run({"x": x})
        b = optimized.create_context().run({"x": x})
        np.testing.assert_allclose(a["prob"], b["prob"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a["label"], b["label"])


def test_profiles_and_errors(cnn, tmp_path):
    engine = kiln.build(cnn, shapes="x:2x3x16x16..4x3x16x16..8x3x16x16")
    ctx = engine.create_context()
    x = np.zeros((9, 3, 16, 16), np.float32)
    with pytest.raises(kiln.KilnError, match="outside the profile"):
        ctx.run({"x": x})
    with pytest.raises(kiln.KilnError, match="no input"):
        ctx.run({"y": x})
    # float64 input is converted to the input's dtype.
    x64 = np.random.default_rng(1).standard_normal((2, 3, 16, 16))
    out = ctx.run({"x": x64})
    expected = _ort(cnn, {"x": x64.astype(np.float32)})
    np.testing.assert_allclose(out["prob"], expected["prob"], rtol=1e-4, atol=1e-6)
    with pytest.raises(kiln.KilnError, match="dynamic|has no input|fixed"):
        kiln.build(cnn, shapes="x:1x3x16x16..2x3x17x16")

    bad = tmp_path / "bad.plan"
    data = bytearray(engine.serialize())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(kiln.KilnError, match="checksum"):
        kiln.load(str(bad))
    bad.write_bytes(bytes(data[:100]))
    with pytest.raises(kiln.KilnError, match="truncated"):
        kiln.load(str(bad))
    with pytest.raises(kiln.KilnError):
        kiln.load(str(tmp_path / "missing.plan"))
    with pytest.raises(kiln.KilnError):
        kiln.build(str(tmp_path / "missing.onnx"))


def test_bf16_build_rounds_within_bfloat16_error(cnn, tmp_path):
    """precision="bf16": on a CPU with BF16 instructions, convolutions and GEMMs may run in bfloat16
    (8-bit mantissas, FP32 accumulation); the layers say so, and the result stays within bfloat16's
    rounding of the FP32 engine's (2^-8 relative per operand, a few times that through the layers)."""
    fp32 = kiln.build(cnn)
    bf16 = kiln.build(cnn, precision="bf16")
    assert {layer["precision"] for layer in fp32.layers} == {"fp32"}
    precisions = {layer["precision"] for layer in bf16.layers}
    assert precisions <= {"fp32", "bf16"}
    x = np.random.default_rng(5).random((4, 3, 16, 16), dtype=np.float32)
    a = fp32.create_context().run({"x": x})["prob"]
    b = bf16.create_context().run({"x": x})["prob"]
    np.testing.assert_allclose(b, a, rtol=3e-2, atol=3e-3)
    if "bf16" in precisions:
        assert not np.array_equal(a, b)  # really rounded
        assert "avx512_bf16" in bf16.target or "amx_bf16" in bf16.target  # the plan requires the instructions
        path = str(tmp_path / "bf16.plan")
        bf16.save(path)
        assert [layer["precision"] for layer in kiln.load(path).layers] == [layer["precision"] for layer in bf16.layers]
    with pytest.raises(kiln.KilnError, match="precision"):
        kiln.build(cnn, precision="bf8")
