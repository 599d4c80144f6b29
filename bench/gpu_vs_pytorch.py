#!/usr/bin/env python3
"""Kiln's CUDA backend against PyTorch on one GPU, same machine, same run.

For each model (ResNet-50, MobileNetV2, VGG-16, the SSD-MobileNetV2-style detector and BERT-base from
python/kiln_models/zoo.py, random weights) and precision (FP32 strict, TF32, FP16):
  * builds a Kiln plan (`kiln build --device cuda [--fp16]`, profile batch 1..OPT..MAX) and times the build;
  * checks the plan's output against onnxruntime (CPU) on the same random batch (norm-wise relative error);
  * runs `kiln bench` at each batch size (GPU compute time from CUDA events, and the whole Run() latency
    with the host<->device copies);
  * times PyTorch eager (torchvision / transformers model of the same architecture, random init,
    channels_last, input already on the GPU; median of CUDA-event timings, the faster of plain calls and
    CUDA-graph replays);
  * counts the PyTorch model's FLOPs per sample (torch.utils.flop_counter at batch 1) and measures the GEMM
    ceilings of the GPU once (8192^3 products, FP16 and strict FP32): the FLOP floor of each row;
  * after all of that, times torch.compile of the same model (--compile-mode, default max-autotune: Triton
    GEMM/conv templates tuned on the GPU, kernels replayed from CUDA graphs, minutes per model and batch;
    reduce-overhead compiles in seconds) for --compile-models x --compile-precisions x --compile-batches
    (each batch size compiled separately, in a child process that is stopped at --deadline-s).
BERT runs at each sequence length of --seq (e.g. 128,384). The detector is the zoo's network up to its box
regressions and class softmax (no box decoding or NMS: the zoo model has none); its PyTorch peer is the same
architecture written below (torchvision's MobileNetV2 features). Prints one table (samples/s; Kiln compute
over PyTorch eager and over torch.compile; Kiln's share of the FLOP ceiling) and writes every number to
--json after each model.

    python3 bench/gpu_vs_pytorch.py --kiln build/kiln --models resnet50,mobilenet_v2,vgg16,ssd_mobilenet,bert \
        --precisions fp32,fp16 --batches 1,8,32,128 --seq 128,384 --compile-mode max-autotune \
        --compile-models resnet50 --compile-precisions fp16 --compile-batches 128,1 --deadline-s 560 --json out.json

Needs on the GPU machine: torch + torchvision (for the peer), onnx + numpy (zoo), onnxruntime (check).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

TORCHVISION = {"resnet50": "resnet50", "mobilenet_v2": "mobilenet_v2", "vgg16": "vgg16"}
IMAGE_SIZE = {"ssd_mobilenet": 300}  # the zoo's size for each CNN (224 otherwise)
T0 = time.time()


def run(cmd, **kw):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.time() - t0
    if p.returncode != 0:
        print("FAILED:", " ".join(cmd), "\n", p.stdout[-3000:], p.stderr[-3000:], flush=True)
    return p, dt


def model_inputs(model, batch, rng):
    """The model's inputs by name (NumPy), for the correctness check."""
    if model == "bert":
        return {"input_ids": rng.integers(0, 1000, (batch, args_seq())).astype(np.int64),
                "attention_mask": np.ones((batch, args_seq()), np.int64)}
    size = IMAGE_SIZE.get(model, 224)
    return {"input": rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)}


SEQ = [128]


def args_seq():
    return SEQ[0]


def shapes_option(model, opt, mx):
    if model == "bert":
        s = args_seq()
        return [f"input_ids:1x{s}..{opt}x{s}..{mx}x{s}", f"attention_mask:1x{s}..{opt}x{s}..{mx}x{s}"]
    r = IMAGE_SIZE.get(model, 224)
    return [f"input:1x3x{r}x{r}..{opt}x3x{r}x{r}..{mx}x3x{r}x{r}"]


