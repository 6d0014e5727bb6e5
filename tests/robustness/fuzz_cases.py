"""Seeded fuzzing of edgequant's readers through the real CLI commands (in-process).

Valid seed files — a small float ONNX CNN, its w8a8 QDQ model, its int8 ``.tflite`` and a
DATA.npz — are mutated (bit flips, byte / word overwrites with boundary values, truncation,
splices, and structured field overwrites: TFLite tensor / buffer / opcode indices, shapes,
quantization arrays; ONNX node inputs, dims, types, attributes, raw data) and fed to
``inspect``, ``quantize`` and ``verify``. Each case runs under a ``signal.alarm`` timeout.

Verdicts per case: ``ok`` (exit 0, or ``verify`` exit 1 = a clean mismatch report, or exit 2
with exactly one meaningful ``error:`` line), ``traceback`` (an exception escaped),
``hang`` (the alarm fired), ``bad_message`` (exit 2 without one line that says what is
wrong), ``leftover`` (files left in the output folder after a failure), ``input_changed``.

Run standalone (the tests and ``bench/fuzz.py`` do, in a subprocess, so a crash in native
code cannot take pytest down): ``python fuzz_cases.py onnx|tflite|data COUNT SEED``; prints
one JSON summary line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Seconds one CLI command may take on a mutated file.
CASE_TIMEOUT = 20
#: An error line must say something: words, not a bare number or exception name.
MEANINGFUL = re.compile(r"^error: .*[A-Za-z]{3,}.*\s.*[A-Za-z]{3,}")


def seed_models(root: Path) -> dict[str, Path]:
    """Write the valid seed files into ``root``."""
    import edgequant as eq

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.1, (10, 36)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.normal(0, 0.1, (10,)).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "fuzz", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    paths = {"float": root / "float.onnx", "data": root / "data.npz",
             "qdq": root / "q.onnx", "tflite": root / "q.tflite"}
    onnx.save(model, paths["float"])
    x = rng.uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)  # (16, 1, 8, 8)
    np.savez(paths["data"], input=x)
    qm = eq.quantize(paths["float"], "w8a8", {"input": x})
    qm.save(paths["qdq"])
    qm.save(paths["tflite"])
    return paths


# --------------------------------------------------------------------------- mutations
_WORDS = [0, 1, 2, 3, 7, 12, 97, 255, 0x7F, 0x80, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
          0xFFFFFFFE, 0x10000]


def mutate_bytes(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """One random byte-level mutation of ``data``."""
    b = bytearray(data)
    kind = rnd.choice(["flip", "flip", "byte", "word", "word", "truncate", "splice", "zero_run"])
    if kind == "flip":
        for _ in range(rnd.randint(1, 8)):
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
    elif kind == "byte":
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.choice([0, 1, 0x7F, 0x80, 0xFF])
    elif kind == "word":
        i = rnd.randrange(0, max(1, len(b) - 4)) & ~3
        b[i:i + 4] = rnd.choice(_WORDS).to_bytes(4, "little")
    elif kind == "truncate":
        b = b[:rnd.randrange(len(b))]
    elif kind == "splice":
        i, j = rnd.randrange(len(b)), rnd.randrange(len(b))
        n = rnd.randint(1, 64)
        b[i:i + n] = data[j:j + n]
    else:
        i = rnd.randrange(len(b))
        b[i:i + rnd.randint(4, 256)] = bytes(min(256, len(b) - i))
    return bytes(b), kind


def mutate_tflite_fields(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Overwrite one semantic field of a valid ``.tflite`` (indices, shapes, quantization)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sg = m.subgraphs[0]
    big = rnd.choice([-2, -1, 97, 2**31 - 1, len(sg.tensors), len(m.buffers)])
    kind = rnd.choice(["op_input", "op_output", "opcode", "buffer", "shape", "scale_len",
                       "qdim", "sub_io", "builtin", "scale_value", "options"])
    t = rnd.choice(sg.tensors)
    op = rnd.choice(sg.operators)
    if kind == "op_input":
        op.inputs[rnd.randrange(len(op.inputs))] = big
    elif kind == "op_output":
        op.outputs[0] = big
    elif kind == "opcode":
        op.opcodeIndex = rnd.choice([len(m.operatorCodes), 255, 2**31 - 1])
    elif kind == "buffer":
        t.buffer = rnd.choice([len(m.buffers), 2**31 - 1, 0])
    elif kind == "shape" and t.shape is not None and len(t.shape):
        t.shape[rnd.randrange(len(t.shape))] = rnd.choice([-5, 0, 3, 1 << 20, 2**31 - 1])
    elif kind == "scale_len" and t.quantization is not None and t.quantization.scale is not None:
        t.quantization.scale = list(t.quantization.scale) * rnd.choice([2, 3])
    elif kind == "qdim" and t.quantization is not None:
        t.quantization.quantizedDimension = rnd.choice([-1, 5, 99])
    elif kind == "sub_io":
        sg.inputs[0] = big
    elif kind == "builtin":
        m.operatorCodes[rnd.randrange(len(m.operatorCodes))].builtinCode = rnd.choice(
            [-3, 400, 1000, 2**31 - 1, schema.BuiltinOperator.WHILE])
    elif kind == "scale_value" and t.quantization is not None and t.quantization.scale is not None:
        s = list(t.quantization.scale)
        s[0] = rnd.choice([float("nan"), float("inf"), -1.0, 0.0, 1e38])
        t.quantization.scale = s
    elif kind == "options" and op.builtinOptions is not None:
        for name in ("strideW", "strideH", "filterWidth", "filterHeight", "axis",
                     "dilationWFactor", "depthMultiplier"):
            if hasattr(op.builtinOptions, name):
                setattr(op.builtinOptions, name, rnd.choice([0, -1, 1 << 20, 2**31 - 1]))
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), f"field:{kind}"


def mutate_onnx_fields(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Overwrite one semantic field of a valid ONNX model."""
    m = onnx.ModelProto()
    m.ParseFromString(data)
    g = m.graph
    kind = rnd.choice(["node_input", "dim", "elem_type", "attr", "raw_data", "op_type",
                       "opset", "init_dims", "drop_node", "output_name"])
    node = rnd.choice(list(g.node))
    if kind == "node_input" and node.input:
        node.input[rnd.randrange(len(node.input))] = rnd.choice(["nope", "", "logits"])
    elif kind == "dim":
        d = g.input[0].type.tensor_type.shape.dim[rnd.randrange(4)]
        d.dim_value = rnd.choice([0, 3, 1 << 40])
    elif kind == "elem_type":
        g.input[0].type.tensor_type.elem_type = rnd.choice([0, 7, 8, 99])
    elif kind == "attr" and node.attribute:
        a = node.attribute[rnd.randrange(len(node.attribute))]
        if a.ints:
            a.ints[0] = rnd.choice([0, -1, 1 << 30])
        else:
            a.i = rnd.choice([0, -1, 1 << 30])
    elif kind == "raw_data" and g.initializer:
        t = rnd.choice(list(g.initializer))
        t.raw_data = t.raw_data[: rnd.randrange(max(1, len(t.raw_data)))]
    elif kind == "op_type":
        node.op_type = rnd.choice(["Nope", "If", "Loop", "Conv", "QuantizeLinear"])
    elif kind == "opset":
        m.opset_import[0].version = rnd.choice([1, 7, 99, 1 << 40])
    elif kind == "init_dims" and g.initializer:
        t = rnd.choice(list(g.initializer))
        if t.dims:
            t.dims[0] = rnd.choice([0, 1, 1 << 30])
    elif kind == "drop_node":
        g.node.remove(node)
    elif kind == "output_name":
        g.output[0].name = "ghost"
    return m.SerializeToString(), f"field:{kind}"


