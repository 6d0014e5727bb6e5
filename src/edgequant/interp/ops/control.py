"""Control flow: If, Loop, Scan. Each body is a compiled ``interpreter.Subgraph`` in
``ctx.subgraphs``; the outer-scope tensors the bodies read arrive after the node's own inputs,
named by ``ctx.captured``."""

from __future__ import annotations

import numpy as np

from edgequant.errors import UnsupportedOpError
from edgequant.interp.registry import NodeContext, register


def _scope(ctx: NodeContext, captured) -> dict:
    return dict(zip(ctx.captured, captured, strict=True))


def _split(ctx: NodeContext, args):
    """(the node's own inputs, its outer scope) from the flat argument list."""
    n_own = len(args) - len(ctx.captured)
    return list(args[:n_own]), _scope(ctx, args[n_own:])


@register()
def If(ctx: NodeContext, cond, *captured):
    """Run ``then_branch`` if ``cond`` (a one-element bool tensor) else ``else_branch``."""
    c = np.asarray(cond)
    if c.size != 1:
        raise ValueError(f"If node {ctx.name!r}: cond must hold one value, got shape {c.shape}")
    branch = ctx.subgraphs["then_branch" if bool(c.reshape(-1)[0]) else "else_branch"]
    return tuple(branch.run(_scope(ctx, captured), []))


def _stack(values: list, declared) -> np.ndarray:
    """Slices stacked along a new first axis; with zero slices, an empty tensor of the body
    output's declared dtype and shape (float32 / unknown dims collapsed when undeclared)."""
    if values:
        return np.stack(values)
    dtype, shape = declared
    return np.zeros((0, *(shape or ())), dtype or np.float32)


@register()
def Loop(ctx: NodeContext, *args):
    """``for i in range(M) while cond``: the body maps ``(i, cond, carried...)`` to
    ``(cond, carried..., scan outputs...)``; returns the final carried values and every
    scan output stacked along a new first axis. ``M`` and ``cond`` may be omitted."""
    own, outer = _split(ctx, args)
    trip, cond, carried = own[0], own[1], own[2:]
    body = ctx.subgraphs["body"]
    n_carried = len(carried)
    n_scan = len(body.output_names) - 1 - n_carried
    max_trip = None if trip is None else int(np.asarray(trip).reshape(-1)[0])
    keep_going = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
    scans: list[list[np.ndarray]] = [[] for _ in range(n_scan)]
    i = 0
    while keep_going and (max_trip is None or i < max_trip):
        out = body.run(outer, [np.array(i, np.int64), np.array(keep_going), *carried])
        # the spec calls the body's cond output ignored without a cond input; onnxruntime
        # stops on it regardless, and so do we
        keep_going = bool(np.asarray(out[0]).reshape(-1)[0])
        carried = out[1: 1 + n_carried]
        for k in range(n_scan):
            scans[k].append(np.asarray(out[1 + n_carried + k]))
        i += 1
    return (*carried, *(_stack(s, body.output_types[1 + n_carried + k]) for k, s in enumerate(scans)))


@register()
def Scan(ctx: NodeContext, *args):
    """Opset ≥ 9 Scan: the body maps ``(state..., one slice of each scan input...)`` to
    ``(state..., scan output slices...)``; slices run along ``scan_input_axes`` in
    ``scan_input_directions`` and outputs stack along ``scan_output_axes`` (reversed for
    direction 1)."""
    if ctx.opset < 9:
        raise UnsupportedOpError(f"Scan node {ctx.name!r}: opset {ctx.opset} Scan (batch axis, "
                                 "sequence_lens) is not supported; opset ≥ 9 is")
    own, outer = _split(ctx, args)
    body = ctx.subgraphs["body"]
    n_in = int(ctx.attr("num_scan_inputs"))
    states, xs = own[: len(own) - n_in], own[len(own) - n_in:]
    n_out = len(body.output_names) - len(states)
    in_axes = ctx.attr("scan_input_axes") or [0] * n_in
    in_dirs = ctx.attr("scan_input_directions") or [0] * n_in
    out_axes = ctx.attr("scan_output_axes") or [0] * n_out
    out_dirs = ctx.attr("scan_output_directions") or [0] * n_out
    xs = [np.moveaxis(x, a % x.ndim, 0) for x, a in zip(xs, in_axes, strict=True)]
    xs = [x[::-1] if d else x for x, d in zip(xs, in_dirs, strict=True)]
    lengths = {x.shape[0] for x in xs}
    if len(lengths) != 1:
        raise ValueError(f"Scan node {ctx.name!r}: scan inputs have different lengths {lengths}")
    steps = lengths.pop()
    outs: list[list[np.ndarray]] = [[] for _ in range(n_out)]
    for t in range(steps):
        res = body.run(outer, [*states, *(x[t] for x in xs)])
        states = res[: len(states)]
        for k in range(n_out):
            outs[k].append(np.asarray(res[len(states) + k]))
    stacked = []
    for k, (vals, a, d) in enumerate(zip(outs, out_axes, out_dirs, strict=True)):
        y = _stack(vals, body.output_types[len(states) + k])  # (steps, ...) scan axis first
        y = y[::-1] if d else y
        stacked.append(np.moveaxis(y, 0, a % y.ndim))
    return (*states, *stacked)
