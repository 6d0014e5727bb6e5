"""Graph loading, saving and passes (on onnx_ir / onnx)."""
