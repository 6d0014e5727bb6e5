"""The ``edgequant`` command line: parses arguments, calls the public API, prints results.

Every failure the user can cause prints one line (``error: …``) and exits with code 2;
nothing is written on failure.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Quantize ONNX / PyTorch models for onnxruntime and LiteRT, and prove "
                       "what ships with a bit-exact integer reference interpreter.")
#: Width when output is not a terminal (CI logs, pipes): rich would otherwise wrap at 80.
PIPE_WIDTH = 160
console = Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2
EXIT_CHECK_FAILED = 1


def user_errors(fn):
    """Turn expected errors into one line on stderr and exit code 2 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from edgequant.errors import EdgequantError

        try:
            return fn(*args, **kwargs)
        # OSError: a full disk or a vanished folder while writing (paths are checked up front)
        except (EdgequantError, ValueError, TypeError, OSError, KeyError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False,
                              soft_wrap=True)  # escape: "edgequant[tflite]" is not markup
            raise typer.Exit(EXIT_USER_ERROR) from None
    return wrapper


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True)


def _recipe_arg(text: str):
    from edgequant.recipes import Recipe, get_recipe

    if text.endswith(".json"):
        p = Path(text)
        if not p.is_file():
            raise FileNotFoundError(f"recipe file {text!r} does not exist")
        return Recipe.from_json(p.read_text())
    return get_recipe(text)


def _fixed_dims(items: list[str]) -> dict[str, int]:
    """``["time=12"]`` → ``{"time": 12}``."""
    dims: dict[str, int] = {}
    for item in items:
        name, sep, size = item.partition("=")
        if not sep or not name or not size.strip().isdigit() or int(size) < 1:
            raise ValueError(f"--fix-dim {item!r}: use NAME=SIZE with a positive integer size, "
                             "e.g. time=12")
        dims[name.strip()] = int(size)
    return dims


