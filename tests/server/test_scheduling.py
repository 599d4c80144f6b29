"""Priority levels of the dynamic batcher (priority_levels, default_priority_level, priority_queue_policy,
the request parameter `priority`) and the `optimization` precision requests of config.pbtxt."""

import threading
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import Server, _save, scale_model

grpcclient = pytest.importorskip("tritonclient.grpc")

# max_batch_size 4 with batches of 3 and 2: the two never fit together, so the moment a second request
# queues behind the first, the batcher runs the request at the head of the queue. Which request that is
# shows the order: by priority, the later high-priority one; by arrival, the earlier low-priority one.
PRIO_CONFIG = """
max_batch_size: 4
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching {
  max_queue_delay_microseconds: 400000
  priority_levels: 2
  default_priority_level: 2
  priority_queue_policy { key: 2 value: { max_queue_size: 1 } }
}
"""

FP16_TRITON = """
max_batch_size: 4
optimization { execution_accelerators {
  gpu_execution_accelerator: [ { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ]
} }
"""
FP16_KILN = 'max_batch_size: 4\nparameters { key: "precision" value { string_value: "fp16" } }\n'
THREADS = ('max_batch_size: 4\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n'
           'parameters { key: "cpu_threads" value { string_value: "1" } }\n'
           'parameters { key: "precision" value { string_value: "bf16" } }\n')
BAD_CONFIGS = {
    "badprec": ('optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
                'parameters { key: "precision_mode" value: "INT4" } } ] } }', "precision 'INT4'"),
    "badaccel": ('optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "openvino" } ] } }',
                 "'openvino' is not supported"),
    "clash": (FP16_TRITON.replace("max_batch_size: 4", "") +
              'parameters { key: "precision" value { string_value: "fp32" } }', "contradicts"),
    "badlevel": ("max_batch_size: 4\ndynamic_batching { priority_levels: 2 default_priority_level: 3 }",
                 "default_priority_level 3 is outside 1..2"),
    "badpolicy": ("max_batch_size: 4\ndynamic_batching { priority_levels: 2 default_priority_level: 1 "
                  "priority_queue_policy { key: 5 value: { max_queue_size: 1 } } }", "level 5 outside 1..2"),
    "badthreads": ('max_batch_size: 4\nparameters { key: "cpu_threads" value { string_value: "two" } }',
                   "'two' is not a positive thread count"),
}


@pytest.fixture(scope="module")
def sched_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sched") / "models"
    configs = {"prio": PRIO_CONFIG, "fp16": FP16_TRITON, "fp16kiln": FP16_KILN, "threads": THREADS}
    configs.update({name: text for name, (text, _) in BAD_CONFIGS.items()})
    for name, text in configs.items():
        _save(scale_model(), root / name / "1" / "model.onnx")
        (root / name / "config.pbtxt").write_text(text)
    s = Server(root)
    yield s
    assert s.stop() == 0, s.output()


def infer_scale(client, module, batch, priority=0, model="prio"):
    x = np.arange(batch * 3, dtype=np.float32).reshape(batch, 3)
    inp = module.InferInput("x", [batch, 3], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(model, [inp], priority=priority)
    np.testing.assert_allclose(result.as_numpy("y"), 2 * x)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_higher_priority_runs_first_and_levels_have_their_own_queue_bound(sched_server, protocol):
    module = httpclient if protocol == "http" else grpcclient
    url = sched_server.url if protocol == "http" else sched_server.grpc_url_or_skip()
    finished, errors = {}, []

    def send(name, batch, priority):
        client = module.InferenceServerClient(url)
        try:
            infer_scale(client, module, batch, priority)
            finished[name] = time.monotonic()
        except InferenceServerException as e:
            errors.append((name, e.message()))
        finally:
            client.close()

    low = threading.Thread(target=send, args=("low", 3, 0))  # 0: the default level, 2
    low.start()
    time.sleep(0.1)
    send("low2", 1, 2)  # level 2 holds one queued request: refused at once
    assert errors and errors[0][0] == "low2" and "queue is full" in errors[0][1] and "priority 2" in errors[0][1]
    start = time.monotonic()
    send("high", 2, 1)
    low.join()
    assert set(finished) == {"low", "high"}, errors
    assert finished["high"] < finished["low"]
    assert finished["high"] - start < 0.3  # ran at once, not after the queue delay


def test_priority_outside_the_levels_is_refused(sched_server):
    status, body = sched_server.post("/v2/models/prio/infer", {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
        "parameters": {"priority": 3}})
    assert status == 400 and b"priority 3 is outside 1..2" in body
    status, body = sched_server.post("/v2/models/prio/infer", {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
        "parameters": {"priority": "high"}})
    assert status == 400 and b"priority" in body
    # A model without priority levels ignores the parameter, as Triton does.
    client = httpclient.InferenceServerClient(sched_server.url)
    infer_scale(client, httpclient, 1, priority=9, model="fp16")
    client.close()


def test_precision_requests_load_and_bad_ones_say_why(sched_server):
    client = httpclient.InferenceServerClient(sched_server.url)
    index = {m["name"]: m for m in client.get_model_repository_index()}
    for name in ("fp16", "fp16kiln", "threads"):
        assert index[name]["state"] == "READY", index[name]
        infer_scale(client, httpclient, 2, model=name)  # a CPU build: FP16 falls back to FP32
    accel = client.get_model_config("fp16")["optimization"]["execution_accelerators"]
    assert accel["gpu_execution_accelerator"][0]["parameters"]["precision_mode"] == "FP16"
    for name, (_, needle) in BAD_CONFIGS.items():
        assert index[name]["state"] == "UNAVAILABLE", name
        assert needle in index[name]["reason"], (name, index[name]["reason"])
    prio = client.get_model_config("prio")["dynamic_batching"]
    assert int(prio["priority_levels"]) == 2 and int(prio["default_priority_level"]) == 2
    client.close()
