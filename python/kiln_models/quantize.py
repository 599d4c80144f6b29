"""INT8 models in the QDQ form, made with onnxruntime's own quantization tool (a reference no one here
wrote), for Kiln's 8-bit CPU path (the fuse_qdq pass, kiln.QConv / kiln.QAdd) and its benchmark.

    python -m kiln_models.quantize IN.onnx OUT.onnx [--samples 16] [--shape input:1x3x224x224]
        [--images DIR]

onnxruntime.quantization.quantize_static with QuantFormat.QDQ: activations u8 (asymmetric, per tensor),
weights i8 (symmetric, per output channel), min/max calibration on --samples inputs: ImageNet images from
--images (resized to the input's size, normalized with the usual ImageNet mean and std) or, without it,
standard-normal tensors. The model is first pre-processed by onnxruntime (shape inference, BatchNorm folded
into the convolutions), as its documentation asks.
"""

import argparse
import os
import tempfile

import numpy as np


def _image_batches(directory, shape, count):
    from PIL import Image

    files = sorted(f for f in os.listdir(directory) if f.lower().endswith((".jpg", ".jpeg", ".png")))[:count]
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
    for f in files:
        img = Image.open(os.path.join(directory, f)).convert("RGB").resize((shape[3], shape[2]))
        a = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        yield ((a - mean) / std)[None].repeat(shape[0], axis=0).astype(np.float32)


def quantize_qdq(src, dst, input_name, shape, samples=16, images=None, seed=0):
    """Writes the QDQ INT8 form of the float model `src` to `dst`; calibration inputs of `shape` for the
    graph input `input_name`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if images:
        data = list(_image_batches(images, shape, samples))
    else:
        rng = np.random.default_rng(seed)
        data = [rng.standard_normal(shape).astype(np.float32) for _ in range(samples)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = [{input_name: d} for d in data]

        def get_next(self):
            return self.items.pop() if self.items else None

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--shape", default="input:1x3x224x224", help="NAME:DIMS of the calibration input")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--images", default=None, help="a directory of images for calibration")
    a = ap.parse_args()
    name, dims = a.shape.rsplit(":", 1)
    quantize_qdq(a.src, a.dst, name, [int(d) for d in dims.split("x")], a.samples, a.images)
    print(f"{a.dst}: QDQ INT8 (u8 activations, i8 per-channel weights)")


if __name__ == "__main__":
    main()
