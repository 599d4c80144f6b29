"""Kiln's Python bindings: build an engine from ONNX, save/load plans, run with NumPy arrays.

    import kiln
    engine = kiln.build("model.onnx", shapes="x:1x3x224x224..8x3x224x224..32x3x224x224")
    engine.save("model.plan")
    engine = kiln.load("model.plan")
    ctx = engine.create_context()
    outputs = ctx.run({"x": array})       # {name: numpy.ndarray}
"""
from ._kiln import Context, Engine, KilnError, build, load, load_bytes  # noqa: F401

__all__ = ["build", "load", "load_bytes", "Engine", "Context", "KilnError"]
