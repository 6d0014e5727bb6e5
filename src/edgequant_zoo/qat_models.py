"""Float teachers for QAT benchmarks that the zoo builds elsewhere only as ONNX files."""

from __future__ import annotations


def minilm_module():
    """The all-MiniLM-L6-v2 embedder as an ``nn.Module`` (eval mode, real weights):
    ``(input_ids, attention_mask, token_type_ids)`` → unit-norm (N, 384) embeddings, the
    module :func:`edgequant_zoo.minilm.export_minilm` exports."""
    from edgequant_zoo import minilm

    return minilm._embedder(minilm.load_sentence_transformer())