@app.command()
@user_errors
def quantize(
    model: Annotated[Path, typer.Argument(help="float ONNX model")],
    output: Annotated[Path, typer.Option("-o", "--output", help="output .onnx or .tflite")],
    recipe: Annotated[str, typer.Option(help="fp32 | fp16 | w8_dynamic | w8a8 | w8a16 | "
                                             "w4a8 | w4a16_g128 | recipe.json | auto")] = "w8a8",
    calibration: Annotated[Path | None, typer.Option(help="DATA.npz for static recipes")] = None,
    io: Annotated[str, typer.Option(help="float | int8 | uint8 model inputs/outputs")] = "float",
    strict: Annotated[bool, typer.Option(help="fail on any op left in float")] = False,
    format: Annotated[str, typer.Option(help="qdq | qop (ONNX output)")] = "qdq",
    to: Annotated[str | None, typer.Option(help="onnx | tflite (default: by suffix)")] = None,
    report: Annotated[Path | None, typer.Option(help="also write the report as JSON")] = None,
    html: Annotated[Path | None, typer.Option(help="also write an HTML report (one file)")] = None,
    speed_guard: Annotated[bool, typer.Option(
        "--speed-guard/--no-speed-guard", "--speed-check/--no-speed-check",
        help="time float vs quantized in onnxruntime; keep float the regions that run slower")
    ] = True,
    batch_axis: Annotated[list[str] | None, typer.Option(
        help="INPUT=AXIS: the axis of INPUT's calibration samples (repeatable), e.g. h0=1")
    ] = None,
    fix_dim: Annotated[list[str] | None, typer.Option(
        help="NAME=SIZE: fix dynamic dim NAME for .tflite output (repeatable), e.g. time=12")
    ] = None,
    requantize: Annotated[bool, typer.Option(
        help="an already quantized MODEL: dequantize its weights and quantize again")] = False,
    smoothquant: Annotated[str | None, typer.Option(
        help="SmoothQuant alpha in [0, 1], or 'search' (best per LayerNorm group)")] = None,
    outlier_threshold: Annotated[float | None, typer.Option(
        help="LLM.int8() decomposition: input features with calibrated max |x| above this "
             "run in float")] = None,
    max_drop: Annotated[float | None, typer.Option(help="--recipe auto: budget (points)")] = None,
    metric: Annotated[str, typer.Option(help="--recipe auto: agreement|accuracy|cosine")
                      ] = "agreement",
    objective: Annotated[str, typer.Option(help="--recipe auto: size | latency")] = "size",
    eval_data: Annotated[Path | None, typer.Option(
        help="--recipe auto: DATA.npz; search on the first half, check on the second")] = None,
    eval_labels: Annotated[Path | None, typer.Option(help="LABELS.npy for eval data")] = None,
    workers: Annotated[int, typer.Option(help="--recipe auto: Ray workers (1: serial)")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="existing Ray cluster")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="analysis cache folder")] = None,
    no_cache: Annotated[bool, typer.Option(help="do not use the analysis cache")] = False,
    write_recipe: Annotated[Path | None, typer.Option(help="also write the recipe JSON")] = None,
    cle: Annotated[bool | None, typer.Option(
        "--cle/--no-cle", help="cross-layer equalization (default: the recipe's, off)")] = None,
    bias_correction: Annotated[str | None, typer.Option(
        help="none | empirical | auto (default: the recipe's, auto = below 8-bit weights)")
    ] = None,
    adaround: Annotated[bool, typer.Option(
        help="learn weight rounding (AdaRound; needs edgequant[torch])")] = False,
    adaround_iters: Annotated[int | None, typer.Option(help="AdaRound steps per layer")] = None,
    adaround_mode: Annotated[str | None, typer.Option(
        help="independent | sequential: AdaRound inputs (docs/adaround.md)")] = None,
    range_search: Annotated[bool, typer.Option(
        help="choose each activation's observer by its consumers' output error")] = False,
    weight_clip: Annotated[str | None, typer.Option(
        help="none | mse | auto: per-channel weight range search (default auto: <= 4 bits)")
    ] = None,
    w4_keep_int8: Annotated[str | None, typer.Option(
        help="none | first_last | first_last_depthwise | sensitivity: layers kept at 8-bit "
             "weights")] = None,
    w4_int8_budget: Annotated[float | None, typer.Option(
        help="--w4-keep-int8 sensitivity: extra weight bytes allowed, fraction in [0, 1] of "
             "all-int4 → all-int8 (default 0.25)")] = None,
) -> None:
    """Quantize MODEL with a recipe and write it to OUTPUT."""
    from edgequant.export import format_for
    from edgequant.extras import require_tflite
    from edgequant.graph.external_data import external_inputs
    from edgequant.outputs import plan_outputs
    from edgequant.ptq.quantizer import quantize as run_quantize
    from edgequant.ptq.quantizer import save_report
    from edgequant.runtime.feeds import parse_batch_axes

    fmt = format_for(output, format, to)
    plan_outputs({"input model": model, "calibration data": calibration,
                  "evaluation data": eval_data, "evaluation labels": eval_labels,
                  "recipe file": recipe if recipe.endswith(".json") else None,
                  **external_inputs(model)},
                 {"output model": output, "report": report, "HTML report": html,
                  "recipe JSON": write_recipe})
    if fmt == "tflite":
        require_tflite("writing .tflite")
    auto = None
    if recipe != "auto" and (max_drop is not None or eval_data is not None):
        raise ValueError("--max-drop / --eval-data apply to --recipe auto only")
    if recipe == "auto":
        from edgequant.cli_analyze import auto_search

        auto = auto_search(model, calibration, eval_data, eval_labels, max_drop=max_drop,
                           metric=metric, objective=objective, workers=workers,
                           ray_address=ray_address, cache_dir=cache_dir, no_cache=no_cache)
    rec = auto.recipe if auto else _recipe_arg(recipe)
    from edgequant.recipes.transformer import cli_options

    rec = rec.with_options(**cli_options(smoothquant, outlier_threshold))
    recovery = {k: v for k, v in (("cle", cle), ("bias_correction", bias_correction),
                                  ("weight_clip", weight_clip), ("w4_keep_int8", w4_keep_int8),
                                  ("w4_int8_budget", w4_int8_budget),
                                  ("adaround_mode", adaround_mode))
                if v is not None}
    if recovery:
        rec = rec.with_options(**recovery)
    switches = {k: v for k, v in (("adaround", adaround or None), ("range_search", range_search
                or None), ("adaround_iters", adaround_iters)) if v is not None}
    rec = rec.with_options(**switches) if switches else rec
    axes = parse_batch_axes(batch_axis or [])
    with _progress() as bar:
        task = bar.add_task("calibrating", total=None)
        stages: dict[str, object] = {}

        def stage(name: str, done: int, total: int) -> None:
            t = stages.setdefault(name, bar.add_task(name, total=total))
            bar.update(t, completed=done, total=total)

        qm = run_quantize(model, rec, calibration, io=io, strict=strict,
                          progress=lambda done, total: bar.update(task, completed=done,
                                                                  total=total),
                          check_speed=speed_guard and fmt != "tflite", batch_axes=axes,
                          requantize=requantize, stage_progress=stage)
        if speed_guard and fmt == "tflite" and io == "float":
            from edgequant.ptq.speed_guard import run_guard

            qm = run_guard(model, qm, rec, calibration, quantize_fn=run_quantize,
                           batch_axes=axes, runtime="litert",
                           quantize_kwargs=dict(io=io, strict=strict, requantize=requantize),
                           save_kwargs=dict(fixed_dims=_fixed_dims(fix_dim or [])))
    out = qm.save(output, format=fmt if fmt != "tflite" else None, to=to, strict=strict,
                  fixed_dims=_fixed_dims(fix_dim or []))
    _print_quantize_summary(model, out, qm)
    if report:
        full = qm.report | ({"auto": auto.to_dict()} if auto else {})
        _write_auxiliary("report", report,
                         lambda: save_report(full, report, inputs={"input model": model}))
    if write_recipe:
        from edgequant.outputs import write_text

        write_text(write_recipe, rec.to_json(), inputs=[model])
    if html:
        from edgequant.report.html import write_html
        from edgequant.report.pages import quantize_page

        _write_auxiliary("HTML report", html, lambda: write_html(
            html, quantize_page(qm.report, str(model), str(out), auto=auto.to_dict() if auto
                                else None)))
    if auto:
        from edgequant.cli_analyze import print_auto

        print_auto(auto, console)
        if not auto.meets_budget_held_apart:
            raise typer.Exit(EXIT_CHECK_FAILED)


