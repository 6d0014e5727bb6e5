"""The one atomic writer: the user's umask, nothing left behind on failure (even Ctrl-C), the
old file intact until the new one is complete."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from safety_cli import invoke

from edgequant.outputs import (
    OutputPathError,
    atomic_write,
    current_umask,
    plan_outputs,
    write_npz,
    write_text,
)


@pytest.fixture()
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    p = write_text(tmp_path / "r.json", "{}")
    assert stat.S_IMODE(p.stat().st_mode) == mode
    q = write_npz(tmp_path / "o.npz", {"a": np.arange(3)})
    assert stat.S_IMODE(q.stat().st_mode) == mode


def test_cli_outputs_follow_umask(work, umask):
    umask(0o022)
    res = invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--recipe", "fp16",
                 "--no-speed-check", "--report", work / "r.json")
    assert res.exit_code == 0, res.stderr
    res = invoke("run", work / "q.onnx", "--data", work / "cal.npz", "-o", work / "o.npz")
    assert res.exit_code == 0, res.stderr
    for name in ("q.onnx", "r.json", "o.npz"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o644, name


def test_npz_written_at_exactly_the_path(tmp_path):
    """np.savez appends .npz to names without it; the writer must not."""
    p = write_npz(tmp_path / "out.data", {"x": np.eye(2, dtype=np.float32)})
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.data"]
    with np.load(p) as z:
        np.testing.assert_array_equal(z["x"], np.eye(2, dtype=np.float32))


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError, ValueError])
def test_failure_leaves_old_file_and_no_temp(tmp_path, exc):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise exc("interrupted")

    with pytest.raises(exc):
        atomic_write(target, write)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp file left
    assert target.read_bytes() == b"old"


def test_replaces_a_symlink_not_its_target(tmp_path):
    """An existing output that is a symlink to an unrelated file: the link is replaced, the
    file it pointed to is untouched."""
    other = tmp_path / "other.txt"
    other.write_text("keep")
    (tmp_path / "out.txt").symlink_to(other)
    write_text(tmp_path / "out.txt", "new")
    assert other.read_text() == "keep"
    assert not (tmp_path / "out.txt").is_symlink() and (tmp_path / "out.txt").read_text() == "new"


def test_plan_outputs_rules(tmp_path):
    src = tmp_path / "in.onnx"
    src.write_bytes(b"x")
    planned = plan_outputs([src], {"model": tmp_path / "a.onnx", "report": None})
    assert planned == {"model": tmp_path / "a.onnx"}
    with pytest.raises(OutputPathError, match=r"report path .* is also the model path"):
        plan_outputs([src], {"model": tmp_path / "a.onnx", "report": tmp_path / "." / "a.onnx"})
    with pytest.raises(OutputPathError, match="is the input"):
        plan_outputs([src], {"model": tmp_path / "sub" / ".." / "in.onnx"})
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputPathError, match="is a file"):
        plan_outputs([], {"output": tmp_path / "f"}, folders=["output"])
    with pytest.raises(OutputPathError, match="is not a folder"):
        plan_outputs([], {"output": tmp_path / "f" / "x.onnx"})
    assert plan_outputs([], {"output": tmp_path}, folders=["output"]) == {"output": tmp_path}