def mutate_npz(data: bytes, rnd: random.Random) -> tuple[bytes, str]:
    """Byte mutations of a DATA.npz (zip) file."""
    return mutate_bytes(data, rnd)


# --------------------------------------------------------------------------- running
class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm(f"timed out after {CASE_TIMEOUT} s")


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def run_command(args: list[str], out_dir: Path, inputs: list[Path]) -> tuple[str, str]:
    """Run one CLI command in-process; (verdict, detail)."""
    from typer.testing import CliRunner

    from edgequant.cli import app

    before = _digest(inputs)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(CASE_TIMEOUT)
    try:
        res = CliRunner().invoke(app, args)
    finally:
        signal.alarm(0)
    exc = res.exception
    if isinstance(exc, _Alarm):
        return "hang", " ".join(args[:1])
    if exc is not None and not isinstance(exc, SystemExit):
        return "traceback", f"{type(exc).__name__}: {str(exc)[:200]}"
    if _digest(inputs) != before:
        return "input_changed", args[0]
    left = sorted(p.name for p in out_dir.iterdir())
    code = res.exit_code
    if code != 0 and left:
        return "leftover", f"{args[0]} exit {code} left {left}"
    for p in out_dir.iterdir():
        p.unlink()
    if code == 0 or (code == 1 and args[0] == "verify"):
        return "ok", f"exit {code}"
    if code != 2:
        return "traceback", f"exit {code}: {res.output[-300:]}"
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    if len(errors) != 1 or not MEANINGFUL.match(errors[0]) or "Traceback" in res.stderr:
        return "bad_message", res.stderr.strip()[:300]
    return "ok", errors[0][:200]


