"""Module-classification splits of the docstring corpus: disjoint head / test / QAT text."""

from __future__ import annotations

import pytest

from edgequant_zoo.corpus import CALIBRATION_MODULES, CORPUS_MODULES, _module_docstrings
from edgequant_zoo.corpus_classes import (
    EXTRA_CLASS_MODULES,
    module_classification,
    wide_module_classification,
)


def test_wide_split_is_disjoint_from_head_and_qat_text():
    wide = wide_module_classification()
    calibration = {d for m in CALIBRATION_MODULES for d in _module_docstrings(m)}
    assert not set(wide.test_texts) & set(wide.train_texts)
    assert not (set(wide.test_texts) | set(wide.train_texts)) & calibration
    assert len(set(wide.test_texts)) == len(wide.test_texts)  # no repeats
    assert not set(EXTRA_CLASS_MODULES) & set(CORPUS_MODULES)


def test_wide_split_holds_the_original_classes_and_more_text():
    old, wide = module_classification(), wide_module_classification()
    assert set(old.classes) < set(wide.classes)
    assert len(wide.test_texts) > 2 * len(old.test_texts)
    for label in range(len(wide.classes)):  # every class in both halves
        assert label in wide.train_labels and label in wide.test_labels


def test_distinct_drops_repeats_inside_a_module():
    old = module_classification()
    distinct = module_classification(distinct=True)
    repeats = set(old.train_texts) & set(old.test_texts)  # a module repeating a docstring
    assert not set(distinct.train_texts) & set(distinct.test_texts)
    assert len(distinct.test_texts) + len(distinct.train_texts) <= \
        len(old.test_texts) + len(old.train_texts) - len(repeats)


def test_bad_min_docs_is_named():
    with pytest.raises(ValueError, match="min_docs"):
        wide_module_classification(min_docs=1)
