"""Short perf_analyzer runs (Triton's load generator) against `kiln serve`, over HTTP and gRPC, at
concurrency 1, 2 and 4.

perf_analyzer ships inside tritonclient's wheel; the copy that runs on Debian 12 lives in its own
environment, .venv-perf, installed by scripts/setup.sh (requirements-perf.txt says why) and run through the
wrapper .venv-perf/bin/kiln-perf-analyzer. $KILN_PERF_ANALYZER names another one. Without one the test is
skipped outside CI and fails in CI (where setup.sh must have installed it).
"""

import csv
import os
import pathlib
import subprocess

import pytest

from conftest import REPO_ROOT, metric_value

CONCURRENCIES = [1, 2, 4]


def perf_analyzer():
    path = os.environ.get("KILN_PERF_ANALYZER") or str(REPO_ROOT / ".venv-perf" / "bin" / "kiln-perf-analyzer")
    if not pathlib.Path(path).exists():
        message = f"no perf_analyzer at {path} (bash scripts/setup.sh --no-build installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_perf_analyzer(url, protocol, model, out_csv):
    """Runs perf_analyzer at CONCURRENCIES with short windows; returns {concurrency: row of its CSV}.
    Stability is not asked for (-s 200 accepts any three windows): CI runs this beside other tests on a
    busy machine, and what is tested is that every request succeeds, not how steady the rate is."""
    range_arg = f"{CONCURRENCIES[0]}:{CONCURRENCIES[-1]}:1"
    run = subprocess.run([perf_analyzer(), "-m", model, "-u", url, "-i", protocol, "-b", "1",
                          "--concurrency-range", range_arg, "--measurement-interval", "400",
                          "--max-trials", "3", "--stability-percentage", "200", "-f", str(out_csv)],
                         capture_output=True, text=True, timeout=50)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr}\n{run.stdout[-3000:]}"
    with open(out_csv) as f:
        rows = {int(r["Concurrency"]): r for r in csv.DictReader(f)}
    return rows, run.stdout


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_reports_throughput_without_errors(server, tmp_path, protocol):
    url = server.url if protocol == "http" else server.grpc_url_or_skip()
    before = server.metrics()
    ok_before = metric_value(before, "nv_inference_request_success", model="scale", version="3")
    rows, text = run_perf_analyzer(url, protocol, "scale", tmp_path / "perf.csv")
    for c in CONCURRENCIES:
        assert c in rows, text
        assert float(rows[c]["Inferences/Second"]) > 0, rows[c]
        assert float(rows[c]["p99 latency"]) > 0, rows[c]
    after = server.metrics()
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert metric_value(after, "nv_inference_request_failure", model="scale", version="3", reason=reason) == \
            metric_value(before, "nv_inference_request_failure", model="scale", version="3", reason=reason)
    # Every request perf_analyzer counted reached the model and succeeded (it also sends uncounted ones).
    client_requests = sum(int(line.split(":")[1]) for line in text.splitlines()
                          if line.strip().startswith("Request count:"))
    assert metric_value(after, "nv_inference_request_success", model="scale", version="3") - ok_before >= \
        client_requests > 0
