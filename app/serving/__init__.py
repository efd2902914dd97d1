"""Serving a model's ONNX artifact with onnxruntime: its recorded preprocessing, a session cache, a bounded pool."""
