"""`kiln serve` over KServe v2 HTTP, driven by the real tritonclient and by raw requests."""

import json
import threading

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import addmul_inputs, addmul_json, concurrent_addmul_requests, metric_value, random_pair


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(server.url, concurrency=4)
    yield c
    c.close()


def infer_addmul(client, x, y, binary=True, outputs=None):
    inputs = addmul_inputs(httpclient, x, y, binary)
    requested = None
    if outputs:
        requested = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return client.infer("addmul", inputs, outputs=requested)


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "kiln"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_config(client):
    assert client.is_model_ready("addmul")
    meta = client.get_model_metadata("addmul")
    assert meta["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("x", "FP32", [-1, 4]), ("y", "FP32", [-1, 4])]
    config = client.get_model_config("addmul")
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert config["input"][0]["dims"] == [4]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_matches_numpy(client, binary):
    x, y = random_pair(3, seed=1)
    result = infer_addmul(client, x, y, binary=binary, outputs=["sum", "prod"])
    np.testing.assert_allclose(result.as_numpy("sum"), x + y, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("prod"), x * y, rtol=1e-6)


def test_requested_outputs_are_filtered(client):
    x, y = random_pair(2, seed=2)
    result = infer_addmul(client, x, y, outputs=["prod"])
    assert result.as_numpy("sum") is None
    np.testing.assert_allclose(result.as_numpy("prod"), x * y, rtol=1e-6)
    everything = infer_addmul(client, x, y)  # no outputs named: all of them
    np.testing.assert_allclose(everything.as_numpy("sum"), x + y, rtol=1e-6)


def test_inferred_config_and_versions(client):
    meta = client.get_model_metadata("scale")
    assert meta["versions"] == ["3"]  # default version policy: the latest
    assert meta["inputs"][0]["shape"] == [-1, 3]
    assert client.get_model_config("scale")["max_batch_size"] >= 1
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    inp = httpclient.InferInput("x", [2, 3], "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("scale", [inp]).as_numpy("y"), 2 * x)
    assert client.is_model_ready("scale", "3")
    assert not client.is_model_ready("scale", "1")


def test_non_batching_int64_model(client):
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    for binary in (True, False):
        inp = httpclient.InferInput("a", [2, 3], "INT64")
        inp.set_data_from_numpy(a, binary_data=binary)
        out = client.infer("fixed", [inp], outputs=[httpclient.InferRequestedOutput("plus1", binary_data=binary)])
        np.testing.assert_array_equal(out.as_numpy("plus1"), a + 1)
    assert client.get_model_config("fixed")["max_batch_size"] == 0


def test_broken_models_are_unavailable_with_reason(server, client):
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["addmul"]["state"] == "READY"
    assert index["typo"]["state"] == "UNAVAILABLE"
    assert "max_batch_sise" in index["typo"]["reason"]
    assert "config.pbtxt:2:" in index["typo"]["reason"]
    assert index["wrongdims"]["state"] == "UNAVAILABLE"
    assert "'x'" in index["wrongdims"]["reason"] and "5" in index["wrongdims"]["reason"]
    assert not client.is_model_ready("typo")
    status, body = server.post("/v2/models/typo/infer", {"inputs": []})
    assert status == 503 and "max_batch_sise" in json.loads(body)["error"]


def test_raw_json_infer_nested_and_flat(server):
    x, y = random_pair(2, seed=3)
    status, body = server.post("/v2/models/addmul/versions/1/infer", addmul_json(x, y, id="r7"))
    assert status == 200, body
    reply = json.loads(body)
    assert reply["id"] == "r7" and reply["model_name"] == "addmul" and reply["model_version"] == "1"
    sums = {o["name"]: o for o in reply["outputs"]}["sum"]
    assert sums["shape"] == [2, 4] and sums["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(sums["data"], dtype=np.float32).reshape(2, 4), x + y, rtol=1e-6)


@pytest.mark.parametrize("path,body,status,needle", [
    ("/v2/models/addmul/infer", b"{not json", 400, "JSON"),
    ("/v2/models/addmul/infer", {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5},
                                            {"name": "y", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5}]},
     400, "shape"),
    ("/v2/models/addmul/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0] * 4},
                                            {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
     400, "TYPE_FP32"),
    ("/v2/models/addmul/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 3},
                                            {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
     400, "3 values"),
    ("/v2/models/addmul/infer", {"inputs": [{"name": "x", "shape": [9, 4], "datatype": "FP32", "data": [0] * 36},
                                            {"name": "y", "shape": [9, 4], "datatype": "FP32", "data": [0] * 36}]},
     400, "batch 1..8"),
    ("/v2/models/addmul/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
     400, "missing input 'y'"),
    ("/v2/models/nosuch/infer", {"inputs": []}, 404, "unknown model"),
    ("/v2/models/addmul/versions/7/infer", {"inputs": []}, 404, "no version 7"),
    ("/v2/models/addmul/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                             "parameters": {"binary_data_size": 16}}]}, 400, "past the end"),
])
def test_bad_requests_get_errors_and_the_server_keeps_serving(server, client, path, body, status, needle):
    got, reply = server.post(path, body)
    assert got == status, reply
    assert needle in json.loads(reply)["error"]
    x, y = random_pair(1)
    np.testing.assert_allclose(infer_addmul(client, x, y).as_numpy("sum"), x + y, rtol=1e-6)


def test_oversized_body_gets_413(server, client):
    big = b'{"inputs": [' + b" " * (2 << 20) + b"]}"
    status, reply = server.post("/v2/models/addmul/infer", big, headers={"Content-Type": "application/json"})
    assert status == 413
    assert "limit" in json.loads(reply)["error"]
    x, y = random_pair(1)
    np.testing.assert_allclose(infer_addmul(client, x, y).as_numpy("sum"), x + y, rtol=1e-6)


def test_unknown_model_through_tritonclient(client):
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("nosuch")


def test_concurrent_requests_are_batched(server):
    count, execs = concurrent_addmul_requests(server, httpclient, server.url)
    assert count == 48
    assert execs < count, (execs, count)
    after = server.metrics()
    assert metric_value(after, "nv_inference_request_success", model="addmul", version="1") >= 48
    assert metric_value(after, "nv_inference_queue_duration_us", model="addmul", version="1") > 0
    assert "nv_cpu_utilization " in after
    assert 'nv_inference_request_failure{model="addmul",version="1",reason="OTHER"}' in after


def test_statistics_extension(client):
    stats = client.get_inference_statistics("addmul")["model_stats"]
    assert stats[0]["name"] == "addmul" and stats[0]["version"] == "1"
    assert stats[0]["inference_stats"]["success"]["count"] > 0
    assert stats[0]["execution_count"] <= stats[0]["inference_count"]
    assert any(b["batch_size"] > 1 for b in stats[0]["batch_stats"])  # the concurrent test's batches


def test_queue_bound_and_timeout(server):
    x, y = random_pair(1)
    results = {}

    def first():
        results["first"] = server.post("/v2/models/slowq/infer", addmul_json(x, y))

    t = threading.Thread(target=first)
    t.start()
    import time
    time.sleep(0.15)  # the first request now waits out its 400 ms queue delay; the queue holds one
    status, reply = server.post("/v2/models/slowq/infer", addmul_json(x, y))
    assert status == 503 and "queue is full" in json.loads(reply)["error"]
    t.join()
    assert results["first"][0] == 200
    status, reply = server.post("/v2/models/slowq/infer", addmul_json(x, y, parameters={"timeout": 50000}))
    assert status == 503 and "timed out" in json.loads(reply)["error"]
    assert metric_value(server.metrics(), "nv_inference_request_failure", model="slowq", reason="REJECTED") >= 2


def test_tf_serving_predict_and_status(server):
    x, y = random_pair(3, seed=5)
    instances = [{"x": x[i].tolist(), "y": y[i].tolist()} for i in range(3)]
    status, body = server.post("/v1/models/addmul:predict", {"instances": instances})
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == 3
    np.testing.assert_allclose(np.array([p["sum"] for p in predictions], dtype=np.float32), x + y, rtol=1e-6)
    status, body = server.post("/v1/models/scale:predict", {"instances": [[1, 2, 3], [4, 5, 6]]})
    assert status == 200, body
    assert json.loads(body)["predictions"] == [[2, 4, 6], [8, 10, 12]]
    status, body = server.get("/v1/models/addmul")
    assert status == 200
    assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
    assert server.get("/v1/models/typo")[0] == 503
    assert server.get("/v1/models/nosuch")[0] == 404


def test_repository_control_is_refused_without_explicit_mode(server):
    status, body = server.post("/v2/repository/models/addmul/unload")
    assert status == 400 and "explicit" in json.loads(body)["error"]