def kiln_side(args, model, onnx_path, prec, x, ref, work):
    fp16 = prec == "fp16"
    tag = f"{model}_{prec}_s{args_seq()}" if model == "bert" else f"{model}_{prec}"
    env = dict(os.environ)
    env.pop("KILN_CUDA_TF32", None)
    plan = os.path.join(work, tag + ".plan")
    cmd = [args.kiln, "build", onnx_path, "--device", "cuda", "--shapes", *shapes_option(model, args.opt, max(args.batches)),
           "-o", plan]
    if fp16:
        cmd.append("--fp16")
    if prec == "tf32":
        cmd.append("--tf32")
    p, build_s = run(cmd, env=env)
    out = {"build_s": build_s, "ok": p.returncode == 0}
    if p.returncode != 0:
        out["error"] = (p.stderr or p.stdout)[-500:]
        return out
    # Correctness: the same batch through Kiln and onnxruntime.
    feeds = []
    for name, arr in x.items():
        path = os.path.join(work, name + ".npy")
        np.save(path, arr)
        feeds += ["--input", f"{name}={path}"]
    od = os.path.join(work, tag + "_out")
    p, _ = run([args.kiln, "run", plan, *feeds, "--output-dir", od], env=env)
    if p.returncode == 0:
        errs = []
        for name, want in ref.items():
            got = np.load(os.path.join(od, name + ".npy")).astype(np.float64)
            errs.append(float(np.linalg.norm(got - want) / np.linalg.norm(want)))
        out["rel_err_vs_ort"] = max(errs)
    # Speed.
    csv_path = os.path.join(work, tag + ".csv")
    p, _ = run([args.kiln, "bench", plan, "--batch", ",".join(map(str, args.batches)), "--iterations",
                str(args.iterations), "--warmup", "5", "--csv", csv_path], env=env)
    out["bench"] = {}
    if p.returncode == 0:
        with open(csv_path) as f:
            for row in csv.DictReader(f):
                out["bench"][int(row["batch"])] = {
                    "latency_median_ms": float(row["latency_median_ms"]),
                    "compute_mean_ms": float(row["compute_mean_ms"]),
                    "h2d_mean_ms": float(row["h2d_mean_ms"]),
                    "d2h_mean_ms": float(row["d2h_mean_ms"]),
                }
    return out


