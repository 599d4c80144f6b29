#!/usr/bin/env python3
"""Kiln's CUDA backend against PyTorch on one GPU, same machine, same run.

For each model (ResNet-50, MobileNetV2, VGG-16 from python/kiln_models/zoo.py, random weights) and precision
(FP32 strict, TF32, FP16):
  * builds a Kiln plan (`kiln build --device cuda [--fp16]`, profile batch 1..OPT..MAX) and times the build;
  * checks the plan's output against onnxruntime (CPU) on the same random batch (norm-wise relative error);
  * runs `kiln bench` at each batch size (GPU compute time from CUDA events, and the whole Run() latency
    with the host<->device copies);
  * times PyTorch eager + CUDA graphs (torchvision model of the same architecture, random init,
    channels_last, input already on the GPU; median of CUDA-event timings of graph replays).
Prints one table (images/s, and Kiln compute / PyTorch ratio) and writes every number to --json.

    python3 bench/gpu_vs_pytorch.py --kiln build/kiln --models resnet50,mobilenet_v2,vgg16 \
        --batches 1,8,32,128 --json out.json

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
    tag = f"{model}_{prec}"
    env = dict(os.environ, KILN_CUDA_TF32="1" if prec == "tf32" else "0")
    plan = os.path.join(work, tag + ".plan")
    cmd = [args.kiln, "build", onnx_path, "--device", "cuda", "--shapes", *shapes_option(model, args.opt, max(args.batches)),
           "-o", plan]
    if fp16:
        cmd.append("--fp16")
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


def torch_side(model, prec, batches, iterations):
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
    else:
        m = getattr(torchvision.models, TORCHVISION[model])().eval().cuda().to(memory_format=torch.channels_last)
        m = m.to(dtype)
    res = {}
    for b in batches:
        if model == "bert":
            x = torch.randint(0, 1000, (b, args_seq()), device="cuda")
        else:
            x = torch.randn(b, 3, 224, 224, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)
        with torch.inference_mode():
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
            times = []
            for _ in range(iterations):
                e0 = torch.cuda.Event(enable_timing=True)
                e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
                g.replay()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1))
        res[b] = float(np.median(times))
        del g
        torch.cuda.empty_cache()
    del m
    torch.cuda.empty_cache()
    return res


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
    ap.add_argument("--seq", type=int, default=128, help="BERT sequence length")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    SEQ[0] = args.seq
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
        x = model_inputs(model, 2, rng)
        outs = sess.run(None, x)
        ref = {o.name: v.astype(np.float64) for o, v in zip(sess.get_outputs(), outs)}
        for prec in args.precisions.split(","):
            r = {"kiln": kiln_side(args, model, onnx_path, prec, x, ref, args.work)}
            if not args.no_torch:
                r["torch"] = torch_side(model, prec, args.batches, args.iterations)
            results[f"{model}/{prec}"] = r
            print(model, prec, json.dumps(r), flush=True)

    print()
    print(f"{'model':<14}{'prec':<6}{'build s':>8}{'err vs ORT':>11}  {'batch':>5}{'kiln /s':>12}"
          f"{'kiln e2e /s':>15}{'torch /s':>12}{'ratio':>7}   (samples/s: images, or sequences for bert)")
    for key, r in results.items():
        model, prec = key.split("/")
        k = r["kiln"]
        for b in args.batches:
            kb = k.get("bench", {}).get(b)
            kt = b / kb["compute_mean_ms"] * 1e3 if kb else float("nan")
            ke = b / kb["latency_median_ms"] * 1e3 if kb else float("nan")
            tt = b / r["torch"][b] * 1e3 if "torch" in r else float("nan")
            print(f"{model:<14}{prec:<6}{k.get('build_s', 0):>8.1f}{k.get('rel_err_vs_ort', float('nan')):>11.2e}  "
                  f"{b:>5}{kt:>12.0f}{ke:>15.0f}{tt:>12.0f}{kt / tt:>7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
