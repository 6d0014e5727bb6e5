"""Tiny random-weight BERT encoders (Hugging Face ``BertModel``, 2 layers) exported with SDPA
and with eager attention, plus real-text-like token batches with padding."""

from __future__ import annotations

import numpy as np
import onnx

#: Vocabulary, width, layers and sequence length of the tiny encoder.
VOCAB, HIDDEN, LAYERS, SEQ = 120, 64, 2, 16
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tiny_bert(attn: str, with_mask: bool = True):
    """A seeded 2-layer BertModel (+ mean pooling) in eval mode."""
    import torch
    from transformers import BertConfig, BertModel

    from edgequant_zoo.bert_pooling import MeanPooledBert

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                     num_attention_heads=4, intermediate_size=4 * HIDDEN,
                     max_position_embeddings=64, attn_implementation=attn)
    bert = BertModel(cfg).eval()
    with torch.no_grad():  # an outlier feature like trained BERTs have (LayerNorm γ)
        for layer in bert.encoder.layer:
            layer.attention.output.LayerNorm.weight[3] = 12.0
            layer.output.LayerNorm.weight[7] = 9.0

    class NoMask(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids):
            return self.bert(input_ids=input_ids).last_hidden_state.mean(1)  # (N, H)

    return MeanPooledBert(bert).eval() if with_mask else NoMask().eval()


def tokens(n: int, seq: int = SEQ, seed: int = 0, min_len: int = 3) -> dict[str, np.ndarray]:
    """``n`` random token rows of length ``seq`` with right padding (mask 0 after each row's
    length), int64 like a Hugging Face tokenizer's output."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(n, seq), dtype=np.int64)
    lengths = rng.integers(min_len, seq + 1, size=n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)  # (n, seq)
    return {"input_ids": ids * mask, "attention_mask": mask,
            "token_type_ids": np.zeros((n, seq), dtype=np.int64)}


def export(module, path, names=INPUTS) -> str:
    import torch

    from edgequant_zoo.onnx_export import export_onnx

    feeds = tokens(2)
    example = tuple(torch.from_numpy(feeds[k]) for k in names)
    axes = {k: {0: "batch", 1: "sequence"} for k in names}
    return str(export_onnx(module, path, example, input_names=names,
                           output_names=("pooled",), dynamic_axes=axes))


def with_inf_mask(path: str, out: str) -> str:
    """The export with its dtype-minimum mask constant replaced by -inf (older exporters)."""
    from onnx import numpy_helper

    m = onnx.load(path)
    lo = np.finfo(np.float32).min
    for t in m.graph.initializer:
        v = numpy_helper.to_array(t)
        if v.dtype == np.float32 and v.size == 1 and v.item() == lo:
            t.CopyFrom(numpy_helper.from_array(np.full_like(v, -np.inf), t.name))
    onnx.save(m, out)
    return out


