#!/usr/bin/env python3
"""Kiln's CUDA backend against PyTorch on one GPU, same machine, same run.

For each model (ResNet-50, MobileNetV2, VGG-16, BERT-base from python/kiln_models/zoo.py, random weights) and precision
(FP32 strict, TF32, FP16):
  * builds a Kiln plan (`kiln build --device cuda [--fp16]`, profile batch 1..OPT..MAX) and times the build;
  * checks the plan's output against onnxruntime (CPU) on the same random batch (norm-wise relative error);
  * runs `kiln bench` at each batch size (GPU compute time from CUDA events, and the whole Run() latency
    with the host<->device copies);
  * times PyTorch eager (torchvision / transformers model of the same architecture, random init,
    channels_last, input already on the GPU; median of CUDA-event timings, the faster of plain calls and
    CUDA-graph replays);
  * times torch.compile of the same model (--compile-mode, default reduce-overhead: Inductor's kernels
    replayed from CUDA graphs; max-autotune also tunes Triton GEMM/conv templates and takes minutes per
    model and batch) at --compile-batches (each batch size is compiled separately).
BERT runs at each sequence length of --seq (e.g. 128,384). Prints one table (samples/s; Kiln compute
over PyTorch eager and over torch.compile) and writes every number to --json.

    python3 bench/gpu_vs_pytorch.py --kiln build/kiln --models resnet50,mobilenet_v2,vgg16,bert \
        --batches 1,8,32,128 --seq 128,384 --compile-mode max-autotune --json out.json

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

# FLOPs per 224x224 image (2 x multiply-adds), for the arithmetic floor in the table.
GFLOP = {"resnet50": 8.2, "mobilenet_v2": 0.6, "vgg16": 31.0, "bert": 22.5}  # bert: per sequence of 128
TORCHVISION = {"resnet50": "resnet50", "mobilenet_v2": "mobilenet_v2", "vgg16": "vgg16"}


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
    return {"input": rng.uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)}


SEQ = [128]


def args_seq():
    return SEQ[0]


def shapes_option(model, opt, mx):
    if model == "bert":
        s = args_seq()
        return [f"input_ids:1x{s}..{opt}x{s}..{mx}x{s}", f"attention_mask:1x{s}..{opt}x{s}..{mx}x{s}"]
    return [f"input:1x3x224x224..{opt}x3x224x224..{mx}x3x224x224"]


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
        m = getattr(torchvision.models, TORCHVISION[model])().eval().cuda().to(memory_format=torch.channels_last)
        m = m.to(dtype)
        make = lambda b: torch.randn(b, 3, 224, 224, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)
    return m, make


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
    a CUDA graph (graphs remove launch gaps, but either can be the faster one), and both in `detail`."""
    import torch

    m, make = torch_model(model, prec)
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
    return res, detail


def compiled_side(model, prec, batches, iterations, mode):
    """torch.compile(mode=...) of the same model, compiled per batch size (dynamic=False): median ms and
    the seconds the first calls took (compilation and autotuning)."""
    import torch

    m, make = torch_model(model, prec)
    res, compile_s = {}, {}
    for b in batches:
        torch._dynamo.reset()
        cm = torch.compile(m, mode=mode, dynamic=False)
        x = make(b)
        with torch.inference_mode():
            t0 = time.time()
            for _ in range(3):
                cm(x)
            torch.cuda.synchronize()
            compile_s[b] = time.time() - t0
            for _ in range(5):
                cm(x)
            res[b] = time_events(lambda: cm(x), iterations)
        del cm
        torch.cuda.empty_cache()
    del m
    torch._dynamo.reset()
    torch.cuda.empty_cache()
    return res, compile_s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vgg16")
    ap.add_argument("--precisions", default="fp32,tf32,fp16")
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--opt", type=int, default=32, help="batch the tactics are timed at")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--work", default="/tmp/kiln_gpu_bench")
    ap.add_argument("--json", default="")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--seq", default="128", help="BERT sequence lengths, comma-separated (e.g. 128,384)")
    ap.add_argument("--compile-mode", default="reduce-overhead",
                    choices=["none", "default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune"],
                    help="torch.compile mode for the compiled peer ('none' skips it); max-autotune takes minutes "
                         "per model and batch")
    ap.add_argument("--compile-batches", default="",
                    help="batch sizes to time torch.compile at (default: the largest of --batches)")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.compile_batches = ([int(b) for b in args.compile_batches.split(",")] if args.compile_batches
                            else [max(args.batches)])
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
                r = {"kiln": kiln_side(args, model, onnx_path, prec, x, ref, args.work), "seq": seq}
                if not args.no_torch:
                    r["torch"], r["torch_detail"] = torch_side(model, prec, args.batches, args.iterations)
                    if args.compile_mode != "none":
                        try:
                            r["compiled"], r["compile_s"] = compiled_side(model, prec, args.compile_batches,
                                                                          args.iterations, args.compile_mode)
                        except Exception as e:  # a compile failure costs the column, not the run
                            print(f"torch.compile failed for {model} {prec}: {e}", flush=True)
                key = f"{model}@{seq}/{prec}" if model == "bert" else f"{model}/{prec}"
                results[key] = r
                print(key, json.dumps(r), flush=True)

    print()
    print(f"torch.compile mode: {args.compile_mode} (at batches {','.join(map(str, args.compile_batches))}); "
          f"eager = PyTorch eager, the faster of plain calls and a CUDA-graph replay; samples/s: images, or "
          f"sequences for bert@SEQ")
    print(f"{'model':<14}{'prec':<6}{'build s':>8}{'err vs ORT':>11}  {'batch':>5}{'kiln /s':>10}"
          f"{'kiln e2e /s':>12}{'eager /s':>10}{'compiled /s':>12}{'k/eager':>8}{'k/comp':>8}")
    nan = float("nan")
    for key, r in results.items():
        model, prec = key.split("/")
        k = r["kiln"]
        for b in args.batches:
            kb = k.get("bench", {}).get(b)
            kt = b / kb["compute_mean_ms"] * 1e3 if kb else nan
            ke = b / kb["latency_median_ms"] * 1e3 if kb else nan
            tt = b / r["torch"][b] * 1e3 if "torch" in r else nan
            ct = b / r["compiled"][b] * 1e3 if b in r.get("compiled", {}) else nan
            print(f"{model:<14}{prec:<6}{k.get('build_s', 0):>8.1f}{k.get('rel_err_vs_ort', nan):>11.2e}  "
                  f"{b:>5}{kt:>10.0f}{ke:>12.0f}{tt:>10.0f}{ct:>12.0f}{kt / tt:>8.2f}{kt / ct:>8.2f}")
    for key, r in results.items():
        if r.get("compile_s"):
            print(f"torch.compile time {key}: " + ", ".join(f"batch {b} {s:.0f} s" for b, s in r["compile_s"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
