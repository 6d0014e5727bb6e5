"""If / Loop / Scan vs onnxruntime: outer-scope names seen by subgraphs, loop-carried values,
scan outputs, early exit, nesting, and a voice-activity-style model (If + Loop + LSTM with
state in, state out) run for several chunks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from single_op import OPSET, run_ort, run_ref

from edgequant.interp import Interpreter

#: float32 element-wise chains and a short LSTM: a few ulp of libm / MLAS difference.
FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-5

FLOAT, INT64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
rng = np.random.default_rng(3)


def vi(name, elem=FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def model_of(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "main", inputs, outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)


def check(model: onnx.ModelProto, feeds):
    ours, theirs = run_ref(model, feeds), run_ort(model, feeds)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    return ours


def if_model():
    """y = If(sum(x) > 0) then x + bias (outer initializer) else x · k (outer tensor)."""
    then_g = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["t"])], "then", [],
                               [vi("t")])
    else_g = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["e"])], "else", [], [vi("e")])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node("Neg", ["x"], ["k"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    return model_of(nodes, [vi("x", FLOAT, [2, 3])], [vi("y")],
                    [("bias", np.float32([1, 2, 3])), ("zero", np.float32(0))])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_if_takes_either_branch_with_outer_scope(sign):
    x = (np.abs(rng.standard_normal((2, 3))) * sign).astype(np.float32)
    y = check(if_model(), {"x": x})[0]
    np.testing.assert_allclose(y, x + np.float32([1, 2, 3]) if sign > 0 else -x * x, rtol=FLOAT_RTOL)


def loop_model(with_trip: bool, with_cond: bool):
    """Loop: acc += x · i (x from the outer scope); stop when acc's sum > limit; scan out acc."""
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["fi"], to=FLOAT),
            helper.make_node("Mul", ["x", "fi"], ["step"]),
            helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
            helper.make_node("ReduceSum", ["acc_out"], ["total"], keepdims=0),
            helper.make_node("Less", ["total", "limit"], ["cond_out"]),
            helper.make_node("Identity", ["acc_out"], ["scan_acc"]),
        ],
        "body", [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [3])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [3]), vi("scan_acc", FLOAT, [3])])
    node = helper.make_node("Loop", ["M" if with_trip else "", "c0" if with_cond else "", "a0"],
                            ["acc", "trace"], body=body)
    return model_of([node], [vi("x", FLOAT, [3])], [vi("acc"), vi("trace")],
                    [("M", np.int64(5)), ("c0", np.array(True)), ("a0", np.zeros(3, np.float32)),
                     ("limit", np.float32(20.0))])


@pytest.mark.parametrize("with_trip,with_cond,scale", [(True, True, 0.5), (True, True, 3.0),
                                                       (True, False, 3.0), (False, True, 1.0)])
def test_loop_carried_scan_and_exit(with_trip, with_cond, scale):
    x = (np.float32([1, 2, 0.5]) * scale).astype(np.float32)
    acc, trace = check(loop_model(with_trip, with_cond), {"x": x})
    assert trace.shape[0] >= 1 and trace.shape[1:] == (3,)
    np.testing.assert_allclose(trace[-1], acc)


def test_loop_with_zero_trips_returns_initial_values_and_empty_scan():
    model = loop_model(True, True)
    m = next(t for t in model.graph.initializer if t.name == "M")
    m.CopyFrom(numpy_helper.from_array(np.int64(0), "M"))
    acc, trace = check(model, {"x": np.float32([1, 2, 3])})
    assert trace.shape == (0, 3) and not acc.any()