def _write_auxiliary(what: str, path: Path, write) -> None:
    """Reports are auxiliary: a failure to write one (disk full…) is a warning, not an error
    — the model is already written."""
    try:
        write()
    except Exception as exc:  # deliberately broad: the main output exists and is valid
        why = (str(exc).strip().splitlines() or [""])[0]
        err_console.print(f"[bold yellow]warning:[/] {what} {escape(str(path))!r} not written: "
                          f"{type(exc).__name__}: {escape(why)}", highlight=False, soft_wrap=True)


def _print_quantize_summary(src: Path, out: Path, qm) -> None:
    r = qm.report
    a, b = src.stat().st_size, out.stat().st_size
    console.print(f"[bold]{out}[/]: recipe {r['recipe']} ({r['mode']}), "
                  f"{b:,} bytes ({a / b:.2f}x smaller than {a:,}), "
                  f"{r['plan']['quantized_nodes']} node(s) quantized")
    if r.get("speedup_vs_float") is not None:
        speed = r.get("speed", {})
        console.print(f"{speed.get('runtime', 'onnxruntime')} speed vs float: "
                      f"{r['speedup_vs_float']:.2f}x")
        for k in speed.get("kept_float", []):
            console.print(f"  speed guard: region {k['region']} ({len(k['nodes'])} node(s)) "
                          f"computes in float: {k['reason']}")
    floats = r["plan"]["float_nodes"]
    if floats:
        t = Table("node", "op", "kept in float because", title="float nodes")
        for f in floats:
            t.add_row(f["node"], f["op_type"], f["reason"])
        console.print(t)
    for rule in r["plan"]["unmatched_rules"]:
        console.print(f"[yellow]rule matched no node:[/] {rule}")
    if r.get("io_qparams"):
        t = Table("tensor", "role", "dtype", "scale", "zero point", title="integer I/O")
        for name, q in r["io_qparams"].items():
            t.add_row(name, q["role"], q["dtype"], f"{q['scale']:.9g}", str(q["zero_point"]))
        console.print(t)
    for note in r.get("notes", []):
        console.print(f"note: {escape(note)}")
    for w in r.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(w)}")


