"""Running models: one :class:`Runner` protocol over onnxruntime, the reference interpreter,
LiteRT and the TFLite reference (:func:`open_runner`); one batching rule
(:mod:`~edgequant.runtime.batching`); one onnxruntime session factory
(:mod:`~edgequant.runtime.sessions`); feeds; ``verify`` with one
:class:`~edgequant.runtime.report.VerifyReport` for ONNX and TFLite."""
