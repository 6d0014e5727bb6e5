"""RNN / GRU / LSTM vs onnxruntime: every direction, with and without bias, sequence_lens,
initial states, LSTM peepholes and GRU linear_before_reset; unsupported attributes rejected."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from single_op import run_ort, run_ref, single_op_model

from edgequant.errors import UnsupportedOpError

#: a recurrence of ~6 float32 steps through exp / tanh: onnxruntime's MLAS approximations of
#: the activations drift a few ulp per step from numpy's libm.
RNN_RTOL = 1e-5
RNN_ATOL = 1e-5

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
T, N, IN, H = 6, 3, 5, 4  # steps, batch, input size, hidden size


def _case(op: str, direction: str, full: bool, seed: int, **attrs):
    """Model and feeds; ``full`` adds bias, sequence_lens, initial states (and peepholes)."""
    r = np.random.default_rng(seed)
    d, g = DIRECTIONS[direction], GATES[op]

    def w(*shape):
        return r.uniform(-0.6, 0.6, shape).astype(np.float32)

    x = w(T, N, IN) * 2
    consts = {"W": w(d, g * H, IN), "R": w(d, g * H, H)}
    order = ["x", "W", "R"]
    if full:
        consts["B"] = w(d, 2 * g * H)
        consts["L"] = np.array([T, 2, 4], np.int32)[:N]
        consts["h0"] = w(d, N, H)
        order += ["B", "L", "h0"]
        if op == "LSTM":
            consts["c0"], consts["P"] = w(d, N, H), w(d, 3 * H)
            order += ["c0", "P"]
    n_out = 3 if op == "LSTM" else 2
    model = single_op_model(op, {"x": x}, consts, order, n_outputs=n_out, hidden_size=H,
                            direction=direction, **attrs)
    return model, {"x": x}


def _check(model, feeds):
    ours, theirs = run_ref(model, feeds), run_ort(model, feeds)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=RNN_RTOL, atol=RNN_ATOL)


@pytest.mark.parametrize("op,direction,full",
                         list(itertools.product(GATES, DIRECTIONS, [False, True])))
def test_recurrent_layer_matches_onnxruntime(op, direction, full):
    _check(*_case(op, direction, full, seed=len(op) * 7 + len(direction) + full))


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_linear_before_reset_matches_onnxruntime(direction):
    _check(*_case("GRU", direction, True, seed=3, linear_before_reset=1))


def test_lstm_only_y_h_output_requested():
    """Exported VAD models often keep only Y_h / Y_c: the Y output name is left empty."""
    model, feeds = _case("LSTM", "forward", True, seed=5)
    model.graph.node[0].output[0] = ""
    del model.graph.output[0]
    _check(model, feeds)


@pytest.mark.parametrize("attr,value", [("clip", 5.0), ("activations", ["Relu", "Tanh", "Tanh"]),
                                        ("input_forget", 1)])
def test_unsupported_attribute_names_node_and_attribute(attr, value):
    model, feeds = _case("LSTM", "forward", False, seed=1, **{attr: value})
    with pytest.raises(UnsupportedOpError, match=rf"LSTM node 'LSTM_node'.*{attr}"):
        run_ref(model, feeds)
