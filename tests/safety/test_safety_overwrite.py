"""Issue 14's overwrite cases through the CLI: each is refused before any work (exit 2, one
line), the inputs' sha256 are unchanged and no file is left behind."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from safety_cli import assert_one_line_error, invoke, snapshot


def test_report_onto_the_input_model(work):
    before = snapshot(work)
    res = invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--recipe", "fp16",
                 "--report", work / "model.onnx")
    assert_one_line_error(res, "report path", "is the input model")
    assert snapshot(work) == before  # model intact, no q.onnx, no temp file


def test_report_equal_to_output(work):
    before = snapshot(work)
    res = invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--recipe", "fp16",
                 "--report", work / "q.onnx")
    assert_one_line_error(res, "report path", "is also the output model path")
    assert snapshot(work) == before


def test_output_onto_calibration_data(work):
    before = snapshot(work)
    res = invoke("quantize", work / "model.onnx", "-o", work / "cal.npz", "--calibration",
                 work / "cal.npz")
    assert_one_line_error(res, "is the calibration data")
    assert snapshot(work) == before


@pytest.mark.parametrize("target", ["model.onnx", "cal.npz"])
def test_run_output_onto_an_input(work, target):
    before = snapshot(work)
    res = invoke("run", work / "model.onnx", "--data", work / "cal.npz", "-o", work / target)
    assert_one_line_error(res, "is the input model" if target == "model.onnx" else "is the data")
    assert snapshot(work) == before


def test_report_into_missing_folder_writes_nothing(work):
    before = snapshot(work)
    res = invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--recipe", "fp16",
                 "--report", work / "nope" / "r.json")
    assert_one_line_error(res, "does not exist", "nope")
    assert snapshot(work) == before  # the model is not written first any more
    assert not (work / "nope").exists()


def test_output_is_a_directory(work):
    (work / "d").mkdir()
    before = snapshot(work)
    res = invoke("quantize", work / "model.onnx", "-o", work / "d", "--recipe", "fp16")
    assert_one_line_error(res, "is a directory")
    assert snapshot(work) == before and list((work / "d").iterdir()) == []


def test_output_through_a_symlink_or_hard_link_to_the_input(work):
    (work / "sym.onnx").symlink_to(work / "model.onnx")
    os.link(work / "model.onnx", work / "hard.onnx")
    before = snapshot(work)
    for link in ("sym.onnx", "hard.onnx"):
        res = invoke("quantize", work / "model.onnx", "-o", work / link, "--recipe", "fp16")
        assert_one_line_error(res, "is the input model")
    assert snapshot(work) == before
    assert (work / "sym.onnx").is_symlink()


def test_read_only_folder(work, monkeypatch):
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits: simulate the kernel's answer
            import edgequant.outputs as outputs

            real = os.access
            monkeypatch.setattr(outputs.os, "access",
                                lambda p, mode: False if os.path.samefile(p, ro) else real(p, mode))
        before = snapshot(work)
        res = invoke("run", work / "model.onnx", "--data", work / "cal.npz", "-o", ro / "o.npz")
        assert_one_line_error(res, "is not writable", "ro")
        assert snapshot(work) == before and list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_distinct_paths_still_work(work):
    """The checks refuse only real conflicts: a normal run writes both files."""
    before = snapshot(work)
    res = invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--recipe", "fp16",
                 "--no-speed-check", "--report", work / "r.json")
    assert res.exit_code == 0, (res.stderr, res.exception)
    after = snapshot(work)
    assert {k: after[k] for k in before} == before
    assert set(after) == set(before) | {"q.onnx", "r.json"}  # no temp file left
    res = invoke("run", work / "q.onnx", "--data", work / "cal.npz", "-o", work / "o.npz")
    assert res.exit_code == 0, (res.stderr, res.exception)
    with np.load(work / "o.npz") as z:
        assert z["logits"].shape == (16, 10)


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(work, monkeypatch):
    import errno

    def full_disk(model, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full_disk)
    before = snapshot(work)
    res = invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--recipe", "fp16",
                 "--no-speed-check")
    assert_one_line_error(res, "No space left on device")
    assert snapshot(work) == before  # no q.onnx, no partial temp file


def test_output_onto_the_models_external_data(tmp_path):
    from float_models import cnn_bn

    onnx.save(cnn_bn(), tmp_path / "m.onnx", save_as_external_data=True, location="w.bin",
                  size_threshold=0)
    np.savez(tmp_path / "cal.npz", input=np.zeros((2, 1, 12, 12), np.float32))
    before = snapshot(tmp_path)
    res = invoke("quantize", tmp_path / "m.onnx", "-o", tmp_path / "w.bin", "--recipe", "fp16")
    assert_one_line_error(res, "is the external data of initializer")
    res = invoke("run", tmp_path / "m.onnx", "--data", tmp_path / "cal.npz", "-o", tmp_path / "w.bin")
    assert_one_line_error(res, "is the external data of initializer")
    assert snapshot(tmp_path) == before


def test_demo_folder_that_is_a_file(work):
    before = snapshot(work)
    res = invoke("demo", "--out", work / "model.onnx")
    assert_one_line_error(res, "output folder", "is a file")
    assert snapshot(work) == before