def ssd_peer():
    """zoo.ssd_mobilenet in PyTorch: torchvision's MobileNetV2 features, taken at stride 16 (96 channels) and
    32 (320), four extra blocks (1x1 reduce, 3x3 stride 2, BN, ReLU6), a 3x3 box head (6 anchors x 4) and
    class head (6 x 91) on each of the six maps; boxes [N, A, 4] and class softmax [N, A, 91]."""
    import torch
    import torchvision
    from torch import nn

    def cbr(cin, cout, k, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU6(inplace=True))

    class Ssd(nn.Module):
        def __init__(self, classes=91, anchors=6):
            super().__init__()
            features = torchvision.models.mobilenet_v2().features
            self.stride16, self.stride32 = features[:14], features[14:18]
            chans, extras = [96, 320], []
            for cout in [512, 256, 256, 128]:
                extras.append(nn.Sequential(cbr(chans[-1], cout // 2, 1, 1), cbr(cout // 2, cout, 3, 2)))
                chans.append(cout)
            self.extras = nn.ModuleList(extras)
            self.box = nn.ModuleList(nn.Conv2d(c, anchors * 4, 3, 1, 1) for c in chans)
            self.cls = nn.ModuleList(nn.Conv2d(c, anchors * classes, 3, 1, 1) for c in chans)
            self.classes = classes

        def forward(self, x):
            maps = [self.stride16(x)]
            maps.append(self.stride32(maps[0]))
            for extra in self.extras:
                maps.append(extra(maps[-1]))
            n = x.shape[0]
            flat = lambda heads, per: torch.cat(
                [h(f).permute(0, 2, 3, 1).reshape(n, -1, per) for h, f in zip(heads, maps)], 1)
            return flat(self.box, 4), flat(self.cls, self.classes).softmax(-1)

    return Ssd()


def torch_model(model, prec):
    import torch
    import torchvision

    fp16 = prec == "fp16"
    torch.backends.cudnn.benchmark = True
    # "fp32" is strict FP32 on both sides; "tf32" lets both use TF32 tensor cores (PyTorch's default for
    # cuDNN convolutions).
    torch.backends.cudnn.allow_tf32 = prec == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
    dtype = torch.float16 if fp16 else torch.float32
    if model == "bert":
        import transformers
        m = transformers.BertModel(transformers.BertConfig(vocab_size=1000)).eval().cuda().to(dtype)
        make = lambda b: torch.randint(0, 1000, (b, args_seq()), device="cuda")
    else:
        m = ssd_peer() if model == "ssd_mobilenet" else getattr(torchvision.models, TORCHVISION[model])()
        m = m.eval().cuda().to(memory_format=torch.channels_last).to(dtype)
        size = IMAGE_SIZE.get(model, 224)
        make = lambda b: torch.randn(b, 3, size, size, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)
    return m, make


def flops_per_sample(m, make):
    """FLOPs (2 x multiply-adds of convolutions, GEMMs and attention) of the PyTorch model at batch 1."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            m(make(1))
        return float(counter.get_total_flops())
    except Exception as e:  # costs the FLOP column only
        print("FLOP count failed:", e, flush=True)
        return float("nan")


def gemm_ceilings():
    """FLOP/s of an 8192^3 product on random data: FP16 (tensor cores, FP32 accumulation) and strict FP32."""
    import torch

    out = {}
    for name, dtype in [("fp16", torch.float16), ("fp32", torch.float32)]:
        torch.backends.cuda.matmul.allow_tf32 = False
        a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        for _ in range(3):
            a @ b
        ms = time_events(lambda: a @ b, 10)
        out[name] = 2 * 8192 ** 3 / (ms * 1e-3)
        del a, b
    out["tf32"] = out["fp32"]  # a lower bound for TF32 rows: the strict FP32 rate
    torch.cuda.empty_cache()
    return out


def time_events(fn, iterations):
    import torch
    times = []
    for _ in range(iterations):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    return float(np.median(times))


def torch_side(model, prec, batches, iterations):
    """PyTorch eager: median ms per batch size, the faster of plain calls and the whole forward replayed from
    a CUDA graph (graphs remove launch gaps, but either can be the faster one), both in `detail`, and the
    model's FLOPs per sample."""
    import torch

    m, make = torch_model(model, prec)
    flops = flops_per_sample(m, make)
    res, detail = {}, {}
    for b in batches:
        x = make(b)
        with torch.inference_mode():
            for _ in range(3):
                m(x)
            plain = time_events(lambda: m(x), iterations)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    m(x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                m(x)
            for _ in range(5):
                g.replay()
            graph = time_events(g.replay, iterations)
        res[b] = min(plain, graph)
        detail[b] = {"plain_ms": plain, "graph_ms": graph}
        del g
        torch.cuda.empty_cache()
    del m
    torch.cuda.empty_cache()
    return res, detail, flops


def compiled_one(model, prec, batch, iterations, mode, seq, queue):
    """torch.compile(mode=...) of the model at one batch size (dynamic=False), in a child process: puts the
    median ms and the seconds the first calls took (compilation and autotuning) on the queue."""
    import torch

    SEQ[0] = seq
    m, make = torch_model(model, prec)
    cm = torch.compile(m, mode=mode, dynamic=False)
    x = make(batch)
    with torch.inference_mode():
        t0 = time.time()
        for _ in range(3):
            cm(x)
        torch.cuda.synchronize()
        compile_s = time.time() - t0
        for _ in range(5):
            cm(x)
        queue.put((time_events(lambda: cm(x), iterations), compile_s))


def compiled_side(model, prec, batch, iterations, mode, seq, timeout_s):
    """compiled_one in a spawned process stopped after timeout_s: (ms, compile seconds), or None."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=compiled_one, args=(model, prec, batch, iterations, mode, seq, queue))
    p.start()
    p.join(timeout_s)
    if p.is_alive():
        p.kill()
        p.join()
        print(f"torch.compile {model} {prec} batch {batch}: stopped after {timeout_s:.0f} s", flush=True)
        return None
    try:
        return queue.get(timeout=10)
    except Exception:  # the child failed: its traceback is on stderr
        return None


def save(args, results):
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def print_table(args, results, ceilings):
    compiled_at = ",".join(f"{m}/{p}@{b}" for m in args.compile_models for p in args.compile_precisions
                           for b in args.compile_batches)
    print()
    print(f"torch.compile mode: {args.compile_mode} ({compiled_at or 'not run'}); eager = PyTorch eager, the faster "
          f"of plain calls and a CUDA-graph replay; samples/s: images, or sequences for bert@SEQ; GFLOP: per "
          f"sample; ceil%: Kiln's FLOP/s over the GPU's GEMM rate in that precision "
          + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in ceilings.items()))
    print(f"{'model':<17}{'prec':<6}{'GFLOP':>7}{'build s':>8}{'err vs ORT':>11}  {'batch':>5}{'kiln /s':>10}"
          f"{'kiln e2e /s':>12}{'eager /s':>10}{'compiled /s':>12}{'k/eager':>8}{'k/comp':>8}{'ceil%':>7}")
    nan = float("nan")
    for key, r in results.items():
        model, prec = key.split("/")
        k = r["kiln"]
        flops = r.get("flops", nan)
        for b in args.batches:
            kb = k.get("bench", {}).get(b)
            kt = b / kb["compute_mean_ms"] * 1e3 if kb else nan
            ke = b / kb["latency_median_ms"] * 1e3 if kb else nan
            tt = b / r["torch"][b] * 1e3 if b in r.get("torch", {}) else nan
            ct = b / r["compiled"][b] * 1e3 if b in r.get("compiled", {}) else nan
            ceil = 100 * kt * flops / ceilings[prec] if prec in ceilings else nan
            print(f"{model:<17}{prec:<6}{flops / 1e9:>7.2f}{k.get('build_s', 0):>8.1f}"
                  f"{k.get('rel_err_vs_ort', nan):>11.2e}  {b:>5}{kt:>10.0f}{ke:>12.0f}{tt:>10.0f}{ct:>12.0f}"
                  f"{kt / tt:>8.2f}{kt / ct:>8.2f}{ceil:>7.1f}")
    for key, r in results.items():
        if r.get("compile_s"):
            print(f"torch.compile time {key}: " + ", ".join(f"batch {b} {s:.0f} s" for b, s in r["compile_s"].items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vgg16,ssd_mobilenet,bert")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--opt", type=int, default=32, help="batch the tactics are timed at")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--work", default="/tmp/kiln_gpu_bench")
    ap.add_argument("--json", default="")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--seq", default="128,384", help="BERT sequence lengths, comma-separated")
    ap.add_argument("--compile-mode", default="max-autotune",
                    choices=["none", "default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune"],
                    help="torch.compile mode for the compiled peer ('none' skips it); max-autotune takes minutes "
                         "per model and batch")
    ap.add_argument("--compile-models", default="resnet50", help="models to time torch.compile on")
    ap.add_argument("--compile-precisions", default="fp16", help="precisions to time torch.compile at")
    ap.add_argument("--compile-batches", default="",
                    help="batch sizes to time torch.compile at, in this order (default: the largest of --batches)")
    ap.add_argument("--deadline-s", type=float, default=0,
                    help="seconds after the start by which the script prints its table (0: no limit): models "
                         "not started a minute before it are skipped and torch.compile runs are stopped at it")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.compile_batches = ([int(b) for b in args.compile_batches.split(",")] if args.compile_batches
                            else [max(args.batches)])
    args.compile_models = [] if args.compile_mode == "none" or args.no_torch else args.compile_models.split(",")
    args.compile_precisions = args.compile_precisions.split(",")
    seqs = [int(q) for q in args.seq.split(",")]
    os.makedirs(args.work, exist_ok=True)
    models = args.models.split(",")
    zoo_dir = os.path.join(args.work, "zoo")
    missing = [m for m in models if not os.path.exists(os.path.join(zoo_dir, m + ".onnx"))]
    if missing:
        subprocess.run([sys.executable, "-m", "kiln_models.zoo", zoo_dir, "--models", ",".join(missing),
                        "--bert-layers", "12"], check=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "python")),
                       stdout=subprocess.DEVNULL)
    import onnxruntime as ort

    ceilings = {} if args.no_torch else gemm_ceilings()
    print("GEMM ceilings (TFLOP/s):", {k: round(v / 1e12) for k, v in ceilings.items()}, flush=True)
    results = {}
    rng = np.random.default_rng(0)
    for model in models:
        onnx_path = os.path.join(zoo_dir, model + ".onnx")
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        for seq in (seqs if model == "bert" else [0]):
            SEQ[0] = seq or 128
            x = model_inputs(model, 2, rng)
            outs = sess.run(None, x)
            ref = {o.name: v.astype(np.float64) for o, v in zip(sess.get_outputs(), outs)}
            for prec in args.precisions.split(","):
                if args.deadline_s and time.time() - T0 > args.deadline_s - 60:
                    print(f"{model}@{seq}/{prec}: skipped, past --deadline-s", flush=True)
                    continue
                r = {"kiln": kiln_side(args, model, onnx_path, prec, x, ref, args.work), "seq": seq}
                if not args.no_torch:
                    r["torch"], r["torch_detail"], r["flops"] = torch_side(model, prec, args.batches,
                                                                           args.iterations)
                key = f"{model}@{seq}/{prec}" if model == "bert" else f"{model}/{prec}"
                results[key] = r
                print(key, f"t={time.time() - T0:.0f}s", json.dumps(r), flush=True)
                save(args, results)

    # torch.compile last: with max-autotune it takes minutes per model and batch.
    for key, r in results.items():
        model, prec = key.split("/")
        model = model.split("@")[0]
        if model not in args.compile_models or prec not in args.compile_precisions:
            continue
        for b in args.compile_batches:
            left = args.deadline_s - (time.time() - T0) if args.deadline_s else 1e9
            if left < 30:
                print(f"torch.compile {key} batch {b}: skipped, {left:.0f} s left before --deadline-s", flush=True)
                continue
            SEQ[0] = r["seq"] or 128
            try:
                got = compiled_side(model, prec, b, args.iterations, args.compile_mode, SEQ[0], left - 10)
            except Exception as e:  # a compile failure costs the column, not the run
                print(f"torch.compile failed for {key} batch {b}: {e}", flush=True)
                got = None
            if got:
                r.setdefault("compiled", {})[b], r.setdefault("compile_s", {})[b] = got
                print(f"torch.compile {key} batch {b}: {got[0]:.3f} ms, {got[1]:.0f} s to compile, "
                      f"t={time.time() - T0:.0f}s", flush=True)
                save(args, results)

    print_table(args, results, ceilings)
    save(args, results)


if __name__ == "__main__":
    main()
