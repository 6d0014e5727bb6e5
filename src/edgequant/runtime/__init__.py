"""Running models: one :class:`Runner` protocol over onnxruntime, the reference interpreter,
LiteRT and the TFLite reference; feeds; ``verify``."""
