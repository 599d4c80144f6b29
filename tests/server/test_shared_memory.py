"""System and CUDA shared memory (Triton's shared-memory extension) over HTTP and gRPC, driven by
tritonclient and tritonclient.utils.shared_memory: tensors read from and written into regions that the test
process owns, and every bad offset, size and region name refused with a clear error."""

import base64
import json
import os
import subprocess

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from conftest import random_pair

grpcclient = pytest.importorskip("tritonclient.grpc")

PROTOCOLS = ["http", "grpc"]
FP32_ROW = 4 * 4  # one addmul row: 4 floats


@pytest.fixture(scope="module")
def clients(server):
    made = {"http": httpclient.InferenceServerClient(server.url)}
    if server.has_grpc():
        made["grpc"] = grpcclient.InferenceServerClient(server.grpc_url)
    yield made
    for c in made.values():
        c.close()


@pytest.fixture
def regions(request):
    """Creates shm objects for one test and destroys them (and the server's registrations) afterwards."""
    made = []

    def create(name, size):
        key = f"/kiln-test-{os.getpid()}-{name}"
        handle = shm.create_shared_memory_region(name, key, size)
        made.append(handle)
        return handle, key

    yield create
    for handle in made:
        shm.destroy_shared_memory_region(handle)


def pick(clients, protocol):
    if protocol not in clients:
        pytest.skip("this kiln build has no gRPC front end")
    return clients[protocol]


def module_of(protocol):
    return httpclient if protocol == "http" else grpcclient


def status_rows(client, protocol, name=""):
    """The system shared-memory status as {name: (key, offset, byte_size)} for either client."""
    got = client.get_system_shared_memory_status(name)
    if protocol == "http":
        return {r["name"]: (r["key"], int(r["offset"]), int(r["byte_size"])) for r in got}
    return {n: (r.key, r.offset, r.byte_size) for n, r in got.regions.items()}


