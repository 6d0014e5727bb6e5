"""Fuzz totals: seeded mutations of valid ONNX / TFLite models and DATA.npz files through the
CLI commands (``inspect``, ``quantize``, ``verify``), counted by verdict.

The cases and the verdict rules live in ``tests/robustness/fuzz_cases.py`` (the same runner
the test suite uses); each kind runs in its own subprocess so a native crash is counted, not
fatal. Verdicts: ``ok`` (exit 0; verify's exit 1 = a clean mismatch report; exit 2 with one
meaningful ``error:`` line), ``traceback``, ``hang`` (per-command alarm), ``bad_message``,
``leftover`` (output files left after a failure), ``input_changed``.

Run: ``.venv/bin/python bench/fuzz.py [--cases 300] [--seed 7]``

Measured (300 cases per kind, seed 7; 2 shared cores):

    kind     cases  commands   ok  traceback  hang  bad_message  leftover  input_changed  crash
    tflite     300       600  600          0     0            0         0              0      0
    onnx       300       600  600          0     0            0         0              0      0
    data       300       600  600          0     0            0         0              0      0

Commands: tflite = ``inspect`` + ``verify`` (LiteRT builtin and XNNPACK vs the reference);
onnx = ``inspect`` + ``quantize`` (float seeds) or ``verify`` (QDQ seeds); data = ``quantize``
+ ``verify`` with a mutated DATA.npz. Found and fixed on the way: a LiteRT segfault on a zero
activation scale, onnxruntime / LiteRT refusals escaping as tracebacks, ``error: 99`` /
``error: 0`` for unknown ONNX element types, corrupt npz members (CRC, header) escaping,
a 256 TiB allocation from a batch dim of 2**40, bytes in an ``inspect`` table cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "robustness" / "fuzz_cases.py"
VERDICTS = ("ok", "traceback", "hang", "bad_message", "leftover", "input_changed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kinds", nargs="+", default=["onnx", "tflite", "data"])
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    print(f"{'kind':<8} {'cases':>5} {'commands':>8} " + " ".join(f"{v:>13}" for v in VERDICTS)
          + f" {'crash':>6} {'seconds':>8}")
    bad = 0
    for kind in args.kinds:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, str(RUNNER), kind, str(args.cases), str(args.seed)],
                             capture_output=True, text=True, env=env)
        secs = time.perf_counter() - t0
        if res.returncode != 0:
            print(f"{kind:<8} runner crashed (exit {res.returncode}): {res.stderr[-400:]}")
            bad += 1
            continue
        s = json.loads(res.stdout.strip().splitlines()[-1])
        counts = [s["verdicts"].get(v, 0) for v in VERDICTS]
        print(f"{kind:<8} {s['cases']:>5} {s['commands']:>8} "
              + " ".join(f"{c:>13}" for c in counts) + f" {0:>6} {secs:>8.0f}", flush=True)
        for p in s["problems"][:10]:
            print(f"    {p}")
        bad += sum(counts[1:]) + len(s["stray_files"])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
