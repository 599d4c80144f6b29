"""Fixtures for `kiln serve` tests: tiny ONNX models written into a Triton-style repository, and the real
server binary started on free loopback ports."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def kiln_binary():
    """$KILN_BIN, else $KILN_BUILD_DIR/kiln, else build-server/kiln or build/kiln in the repository."""
    if os.environ.get("KILN_BIN"):
        return pathlib.Path(os.environ["KILN_BIN"])
    if os.environ.get("KILN_BUILD_DIR"):
        return pathlib.Path(os.environ["KILN_BUILD_DIR"]) / "kiln"
    for d in ("build-server", "build"):
        if (REPO_ROOT / d / "kiln").exists():
            return REPO_ROOT / d / "kiln"
    pytest.skip("no kiln binary (set KILN_BIN)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- models ---------------------------------------------------------------------------------------------

def _save(model, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def addmul_model(width=4):
    """x, y [batch, width] -> sum = x + y, prod = x * y."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", width])
    p = helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["batch", width])
    nodes = [helper.make_node("Add", ["x", "y"], ["sum"]), helper.make_node("Mul", ["x", "y"], ["prod"])]
    graph = helper.make_graph(nodes, "addmul", [x, y], [s, p])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def scale_model():
    """x [batch, 3] -> y = 2 * x (a dynamic batch dim and no config: everything inferred)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "scale", [x], [y], [two])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def fixed_model():
    """Static shapes, no batching: a [2, 3] int64 -> plus1 = a + 1."""
    a = helper.make_tensor_value_info("a", TensorProto.INT64, [2, 3])
    o = helper.make_tensor_value_info("plus1", TensorProto.INT64, [2, 3])
    one = helper.make_tensor("one", TensorProto.INT64, [], [1])
    graph = helper.make_graph([helper.make_node("Add", ["a", "one"], ["plus1"])], "fixed", [a], [o], [one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


ADDMUL_CONFIG = """
name: "addmul"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "x" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "prod" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 20000
}
model_warmup [ {
  name: "zeros" batch_size: 2
  inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } }
  inputs { key: "y" value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } }
} ]
"""

SLOWQ_CONFIG = """
max_batch_size: 8
dynamic_batching {
  max_queue_delay_microseconds: 400000
  default_queue_policy { max_queue_size: 1 allow_timeout_override: true }
}
"""


def write_repository(root):
    """The main test repository: good models, and two broken ones that must not stop the others."""
    _save(addmul_model(), root / "addmul" / "1" / "model.onnx")
    (root / "addmul" / "config.pbtxt").write_text(ADDMUL_CONFIG)
    _save(scale_model(), root / "scale" / "1" / "model.onnx")
    _save(scale_model(), root / "scale" / "3" / "model.onnx")
    _save(fixed_model(), root / "fixed" / "1" / "model.onnx")
    _save(addmul_model(), root / "slowq" / "1" / "model.onnx")
    (root / "slowq" / "config.pbtxt").write_text(SLOWQ_CONFIG)
    _save(addmul_model(), root / "typo" / "1" / "model.onnx")
    (root / "typo" / "config.pbtxt").write_text("max_batch_size: 4\nmax_batch_sise: 2\n")
    _save(addmul_model(), root / "wrongdims" / "1" / "model.onnx")
    (root / "wrongdims" / "config.pbtxt").write_text(
        'max_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 5 ] },'
        ' { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')


# --- the server -----------------------------------------------------------------------------------------

class Server:
    def __init__(self, repo, *args, max_input=1 << 20, env=None):
        self.repo = repo
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.url = f"127.0.0.1:{self.http_port}"
        cmd = [str(kiln_binary()), "serve", "--model-repository", str(repo), "--http-address", "127.0.0.1",
               "--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port),
               "--http-max-input-size", str(max_input), *args]
        if "--grpc-port" in args:
            self.grpc_port = int(args[list(args).index("--grpc-port") + 1])
        else:  # never the default 8001: another server may hold it
            self.grpc_port = free_port()
            cmd += ["--grpc-port", str(self.grpc_port)]
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.log = open(repo.parent / f"server-{self.http_port}.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=None if env is None else {**os.environ, **env})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kiln serve exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.get("/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("kiln serve did not become ready: " + self.output())

    def has_grpc(self):
        """Whether this build serves gRPC (it says so when it starts)."""
        return "gRPC on" in self.output()

    def grpc_url_or_skip(self):
        if not self.has_grpc():
            pytest.skip("this kiln build has no gRPC front end")
        return self.grpc_url

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def request(self, method, path, body=None, headers=None, port=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port or self.http_port}{path}", data=data,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body if body is not None else b"", **kw)

    def metrics(self):
        status, body = self.get("/metrics", port=self.metrics_port)
        assert status == 200
        return body.decode()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def metric_value(text, name, **labels):
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line.split("}")[0] for w in want):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(f"{name}{{{want}}} not in metrics")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo") / "models"
    write_repository(root)
    s = Server(root)
    yield s
    assert s.stop() == 0, s.output()


def addmul_inputs(client_module, x, y, binary=True):
    """The inputs x and y of the addmul models, for tritonclient.http or tritonclient.grpc."""
    inputs = [client_module.InferInput("x", list(x.shape), "FP32"),
              client_module.InferInput("y", list(y.shape), "FP32")]
    for inp, value in zip(inputs, (x, y)):
        if client_module.__name__.endswith("http"):
            inp.set_data_from_numpy(value, binary_data=binary)
        else:
            inp.set_data_from_numpy(value)
    return inputs


def addmul_json(x, y, **extra):
    """A raw KServe v2 JSON request for addmul (x nested, y flat), with any other top-level fields."""
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()},
                       {"name": "y", "shape": list(y.shape), "datatype": "FP32", "data": y.flatten().tolist()}],
            **extra}


def wait_for(predicate, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def random_pair(batch, width=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, width)).astype(np.float32),
            rng.standard_normal((batch, width)).astype(np.float32))


def concurrent_addmul_requests(server, client_module, url):
    """12 threads of 4 batch-1 addmul requests each through `client_module` (tritonclient.http or .grpc)
    at `url`; asserts every product, and returns (inferences, executions) that the server's metrics
    counted meanwhile, so a test can check that requests were merged into fewer executions."""
    before = server.metrics()
    n_before = metric_value(before, "nv_inference_count", model="addmul", version="1")
    e_before = metric_value(before, "nv_inference_exec_count", model="addmul", version="1")
    errors = []

    def worker(seed):
        c = client_module.InferenceServerClient(url)
        try:
            for i in range(4):
                x, y = random_pair(1, seed=seed * 10 + i)
                r = c.infer("addmul", addmul_inputs(client_module, x, y))
                if not np.allclose(r.as_numpy("prod"), x * y):
                    errors.append("wrong result")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    after = server.metrics()
    return (metric_value(after, "nv_inference_count", model="addmul", version="1") - n_before,
            metric_value(after, "nv_inference_exec_count", model="addmul", version="1") - e_before)


def explicit_control_repository(root):
    """addmul (with ADDMUL_CONFIG) and scale under `root`, for the explicit load/unload tests."""
    _save(addmul_model(), root / "addmul" / "1" / "model.onnx")
    (root / "addmul" / "config.pbtxt").write_text(ADDMUL_CONFIG)
    _save(scale_model(), root / "scale" / "1" / "model.onnx")
