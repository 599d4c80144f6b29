"""Whole models through `kiln run`, compared with onnxruntime (CPUExecutionProvider) on the same inputs.

Tolerances (|kiln - ort| <= atol + rtol * |ort|), float32 everywhere:
- CNNs: rtol 1e-4, atol 1e-5. Both sides accumulate in float32 but in different orders (onnxruntime's
  MLAS blocks and vectorizes its sums); with activations of order 1 over a few hundred to a few thousand
  terms per output, reordering moves results by ~1e-6 relative, so 1e-4 leaves margin without hiding a
  wrong index or a missed bias (those give errors of order 1e-1).
- Transformer: rtol 1e-4, atol 1e-4. Softmax, LayerNormalization and Erf pass through exp/sqrt/erf whose
  implementations differ (MLAS uses polynomial approximations, ~1e-6 relative), and LayerNorm divides by a
  standard deviation that amplifies absolute errors of outputs near zero.
- LSTM: rtol 1e-4, atol 1e-5: sigmoid/tanh approximations again, over a recurrence of a few steps.
- Detector: scores as the CNNs; TopK indices and NonMaxSuppression selections must be equal.
"""

import numpy as np
import pytest

import builders
from harness import compare, int8_reference_level, run_both, save_model

CNN_TOL = dict(rtol=1e-4, atol=1e-5)


