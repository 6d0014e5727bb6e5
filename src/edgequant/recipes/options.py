"""Recipe options: named switches for the optional algorithms a recipe turns on.

Options are data, like the rest of a recipe: ``Recipe.options`` holds ``(name, value)``
pairs, round-tripped through JSON and checked here against :data:`OPTIONS`. Each algorithm
registers its own entries (name → :class:`Option`) in this table; the stage that runs the
algorithm reads the value with :func:`option` (the default when the recipe does not set it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgequant.errors import RecipeError


@dataclass(frozen=True)
class Option:
    """One recipe option: its default, a one-line help text and a value check.

    ``check(value)`` returns the normalised value or raises ``ValueError`` saying what is
    allowed.
    """

    default: Any
    help: str
    check: Callable[[Any], Any]


def boolean(value: Any) -> bool:
    """Accept only real booleans (JSON ``true``/``false``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not allowed: use true or false")
    return value


def one_of(*choices: Any) -> Callable[[Any], Any]:
    """A check accepting exactly ``choices``."""
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"{value!r} is not allowed: use one of {list(choices)}")
        return value
    return check


def number(lo: float, hi: float, integer: bool = False) -> Callable[[Any], Any]:
    """A check accepting a number in ``[lo, hi]`` (an int when ``integer``)."""
    def check(value: Any) -> Any:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
            what = "an integer" if integer else "a number"
            raise ValueError(f"{value!r} is not allowed: use {what} in [{lo}, {hi}]")
        return value
    return check


def optional(check: Callable[[Any], Any], *extra: Any) -> Callable[[Any], Any]:
    """``check`` that also accepts ``None`` (off) and the literal values in ``extra``."""
    def wrapped(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value in extra):
            return value
        try:
            return check(value)
        except ValueError as exc:
            more = ", ".join(repr(e) for e in (None, *extra))
            raise ValueError(f"{exc} (or {more})") from None
    return wrapped


