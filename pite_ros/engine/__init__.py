"""Inference engines with one interface (torch, ONNX Runtime) and the ONNX export."""