def image(rng, batch, size):
    return rng.standard_normal((batch, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("build", [builders.resnet, builders.mobilenet_v2], ids=["resnet", "mobilenet_v2"])
def test_classifier_cnn(tmp_path, build, batch):
    path = save_model(build(), tmp_path)
    rng = np.random.default_rng(100 + batch)
    actual, expected = run_both(path, {"image": image(rng, batch, 64)}, tmp_path / "out")
    compare(actual, expected, **CNN_TOL)


@pytest.mark.parametrize("batch", [1, 3])
def test_inception_dense(tmp_path, batch):
    path = save_model(builders.inception_dense(), tmp_path)
    rng = np.random.default_rng(200 + batch)
    actual, expected = run_both(path, {"image": image(rng, batch, 32)}, tmp_path / "out")
    compare(actual, expected, **CNN_TOL)


@pytest.mark.parametrize("batch,seq", [(1, 7), (3, 5), (2, 16)])
def test_transformer_encoder(tmp_path, batch, seq):
    path = save_model(builders.transformer_encoder(), tmp_path)
    rng = np.random.default_rng(300 + batch * seq)
    hidden = rng.standard_normal((batch, seq, 32)).astype(np.float32)
    mask = np.ones((batch, seq), np.float32)
    mask[-1, seq - 2:] = 0  # the last sequence is padded: its last two keys must not be attended to
    actual, expected = run_both(path, {"hidden": hidden, "mask": mask}, tmp_path / "out")
    compare(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,seq", [(1, 6), (3, 4)])
def test_lstm_classifier(tmp_path, batch, seq):
    path = save_model(builders.lstm_classifier(), tmp_path)
    rng = np.random.default_rng(400 + batch)
    sequence = rng.standard_normal((seq, batch, 8)).astype(np.float32)
    actual, expected = run_both(path, {"sequence": sequence}, tmp_path / "out")
    compare(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_detector_head(tmp_path, batch):
    path = save_model(builders.detector_head(), tmp_path)
    # Seed chosen so that no two scores lie closer than 2e-5 and none within 4e-4 of the score threshold:
    # near-ties would make the TopK order and the NonMaxSuppression selection depend on float rounding.
    rng = np.random.default_rng(600)
    actual, expected = run_both(path, {"image": image(rng, batch, 16)}, tmp_path / "out")
    assert expected["selected"].shape[0] > 0, "test data should make NonMaxSuppression select boxes"
    compare(actual, expected, exact=("top_indices", "selected"), **CNN_TOL)


def _qdq_output_step(model_path, output):
    """The scale of the DequantizeLinear that produces `output` (one step of the 8-bit value behind it)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    node = producer[output]
    while node.op_type != "DequantizeLinear":  # e.g. an Identity or Gemm after the last DQ
        node = producer[node.input[0]]
    return float(inits[node.input[1]])


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("build", [builders.resnet, builders.mobilenet_v2], ids=["resnet", "mobilenet_v2"])
def test_quantized_cnn(tmp_path, build, batch):
    """The QDQ INT8 form written by onnxruntime's quantizer (u8 activations, i8 per-channel weights), run by
    Kiln's 8-bit layers (fuse_qdq, kiln.QConv / kiln.QAdd on oneDNN's VNNI kernels) and by onnxruntime's
    own 8-bit kernels. The two compute the same integer accumulations but requantize in their own way, so a
    value lying within float rounding of a half step can land one step apart in a layer and carry on from
    there. Tolerance: 4 steps of the last 8-bit value before the float output, and the same arg-max for
    every sample (measured: at most 1 step on these models, 2 on the zoo's ResNet-50 at 224x224); a wrong
    scale, zero point, pad or channel order moves the outputs by tens of steps. On a CPU without VNNI both
    sides differ: Kiln runs these layers on its exact reference kernels and onnxruntime's 8-bit kernels
    saturate, so the reference is onnxruntime's unfused evaluation of the QDQ graph (int8_reference_level)."""
    import sys
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
    from kiln_models.quantize import quantize_qdq

    fp32 = save_model(build(), tmp_path, "fp32.onnx")
    path = quantize_qdq(str(fp32), str(tmp_path / "int8.onnx"), "image", [1, 3, 64, 64], samples=8)
    rng = np.random.default_rng(700 + batch)
    actual, expected = run_both(path, {"image": image(rng, batch, 64)}, tmp_path / "out", int8_reference_level())
    step = _qdq_output_step(path, "logits")
    compare(actual, expected, rtol=0, atol=4 * step)
    assert np.array_equal(actual["logits"].argmax(1), expected["logits"].argmax(1))


@pytest.mark.parametrize("batch,seq", [(1, 7), (2, 16), (8, 64)])
def test_quantized_transformer(tmp_path, batch, seq):
    """The BERT-style encoder with its weight MatMuls quantized by onnxruntime's tool (QDQ: u8 activations
    per tensor, i8 weights per column; layer norms, softmax and the attention products left in float, as
    kiln_models.quantize does for a model without convolutions), run by Kiln's 8-bit matrix products
    (fuse_qdq, kiln.QMatMul on oneDNN) and by onnxruntime on the same INT8 model. Both accumulate the same
    integers and apply the same scales, so most outputs agree to float rounding (measured 5e-7). Where a
    float activation (a layer norm's output, computed by each runtime's own kernel) lies within rounding of
    a half step of its 8-bit scale, the two quantize it one step apart; that moves its token's row, and
    through the next layer's attention its whole sequence, by up to ~0.1 (measured at batch 8 x 64: one
    such flip, 11% of the elements off by more than 1e-4, the largest 0.086, on outputs of magnitude ~3.5).
    Without VNNI the reference is onnxruntime's unfused evaluation (int8_reference_level; measured 7e-7).
    Tolerance: every element within 0.25 and at least 75% within 1e-3; a wrong scale, zero point, bias or
    weight layout moves nearly every element by order 1."""
    import sys
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
    from kiln_models.quantize import quantize_qdq_inputs
    import onnx

    fp32 = save_model(builders.transformer_encoder(), tmp_path, "fp32.onnx")
    path = quantize_qdq_inputs(str(fp32), str(tmp_path / "int8.onnx"), {"hidden": [1, 8, 32], "mask": [1, 8]},
                               samples=8)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("DequantizeLinear") >= 12, "the quantizer should have quantized the weight MatMuls"
    rng = np.random.default_rng(800 + batch * seq)
    hidden = rng.standard_normal((batch, seq, 32)).astype(np.float32)
    mask = np.ones((batch, seq), np.float32)
    actual, expected = run_both(path, {"hidden": hidden, "mask": mask}, tmp_path / "out", int8_reference_level())
    diff = np.abs(actual["encoded"] - expected["encoded"])
    assert diff.max() <= 0.25, f"max |kiln - ort| {diff.max()}"
    assert np.mean(diff > 1e-3) <= 0.25, f"{np.mean(diff > 1e-3):.1%} of the elements differ by more than 1e-3"