def fuzz(kind: str, count: int, seed: int) -> dict:
    """Run ``count`` mutated cases of ``kind`` (onnx | tflite | data); the summary dict."""
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seeds = seed_models(root)
        out = root / "out"
        out.mkdir()
        case_path = root / "case"
        verdicts: dict[str, int] = {}
        problems: list[dict] = []
        commands = 0
        messages: set[str] = set()
        for i in range(count):
            if kind == "tflite":
                base = seeds["tflite"].read_bytes()
                mut = mutate_tflite_fields if rnd.random() < 0.4 else mutate_bytes
                data, how = mut(base, rnd)
                path = case_path.with_suffix(".tflite")
                path.write_bytes(data)
                runs = [["inspect", str(path)],
                        ["verify", str(path), "--data", str(seeds["data"])]]
                inputs = [path, seeds["data"]]
            elif kind == "onnx":
                src = seeds["float"] if i % 2 == 0 else seeds["qdq"]
                mut = mutate_onnx_fields if rnd.random() < 0.5 else mutate_bytes
                data, how = mut(src.read_bytes(), rnd)
                path = case_path.with_suffix(".onnx")
                path.write_bytes(data)
                runs = [["inspect", str(path)]]
                if src == seeds["float"]:
                    runs.append(["quantize", str(path), "-o", str(out / "q.onnx"),
                                 "--calibration", str(seeds["data"]), "--no-speed-check"])
                else:
                    runs.append(["verify", str(path), "--data", str(seeds["data"])])
                inputs = [path, seeds["data"]]
            else:
                data, how = mutate_npz(seeds["data"].read_bytes(), rnd)
                path = case_path.with_suffix(".npz")
                path.write_bytes(data)
                runs = [["quantize", str(seeds["float"]), "-o", str(out / "q.onnx"),
                         "--calibration", str(path), "--no-speed-check"],
                        ["verify", str(seeds["tflite"]), "--data", str(path)]]
                inputs = [path, seeds["float"], seeds["tflite"]]
            keep = os.environ.get("FUZZ_KEEP")  # debugging: keep every case file, log progress
            if keep:
                Path(keep).mkdir(exist_ok=True)
                (Path(keep) / f"{i:04d}{path.suffix}").write_bytes(data)
                with open(Path(keep) / "log.txt", "a") as log:
                    log.write(f"{i} {how}\n")
            for args in runs:
                commands += 1
                verdict, detail = run_command(args, out, inputs)
                verdicts[verdict] = verdicts.get(verdict, 0) + 1
                if detail.startswith("error:") and len(messages) < 60:
                    messages.add(re.sub(r"'/[^']*/", "'", detail))
                if verdict != "ok":
                    problems.append({"case": i, "mutation": how, "command": args[0],
                                     "verdict": verdict, "detail": detail})
        leftover = sorted(p.name for p in root.iterdir()
                          if p.name not in {"out", "case.onnx", "case.tflite", "case.npz"}
                          and p not in seeds.values())
    return {"kind": kind, "cases": count, "commands": commands, "seed": seed,
            "verdicts": verdicts, "problems": problems, "stray_files": leftover,
            "messages": sorted(messages)}


def main(argv: list[str]) -> None:
    """``fuzz_cases.py KIND COUNT SEED`` → one JSON line."""
    kind, count, seed = argv[0], int(argv[1]), int(argv[2])
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # library logs
        summary = fuzz(kind, count, seed)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
