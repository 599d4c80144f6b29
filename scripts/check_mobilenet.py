#!/usr/bin/env python3
"""Checks that models/mobilenetv2.onnx carries the weights right: runs it with onnxruntime on sample
ImageNet images (preprocessed in NumPy/PIL) and requires a sensible top-1 accuracy."""

import argparse
import csv
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from kiln_models import mobilenet_v2  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "mobilenetv2.onnx"))
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "imagenet-sample"))
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--min-top1", type=float, default=0.6)
    args = parser.parse_args()

    with open(os.path.join(args.data, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    # Spread the picks over the classes rather than taking the first few (all fish).
    step = max(1, len(rows) // args.count)
    picks = rows[::step][: args.count]
    images = [os.path.join(args.data, "images", r["file"]) for r in picks]
    batch = np.stack([mobilenet_v2.preprocess(path) for path in images])
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": batch})[0]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    top1_ok = top5_ok = 0
    for r, t5 in zip(picks, top5):
        truth = int(r["index"])
        top1_ok += int(t5[0] == truth)
        top5_ok += int(truth in t5)
        print(f"{r['file']:45s} top1={rows[t5[0]]['name']:25s} {'ok' if t5[0] == truth else '--'}")
    n = len(picks)
    print(f"top-1 {top1_ok}/{n} = {top1_ok / n:.0%}, top-5 {top5_ok}/{n} = {top5_ok / n:.0%}")
    if top1_ok / n < args.min_top1:
        print(f"check_mobilenet: top-1 below {args.min_top1:.0%}: the weights are mapped wrongly",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
