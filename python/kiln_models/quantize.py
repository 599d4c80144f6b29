"""INT8 models in the QDQ form, made with onnxruntime's own quantization tool (a reference no one here
wrote), for Kiln's 8-bit CPU path (the fuse_qdq pass, kiln.QConv / kiln.QMatMul / kiln.QAdd) and its
benchmark.

    python -m kiln_models.quantize IN.onnx OUT.onnx [--samples 16] [--shape input:1x3x224x224]
        [--images DIR]
    python -m kiln_models.quantize bert.onnx bert_int8.onnx --shape input_ids:1x128 --shape attention_mask:1x128

onnxruntime.quantization.quantize_static with QuantFormat.QDQ: activations u8 (asymmetric, per tensor),
weights i8 (symmetric, per output channel), min/max calibration on --samples inputs. Which ops: a model
with convolutions gets onnxruntime's default set (Conv, Add, pools, ...); a model without (a transformer)
gets its MatMuls with constant weights quantized and everything else left in float (the usual choice for
BERT-style encoders: the weight GEMMs are nearly all of the work, while layer norms, the softmax and the
attention products of two activations lose accuracy in 8 bits). Calibration inputs: ImageNet images from
--images for an image input (resized, normalized with the usual ImageNet mean and std), else standard-normal
floats; integer inputs are token ids drawn below the size of the embedding table they index (inputs named
*mask* are all ones). The model is first pre-processed by onnxruntime (shape inference, BatchNorm folded
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


def _embedding_rows(model, input_name):
    """The row count of the constant table that `input_name` indexes through a Gather (a vocabulary), or
    None."""
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Gather" and len(n.input) == 2 and n.input[1] == input_name and n.input[0] in inits:
            return int(inits[n.input[0]].dims[0])
    return None


def _random_inputs(model, shapes, samples, rng):
    """`samples` feeds of random calibration data for the graph inputs named in `shapes`."""
    import onnx

    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    feeds = [{} for _ in range(samples)]
    for name, shape in shapes.items():
        if name not in types:
            raise ValueError(f"the model has no input '{name}' (its inputs: {', '.join(types)})")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[name])
        rows = (_embedding_rows(model, name) or 100) if np.issubdtype(dtype, np.integer) else None
        for f in feeds:
            if "mask" in name.lower():
                f[name] = np.ones(shape, dtype)
            elif rows is not None:
                f[name] = rng.integers(0, rows, shape).astype(dtype)
            else:
                f[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def quantize_qdq_inputs(src, dst, shapes, samples=16, images=None, seed=0):
    """Writes the QDQ INT8 form of the float model `src` to `dst`, calibrated on inputs of `shapes` (graph
    input name -> dims); images from `images` for a rank-4 float input when given."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(src, load_external_data=False)
    data = _random_inputs(model, shapes, samples, np.random.default_rng(seed))
    if images:
        for name, shape in shapes.items():
            if len(shape) == 4:
                for f, img in zip(data, _image_batches(images, shape, samples)):
                    f[name] = img
    options = {}
    if not any(n.op_type == "Conv" for n in model.graph.node):
        inits = {i.name for i in model.graph.initializer}
        options["op_types_to_quantize"] = ["MatMul"]
        # A MatMul's float output goes straight on to its bias Add (fused into the 8-bit product): no Q/DQ
        # pair on it, which would cost a rounding step and two passes for nothing.
        options["extra_options"] = {"OpTypesToExcludeOutputQuantization": ["MatMul"]}
        options["nodes_to_exclude"] = [n.name for n in model.graph.node
                                       if n.op_type == "MatMul" and not any(i in inits for i in n.input)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = list(data)

        def get_next(self):
            return self.items.pop() if self.items else None

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **options)
    return dst


def quantize_qdq(src, dst, input_name, shape, samples=16, images=None, seed=0):
    """quantize_qdq_inputs for a model with one input."""
    return quantize_qdq_inputs(src, dst, {input_name: list(shape)}, samples, images, seed)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--shape", action="append", default=None,
                    help="NAME:DIMS of a calibration input, once per input (default input:1x3x224x224)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--images", default=None, help="a directory of images for calibration")
    a = ap.parse_args()
    shapes = {}
    for spec in a.shape or ["input:1x3x224x224"]:
        name, dims = spec.rsplit(":", 1)
        shapes[name] = [int(d) for d in dims.split("x")]
    quantize_qdq_inputs(a.src, a.dst, shapes, a.samples, a.images)
    print(f"{a.dst}: QDQ INT8 (u8 activations, i8 per-channel weights)")


if __name__ == "__main__":
    main()
