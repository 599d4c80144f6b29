"""Kiln against onnxruntime on the CPU, measured side by side in one run (run by hand, not in CI).

For each model and batch size: Kiln builds an engine for exactly that shape (tactics timed on it), and
onnxruntime opens a session with every graph optimization on; both use the same number of threads. After
warm-up, they run in alternating blocks (about --duration seconds each in all, so that the load of a
shared machine falls on both alike); the script prints latency (mean, median, p99) and throughput
for both and Kiln's speed-up (latency at batch 1, throughput at larger batches), checks that the two
agree on the outputs, and appends rows to --csv.

    .venv/bin/python bench/cpu_vs_onnxruntime.py [--models resnet50,mobilenet_v2,vgg16,bert,ssd_mobilenet]
        [--batches 1,16] [--threads N] [--duration 3] [--seq 128] [--precision fp32|bf16|int8]
        [--csv bench/cpu_results.csv]

--precision bf16 builds Kiln's engines with BF16 tactics allowed (CPUs with BF16 instructions); onnxruntime
stays FP32, so the speed-up is then BF16 Kiln against FP32 onnxruntime and the output difference shows
what the rounding costs.

--precision int8 quantizes each model first with onnxruntime's own tool (python/kiln_models/quantize.py:
QDQ form, u8 activations, i8 per-channel weights, min/max calibration on 16 inputs: the ImageNet images
of ../shared/data/imagenet-sample when present) and Kiln builds that QDQ model (its fuse_qdq pass makes the 8-bit layers).
The speed-up is INT8 Kiln against FP32 onnxruntime on the original model (the issue's target); the
INT8 onnxruntime column runs the same QDQ model in onnxruntime, and the output difference is against it.
For BERT the quantizer takes the MatMuls with constant weights only (kiln_models.quantize: layer norms,
softmax and the attention products stay float), calibrated on random token ids.

Models come from python/kiln_models/zoo.py (written to models/zoo/ if missing; BERT-base: 12 layers,
hidden 768). The FLOP count per sample is printed so the distance from the machine's peak can be judged.
"""
import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vgg16,bert,ssd_mobilenet")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--seq", type=int, default=128, help="BERT sequence length")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    ap.add_argument("--csv", default=os.path.join(ROOT, "bench", "cpu_results.csv"))
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    return ap.parse_args()


args = parse_args()
# Both runtimes get the same threads: oneDNN (OpenMP) reads OMP_NUM_THREADS when it starts.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
sys.path.insert(0, os.path.join(ROOT, "python"))  # kiln_models
sys.path.insert(0, os.path.join(args.build_dir, "python"))  # the built module kiln (ahead of python/kiln)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

import kiln  # noqa: E402


