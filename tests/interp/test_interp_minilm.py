"""all-MiniLM-L6-v2 (exported from the bundled weights) through the interpreter vs
onnxruntime: float, edgequant w8a8 QDQ and its QOperator lowering. Slow: the export alone
takes ~50 s on this machine."""

from __future__ import annotations

import onnx
import pytest

from edgequant.runtime.verify import verify

pytestmark = pytest.mark.slow

SEQ_LEN = 32
#: float32 transformer: different summation order / erf / exp implementations (measured
#: 1.5e-7 on unit-norm 384-d embeddings).
FLOAT_ATOL = 1e-5
#: quantized graphs: every integer tensor must be bit-exact (measured 0 LSB); the float tail
#: (LayerNorm, Gelu, pooling) then differs like the float model does.
MAX_LSB = 0

SENTENCES = ["the quick brown fox", "integer arithmetic proves what ships", "hello",
             "quantization makes models small"]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    from edgequant_zoo.minilm import export_minilm, tokenize

    path = export_minilm(tmp_path_factory.mktemp("minilm") / "minilm.onnx", seq_len=SEQ_LEN)
    return onnx.load(path), tokenize(SENTENCES, seq_len=SEQ_LEN)


@pytest.fixture(scope="module")
def minilm_qdq(minilm):
    from edgequant import quantize
    from edgequant_zoo.minilm import tokenize

    calib = tokenize([f"calibration sentence {i} about models" for i in range(8)], SEQ_LEN)
    return quantize(minilm[0], "w8a8", calibration=calib).model


def test_float_minilm(minilm):
    model, feeds = minilm
    report = verify(model, feeds)
    assert report.ok(float_atol=FLOAT_ATOL), report.to_dict()["outputs"]


def test_quantized_minilm_qdq_and_lowered(minilm, minilm_qdq):
    from edgequant.export.qop.lower import lower_to_qop

    feeds = minilm[1]
    shipped = verify(minilm_qdq, feeds, per_node=True)  # interpreted as ORT fuses it
    assert shipped.lowered
    assert shipped.ok(MAX_LSB, float_atol=FLOAT_ATOL), shipped.to_dict()["outputs"]
    integer = [d for d in shipped.nodes if d.kind == "integer"]
    assert integer and all(d.max_diff <= MAX_LSB for d in integer)
    lowered = lower_to_qop(minilm_qdq)
    assert verify(lowered, feeds).ok(MAX_LSB, float_atol=FLOAT_ATOL)