def shm_infer(client, protocol, inputs_at, outputs_at, batch=2):
    """addmul with x and y read from (region, offset) pairs and sum/prod written to (region, offset, size)."""
    mod = module_of(protocol)
    size = batch * FP32_ROW
    inputs = []
    for name, (region, offset) in zip(("x", "y"), inputs_at):
        inp = mod.InferInput(name, [batch, 4], "FP32")
        inp.set_shared_memory(region, size, offset=offset)
        inputs.append(inp)
    outputs = []
    for name, (region, offset, out_size) in zip(("sum", "prod"), outputs_at):
        out = mod.InferRequestedOutput(name)
        out.set_shared_memory(region, out_size, offset=offset)
        outputs.append(out)
    return client.infer("addmul", inputs, outputs=outputs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_system_shared_memory_round_trip(clients, regions, protocol):
    client = pick(clients, protocol)
    x, y = random_pair(2, seed=11)
    in_handle, in_key = regions("kin", 256)
    out_handle, out_key = regions("kout", 256)
    shm.set_shared_memory_region(in_handle, [x], offset=0)
    shm.set_shared_memory_region(in_handle, [y], offset=64)
    # The input region starts 0 bytes into its object; the output region 16 bytes in, so offsets add up.
    client.register_system_shared_memory("kin", in_key, 256)
    client.register_system_shared_memory("kout", out_key, 240, offset=16)
    try:
        rows = status_rows(client, protocol)
        assert rows["kin"] == (in_key, 0, 256) and rows["kout"] == (out_key, 16, 240)
        assert status_rows(client, protocol, "kout") == {"kout": (out_key, 16, 240)}
        result = shm_infer(client, protocol, [("kin", 0), ("kin", 64)], [("kout", 0, 32), ("kout", 100, 40)])
        np.testing.assert_allclose(shm.get_contents_as_numpy(out_handle, np.float32, [2, 4], offset=16), x + y,
                                   rtol=1e-6)
        np.testing.assert_allclose(shm.get_contents_as_numpy(out_handle, np.float32, [2, 4], offset=116), x * y,
                                   rtol=1e-6)
        sums = result.get_output("sum")
        params = sums["parameters"] if protocol == "http" else {k: v for k, v in sums.parameters.items()}
        if protocol == "http":
            assert params["shared_memory_region"] == "kout" and params["shared_memory_byte_size"] == 32
            assert "data" not in sums
        else:
            assert params["shared_memory_region"].string_param == "kout"
            assert params["shared_memory_byte_size"].int64_param == 32
        # A second request sees new input values in the same region.
        shm.set_shared_memory_region(in_handle, [y], offset=0)
        shm_infer(client, protocol, [("kin", 0), ("kin", 64)], [("kout", 0, 32), ("kout", 100, 40)])
        np.testing.assert_allclose(shm.get_contents_as_numpy(out_handle, np.float32, [2, 4], offset=16), y + y,
                                   rtol=1e-6)
    finally:
        client.unregister_system_shared_memory("kin")
        client.unregister_system_shared_memory()
    assert status_rows(client, protocol) == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mixed_shared_memory_and_inline_tensors(clients, regions, protocol):
    client = pick(clients, protocol)
    mod = module_of(protocol)
    x, y = random_pair(1, seed=12)
    handle, key = regions("kmix", 64)
    shm.set_shared_memory_region(handle, [x])
    client.register_system_shared_memory("kmix", key, 64)
    try:
        in_x = mod.InferInput("x", [1, 4], "FP32")
        in_x.set_shared_memory("kmix", FP32_ROW)
        in_y = mod.InferInput("y", [1, 4], "FP32")
        in_y.set_data_from_numpy(y)
        out_sum = mod.InferRequestedOutput("sum")
        out_sum.set_shared_memory("kmix", FP32_ROW, offset=32)
        out_prod = mod.InferRequestedOutput("prod")
        result = client.infer("addmul", [in_x, in_y], outputs=[out_sum, out_prod])
        np.testing.assert_allclose(result.as_numpy("prod"), x * y, rtol=1e-6)
        np.testing.assert_allclose(shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=32), x + y,
                                   rtol=1e-6)
    finally:
        client.unregister_system_shared_memory("kmix")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_registrations_are_refused(clients, regions, protocol):
    client = pick(clients, protocol)
    _, key = regions("kbad", 128)
    cases = [
        (("kbad", f"/kiln-test-{os.getpid()}-nosuch", 64), {}, "cannot open"),
        (("kbad", key, 129), {}, "exceeds the 128 bytes"),
        (("kbad", key, 64), {"offset": 65}, "exceeds the 128 bytes"),
        (("kbad", key, 0), {}, "byte_size must be positive"),
    ]
    for args, kwargs, needle in cases:
        with pytest.raises(InferenceServerException) as e:
            client.register_system_shared_memory(*args, **kwargs)
        assert needle in e.value.message(), (args, kwargs, e.value.message())
        assert "400" in str(e.value.status()) or "INVALID_ARGUMENT" in str(e.value.status())
    client.register_system_shared_memory("kbad", key, 64, offset=64)
    try:
        with pytest.raises(InferenceServerException) as e:
            client.register_system_shared_memory("kbad", key, 64)
        assert "already registered" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            client.get_system_shared_memory_status("nosuch")
        assert "nosuch" in e.value.message()
        assert "404" in str(e.value.status()) or "NOT_FOUND" in str(e.value.status())
    finally:
        client.unregister_system_shared_memory("kbad")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_offsets_sizes_and_regions_in_requests(clients, regions, protocol):
    client = pick(clients, protocol)
    handle, key = regions("kreq", 64)
    shm.set_shared_memory_region(handle, [np.ones((2, 4), dtype=np.float32)])
    client.register_system_shared_memory("kreq", key, 64)
    good_out = [("kreq", 32, 32), ("kreq", 32, 32)]
    cases = [
        ([("nosuch", 0), ("kreq", 0)], good_out, "'nosuch' is not registered"),
        ([("kreq", 40), ("kreq", 0)], good_out, "exceeds the 64 bytes"),        # input runs past the end
        ([("kreq", 1 << 62), ("kreq", 0)], good_out, "exceeds the 64 bytes"),   # offset far past the end
        ([("kreq", 0), ("kreq", 0)], [("kreq", 48, 32), ("kreq", 0, 32)], "exceeds the 64 bytes"),
        ([("kreq", 0), ("kreq", 0)], [("nothere", 0, 32), ("kreq", 0, 32)], "'nothere' is not registered"),
        ([("kreq", 0), ("kreq", 0)], [("kreq", 0, 16), ("kreq", 32, 32)], "do not fit"),  # output too small
    ]
    try:
        for inputs_at, outputs_at, needle in cases:
            with pytest.raises(InferenceServerException) as e:
                shm_infer(client, protocol, inputs_at, outputs_at)
            assert needle in e.value.message(), (inputs_at, outputs_at, e.value.message())
            assert "400" in str(e.value.status()) or "INVALID_ARGUMENT" in str(e.value.status())
        # A byte size that is not the tensor's.
        mod = module_of(protocol)
        inputs = [mod.InferInput("x", [2, 4], "FP32"), mod.InferInput("y", [2, 4], "FP32")]
        inputs[0].set_shared_memory("kreq", 28)
        inputs[1].set_shared_memory("kreq", 32)
        with pytest.raises(InferenceServerException) as e:
            client.infer("addmul", inputs)
        assert "shared_memory_byte_size 28" in e.value.message()
        # Still serving, and the region still works.
        result = shm_infer(client, protocol, [("kreq", 0), ("kreq", 0)], [("kreq", 32, 32), ("kreq", 32, 32)])
        assert result is not None
        np.testing.assert_allclose(shm.get_contents_as_numpy(handle, np.float32, [2, 4], offset=32), 1.0)
    finally:
        client.unregister_system_shared_memory("kreq")
    with pytest.raises(InferenceServerException) as e:  # unregistered now
        shm_infer(client, protocol, [("kreq", 0), ("kreq", 0)], good_out)
    assert "not registered" in e.value.message()


