"""Integer-only ONNX (QOperator): lowering the QDQ graph to QLinear* / integer ops."""
