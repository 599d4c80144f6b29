"""--http-restricted-api / --grpc-restricted-api: endpoints of a restricted category answer only requests
carrying the configured header (gRPC: metadata); the others stay open."""

import json
import subprocess

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import threading

from conftest import ADDMUL_CONFIG, Server, _save, addmul_inputs, addmul_model, kiln_binary, random_pair, scale_model

grpcclient = pytest.importorskip("tritonclient.grpc")

KEY = {"admin-key": "s3cret"}


@pytest.fixture(scope="module")
def restricted(tmp_path_factory):
    root = tmp_path_factory.mktemp("restricted") / "models"
    _save(addmul_model(), root / "addmul" / "1" / "model.onnx")
    (root / "addmul" / "config.pbtxt").write_text(ADDMUL_CONFIG)
    _save(scale_model(), root / "scale" / "1" / "model.onnx")
    s = Server(root, "--model-control-mode", "explicit", "--load-model", "*",
               "--http-restricted-api", "model-repository:admin-key=s3cret",
               "--http-restricted-api", "statistics,shared-memory:stats-key=yes",
               "--grpc-restricted-api", "model-repository:admin-key=s3cret",
               "--grpc-restricted-api", "inference:infer-key=1")
    yield s
    assert s.stop() == 0, s.output()


def test_http_repository_api_needs_the_header(restricted):
    client = httpclient.InferenceServerClient(restricted.url)
    for call in (lambda h: client.unload_model("scale", headers=h),
                 lambda h: client.get_model_repository_index(headers=h)):
        with pytest.raises(InferenceServerException) as e:
            call(None)
        assert e.value.status() == "403" and "admin-key" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            call({"admin-key": "wrong"})
        assert e.value.status() == "403"
    assert client.is_model_ready("scale")  # nothing was unloaded
    client.unload_model("scale", headers=KEY)
    assert not client.is_model_ready("scale")
    client.load_model("scale", headers={"Admin-Key": "s3cret"})  # header names are case-insensitive
    assert client.is_model_ready("scale")
    status, body = restricted.post("/v2/repository/index")
    assert status == 403 and "model-repository" in json.loads(body)["error"]
    # Other categories: open, or restricted by their own rule.
    assert client.is_server_ready() and client.get_model_metadata("addmul")["name"] == "addmul"
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("addmul")
    assert e.value.status() == "403" and "stats-key" in e.value.message()
    assert client.get_inference_statistics("addmul", headers={"stats-key": "yes"})["model_stats"]
    assert restricted.get("/v2/systemsharedmemory/status")[0] == 403
    client.close()


def test_grpc_repository_api_needs_the_metadata(restricted):
    client = grpcclient.InferenceServerClient(restricted.grpc_url_or_skip())
    with pytest.raises(InferenceServerException) as e:
        client.unload_model("scale")
    assert "PERMISSION_DENIED" in e.value.status() and "admin-key" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.get_model_repository_index(headers={"admin-key": "nope"})
    assert "PERMISSION_DENIED" in e.value.status()
    assert client.is_model_ready("scale")
    client.unload_model("scale", headers=KEY)
    assert not client.is_model_ready("scale")
    client.load_model("scale", headers=KEY)
    assert client.is_model_ready("scale")
    # Statistics are restricted over HTTP only: the two flags are separate.
    assert client.get_inference_statistics("addmul").model_stats
    client.close()


def test_grpc_inference_and_stream_need_the_metadata(restricted):
    client = grpcclient.InferenceServerClient(restricted.grpc_url_or_skip())
    x, y = random_pair(1)
    with pytest.raises(InferenceServerException) as e:
        client.infer("addmul", addmul_inputs(grpcclient, x, y))
    assert "PERMISSION_DENIED" in e.value.status() and "infer-key" in e.value.message()
    ok = client.infer("addmul", addmul_inputs(grpcclient, x, y), headers={"infer-key": "1"})
    assert (ok.as_numpy("sum") == x + y).all()
    for headers, want_error in ((None, True), ({"infer-key": "1"}, False)):
        got, done = [], threading.Event()
        client.start_stream(callback=lambda result, error: (got.append((result, error)), done.set()),
                            headers=headers)
        try:
            client.async_stream_infer("addmul", addmul_inputs(grpcclient, x, y))
        except InferenceServerException:
            assert want_error  # the refused stream may have ended before the request is sent
        assert done.wait(10)
        client.stop_stream()
        result, error = got[0]
        if want_error:
            assert error is not None and "infer-key" in str(error)
        else:
            assert error is None and (result.as_numpy("prod") == x * y).all()
    # HTTP inference is not restricted: the two flags are separate.
    http = httpclient.InferenceServerClient(restricted.url)
    assert (http.infer("addmul", addmul_inputs(httpclient, x, y)).as_numpy("sum") == x + y).all()
    http.close()
    client.close()


def test_bad_rules_are_refused_at_start(tmp_path):
    for rule, needle in (("repository:k=v", "unknown category 'repository'"), ("model-repository", "expected"),
                         ("model-repository,model-repository:k=v", "restricted twice")):
        run = subprocess.run([str(kiln_binary()), "serve", "--model-repository", str(tmp_path),
                              "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1",
                              "--http-restricted-api", rule], capture_output=True, text=True, timeout=30)
        assert run.returncode != 0 and needle in run.stderr, (rule, run.stderr)