def model_path(name):
    path = os.path.join(ROOT, "models", "zoo", f"{name}.onnx")
    if not os.path.exists(path):
        subprocess.run([sys.executable, "-m", "kiln_models.zoo", os.path.dirname(path), "--models", name],
                       check=True, env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python")))
    return path


def int8_model_path(name, fp32_path, shapes):
    """The QDQ INT8 form of a zoo model, made once by onnxruntime's quantizer (models/zoo/NAME.int8.onnx);
    `shapes`: the calibration input shapes by name."""
    from kiln_models.quantize import quantize_qdq_inputs

    path = os.path.join(ROOT, "models", "zoo", f"{name}.int8.onnx")
    if not os.path.exists(path):
        images = os.path.join(ROOT, "..", "shared", "data", "imagenet-sample", "images")
        print(f"quantizing {name} with onnxruntime (QDQ) ...", flush=True)
        quantize_qdq_inputs(fp32_path, path, shapes, samples=16, images=images if os.path.isdir(images) else None)
    return path


def feeds_for(model, batch, seq, rng):
    feeds, shapes = {}, []
    init = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init:
            continue
        dims = []
        for d in inp.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            else:
                dims.append(batch if not dims else seq)
        et = inp.type.tensor_type.elem_type
        if et == onnx.TensorProto.INT64:
            a = rng.integers(0, 100, size=dims).astype(np.int64)
            if "mask" in inp.name:
                a = np.ones(dims, np.int64)
        else:
            a = rng.standard_normal(dims).astype(np.float32)
        feeds[inp.name] = a
        shapes.append(f"{inp.name}:{'x'.join(map(str, dims))}")
    return feeds, ",".join(shapes)


def conv_gemm_flops(model, feeds):
    """Multiply-adds x2 of Conv/Gemm/MatMul per sample, from onnx shape inference at these input sizes."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        if inp.name in feeds:
            for d, size in zip(inp.type.tensor_type.shape.dim, feeds[inp.name].shape):
                d.Clear()
                d.dim_value = size
    m = onnx.shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for name, a in feeds.items():
        shapes[name] = list(a.shape)
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    flops = 0
    batch = next(iter(feeds.values())).shape[0]
    for n in m.graph.node:
        try:
            if n.op_type == "Conv":
                w = inits[n.input[1]]
                out = shapes[n.output[0]]
                flops += 2 * np.prod(out) * np.prod(w[1:])
            elif n.op_type in ("Gemm", "MatMul"):
                a = shapes.get(n.input[0]) or inits.get(n.input[0])
                b = inits.get(n.input[1]) or shapes.get(n.input[1])
                out = shapes[n.output[0]]
                k = a[-1] if not (n.op_type == "Gemm" and any(at.name == "transA" and at.i for at in n.attribute)) else a[-2]
                flops += 2 * np.prod(out) * k
        except (KeyError, TypeError):
            pass
    return flops / batch


def time_blocks(fns, duration, blocks=4):
    """Times the runtimes in alternating blocks (about duration / blocks seconds each, `blocks` per
    runtime, at least 5 runs in all), so that drift in a shared machine's speed (this VM's timings move
    10-30% from minute to minute) falls on both alike. Blocks rather than single runs because both keep
    their worker threads spinning for a moment after a run (libgomp under oneDNN, onnxruntime's pool):
    run for run, each would slow the other down on 2 cores. Each block starts after a 0.3 s pause and one
    untimed run. Returns one stats dict per fn."""
    for fn in fns:
        for _ in range(2):
            fn()
    times = [[] for _ in fns]
    for b in range(blocks):
        for i, fn in enumerate(fns):
            time.sleep(0.3)
            fn()
            end = time.perf_counter() + duration / blocks
            while time.perf_counter() < end or (b == blocks - 1 and len(times[i]) < 5):
                t = time.perf_counter()
                fn()
                times[i].append((time.perf_counter() - t) * 1e3)
    out = []
    for ts in times:
        t = np.array(ts)
        out.append({"mean": t.mean(), "median": float(np.median(t)), "p99": float(np.percentile(t, 99)),
                    "n": len(t)})
    return out


def main():
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {cpu}, {args.threads} threads, "
          f"onnxruntime {ort.__version__}, Kiln {args.precision}")
    int8 = args.precision == "int8"
    print(f"{'model':<15}{'batch':>6} {'kiln ms':>10} {'ort ms':>10} {'kiln /s':>10} {'ort /s':>10} "
          f"{'speed-up':>9} {'GFLOP/s kiln':>13} {'max rel diff':>13}" + (f" {'ort int8 /s':>12}" if int8 else ""))
    for name in args.models.split(","):
        path = model_path(name)
        model = onnx.load(path, load_external_data=False)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for batch in batches:
            feeds, shapes = feeds_for(model, batch, args.seq, rng)
            kiln_path, int8_sess = path, None
            if int8:
                kiln_path = int8_model_path(name, path, {k: [1] + list(v.shape[1:]) for k, v in feeds.items()})
                int8_sess = ort.InferenceSession(kiln_path, so, providers=["CPUExecutionProvider"])
            t0 = time.perf_counter()
            engine = kiln.build(str(kiln_path), shapes=shapes, precision="fp32" if int8 else args.precision)
            build_s = time.perf_counter() - t0
            ctx = engine.create_context()
            got = ctx.run(feeds)
            ref = int8_sess or sess
            want = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, feeds)))
            diff = max(float(np.max(np.abs(got[k] - want[k])) / (np.max(np.abs(want[k])) + 1e-12)) for k in want)
            fns = [lambda: ctx.run(feeds), lambda: sess.run(None, feeds)]
            if int8_sess:
                fns.append(lambda: int8_sess.run(None, feeds))
            stats = time_blocks(fns, args.duration)
            k, o = stats[0], stats[1]
            q = stats[2] if int8_sess else None
            kt, ot = batch * 1e3 / k["mean"], batch * 1e3 / o["mean"]
            speedup = (o["median"] / k["median"]) if batch == 1 else (kt / ot)
            flops = conv_gemm_flops(model, feeds)
            gflops = flops * batch / (k["median"] * 1e-3) / 1e9
            print(f"{name:<15}{batch:>6} {k['median']:>10.2f} {o['median']:>10.2f} {kt:>10.1f} {ot:>10.1f} "
                  f"{speedup:>8.2f}x {gflops:>13.1f} {diff:>13.2e}" +
                  (f" {batch * 1e3 / q['mean']:>12.1f}" if q else ""), flush=True)
            rows.append({"date": datetime.date.today().isoformat(), "cpu": cpu, "threads": args.threads,
                         "precision": args.precision,
                         "model": name, "batch": batch, "kiln_median_ms": round(k["median"], 3),
                         "kiln_p99_ms": round(k["p99"], 3), "ort_median_ms": round(o["median"], 3),
                         "ort_p99_ms": round(o["p99"], 3), "kiln_per_s": round(kt, 2), "ort_per_s": round(ot, 2),
                         "speedup": round(speedup, 3), "gflop_per_sample": round(flops / 1e9, 3),
                         "kiln_gflops": round(gflops, 1), "max_rel_diff": diff, "kiln_build_s": round(build_s, 2),
                         "ort_int8_per_s": round(batch * 1e3 / q["mean"], 2) if q else "",
                         "tactics": ",".join(sorted({layer["tactic"] for layer in engine.layers}))})
    if args.csv:
        new = not os.path.exists(args.csv)
        with open(args.csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            if new:
                w.writeheader()
            w.writerows(rows)
        print(f"rows appended to {args.csv}")


if __name__ == "__main__":
    main()
