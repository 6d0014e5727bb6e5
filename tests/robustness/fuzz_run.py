"""Run :mod:`fuzz_cases` in a subprocess (a crash or a hang in native code cannot take pytest
down) and check its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"


def run_fuzz(kind: str, count: int, seed: int, timeout: float) -> dict:
    """The JSON summary of ``count`` seeded cases; fails on a crash or an overall hang."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, str(HERE / "fuzz_cases.py"), kind, str(count), str(seed)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, f"fuzz runner died (exit {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def assert_clean(summary: dict) -> None:
    """Every command: no traceback, hang, bad message, leftover or changed input."""
    assert summary["commands"] >= summary["cases"]
    assert summary["problems"] == [], json.dumps(summary["problems"][:5], indent=1)
    assert summary["stray_files"] == []
    assert set(summary["verdicts"]) == {"ok"}
    # the mutations must actually reach the error paths, not only produce valid files
    assert any(m.startswith("error:") for m in summary["messages"]), summary
