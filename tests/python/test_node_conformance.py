"""The ONNX backend node tests through the Python bindings: build -> serialize -> load_bytes -> run.

The C++ runner (tests/conformance, `kiln_node_tests --engine`) covers the same path through the C++ API;
this one proves the bindings carry every dtype and shape across NumPy unchanged. Cases Kiln refuses at
build time (operators it does not claim, string tensors, training-mode BatchNormalization) are skipped;
any case that builds must match the expected outputs, and most cases must build.
"""
import glob
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

if os.environ.get("KILN_PYTHON_DIR"):
    sys.path.insert(0, os.environ["KILN_PYTHON_DIR"])
kiln = pytest.importorskip("kiln")

NODE_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")

# The ONNX backend runner's tolerances for float32/float64; 16-bit floats get a few ulp (see
# tests/conformance/node_case.cc: test data was computed in higher precision and rounded once).
TOLERANCES = {np.float16: (4e-3, 1e-5)}
DEFAULT_TOLERANCE = (1e-3, 1e-7)


def _read_tensor(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t


def _data_sets(case):
    for d in sorted(glob.glob(os.path.join(case, "test_data_set_*"))):
        ins = sorted(glob.glob(os.path.join(d, "input_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        outs = sorted(glob.glob(os.path.join(d, "output_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        yield ins, outs


def _run_case(case):
    """Returns 'pass', 'refused' (Kiln declined to build it) or 'unreadable'; raises on a mismatch."""
    model = onnx.load(os.path.join(case, "model.onnx"))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    try:
        engine = kiln.load_bytes(kiln.build(os.path.join(case, "model.onnx")).serialize())
    except kiln.KilnError as e:
        return "refused", str(e)
    ctx = engine.create_context()
    for ins, outs in _data_sets(case):
        if len(ins) != len(inputs) or len(outs) != len(outputs):
            return "unreadable", "data files do not match the graph"
        try:
            tensors = [_read_tensor(p) for p in ins + outs]
            arrays = [numpy_helper.to_array(t) for t in tensors]
        except Exception as e:  # sequences, optionals, odd encodings
            return "unreadable", str(e)
        declared = {i.name: i.type.tensor_type.elem_type for i in inputs}
        feeds = {}
        for i, a in zip(inputs, arrays[: len(ins)]):
            if declared[i.name] == onnx.TensorProto.BFLOAT16:
                return "unreadable", "bfloat16 data (NumPy has no bfloat16)"
            feeds[i.name] = a
        try:
            got = ctx.run(feeds)
        except kiln.KilnError as e:
            if "Unsupported" in str(e):
                return "refused", str(e)
            raise
        for o, want in zip(outputs, arrays[len(ins):]):
            have = got[o.name]
            assert have.shape == want.shape, f"{o.name}: shape {have.shape}, expected {want.shape}"
            if np.issubdtype(want.dtype, np.floating):
                rtol, atol = TOLERANCES.get(want.dtype.type, DEFAULT_TOLERANCE)
                np.testing.assert_allclose(have.astype(want.dtype), want, rtol=rtol, atol=atol,
                                           err_msg=o.name, equal_nan=True)
            else:
                np.testing.assert_array_equal(have, want, err_msg=o.name)
    return "pass", ""


def test_node_cases_build_save_load_run():
    cases = sorted(glob.glob(os.path.join(NODE_DIR, "test_*")))
    assert len(cases) > 1000, f"ONNX node tests not found under {NODE_DIR}"
    counts = {"pass": 0, "refused": 0, "unreadable": 0}
    failures = []
    for case in cases:
        try:
            outcome, _ = _run_case(case)
        except AssertionError as e:
            failures.append(f"{os.path.basename(case)}: {str(e)[:300]}")
            continue
        counts[outcome] += 1
    print(f"node cases through the bindings: {counts}, {len(failures)} failed")
    assert not failures, "\n".join(failures[:20])
    # The C++ runner passes 874 claimed cases; the bindings must carry nearly all of them.
    assert counts["pass"] >= 850, counts