#: name → Option. Algorithms add their entries here (one home for every option name).
OPTIONS: dict[str, Option] = {
    "transformer_rules": Option(
        "auto", "static recipes: keep the attention-mask path, Softmax, LayerNorm, GELU and "
        "residual Adds float (edgequant.recipes.transformer); auto = when the graph is a "
        "transformer", one_of("auto", "on", "off")),
    "transformer_ffn_output": Option(
        "dynamic", "static 8-bit recipes on transformers: the FFN-output MatMuls (long-tailed "
        "post-GELU input) run per-row dynamic int8 (dynamic), int8 weights with float compute "
        "(weight_only) or all float (float); edgequant.recipes.transformer.ffn_rule",
        one_of("dynamic", "weight_only", "float")),
    "smoothquant_alpha": Option(
        None, "SmoothQuant migration strength in [0, 1] for static MatMuls after LayerNorm "
        "(or 'search': the best of a grid per layer, by output error on calibration data); "
        "None = off", optional(number(0.0, 1.0), "search")),
    "outlier_threshold": Option(
        None, "LLM.int8()-style decomposition: input features of a static MatMul whose "
        "calibrated max |x| exceeds this run in a float MatMul, the rest in int8; None = off",
        optional(number(1e-6, float("inf")))),
    "speed_guard": Option(False, "time the quantized model against float in onnxruntime and keep "
                                 "float every quantized region that runs slower (ptq.speed_guard)",
                          boolean),
    # accuracy recovery (edgequant.ptq.recovery, docs/ptq_recovery.md)
    "cle": Option(False, "cross-layer equalization of Conv/Gemm pairs before quantization",
                  boolean),
    "bias_correction": Option("auto", "fold the mean output shift of weight rounding into "
                              "biases: none | empirical (calibration data) | auto (empirical "
                              "below 8-bit weights)", one_of("none", "empirical", "auto")),
    # AdaRound and range search (docs/adaround.md)
    "adaround": Option(False, "learn each static Conv/Gemm/MatMul weight's rounding (AdaRound)",
                       boolean),
    "adaround_iters": Option(1000, "AdaRound Adam steps per layer", number(1, 1_000_000, True)),
    "adaround_seconds_per_layer": Option(
        5.0, "AdaRound wall-time budget per layer (0: iterations only, bit-reproducible)",
        number(0, 86_400)),
    "adaround_samples": Option(256, "calibration samples AdaRound reads (the first ones)",
                               number(1, 1_000_000, True)),
    "adaround_rows": Option(4096, "input rows (output positions) sampled per layer",
                            number(16, 1_000_000, True)),
    "adaround_mode": Option("auto", "AdaRound inputs: independent (each layer on float "
                            "inputs, fake-quantized) | sequential (each layer on the inputs of "
                            "the model with every earlier layer already AdaRounded) | auto "
                            "(sequential below 8-bit weights; docs/adaround.md)",
                            one_of("auto", "independent", "sequential")),
    "adaround_qdrop": Option(0.0, "QDrop: probability that an AdaRound input element is the "
                             "float one instead of the quantized one (0 = off)", number(0.0, 1.0)),
    "adaround_act_loss": Option(False, "AdaRound's loss includes the Relu / Clip that follows "
                                "a layer (clipped outputs with bias compared)", boolean),
    "seed": Option(0, "seed of the recovery algorithms' random choices",
                   number(0, 2**32 - 1, True)),
    "range_search": Option(False, "pick each activation's observer by its consumers' output "
                           "error (minmax, percentiles, mse, entropy)", boolean),
    # low-bit weight recovery (docs/recovery_w4.md)
    "weight_clip": Option("auto", "per-channel weight range: none (min/max) | mse (the fraction "
                          "0.5..1 of min/max with the least weight MSE) | auto (mse at <= 4 bits)",
                          one_of("none", "mse", "auto")),
    "w4_keep_int8": Option("none", "layers kept at 8-bit weights in a low-bit recipe: none | "
                           "first_last (first and last weighted layer) | first_last_depthwise | "
                           "sensitivity (the most output-sensitive per byte, within "
                           "w4_int8_budget; docs/recovery_w4.md)",
                           one_of("none", "first_last", "first_last_depthwise", "sensitivity")),
    "w4_int8_budget": Option(0.25, "w4_keep_int8=sensitivity: extra weight bytes allowed, as a "
                             "fraction of the bytes from all-low-bit to all-int8 weights "
                             "(0: all low-bit, 1: all int8)", number(0.0, 1.0)),
    "w4_sensitivity_samples": Option(32, "w4_keep_int8=sensitivity: calibration samples each "
                                     "layer is measured on (the first ones)",
                                     number(1, 1_000_000, True)),
    "adaround_bias_correction": Option(
        "auto", "after AdaRound, fold the mean output shift of the learned weights into the "
        "biases: none | empirical | auto (empirical below 8-bit weights)",
        one_of("none", "empirical", "auto")),
}


def check_options(pairs: tuple[tuple[str, Any], ...], where: str) -> tuple[tuple[str, Any], ...]:
    """Validate and normalise ``(name, value)`` pairs; unknown names list what is allowed."""
    out = []
    for name, value in pairs:
        if name not in OPTIONS:
            known = ", ".join(sorted(OPTIONS)) or "none"
            raise RecipeError(f"{where}: option {name!r} is unknown; known options: {known}")
        try:
            out.append((name, OPTIONS[name].check(value)))
        except ValueError as exc:
            raise RecipeError(f"{where}: option {name!r}: {exc}") from exc
    return tuple(sorted(out))


def option(recipe, name: str) -> Any:
    """The value of option ``name`` in ``recipe`` (its default when unset)."""
    if name not in OPTIONS:
        raise KeyError(f"option {name!r} is not registered in edgequant.recipes.options.OPTIONS")
    return dict(recipe.options).get(name, OPTIONS[name].default)
