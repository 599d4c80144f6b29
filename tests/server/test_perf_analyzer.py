"""A short perf_analyzer run (Triton's load generator) at concurrency 1 and 4 against `kiln serve`.

perf_analyzer ships inside tritonclient's wheel, but the one of the pinned tritonclient needs glibc 2.38
(Debian 12 has 2.36). tritonclient 2.41.0's binary runs here with Debian's libb64-0d and libcudart.so.12
from PyPI's nvidia-cuda-runtime-cu12; point $KILN_PERF_ANALYZER at it (and $KILN_CUDART_DIR at the
library's folder). Without a runnable perf_analyzer the test is skipped and says why.
"""

import os
import pathlib
import subprocess
import sys

import pytest


def perf_analyzer():
    candidates = [os.environ.get("KILN_PERF_ANALYZER"), str(pathlib.Path(sys.executable).parent / "perf_analyzer")]
    env = dict(os.environ)
    if os.environ.get("KILN_CUDART_DIR"):
        env["LD_LIBRARY_PATH"] = os.environ["KILN_CUDART_DIR"] + ":" + env.get("LD_LIBRARY_PATH", "")
    reasons = []
    for c in candidates:
        if not c or not pathlib.Path(c).exists():
            continue
        probe = subprocess.run([c, "--help"], capture_output=True, text=True, env=env, timeout=30)
        text = probe.stdout + probe.stderr
        if "error while loading shared libraries" in text or "GLIBC" in text:
            reasons.append(f"{c}: {text.strip().splitlines()[-1]}")
            continue
        return c, env
    pytest.skip("no runnable perf_analyzer: " + ("; ".join(reasons) or "none found"))


def test_perf_analyzer_concurrency_1_and_4(server):
    binary, env = perf_analyzer()
    run = subprocess.run([binary, "-m", "addmul", "-u", server.url, "-i", "http", "-b", "1",
                          "--concurrency-range", "1:4:3", "--measurement-interval", "500"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Concurrency: 1, throughput:" in run.stdout
    assert "Concurrency: 4, throughput:" in run.stdout
