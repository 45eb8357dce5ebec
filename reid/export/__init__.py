"""Checkpoint -> ONNX -> TensorRT engine (or ONNX Runtime INT8), each with a parity check."""