@app.command()
@user_errors
def inspect(
    model: Annotated[Path, typer.Argument(help=".onnx or .tflite model")],
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List ops, dtypes and every quantized tensor's scale, zero point and axis."""
    from edgequant.extras import require_for_paths
    from edgequant.inspect.model import inspect_model

    require_for_paths([model], "inspecting")
    summary = inspect_model(model)
    if json_out:
        print(summary.to_json())
        return
    for part in summary.to_rich():
        console.print(part)


def _load_data(data: Path, model: Path):
    from edgequant.graph.io import load_model
    from edgequant.runtime.feeds import load_feeds, model_inputs

    return load_feeds(data, model_inputs(load_model(model)))


@app.command()
@user_errors
def compare(
    reference: Annotated[Path, typer.Argument(help="reference (float) model")],
    models: Annotated[list[Path], typer.Argument(help="models to compare")],
    data: Annotated[Path, typer.Option(help="DATA.npz")],
    labels: Annotated[Path | None, typer.Option(help="LABELS.npy for accuracy")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    repeats: Annotated[int, typer.Option(help="interleaved latency rounds")] = 30,
    html: Annotated[Path | None, typer.Option(help="also write an HTML report (one file)")] = None,
) -> None:
    """Size, accuracy, agreement, cosine, SQNR and latency of MODELs vs REFERENCE."""
    import numpy as np

    from edgequant.extras import require_for_paths
    from edgequant.outputs import plan_outputs

    plan_outputs({"reference": reference, "data": data, "labels": labels, **{
        f"model {i + 1}": m for i, m in enumerate(models)}}, {"HTML report": html})
    require_for_paths([reference, *models], "comparing")
    from edgequant.analysis.compare import compare as run_compare
    from edgequant.analysis.compare import rows_to_json

    feeds = _load_data(data, reference) if reference.suffix == ".onnx" else \
        dict(np.load(data, allow_pickle=False))
    lab = np.load(labels, allow_pickle=False) if labels else None
    rows = run_compare(reference, models, feeds, labels=lab, latency_repeats=repeats)
    out = rows_to_json(rows)
    if html:
        from edgequant.report.html import write_html
        from edgequant.report.pages import compare_page

        write_html(html, compare_page(out, str(reference)))
    if json_out:
        print(json.dumps({"reference": str(reference), "rows": out},
                         default=lambda v: None if isinstance(v, float) and math.isinf(v) else v,
                         allow_nan=True))
        return
    t = Table("model", "bytes", "size ratio", "accuracy", "top-1 agree", "cosine", "SQNR dB",
              "latency ms", "speedup")
    for r in out:
        t.add_row(r["model"], f"{r['bytes']:,}", f"{r['size_ratio']:.2f}x", _pct(r["accuracy"]),
                  _pct(r["top1_agreement"]), f"{r['cosine']:.5f}", f"{r['sqnr_db']:.1f}",
                  _num(r["latency_ms"]), _num(r["speedup"], "x"))
    console.print(t)


def _npz(path: Path) -> dict:
    from edgequant.runtime.feeds import read_npz

    return read_npz(path)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v, suffix: str = "") -> str:
    return "-" if v is None else f"{v:.3f}{suffix}"


@app.command()
@user_errors
def run(
    model: Annotated[Path, typer.Argument(help=".onnx or .tflite model")],
    data: Annotated[Path, typer.Option(help="DATA.npz")],
    output: Annotated[Path, typer.Option("-o", "--output", help="OUT.npz")],
    engine: Annotated[str | None, typer.Option(help="reference | onnxruntime | litert")] = None,
) -> None:
    """Run MODEL on DATA and save every output to OUT.npz."""
    from edgequant.extras import require_for_paths
    from edgequant.graph.external_data import external_inputs
    from edgequant.outputs import plan_outputs, write_npz
    from edgequant.runtime.batching import run_batched
    from edgequant.runtime.runner import match_feeds
    from edgequant.runtime.runners import open_runner

    inputs = {"input model": model, "data": data, **external_inputs(model)}
    plan_outputs(inputs, {"output": output})
    require_for_paths([model], "running")
    runner = open_runner(model, engine=engine)
    outs = run_batched(runner, match_feeds(runner, _npz(data)), 32)
    arrays = dict(zip(runner.output_names, outs, strict=True))
    write_npz(output, arrays, inputs)
    console.print(f"{output}: {', '.join(f'{k} {v.shape} {v.dtype}' for k, v in arrays.items())}")


@app.command()
@user_errors
def verify(
    model: Annotated[Path, typer.Argument(help="quantized .onnx or .tflite model")],
    data: Annotated[Path, typer.Option(help="DATA.npz")],
    per_node: Annotated[bool, typer.Option(help="compare every intermediate tensor")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    max_lsb: Annotated[int, typer.Option(help="allowed difference in LSB")] = 0,
    isolate_integer: Annotated[bool, typer.Option(
        help="feed both engines the same integers where float layers are quantized (mixed "
             "models, transformer .tflite float islands)")
    ] = False,
    batch_axis: Annotated[list[str] | None, typer.Option(
        help="INPUT=AXIS: the axis of INPUT's samples in DATA (repeatable; ONNX models)")
    ] = None,
) -> None:
    """Run the reference interpreter beside the runtime; fail beyond --max-lsb."""
    from edgequant.extras import require_for_paths
    from edgequant.outputs import plan_outputs
    from edgequant.runtime.feeds import parse_batch_axes

    plan_outputs({"input model": model, "data": data}, {})
    require_for_paths([model], "verifying")
    axes = parse_batch_axes(batch_axis or [])
    feeds = _npz(data)
    if model.suffix == ".tflite":
        from edgequant.runtime.verify_tflite import verify_tflite

        report = verify_tflite(model, feeds, isolate_integer=isolate_integer, per_node=per_node)
    else:
        from edgequant.runtime.verify import verify as run_verify

        report = run_verify(model, feeds, per_node=per_node, isolate_integer=isolate_integer,
                            batch_axes=axes or None)
    _print_verify(model, report, json_out)
    if report.float_layers:
        shown = ", ".join(report.float_layers[:4]) + (", ..." if len(report.float_layers) > 4
                                                       else "")
        err_console.print(escape(
            f"note: {len(report.float_layers)} quantized tensor(s) come from layers both engines "
            f"compute in float ({shown}; e.g. int16 layers, a transformer's LayerNorm / "
            "Softmax, or int4-weight convs that onnxruntime runs as DQ -> float Conv -> Q): "
            "their last-ulp rounding differs, so differences downstream need not be integer "
            "faults; --isolate-integer checks the integer arithmetic alone"), highlight=False)
    raise typer.Exit(0 if report.ok(max_lsb) else EXIT_CHECK_FAILED)


def _print_verify(model: Path, report, json_out: bool) -> None:
    d = report.to_dict()
    if json_out:
        print(json.dumps(d, indent=2, default=str))
        return
    ref = f"{d['reference']} ({d['requantization']})"
    engines = ", ".join(d["engines"]) + (" (lowered)" if d["lowered"] else "")
    t = Table("tensor", "engine", "kind", "producer", "max diff", "bit-identical",
              title=f"{model.name}: {ref} vs {engines}", caption=f"{d['samples']} sample(s)")
    for row in d["outputs"] + d["nodes"]:
        unit = " LSB" if row["kind"] != "float" else ""
        t.add_row(row["name"], row["engine"], row["kind"], row["producer"],
                  f"{row['max_diff']:g}{unit}", f"{100 * row['identical']:.3f}%")
    console.print(t)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("demo_out"),
) -> None:
    """Train the seed tutorial CNN on MNIST, quantize it in every mode, print one table."""
    from edgequant.extras import require_all, require_tflite
    from edgequant.outputs import plan_outputs

    plan_outputs({}, {"output": out}, folders=["output"])
    require_all(("torch", "onnxscript", "mlxtend"), "edgequant demo")
    require_tflite("edgequant demo")
    from edgequant_zoo.demo import run_demo

    result = run_demo(out, console=console)
    console.print(f"models and report written to {out}/ (report.json, report.md, report.html)")
    if result.get("failures"):
        raise typer.Exit(EXIT_CHECK_FAILED)


from edgequant.cli_analyze import make_analyze_command  # noqa: E402  (its body lives there)

app.command(name="analyze")(user_errors(make_analyze_command(console, _progress, _recipe_arg)))


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="edgequant")


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