def test_scan_with_directions_and_axes():
    """Running sum over axis 1 of one input read backwards; scan output stacked on axis 1."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "a"], ["s_out"]),
         helper.make_node("Mul", ["s_out", "b"], ["o"])],
        "body", [vi("s_in", FLOAT, [2]), vi("a", FLOAT, [2]), vi("b", FLOAT, [2])],
        [vi("s_out", FLOAT, [2]), vi("o", FLOAT, [2])])
    node = helper.make_node("Scan", ["s0", "xa", "xb"], ["s", "ys"], body=body, num_scan_inputs=2,
                            scan_input_axes=[1, 0], scan_input_directions=[1, 0],
                            scan_output_axes=[1], scan_output_directions=[1])
    model = model_of([node], [vi("xa", FLOAT, [2, 4]), vi("xb", FLOAT, [4, 2])],
                     [vi("s"), vi("ys")], [("s0", np.float32([0.5, -1]))])
    feeds = {"xa": rng.standard_normal((2, 4)).astype(np.float32),
             "xb": rng.standard_normal((4, 2)).astype(np.float32)}
    _, ys = check(model, feeds)
    assert ys.shape == (2, 4)


def test_if_nested_in_loop_body_sees_both_scopes():
    """An If inside a Loop body reads the body's iteration number and the main graph's x."""
    then_g = helper.make_graph([helper.make_node("Add", ["acc_in", "x"], ["r1"])], "t", [],
                               [vi("r1")])
    else_g = helper.make_graph([helper.make_node("Sub", ["acc_in", "x"], ["r2"])], "e", [],
                               [vi("r2")])
    body = helper.make_graph(
        [helper.make_node("Mod", ["i", "two"], ["m"]),
         helper.make_node("Equal", ["m", "zero"], ["even"]),
         helper.make_node("If", ["even"], ["acc_out"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [2])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [2])])
    node = helper.make_node("Loop", ["M", "", "a0"], ["acc"], body=body)
    model = model_of([node], [vi("x", FLOAT, [2])], [vi("acc")],
                     [("M", np.int64(5)), ("a0", np.zeros(2, np.float32)),
                      ("two", np.int64(2)), ("zero", np.int64(0))])
    x = np.float32([1.5, -2.0])
    np.testing.assert_allclose(check(model, {"x": x})[0], x, rtol=FLOAT_RTOL)  # +x −x +x −x +x


H, F, T = 8, 4, 5


def vad_model():
    """Voice-activity-style model: sr picks a branch (If), a Loop frames the chunk and keeps a
    running level (carried) while emitting features (scan output), an LSTM carries (h, c)
    across calls; outputs a speech probability and the new state."""
    r = np.random.default_rng(0)

    def w(*shape):
        return r.uniform(-0.5, 0.5, shape).astype(np.float32)

    then_g = helper.make_graph([helper.make_node("Reshape", ["audio", "frame_shape"], ["f16"])],
                               "sr16k", [], [vi("f16")])
    else_g = helper.make_graph([helper.make_node("Mul", ["audio", "half"], ["a8"]),
                                helper.make_node("Reshape", ["a8", "frame_shape"], ["f8"])],
                               "sr8k", [], [vi("f8")])
    body = helper.make_graph(
        [helper.make_node("Gather", ["frames", "i"], ["fr"], axis=0),  # (1, F)
         helper.make_node("Abs", ["fr"], ["mag"]),
         helper.make_node("Add", ["level_in", "mag"], ["level_out"]),
         helper.make_node("MatMul", ["mag", "proj"], ["feat0"]),  # proj: outer initializer
         helper.make_node("Tanh", ["feat0"], ["feat"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "frame_loop", [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("level_in", FLOAT, [1, F])],
        [vi("cond_out", BOOL, []), vi("level_out", FLOAT, [1, F]), vi("feat", FLOAT, [1, F])])
    nodes = [
        helper.make_node("Equal", ["sr", "sr16k"], ["is16k"]),
        helper.make_node("If", ["is16k"], ["frames"], then_branch=then_g, else_branch=else_g),
        helper.make_node("Loop", ["n_frames", "", "level0"], ["level", "feats"], body=body),  # (T, 1, F)
        helper.make_node("Split", ["state", "two_ones"], ["h0", "c0"], axis=0),
        helper.make_node("LSTM", ["feats", "W", "R", "B", "", "h0", "c0"], ["", "h", "c"],
                         hidden_size=H),
        helper.make_node("Concat", ["h", "c"], ["new_state"], axis=0),
        helper.make_node("Squeeze", ["h", "ax0"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w_out"], ["logit"]),
        helper.make_node("ReduceMean", ["level"], ["lvl"], keepdims=0),
        helper.make_node("Add", ["logit", "lvl"], ["logit2"]),
        helper.make_node("Sigmoid", ["logit2"], ["prob"]),
    ]
    inits = [("sr16k", np.int64(16000)), ("frame_shape", np.array([T, 1, F], np.int64)),
             ("half", np.float32(0.5)), ("n_frames", np.int64(T)),
             ("level0", np.zeros((1, F), np.float32)), ("proj", w(F, F)),
             ("ax0", np.array([0], np.int64)),
             ("two_ones", np.array([1, 1], np.int64)), ("W", w(1, 4 * H, F)),
             ("R", w(1, 4 * H, H)), ("B", w(1, 8 * H)), ("w_out", w(H, 1))]
    return model_of(nodes, [vi("audio", FLOAT, [1, T * F]), vi("state", FLOAT, [2, 1, H]),
                            vi("sr", INT64, [])], [vi("prob"), vi("new_state")], inits)


def test_vad_style_model_streams_state_like_onnxruntime():
    model = vad_model()
    state = np.zeros((2, 1, H), np.float32)
    ours_state = state
    for chunk in range(3):
        audio = rng.standard_normal((1, T * F)).astype(np.float32)
        sr = np.array(16000 if chunk != 1 else 8000, np.int64)
        feeds = {"audio": audio, "state": state, "sr": sr}
        prob, state = check(model, feeds)
        assert prob.shape == (1, 1) and state.shape == (2, 1, H)
        # the interpreter fed its own state back stays within tolerance of onnxruntime's chain
        ours_prob, ours_state = run_ref(model, {**feeds, "state": ours_state})
        np.testing.assert_allclose(ours_state, state, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
        np.testing.assert_allclose(ours_prob, prob, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


def test_outer_tensor_freed_only_after_subgraph_reads_it():
    """run() drops activations after their last use: a tensor read only inside a branch must
    survive until the If runs (it is an implicit input of the If node)."""
    interp = Interpreter(if_model())
    x = np.ones((2, 3), np.float32) * -1
    np.testing.assert_allclose(interp.run({"x": x})["y"], -x * x)
    assert "k" in interp.run_all({"x": x})


def test_sequence_ops_match_onnxruntime():
    """SplitToSequence → erase / insert / at / length → ConcatFromSequence (both forms)."""
    nodes = [
        helper.make_node("SplitToSequence", ["x", "two"], ["parts"], axis=1),  # sizes 2, 2, 1
        helper.make_node("SequenceErase", ["parts", "minus1"], ["kept"]),
        helper.make_node("SequenceAt", ["kept", "zero"], ["first"]),
        helper.make_node("SequenceInsert", ["kept", "first", "zero"], ["grown"]),
        helper.make_node("SequenceLength", ["grown"], ["n"]),
        helper.make_node("ConcatFromSequence", ["grown"], ["cat"], axis=1),
        helper.make_node("SplitToSequence", ["x"], ["rows"], axis=0),
        helper.make_node("ConcatFromSequence", ["rows"], ["stacked"], axis=1, new_axis=1),
        helper.make_node("SequenceConstruct", ["x", "x"], ["pair"]),
        helper.make_node("ConcatFromSequence", ["pair"], ["doubled"], axis=0),
        helper.make_node("SplitToSequence", ["x"], ["cols"], axis=1, keepdims=0),
        helper.make_node("ConcatFromSequence", ["cols"], ["restacked"], axis=1, new_axis=1),
    ]
    model = model_of(nodes, [vi("x", FLOAT, [3, 5])],
                     [vi("cat"), vi("n", INT64), vi("stacked"), vi("doubled"), vi("restacked")],
                     [("two", np.int64(2)), ("minus1", np.int64(-1)), ("zero", np.int64(0))])
    x = rng.standard_normal((3, 5)).astype(np.float32)
    cat, n, stacked, doubled, restacked = check(model, {"x": x})
    assert doubled.shape == (6, 5)
    assert int(n) == 3 and cat.shape == (3, 6) and stacked.shape == (1, 3, 5)
    np.testing.assert_array_equal(restacked, x)
