"""nv_gpu_* metrics from NVML, loaded at run time: absent without NVML (no error), and read from a stand-in
libnvidia-ml.so.1 built here (one GPU with known figures) so that the reading path is tested without a GPU."""

import shutil
import subprocess

import pytest

from conftest import Server, _save, metric_value, scale_model

FAKE_NVML = r"""
#include <string.h>
typedef struct { unsigned int gpu, memory; } util_t;
typedef struct { unsigned long long total, free, used; } mem_t;
int nvmlInit_v2(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned int* n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void** d) { *d = (void*)(unsigned long)(i + 1); return 0; }
int nvmlDeviceGetUUID(void* d, char* out, unsigned int len) {
  strncpy(out, d == (void*)1 ? "GPU-fake-0" : "GPU-fake-1", len); return 0;
}
int nvmlDeviceGetUtilizationRates(void* d, util_t* u) { u->gpu = d == (void*)1 ? 42 : 7; u->memory = 0; return 0; }
int nvmlDeviceGetMemoryInfo(void* d, mem_t* m) {
  m->total = 8ull << 30; m->used = d == (void*)1 ? 1ull << 30 : 3ull << 20; m->free = m->total - m->used; return 0;
}
"""


def nvml_loadable():
    import ctypes
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        return True
    except OSError:
        return False


def start(tmp_path, env=None):
    root = tmp_path / "models"
    _save(scale_model(), root / "scale" / "1" / "model.onnx")
    return Server(root, env=env)


def test_no_nvml_means_no_gpu_metrics_and_no_error(tmp_path):
    if nvml_loadable():
        pytest.skip("this machine has NVML")
    server = start(tmp_path)
    try:
        text = server.metrics()
        assert "nv_cpu_utilization " in text
        assert "nv_gpu_" not in text
        assert "NVML" not in server.output()
    finally:
        assert server.stop() == 0


def test_gpu_metrics_from_nvml(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in NVML")
    lib_dir = tmp_path / "nvml"
    lib_dir.mkdir()
    (lib_dir / "fake_nvml.c").write_text(FAKE_NVML)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib_dir / "libnvidia-ml.so.1"), str(lib_dir / "fake_nvml.c")],
                   check=True)
    server = start(tmp_path, env={"LD_LIBRARY_PATH": str(lib_dir)})
    try:
        text = server.metrics()
        assert metric_value(text, "nv_gpu_utilization", gpu_uuid="GPU-fake-0") == pytest.approx(0.42)
        assert metric_value(text, "nv_gpu_utilization", gpu_uuid="GPU-fake-1") == pytest.approx(0.07)
        assert metric_value(text, "nv_gpu_memory_total_bytes", gpu_uuid="GPU-fake-0") == 8 << 30
        assert metric_value(text, "nv_gpu_memory_used_bytes", gpu_uuid="GPU-fake-0") == 1 << 30
        assert metric_value(text, "nv_gpu_memory_used_bytes", gpu_uuid="GPU-fake-1") == 3 << 20
        assert "# TYPE nv_gpu_utilization gauge" in text
    finally:
        assert server.stop() == 0
