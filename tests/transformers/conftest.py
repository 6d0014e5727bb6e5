"""Fixtures: tiny BERT exports (see ``tiny_bert``)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from tiny_bert import export, tiny_bert, with_inf_mask


@pytest.fixture(scope="session", params=["sdpa", "eager"])
def bert_onnx(request, tmp_path_factory) -> str:
    """A tiny BERT exported with ``request.param`` attention, its mask constant -inf."""
    d = tmp_path_factory.mktemp(f"bert_{request.param}")
    path = export(tiny_bert(request.param), d / "bert.onnx")
    return with_inf_mask(path, str(d / "bert_inf.onnx"))
