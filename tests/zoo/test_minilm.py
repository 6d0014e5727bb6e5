"""all-MiniLM-L6-v2: tokenizer feeds, and the exported ONNX equals SentenceTransformer.encode."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgequant_zoo.corpus import docstring_corpus
from edgequant_zoo.minilm import EMBEDDING_DIM, MINILM_INPUTS, export_minilm, tokenize

# Same float32 network in two runtimes; cosine of unit vectors differs from 1 by ~1e-7.
MIN_COSINE = 1 - 1e-4
# Element-wise: summation order over 384-wide dot products across 6 layers.
EMBEDDING_ATOL = 1e-5
SEQ_LEN = 128


def test_tokenize_matches_sentence_transformers_tokenizer():
    from edgequant_zoo.minilm import load_sentence_transformer

    texts = docstring_corpus(n=8)
    feeds = tokenize(texts, seq_len=SEQ_LEN)
    assert list(feeds) == list(MINILM_INPUTS)
    assert all(v.shape == (8, SEQ_LEN) and v.dtype == np.int64 for v in feeds.values())
    st = load_sentence_transformer()
    ref = st.tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ_LEN)
    for name in MINILM_INPUTS:
        np.testing.assert_array_equal(feeds[name], np.asarray(ref[name]), err_msg=name)
    assert (feeds["input_ids"][:, 0] == st.tokenizer.cls_token_id).all()


def test_tokenize_rejects_tiny_seq_len():
    with pytest.raises(ValueError, match="seq_len=1"):
        tokenize(["x"], seq_len=1)


@pytest.mark.slow
def test_exported_minilm_equals_sentence_transformer_encode(tmp_path):
    from edgequant_zoo.minilm import load_sentence_transformer

    path = export_minilm(tmp_path / "minilm.onnx", seq_len=SEQ_LEN)
    proto = onnx.load(path, load_external_data=False)
    assert [i.name for i in proto.graph.input] == list(MINILM_INPUTS)
    assert [o.name for o in proto.graph.output] == ["sentence_embedding"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    st = load_sentence_transformer()
    st.max_seq_length = SEQ_LEN  # encode truncates where our fixed-length feeds do
    texts = docstring_corpus(n=24)
    expected = st.encode(texts, convert_to_numpy=True)  # (24, 384) unit rows
    # Fixed-length padding and a shorter, differently padded batch (dynamic sequence axis).
    for feeds in (tokenize(texts, SEQ_LEN), tokenize(texts[:5], 40)):
        got = sess.run(None, feeds)[0]
        ref = expected[: len(got)]
        if feeds["input_ids"].shape[1] != SEQ_LEN:
            st.max_seq_length = 40
            ref = st.encode(texts[:5], convert_to_numpy=True)
        assert got.shape == (len(ref), EMBEDDING_DIM)
        cos = np.sum(got * ref, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() >= MIN_COSINE
        np.testing.assert_allclose(got, ref, rtol=0, atol=EMBEDDING_ATOL)
