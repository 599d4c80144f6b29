"""Model control (explicit load/unload, polling), the command line, and draining on SIGTERM."""

import http.client
import json
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import tritonclient.http as httpclient

from conftest import (SLOWQ_CONFIG, Server, _save, addmul_inputs, addmul_json, addmul_model,
                      explicit_control_repository, kiln_binary, random_pair, scale_model, wait_for)


def test_explicit_load_and_unload(tmp_path):
    root = tmp_path / "models"
    explicit_control_repository(root)
    server = Server(root, "--model-control-mode", "explicit", "--load-model", "scale")
    try:
        client = httpclient.InferenceServerClient(server.url)
        assert client.is_model_ready("scale")
        assert not client.is_model_ready("addmul")
        client.load_model("addmul")
        assert client.is_model_ready("addmul")
        x, y = random_pair(2)
        np.testing.assert_allclose(client.infer("addmul", addmul_inputs(httpclient, x, y)).as_numpy("sum"), x + y,
                                   rtol=1e-6)
        client.unload_model("addmul")
        assert not client.is_model_ready("addmul")
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert index["addmul"]["state"] == "UNAVAILABLE" and index["addmul"]["reason"] == "unloaded"
        status, body = server.post("/v2/repository/models/nosuch/load")
        assert status == 404
        # A model whose config breaks fails to load with the reason; the old copy is gone, others serve.
        (root / "addmul" / "config.pbtxt").write_text("max_batch_size: -3\n")
        status, body = server.post("/v2/repository/models/addmul/load")
        assert status == 400 and "max_batch_size" in json.loads(body)["error"]
        assert client.is_model_ready("scale")
        client.close()
    finally:
        assert server.stop() == 0, server.output()


def test_poll_mode_picks_up_changes(tmp_path):
    root = tmp_path / "models"
    _save(scale_model(), root / "scale" / "1" / "model.onnx")
    server = Server(root, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    try:
        client = httpclient.InferenceServerClient(server.url)
        _save(addmul_model(), root / "addmul" / "1" / "model.onnx")
        assert wait_for(lambda: client.is_model_ready("addmul"))
        _save(scale_model(), root / "scale" / "2" / "model.onnx")  # a new version replaces version 1
        assert wait_for(lambda: client.get_model_metadata("scale")["versions"] == ["2"])
        shutil.rmtree(root / "addmul")
        assert wait_for(lambda: "addmul" not in [m["name"] for m in client.get_model_repository_index()])
        client.close()
    finally:
        assert server.stop() == 0, server.output()


def test_sigterm_drains_requests_in_flight(tmp_path):
    root = tmp_path / "models"
    _save(addmul_model(), root / "slowq" / "1" / "model.onnx")
    (root / "slowq" / "config.pbtxt").write_text(SLOWQ_CONFIG)
    server = Server(root)
    x, y = random_pair(1)
    body = addmul_json(x, y)
    # An idle keep-alive connection must not hold the exit up until its timeout.
    idle = http.client.HTTPConnection("127.0.0.1", server.http_port)
    idle.request("GET", "/v2/health/live")
    assert idle.getresponse().read() == b"{}"
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", server.post("/v2/models/slowq/infer", body)))
    t.start()
    time.sleep(0.1)  # the request waits out the 400 ms queue delay
    start = time.time()
    assert server.stop(signal.SIGTERM) == 0, server.output()
    assert time.time() - start < 5
    t.join()
    idle.close()
    status, reply = result["r"]
    assert status == 200, reply
    assert "shutting down" in server.output()


def test_bad_command_lines():
    bad = subprocess.run([str(kiln_binary()), "serve", "--model-repository", "/nonexistent/dir"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "not a directory" in bad.stderr
    usage = subprocess.run([str(kiln_binary()), "serve", "--model-repository", "/tmp", "--model-control-mode", "x"],
                           capture_output=True, text=True)
    assert usage.returncode == 2
