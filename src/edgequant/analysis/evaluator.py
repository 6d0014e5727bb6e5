"""Quantize a model with one recipe and score it against float: the unit of every sweep.

An :class:`Evaluator` holds everything one evaluation needs as plain data (model bytes, feeds,
float reference outputs, activation qparams), so it can be shipped once to Ray workers and
gives the same numbers there as in the driver. Activation ranges are calibrated *once* for
every (tensor, spec) pair the per-layer precisions can ask for and handed to
:func:`edgequant.quantize` as ``qparams``: each evaluation then skips calibration, and its
model is identical to what ``edgequant.quantize(model, recipe, calibration)`` writes (same
observers, same batches). onnxruntime runs with one thread: identical outputs everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from edgequant.analysis.budget import Scorer, metric_name, scorer
from edgequant.analysis.cache import cache_key, feeds_digest
from edgequant.graph.passes.fold import prepare_float
from edgequant.ptq.calibrate import DEFAULT_BATCH, calibrate
from edgequant.qparams import QParams
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.plan import QuantPlan, resolve
from edgequant.recipes.recipe import Recipe
from edgequant.runtime.batching import batches
from edgequant.runtime.feeds import batch_axes_of, load_feeds, model_inputs
from edgequant.runtime.sessions import ort_session
from edgequant.spec import QuantSpec

log = logging.getLogger(__name__)

#: Uniform recipes whose activation specs cover every per-layer precision of
#: :mod:`edgequant.analysis.layers` (int4 / int8 layers read uint8, int16 layers int16).
CALIBRATED_RECIPES = ("w8a8", "w8a16")


@dataclass(frozen=True)
class Evaluation:
    """One recipe's result: model bytes and the metric drop on the search (and check) data."""

    recipe: str
    bytes: int
    score: float
    drop: float
    check_score: float | None = None
    check_drop: float | None = None

    def to_dict(self) -> dict:
        """JSON-able fields (``check_*`` are ``None`` without held-apart data)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def run_first_output(model: onnx.ModelProto | bytes, feeds: Mapping[str, np.ndarray],
                     batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """The first output of ``model`` on all samples, in onnxruntime with one thread."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.ModelProto.FromString(model)
    sess = ort_session(proto, threads=1)
    inputs = model_inputs(proto)
    shapes = {i.name: i.shape for i in inputs}
    first = sess.get_outputs()[0].name
    parts = []
    for b in batches(feeds, shapes, batch_size, axes=batch_axes_of(inputs)):
        out = sess.run([first], b.feeds)[0]  # (B, ...)
        parts.append(out[: b.count])
    return np.concatenate(parts, axis=0)


def _labels_digest(labels: np.ndarray | None) -> str:
    return feeds_digest(None if labels is None else {"labels": np.asarray(labels)})


