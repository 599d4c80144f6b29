"""Demo and test models for Kiln, built as ONNX graphs without PyTorch."""
