"""Helpers of the output-safety tests: file hashes and an in-process CLI runner that reports
exit code, stderr lines and whether a traceback escaped."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quant"))  # float_models

from float_models import cnn_bn, images  # noqa: F401  (re-exported for the tests)


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """name → sha256 of every file in ``folder`` (temp files included: none may be left)."""
    return {p.name: sha256(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}


def invoke(*args):
    """Run the CLI in-process; returns typer's Result (exit_code, stdout, stderr, exception)."""
    from typer.testing import CliRunner

    from edgequant.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(res, *patterns: str) -> str:
    """Exit code 2, exactly one ``error:`` line on stderr containing every pattern, no
    traceback."""
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "Traceback" not in res.stderr + res.stdout
    for p in patterns:
        assert p in lines[0], (p, lines[0])
    return lines[0]