class Evaluator:
    """Scores recipes on ``data`` (and held-apart ``check`` data) against the float model.

    ``model`` is an ONNX ``ModelProto``; feeds map input name → samples on the first axis.
    ``metric`` is a name of :data:`edgequant.analysis.budget.METRICS` or a callable.
    """

    def __init__(self, model: onnx.ModelProto, calibration: Mapping[str, np.ndarray],
                 data: Mapping[str, np.ndarray], *, labels: np.ndarray | None = None,
                 metric: str | Scorer = "agreement", check: Mapping[str, np.ndarray] | None = None,
                 check_labels: np.ndarray | None = None, batch_size: int = DEFAULT_BATCH,
                 recipes: tuple[Recipe, ...] = ()) -> None:
        self.score_fn = scorer(metric, labels)
        if check is not None:
            scorer(metric, check_labels)
        self.model_bytes = model.SerializeToString()
        self.float_model = prepare_float(model, [])
        inputs = model_inputs(self.float_model)
        self.calibration = load_feeds(calibration, inputs, what="calibration data")
        self.data = load_feeds(data, inputs, what="data")
        self.check = load_feeds(check, inputs, what="held-apart data") if check is not None \
            else None
        self.labels, self.check_labels = labels, check_labels
        self.batch_size = batch_size
        self.reference = run_first_output(self.float_model, self.data, batch_size)
        self.check_reference = run_first_output(self.float_model, self.check, batch_size) \
            if self.check is not None else None
        self.float_score = self.score_fn(self.reference, self.reference, labels)
        self.check_float_score = self.score_fn(self.check_reference, self.check_reference,
                                               check_labels) if self.check is not None else None
        self._table: dict[tuple[str, QuantSpec], QParams] | None = None
        self._calibrated = (*(get_recipe(n) for n in CALIBRATED_RECIPES), *recipes)
        #: identifies everything an evaluation depends on except the recipe (cache keys)
        self.digest = cache_key(self.model_bytes, feeds_digest(self.calibration),
                                feeds_digest(self.data), feeds_digest(self.check),
                                _labels_digest(labels), _labels_digest(check_labels),
                                metric_name(metric), batch_size)

    # -- activation qparams, calibrated once ---------------------------------------------

    def activation_table(self) -> dict[tuple[str, QuantSpec], QParams]:
        """(tensor, spec) → calibrated qparams for every activation of the calibrated recipes."""
        if self._table is None:
            wanted: dict[tuple[str, QuantSpec], None] = {}
            for rec in self._calibrated:
                plan = resolve(rec, self.float_model)
                for d in plan.tensors.values():
                    if d.role == "activation" and d.action == "quantize" and d.mode == "static":
                        wanted[(d.tensor, d.spec)] = None
            keys = list(wanted)
            specs = {str(i): spec for i, (_, spec) in enumerate(keys)}
            sources = {str(i): t for i, (t, _) in enumerate(keys)}
            inputs = model_inputs(self.float_model)
            shapes = {i.name: i.shape for i in inputs}
            feeds = (b.feeds for b in batches(self.calibration, shapes, self.batch_size,
                                              pad=False, axes=batch_axes_of(inputs)))
            got = calibrate(self.float_model, specs, feeds, tensors=sources)
            self._table = {k: got[str(i)] for i, k in enumerate(keys)}
            log.info("calibrated %d (tensor, spec) pairs once for the sweeps", len(keys))
        return self._table

    def overrides(self, plan: QuantPlan) -> dict[str, QParams]:
        """Calibrated activation qparams for ``plan``'s keys (missing keys calibrate as usual)."""
        table = self.activation_table()
        out = {}
        for key, d in plan.tensors.items():
            if d.role == "activation" and d.action == "quantize" and d.mode == "static":
                qp = table.get((d.tensor, d.spec))
                if qp is not None:
                    out[key] = qp
        return out

    def without_check(self) -> Evaluator:
        """A copy scoring the search data only (its own cache digest)."""
        import copy

        c = copy.copy(self)
        c.check = c.check_reference = c.check_labels = c.check_float_score = None
        c.digest = cache_key(self.digest, "without held-apart data")
        return c

    def share_table(self, other: Evaluator) -> None:
        """Reuse ``other``'s calibrated activation table (same model and calibration)."""
        if other._table is not None:
            self._table = other._table

    # -- one evaluation ------------------------------------------------------------------

    def quantize(self, recipe: Recipe):
        """``edgequant.quantize`` of the model with ``recipe``, ranges from the table."""
        from edgequant.ptq.quantizer import quantize

        plan = resolve(recipe, self.float_model)
        return quantize(onnx.ModelProto.FromString(self.model_bytes), recipe, self.calibration,
                        qparams=self.overrides(plan), batch_size=self.batch_size)

    def evaluate(self, recipe: Recipe) -> Evaluation:
        """Quantize with ``recipe`` and score it on the search (and check) data."""
        qm = self.quantize(recipe)
        blob = qm.model.SerializeToString()
        out = run_first_output(blob, self.data, self.batch_size)
        score = self.score_fn(self.reference, out, self.labels)
        check_score = check_drop = None
        if self.check is not None:
            cout = run_first_output(blob, self.check, self.batch_size)
            check_score = self.score_fn(self.check_reference, cout, self.check_labels)
            check_drop = self.check_float_score - check_score
        log.debug("evaluated %s: drop %.4f", recipe.name, self.float_score - score)
        return Evaluation(recipe.name, len(blob), float(score), float(self.float_score - score),
                          None if check_score is None else float(check_score),
                          None if check_drop is None else float(check_drop))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["float_model"] = self.float_model.SerializeToString()  # protobufs pickle as bytes
        return state

    def __setstate__(self, state: dict) -> None:
        state["float_model"] = onnx.ModelProto.FromString(state["float_model"])
        self.__dict__.update(state)
