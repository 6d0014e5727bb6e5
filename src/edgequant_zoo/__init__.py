"""Model zoo and small real datasets for the demo, tests and benches.

Submodules (import them directly; only :mod:`mnist` and :mod:`corpus` avoid torch):

- :mod:`edgequant_zoo.mnist`: ``load_mnist``, ``load_digits_split`` → ``MnistSplit``
- :mod:`edgequant_zoo.tutorial_cnn`: the seed tutorial's CNN, ``train_tutorial_cnn``
- :mod:`edgequant_zoo.convnets`: ``VGGNet`` and ``MobileNetLike`` (≥ 1 M parameters)
- :mod:`edgequant_zoo.onnx_export`: ``export_onnx`` (opset 21, dynamic batch)
- :mod:`edgequant_zoo.minilm`: all-MiniLM-L6-v2 export, ``tokenize``
- :mod:`edgequant_zoo.corpus`: ``docstring_corpus`` (stdlib docstrings)
"""

from edgequant_zoo.corpus import docstring_corpus
from edgequant_zoo.mnist import MnistSplit, load_digits_split, load_mnist

__all__ = ["MnistSplit", "docstring_corpus", "load_digits_split", "load_mnist"]