def test_raw_http_shared_memory_errors(server):
    status, body = server.post("/v2/systemsharedmemory/region/r1/register", b"{not json")
    assert status == 400 and "JSON" in json.loads(body)["error"]
    status, body = server.post("/v2/systemsharedmemory/region/r1/register", {"key": "/k", "byte_size": -4})
    assert status == 400 and "byte_size" in json.loads(body)["error"]
    status, body = server.post("/v2/systemsharedmemory/region/r1/register", {"byte_size": 4})
    assert status == 400 and "key" in json.loads(body)["error"]
    x, _ = random_pair(1)
    request = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                           "parameters": {"shared_memory_region": "r1", "shared_memory_byte_size": 16,
                                          "shared_memory_offset": -8}},
                          {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": x.tolist()}]}
    status, body = server.post("/v2/models/addmul/infer", request)
    assert status == 400 and "shared_memory_offset" in json.loads(body)["error"]
    request["inputs"][0]["parameters"] = {"shared_memory_byte_size": 16}
    status, body = server.post("/v2/models/addmul/infer", request)
    assert status == 400 and "without shared_memory_region" in json.loads(body)["error"]
    status, body = server.get("/v2/systemsharedmemory/status")
    assert status == 200 and json.loads(body) == []


def has_gpu():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cuda_shared_memory_without_a_gpu_is_a_clear_error(clients, protocol):
    if has_gpu():
        pytest.skip("this machine has a GPU: test_cuda_shared_memory_round_trip covers it")
    client = pick(clients, protocol)
    # The size of a cudaIpcMemHandle_t, but no process exported it. Both clients take it in base64.
    raw = base64.b64encode(bytes(range(64))).decode()
    with pytest.raises(InferenceServerException) as e:
        client.register_cuda_shared_memory("gpu0", raw, 0, 64)
    message = e.value.message()
    assert "CUDA shared memory region 'gpu0'" in message
    assert "GPU" in message or "without the toolkit" in message
    got = client.get_cuda_shared_memory_status()
    assert (got == [] if protocol == "http" else len(got.regions) == 0)
    client.unregister_cuda_shared_memory()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cuda_shared_memory_round_trip(clients, protocol):
    if not has_gpu():
        pytest.skip("no GPU")
    cudashm = pytest.importorskip("tritonclient.utils.cuda_shared_memory")
    client = pick(clients, protocol)
    x, y = random_pair(2, seed=13)
    try:
        in_handle = cudashm.create_shared_memory_region("gin", 64, 0)
        out_handle = cudashm.create_shared_memory_region("gout", 64, 0)
    except Exception as e:  # noqa: BLE001 - a GPU without CUDA for Python: nothing to test with
        pytest.skip(f"cannot create CUDA shared memory: {e}")
    try:
        cudashm.set_shared_memory_region(in_handle, [x, y])
        client.register_cuda_shared_memory("gin", cudashm.get_raw_handle(in_handle), 0, 64)
        client.register_cuda_shared_memory("gout", cudashm.get_raw_handle(out_handle), 0, 64)
        shm_infer(client, protocol, [("gin", 0), ("gin", 32)], [("gout", 0, 32), ("gout", 32, 32)])
        got = cudashm.get_contents_as_numpy(out_handle, np.float32, [4, 4])
        np.testing.assert_allclose(got[:2], x + y, rtol=1e-6)
        np.testing.assert_allclose(got[2:], x * y, rtol=1e-6)
    finally:
        client.unregister_cuda_shared_memory()
        cudashm.destroy_shared_memory_region(in_handle)
        cudashm.destroy_shared_memory_region(out_handle)
