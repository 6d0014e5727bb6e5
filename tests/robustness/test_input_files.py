"""Paths that are not regular files (FIFO, directory, /dev/zero, /proc) and files that are not
DATA.npz (.npy, text, pickle, float64 beyond float32, unknown keys): one line each, through the
library and the CLI (in-process), nothing opened that could block or read without end."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgequant.cli import app
from edgequant.errors import CalibrationError
from edgequant.input_files import InputFileError, check_input_file
from edgequant.runtime.feeds import load_feeds, model_inputs


def _model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


@pytest.fixture()
def fifo(tmp_path):
    p = tmp_path / "pipe.onnx"
    os.mkfifo(p)
    return p


def _empty(d):
    (d / "empty.onnx").write_bytes(b"")
    return d / "empty.onnx"


@pytest.mark.parametrize("make,pattern", [
    (lambda d: d, "is a directory"),
    (lambda d: d / "missing.onnx", "does not exist"),
    (_empty, "is empty"),
])
def test_check_input_file_refuses(tmp_path, make, pattern):
    with pytest.raises(InputFileError, match=pattern):
        check_input_file(make(tmp_path), "model")


def test_fifo_dev_zero_proc_refused_without_reading(fifo):
    # opening the FIFO for reading would block this test forever: the check must not open it
    with pytest.raises(InputFileError, match="FIFO"):
        check_input_file(fifo, "model")
    with pytest.raises(InputFileError, match="character device"):
        check_input_file("/dev/zero", "data file")
    with pytest.raises(InputFileError, match="empty"):  # /proc files report size 0
        check_input_file("/proc/self/status", "model")


@pytest.mark.parametrize("command", ["inspect", "verify", "quantize"])
@pytest.mark.parametrize("target", ["fifo", "dir", "/dev/zero", "/proc/self/status"])
def test_cli_special_model_paths(tmp_path, fifo, command, target):
    path = {"fifo": str(fifo), "dir": str(tmp_path)}.get(target, target)
    np.savez(tmp_path / "d.npz", x=np.ones((2, 4), np.float32))
    args = {"inspect": ["inspect", path],
            "verify": ["verify", path, "--data", str(tmp_path / "d.npz")],
            "quantize": ["quantize", path, "-o", str(tmp_path / "o.onnx"), "--calibration",
                         str(tmp_path / "d.npz"), "--no-speed-check"]}[command]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, (res.output, res.exception)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    assert any(w in errors[0] for w in ("FIFO", "directory", "character device", "empty",
                                        "suffix")), errors[0]
    assert not (tmp_path / "o.onnx").exists()


def test_cli_special_data_paths(tmp_path, fifo):
    onnx.save(_model(), tmp_path / "m.onnx")
    for data, pattern in [(fifo, "FIFO"), ("/dev/zero", "character device"),
                          (tmp_path, "directory")]:
        res = CliRunner().invoke(app, ["quantize", str(tmp_path / "m.onnx"), "-o",
                                       str(tmp_path / "o.onnx"), "--calibration", str(data)])
        assert res.exit_code == 2 and pattern in res.stderr, res.stderr


@pytest.fixture()
def inputs():
    return model_inputs(_model())


def test_npy_file_serves_a_one_input_model(tmp_path, inputs):
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    feeds = load_feeds(tmp_path / "x.npy", inputs)
    np.testing.assert_array_equal(feeds["x"], x)


def test_npy_file_for_two_inputs_is_explained(tmp_path):
    m = _model()
    m.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]))
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    with pytest.raises(CalibrationError, match=r"single \.npy array.*2 inputs"):
        load_feeds(tmp_path / "x.npy", model_inputs(m))


@pytest.mark.parametrize("content,pattern", [
    (b"input,1,2,3\n4,5,6\n" * 10, "is a text file, not an .npz file"),
    (pickle.dumps({"x": [1.0, 2.0]}), "is a Python pickle, not an .npz file"),
    (b"\x89HDF\r\n\x1a\n" + bytes(64), "is an HDF5 file"),
    (bytes(range(256)), "binary file of unknown format"),
])
def test_not_npz_files_are_named(tmp_path, inputs, content, pattern):
    (tmp_path / "d.npz").write_bytes(content)
    with pytest.raises(CalibrationError, match=pattern):
        load_feeds(tmp_path / "d.npz", inputs)


def test_float64_beyond_float32_is_named(tmp_path, inputs):
    x = np.ones((3, 4))
    x[1, 2] = 1e300
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(CalibrationError, match=r"float64 value\(s\) up to 1e\+300, beyond the "
                                               r"float32 range"):
        load_feeds(tmp_path / "d.npz", inputs)
    with pytest.raises(CalibrationError, match="beyond the float32 range"):
        load_feeds({"x": x}, inputs)


def test_unknown_keys_are_listed_not_read(tmp_path, inputs, caplog):
    x = np.ones((3, 4), np.float32)
    np.savez_compressed(tmp_path / "d.npz", x=x, labels=np.arange(3), junk=np.zeros(1000))
    # corrupt the 'junk' member's compressed bytes: reading it would fail
    with zipfile.ZipFile(tmp_path / "d.npz") as z:
        info = z.getinfo("junk.npy")
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start:start + info.compress_size] = b"\xff" * info.compress_size
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        feeds = load_feeds(tmp_path / "d.npz", inputs)
    np.testing.assert_array_equal(feeds["x"], x)
    assert "['junk', 'labels']" in caplog.text and "not read" in caplog.text
