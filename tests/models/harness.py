"""Runs a model through `kiln run` and through onnxruntime, and compares the outputs."""

import os
import pathlib
import subprocess

import numpy as np
import onnx
import onnxruntime as ort

REPO = pathlib.Path(__file__).resolve().parents[2]


def kiln_binary():
    """The `kiln` CLI: $KILN_BIN, else $KILN_BUILD_DIR/kiln, else build/kiln in the repository."""
    if os.environ.get("KILN_BIN"):
        return pathlib.Path(os.environ["KILN_BIN"])
    build = pathlib.Path(os.environ.get("KILN_BUILD_DIR", REPO / "build"))
    return build / "kiln"


def run_kiln(args, timeout=600):
    """Runs `kiln ARGS...`; returns the CompletedProcess (text output)."""
    return subprocess.run([str(kiln_binary()), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def assert_clean_exit(proc):
    """A failing run must fail politely: an exit code (not a signal, not 128+N) and no sanitizer report."""
    output = proc.stdout + proc.stderr
    assert 0 <= proc.returncode < 128, f"kiln died (exit {proc.returncode}):\n{output}"
    assert "Sanitizer" not in output, f"sanitizer report:\n{output}"
    assert "runtime error" not in output, f"UBSan report:\n{output}"


def save_model(model, directory, name="model.onnx"):
    onnx.checker.check_model(model, full_check=True)
    path = pathlib.Path(directory) / name
    onnx.save(model, str(path))
    return path


def cpu_has_vnni():
    """Whether this CPU has 8-bit dot-product instructions (AVX512_VNNI or AVX_VNNI)."""
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


def int8_reference_level():
    """The onnxruntime graph optimization level to hold an 8-bit (QDQ) model's Kiln outputs to.

    With VNNI, onnxruntime's fused 8-bit kernels accumulate exact integers, as Kiln's do: all optimizations.
    Without it (an AVX2-only CPU) they multiply u8 by i8 into saturating 16-bit sums (vpmaddubsw) and were
    seen off by up to 1.06 on the quantized encoder, where Kiln's exact kernels agreed to 7e-7 with
    onnxruntime's unfused evaluation of the same QDQ graph (DequantizeLinear, float op, QuantizeLinear):
    that evaluation is the reference there.
    """
    if cpu_has_vnni():
        return ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def run_both(model_path, inputs, out_dir, ort_level=None):
    """Runs `model_path` on `inputs` (name -> ndarray) with Kiln and onnxruntime (at graph optimization level
    `ort_level`, default all).

    Returns (kiln_outputs, ort_outputs), each name -> ndarray, in the model's output order.
    """
    out_dir = pathlib.Path(out_dir)
    in_dir = out_dir / "inputs"
    kiln_dir = out_dir / "kiln"
    in_dir.mkdir(parents=True, exist_ok=True)
    args = ["run", model_path]
    for name, value in inputs.items():
        path = in_dir / f"{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    args += ["--output-dir", kiln_dir]
    proc = run_kiln(args)
    assert_clean_exit(proc)
    assert proc.returncode == 0, f"kiln run failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if ort_level is not None:
        options.graph_optimization_level = ort_level
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(names, inputs)))
    actual = {}
    for name in names:
        path = kiln_dir / f"{name}.npy"
        written = sorted(p.name for p in kiln_dir.iterdir()) if kiln_dir.exists() else []
        assert path.exists(), f"kiln wrote no {path.name}; it wrote {written}"
        actual[name] = np.load(path)
    return actual, expected


def compare(actual, expected, rtol, atol, exact=()):
    """Asserts every output matches: |a - e| <= atol + rtol * |e| for floats, equality for `exact` names and
    non-float outputs. Prints the max abs/rel error of each output (pytest shows it with -s or on failure)."""
    problems = []
    for name, e in expected.items():
        a = actual[name]
        if a.dtype != e.dtype or a.shape != e.shape:
            problems.append(f"{name}: kiln {a.dtype}{list(a.shape)}, onnxruntime {e.dtype}{list(e.shape)}")
            continue
        if name in exact or not np.issubdtype(e.dtype, np.floating):
            ok = np.array_equal(a, e)
            print(f"  {name}: {e.dtype}{list(e.shape)} exact: {'equal' if ok else 'DIFFERENT'}")
            if not ok:
                bad = np.argwhere(a != e)
                problems.append(f"{name}: {len(bad)} elements differ, first at {tuple(bad[0])}: "
                                f"kiln {a[tuple(bad[0])]}, onnxruntime {e[tuple(bad[0])]}")
            continue
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        abs_err = np.abs(a64 - e64)
        rel_err = abs_err / np.maximum(np.abs(e64), 1e-30)
        max_abs = float(abs_err.max()) if abs_err.size else 0.0
        max_rel = float(rel_err.max()) if rel_err.size else 0.0
        print(f"  {name}: {e.dtype}{list(e.shape)} max abs error {max_abs:.3g}, max rel error {max_rel:.3g}")
        bad = ~np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            i = tuple(np.argwhere(bad)[0])
            problems.append(f"{name}: {int(bad.sum())} of {e.size} values outside rtol={rtol}, atol={atol}; "
                            f"first at {i}: kiln {a[i]}, onnxruntime {e[i]}; max abs error {max_abs:.3g}")
    assert not problems, "\n".join(problems)
