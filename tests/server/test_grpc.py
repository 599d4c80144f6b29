"""`kiln serve` over gRPC (Triton's GRPCInferenceService), driven by the real tritonclient.grpc."""

import threading

import numpy as np
import pytest

grpcclient = pytest.importorskip("tritonclient.grpc")
import grpc  # noqa: E402  (comes with tritonclient[grpc])
from tritonclient.utils import InferenceServerException  # noqa: E402

import conftest  # noqa: E402
from conftest import (Server, concurrent_addmul_requests, explicit_control_repository,  # noqa: E402
                      random_pair, write_repository)


def start(root, *args):
    server = Server(root, *args)
    if not server.has_grpc():
        server.stop()
        pytest.skip("this kiln build has no gRPC front end")
    return server


@pytest.fixture(scope="module")
def gserver(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpcrepo") / "models"
    write_repository(root)
    s = start(root)
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture(scope="module")
def client(gserver):
    c = grpcclient.InferenceServerClient(gserver.grpc_url)
    yield c
    c.close()


def addmul_inputs(x, y):
    return conftest.addmul_inputs(grpcclient, x, y)


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "kiln" and meta.version
    assert "model_repository" in meta.extensions


def test_model_metadata_config_and_ready(client):
    assert client.is_model_ready("addmul")
    assert not client.is_model_ready("nosuch")
    assert not client.is_model_ready("typo")
    meta = client.get_model_metadata("addmul")
    assert list(meta.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("x", "FP32", [-1, 4]), ("y", "FP32", [-1, 4])]
    assert [t.name for t in meta.outputs] == ["sum", "prod"]
    config = client.get_model_config("addmul").config
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 20000
    assert [(i.name, list(i.dims)) for i in config.input] == [("x", [4]), ("y", [4])]
    assert config.instance_group[0].count == 2
    as_json = client.get_model_config("addmul", as_json=True)
    assert as_json["config"]["max_batch_size"] == 8
    # Versions: scale has 1 and 3 on disk; the default policy loads the latest only.
    assert list(client.get_model_metadata("scale").versions) == ["3"]
    assert client.is_model_ready("scale", "3") and not client.is_model_ready("scale", "1")
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("scale", "x1")
    assert "INVALID_ARGUMENT" in e.value.status()


def test_infer_fp32_raw_and_typed(client):
    x, y = random_pair(3, seed=1)
    result = client.infer("addmul", addmul_inputs(x, y), request_id="r1")
    np.testing.assert_allclose(result.as_numpy("sum"), x + y, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("prod"), x * y, rtol=1e-6)
    response = result.get_response()
    assert response.id == "r1" and response.model_name == "addmul" and response.model_version == "1"
    # Typed contents (InferTensorContents.fp32_contents) instead of raw_input_contents.
    request = grpcclient.service_pb2.ModelInferRequest(model_name="addmul")
    for name, value in (("x", x), ("y", y)):
        tensor = request.inputs.add(name=name, datatype="FP32", shape=list(value.shape))
        tensor.contents.fp32_contents.extend(value.ravel().tolist())
    reply = client._client_stub.ModelInfer(request)
    assert [o.name for o in reply.outputs] == ["sum", "prod"]
    got = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(list(reply.outputs[0].shape))
    np.testing.assert_allclose(got, x + y, rtol=1e-6)


def test_infer_int64_and_requested_outputs(client):
    a = np.arange(6, dtype=np.int64).reshape(2, 3) * 1000000007
    inp = grpcclient.InferInput("a", [2, 3], "INT64")
    inp.set_data_from_numpy(a)
    result = client.infer("fixed", [inp])
    np.testing.assert_array_equal(result.as_numpy("plus1"), a + 1)
    assert result.as_numpy("plus1").dtype == np.int64
    x, y = random_pair(2, seed=2)
    result = client.infer("addmul", addmul_inputs(x, y), outputs=[grpcclient.InferRequestedOutput("prod")])
    assert [o.name for o in result.get_response().outputs] == ["prod"]
    assert result.as_numpy("sum") is None
    np.testing.assert_allclose(result.as_numpy("prod"), x * y, rtol=1e-6)


def test_errors_map_to_grpc_codes(client):
    x, y = random_pair(1)
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nosuch")
    assert "NOT_FOUND" in e.value.status() and "nosuch" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer("nosuch", addmul_inputs(x, y))
    assert "NOT_FOUND" in e.value.status()
    bad = random_pair(1, width=5)
    with pytest.raises(InferenceServerException) as e:
        client.infer("addmul", addmul_inputs(*bad))
    assert "INVALID_ARGUMENT" in e.value.status()
    with pytest.raises(InferenceServerException) as e:
        client.infer("addmul", addmul_inputs(x, y), outputs=[grpcclient.InferRequestedOutput("nope")])
    assert "INVALID_ARGUMENT" in e.value.status()
    # A broken model is unavailable with its reason; repository control is refused outside explicit mode.
    with pytest.raises(InferenceServerException) as e:
        client.infer("typo", addmul_inputs(x, y))
    assert "UNAVAILABLE" in e.value.status() and "max_batch_sise" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.load_model("addmul")
    assert "explicit" in e.value.message()
    # Raw contents of the wrong size.
    request = grpcclient.service_pb2.ModelInferRequest(model_name="addmul")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.inputs.add(name="y", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.extend([x.tobytes(), y.tobytes()[:-4]])
    with pytest.raises(grpc.RpcError) as e:
        client._client_stub.ModelInfer(request)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in e.value.details()
    # Still serving.
    np.testing.assert_allclose(client.infer("addmul", addmul_inputs(x, y)).as_numpy("sum"), x + y, rtol=1e-6)


def test_concurrent_requests_are_batched_and_counted(gserver, client):
    count, execs = concurrent_addmul_requests(gserver, grpcclient, gserver.grpc_url)
    assert count == 48
    assert execs < count
    stats = client.get_inference_statistics("addmul")
    assert stats.model_stats[0].name == "addmul" and stats.model_stats[0].inference_count >= 48
    assert stats.model_stats[0].execution_count < stats.model_stats[0].inference_count
    assert any(b.batch_size > 1 for b in stats.model_stats[0].batch_stats)


def test_explicit_load_and_unload(tmp_path):
    root = tmp_path / "models"
    explicit_control_repository(root)
    server = start(root, "--model-control-mode", "explicit", "--load-model", "scale")
    try:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        assert client.is_model_ready("scale") and not client.is_model_ready("addmul")
        client.load_model("addmul")
        assert client.is_model_ready("addmul")
        x, y = random_pair(2)
        np.testing.assert_allclose(client.infer("addmul", addmul_inputs(x, y)).as_numpy("sum"), x + y, rtol=1e-6)
        client.unload_model("addmul")
        assert not client.is_model_ready("addmul")
        index = {m.name: m for m in client.get_model_repository_index().models}
        assert index["addmul"].state == "UNAVAILABLE" and index["addmul"].reason == "unloaded"
        assert index["scale"].state == "READY"
        with pytest.raises(InferenceServerException) as e:
            client.load_model("nosuch")
        assert "NOT_FOUND" in e.value.status()
        (root / "addmul" / "config.pbtxt").write_text("max_batch_size: -3\n")
        with pytest.raises(InferenceServerException) as e:
            client.load_model("addmul")
        assert "INVALID_ARGUMENT" in e.value.status() and "max_batch_size" in e.value.message()
        assert client.is_model_ready("scale")
        client.close()
    finally:
        assert server.stop() == 0, server.output()


def test_oversized_message_and_unimplemented_methods(client):
    big = np.zeros((70000, 4), dtype=np.float32)  # 1.1 MB per input, over the server's 1 MiB limit
    with pytest.raises(InferenceServerException) as e:
        client.infer("addmul", addmul_inputs(big, big))
    assert "RESOURCE_EXHAUSTED" in e.value.status()
    with pytest.raises(InferenceServerException) as e:
        client.get_trace_settings()
    assert "UNIMPLEMENTED" in e.value.status()
    x, y = random_pair(1)
    np.testing.assert_allclose(client.infer("addmul", addmul_inputs(x, y)).as_numpy("sum"), x + y, rtol=1e-6)


def test_sigterm_drains_grpc_requests_in_flight(tmp_path):
    root = tmp_path / "models"
    write_repository(root)
    server = start(root)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    done = threading.Event()
    results = []

    def callback(result, error):
        results.append((result, error))
        done.set()

    x, y = random_pair(1, seed=5)
    # slowq waits up to 400 ms for a batch to fill: the request is still queued when SIGTERM arrives.
    client.async_infer("slowq", addmul_inputs(x, y), callback)
    threading.Event().wait(0.1)
    assert server.stop() == 0, server.output()
    assert done.wait(10)
    result, error = results[0]
    assert error is None, error
    np.testing.assert_allclose(result.as_numpy("sum"), x + y, rtol=1e-6)
    client.close()


def test_stream_infer_answers_every_request(client):
    """ModelStreamInfer: several requests on one stream, good and bad; each gets its answer or its error."""
    results = {}
    done = threading.Event()
    sent = 12

    def callback(result, error):
        if error is None:
            results[result.get_response().id] = result
        else:
            results[f"error:{len(results)}"] = error
        if len(results) == sent + 2:
            done.set()

    pairs = {f"s{i}": random_pair(1 + i % 3, seed=100 + i) for i in range(sent)}
    client.start_stream(callback=callback)
    try:
        for rid, (x, y) in pairs.items():
            client.async_stream_infer("addmul", addmul_inputs(x, y), request_id=rid)
        client.async_stream_infer("nosuch", addmul_inputs(*pairs["s0"]), request_id="bad-model")
        client.async_stream_infer("addmul", addmul_inputs(*random_pair(1, width=5)), request_id="bad-shape")
        assert done.wait(20), sorted(results)
    finally:
        client.stop_stream()
    for rid, (x, y) in pairs.items():
        np.testing.assert_allclose(results[rid].as_numpy("sum"), x + y, rtol=1e-6)
        np.testing.assert_allclose(results[rid].as_numpy("prod"), x * y, rtol=1e-6)
    errors = sorted(e.message() for k, e in results.items() if k.startswith("error:"))
    assert len(errors) == 2
    assert any("unknown model 'nosuch'" in m for m in errors) and any("shape" in m for m in errors), errors
    # The stream's requests went through the batcher like unary ones.
    assert client.infer("addmul", addmul_inputs(*pairs["s1"])).as_numpy("sum") is not None
