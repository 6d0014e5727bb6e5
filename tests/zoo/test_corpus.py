"""The stdlib docstring corpus: deterministic, 200 distinct non-trivial strings."""

import pytest

from edgequant_zoo.corpus import MIN_DOCSTRING_CHARS, docstring_corpus


def test_corpus_has_200_distinct_nonempty_docstrings():
    texts = docstring_corpus()
    assert len(texts) == 200
    assert len(set(texts)) == 200
    assert all(isinstance(t, str) and len(t.strip()) >= MIN_DOCSTRING_CHARS for t in texts)


def test_corpus_is_deterministic_and_seeded():
    assert docstring_corpus(n=50, seed=3) == docstring_corpus(n=50, seed=3)
    assert docstring_corpus(n=50, seed=3) != docstring_corpus(n=50, seed=4)


def test_corpus_prefix_property():
    # A smaller n is a prefix of a larger one: benches can grow the set without reshuffling.
    assert docstring_corpus(n=20) == docstring_corpus(n=200)[:20]


def test_corpus_rejects_bad_n():
    with pytest.raises(ValueError, match="n=0"):
        docstring_corpus(n=0)
    with pytest.raises(ValueError, match="only"):
        docstring_corpus(n=10**7)
