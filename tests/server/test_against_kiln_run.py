"""The server's answers equal those of the `kiln run` command on the same model and input (HTTP JSON,
HTTP binary and gRPC), for a small MLP with random weights whose result depends on every weight."""

import subprocess

import numpy as np
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper

from conftest import Server, _save, kiln_binary

grpcclient = pytest.importorskip("tritonclient.grpc")


def mlp_model(seed=3):
    """x [batch, 8] -> Gemm(8->16) -> Relu -> MatMul(16->4) + bias -> Softmax -> probs [batch, 4]."""
    rng = np.random.default_rng(seed)
    weights = {"w1": rng.standard_normal((8, 16)).astype(np.float32), "b1": rng.standard_normal(16).astype(np.float32),
               "w2": rng.standard_normal((16, 4)).astype(np.float32), "b2": rng.standard_normal(4).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["m"]), helper.make_node("Add", ["m", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlp") / "models"
    _save(mlp_model(), root / "mlp" / "1" / "model.onnx")
    (root / "mlp" / "config.pbtxt").write_text("max_batch_size: 8\ndynamic_batching { }\n")
    server = Server(root)
    yield server, root / "mlp" / "1" / "model.onnx"
    assert server.stop() == 0, server.output()


def kiln_run(model, x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    run = subprocess.run([str(kiln_binary()), "run", str(model), "-i", f"x={tmp_path / 'x.npy'}", "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return {name: np.load(out / f"{name}.npy") for name in ("probs", "logits")}


@pytest.mark.parametrize("batch", [1, 5])
def test_server_matches_kiln_run(mlp, tmp_path, batch):
    server, model = mlp
    x = np.random.default_rng(batch).standard_normal((batch, 8)).astype(np.float32)
    expected = kiln_run(model, x, tmp_path)
    assert expected["probs"].shape == (batch, 4) and np.ptp(expected["logits"]) > 0.1
    answers = {}
    http = httpclient.InferenceServerClient(server.url)
    for binary in (True, False):
        inp = httpclient.InferInput("x", [batch, 8], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("probs", "logits")]
        answers[f"http binary={binary}"] = http.infer("mlp", [inp], outputs=outs)
    http.close()
    grpc = grpcclient.InferenceServerClient(server.grpc_url_or_skip())
    inp = grpcclient.InferInput("x", [batch, 8], "FP32")
    inp.set_data_from_numpy(x)
    answers["grpc"] = grpc.infer("mlp", [inp])
    grpc.close()
    for how, result in answers.items():
        for name in ("probs", "logits"):
            # The server's plan is built with a batch profile, kiln run's for this batch: kernels may differ
            # in summation order, hence a tolerance rather than equality.
            np.testing.assert_allclose(result.as_numpy(name), expected[name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{how}: {name}")
