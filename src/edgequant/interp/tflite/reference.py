"""A numpy reference executor for the ``.tflite`` files the exporter writes.

Integer ops follow LiteRT's builtin kernels (or XNNPACK's, ``kernels="xnnpack"``) bit for bit
(:mod:`~edgequant.interp.tflite.kernels`, ``activations``, ``shape_ops``, ``data_ops``,
``math_ops``); float ops are plain float32/float64 numpy (a float oracle, not bit-exact with
LiteRT's float kernels). Hybrid FULLY_CONNECTED (float input, int8 weights) quantizes each
input row on the fly as LiteRT's builtin kernel does (XNNPACK: asymmetric rows, like its
dynamic-range path); its float output is within float32 ulps. INT4 blockwise hybrids
dequantize the weights (LiteRT's on-the-fly input quantization is not modelled there).
Only the op set the exporter emits is implemented; anything else is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import NUMPY_TYPES, unpack_int4
from edgequant.export.tflite.verify_buffer import InvalidModelError, parse_tflite
from edgequant.input_files import read_input_bytes
from edgequant.interp.tflite import activations as A
from edgequant.interp.tflite import kernels as K

OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
ACT_NAMES = {v: k for k, v in vars(schema.ActivationFunctionType).items()
             if not k.startswith("_")}
PAD_NAMES = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
#: Largest tensor the reference executor materializes (numpy, often widened to int64/float64).
MAX_REFERENCE_TENSOR_BYTES = 256 * 1024**2
#: Errors a kernel raises on a model that verified but is inconsistent (wrong operand count,
#: shapes that do not fit the op): reported as one line naming the operator.
#: Ops writing several output tensors (their kernels return a list, one array per output).
MULTI_OUTPUT_OPS = frozenset({"SPLIT", "SPLIT_V"})
_KERNEL_ERRORS = (IndexError, ValueError, TypeError, KeyError, AttributeError,
                  ZeroDivisionError, OverflowError, MemoryError)


@dataclass
class TInfo:
    """Static facts about one tensor of the flatbuffer."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    data: np.ndarray | None
    block_scale: np.ndarray | None = None  # INT4 blockwise: (O, I / block) float32 scales
    block_size: int | None = None
    axis: int = 0  # quantized dimension of per-channel qparams

    @property
    def q(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero_point) arrays."""
        return self.scale, self.zero_point


def _tensor_infos(m: schema.ModelT) -> list[TInfo]:
    sub = m.subgraphs[0]
    infos = []
    blocks: list[tuple[int, int, int]] = []  # (tensor, scales tensor, block size)
    for k, t in enumerate(sub.tensors):
        int4 = t.type == schema.TensorType.INT4
        if not int4 and t.type not in NUMPY_TYPES:
            raise UnsupportedOpError(f"reference executor: tensor {k} has TFLite type {t.type}; "
                                     f"supported are INT4 and {sorted(NUMPY_TYPES)}")
        dtype = np.dtype(np.int8) if int4 else NUMPY_TYPES[t.type]
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        data = None
        buf = m.buffers[t.buffer]
        if buf.data is not None and len(buf.data):
            raw = np.asarray(buf.data, np.uint8)
            data = unpack_int4(raw, shape) if int4 else \
                np.frombuffer(bytes(raw), dtype=dtype).reshape(shape)
        q = t.quantization
        if q is not None and q.detailsType == schema.QuantizationDetails.BlockwiseQuantization:
            blocks.append((k, int(q.details.scales), int(q.details.blockSize)))
        scale = zp = None
        if t.quantization is not None and t.quantization.scale is not None:
            scale = np.asarray(t.quantization.scale, np.float32)
            zp = np.asarray(t.quantization.zeroPoint, np.int64)
        name = t.name.decode() if isinstance(t.name, bytes) else t.name
        axis = int(q.quantizedDimension or 0) if q is not None else 0
        infos.append(TInfo(name, shape, dtype, scale, zp, data, axis=axis))
    for k, scales, size in blocks:
        if infos[scales].data is None:
            raise InvalidModelError(f"tensor {k}: blockwise scales tensor {scales} is not a "
                                    "constant")
        infos[k].block_scale = infos[scales].data.astype(np.float32)
        infos[k].block_size = size
    return infos


class ReferenceInterpreter:
    """Runs a ``.tflite`` (single subgraph) with numpy: ``run(feeds) -> list[np.ndarray]``."""

    def __init__(self, path_or_bytes: str | Path | bytes, kernels: str = "builtin") -> None:
        if kernels not in ("builtin", "xnnpack"):
            raise ValueError(f"kernels {kernels!r} is not allowed: use builtin or xnnpack")
        self.kernels = kernels
        if isinstance(path_or_bytes, bytes):
            data, label = path_or_bytes, "<tflite bytes>"
        else:
            data, label = read_input_bytes(path_or_bytes, "model"), Path(path_or_bytes).name
        self.model = parse_tflite(data, label, max_tensor_bytes=MAX_REFERENCE_TENSOR_BYTES)
        self.sub = self.model.subgraphs[0]
        self.op_names = []
        for k, op in enumerate(self.sub.operators or []):
            name = OP_NAMES.get(self.model.operatorCodes[op.opcodeIndex].builtinCode, "?")
            if name not in _OPS:  # refused before anything runs (no WHILE loop can hang)
                raise UnsupportedOpError(f"{label}: reference executor: operator {k} is {name}, "
                                         "which is not implemented")
            n_out = 0 if op.outputs is None else len(op.outputs)
            if n_out == 0 or min(int(i) for i in op.outputs) < 0 or (
                    n_out != 1 and name not in MULTI_OUTPUT_OPS):
                raise InvalidModelError(f"{label}: operator {k} ({name}) must have exactly one "
                                        "output tensor" + (" or more" if name in MULTI_OUTPUT_OPS
                                                           else ""))
            self.op_names.append(name)
        try:
            self.tensors = _tensor_infos(self.model)
        except InvalidModelError as exc:
            raise InvalidModelError(f"{label}: {exc}") from exc
        self.label = label
        self.input_names = [self.tensors[i].name for i in self.sub.inputs]
        self.output_names = [self.tensors[i].name for i in self.sub.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Execute every operator in order; returns the outputs in subgraph order."""
        vals = self.run_all(feeds)
        return [vals[int(i)] for i in self.sub.outputs]

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        """Execute every operator; returns every tensor's value by tensor index."""
        vals: dict[int, np.ndarray] = {}
        for i, name in zip(self.sub.inputs, self.input_names, strict=True):
            if name not in feeds:
                raise ValueError(f"input {name!r} missing from feeds (have {sorted(feeds)})")
            vals[int(i)] = np.asarray(feeds[name]).astype(self.tensors[i].dtype)
        for k, t in enumerate(self.tensors):
            if t.data is not None:
                vals[k] = t.data
        for k, (op, name) in enumerate(zip(self.sub.operators or [], self.op_names, strict=True)):
            op_inputs = op.inputs if op.inputs is not None else []
            missing = [int(i) for i in op_inputs if i >= 0 and int(i) not in vals]
            if missing:
                raise InvalidModelError(f"{self.label}: operator {k} ({name}) reads tensor(s) "
                                        f"{missing}, which no earlier operator, input or "
                                        "constant provides")
            ins = [None if i < 0 else vals[int(i)] for i in op_inputs]
            infos = [None if i < 0 else self.tensors[int(i)] for i in op_inputs]
            out_info = self.tensors[int(op.outputs[0])]
            fn = _OPS[name]
            # XNNPACK has no int16 kernels: such ops stay on LiteRT's builtin kernels
            wide = any(t is not None and t.dtype == np.int16 for t in [*infos, out_info])
            try:
                y = fn(ins, infos, out_info, op.builtinOptions,
                       "builtin" if wide else self.kernels)
                ys = y if name in MULTI_OUTPUT_OPS else [y]
                if len(ys) != len(op.outputs):
                    raise ValueError(f"{len(ys)} results for {len(op.outputs)} outputs")
                for i, v in zip(op.outputs, ys, strict=True):
                    vals[int(i)] = np.asarray(v).reshape(self.tensors[int(i)].shape)
            except _KERNEL_ERRORS as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise InvalidModelError(
                    f"{self.label}: operator {k} ({name}) cannot run on its operands "
                    f"(inputs {[tuple(t.shape) if t is not None else None for t in infos]}, "
                    f"output {tuple(out_info.shape)}): {type(exc).__name__}: {msg}") from exc
        return vals


def _act(opt) -> str:
    return ACT_NAMES.get(getattr(opt, "fusedActivationFunction", 0), "NONE")


def _float_act(y: np.ndarray, act: str) -> np.ndarray:
    lo, hi = {"RELU": (0, np.inf), "RELU6": (0, 6), "RELU_N1_TO_1": (-1, 1)}.get(act, (None, None))
    return y if lo is None else np.clip(y, lo, hi)


def _is_int(info: TInfo) -> bool:
    return info.dtype.kind in "iu"


def _conv(ins, infos, out, opt, flavor="builtin", depthwise=False):
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    stride = (opt.strideH, opt.strideW)
    dil = (opt.dilationHFactor, opt.dilationWFactor)
    padding = PAD_NAMES[opt.padding]
    dm = opt.depthMultiplier if depthwise else None
    if _is_int(infos[0]):
        return K.conv2d(x, w, b, infos[0].q, infos[1].q, out.q, stride, dil, padding, _act(opt),
                        dm, out.dtype, flavor)
    w = w.astype(np.float64)
    if _is_int(infos[1]):  # hybrid: dequantize the weight (per channel)
        axis = 3 if depthwise else 0
        shp = [1] * 4
        shp[axis] = -1
        w = w * infos[1].scale.reshape(shp)
    kh, kw = w.shape[1:3]
    pads = K.spatial_pads(padding, x.shape[1:3], (kh, kw), stride, dil)
    p = K.patches(x.astype(np.float64), kh, kw, *stride, *dil, pads, 0.0)
    if depthwise:
        y = np.einsum("nhwijc,ijc->nhwc", np.repeat(p, dm, axis=5), w[0])
    else:
        y = p.reshape(*p.shape[:3], -1) @ w.reshape(w.shape[0], -1).T
    if b is not None:
        y = y + b
    return _float_act(y, _act(opt)).astype(np.float32)


def _fc(ins, infos, out, opt, flavor="builtin"):
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    if _is_int(infos[0]):
        x2 = x.reshape(-1, w.shape[1])
        return K.fully_connected(x2, w, b, infos[0].q, infos[1].q, out.q, _act(opt), out.dtype,
                                 flavor)
    if _is_int(infos[1]) and infos[1].block_size is None and infos[1].dtype == np.int8:
        return K.hybrid_fully_connected(x.reshape(-1, w.shape[1]), w, b, infos[1].scale,
                                        _act(opt), bool(opt.asymmetricQuantizeInputs)
                                        or flavor == "xnnpack")
    wf = w.astype(np.float64)
    if infos[1].block_size is not None:  # INT4 blockwise: scales per (row, block)
        wf = wf * np.repeat(infos[1].block_scale, infos[1].block_size, axis=1)
    elif _is_int(infos[1]):
        wf = wf * infos[1].scale.reshape(-1, 1)
    y = x.reshape(-1, w.shape[1]).astype(np.float64) @ wf.T
    if b is not None:
        y = y + b
    return _float_act(y, _act(opt)).astype(np.float32)


def _binary(kind):
    def run(ins, infos, out, opt, flavor="builtin"):
        a, b = ins
        if _is_int(infos[0]):
            if kind == "MUL":
                return K.mul(a, b, infos[0].q, infos[1].q, out.q, _act(opt), out.dtype, flavor)
            return K.add_sub(a, b, infos[0].q, infos[1].q, out.q, _act(opt),
                             1 if kind == "ADD" else -1, out.dtype, flavor)
        y = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[kind](a, b)
        return _float_act(y, _act(opt)).astype(np.float32)
    return run


def _pool(kind):
    def run(ins, infos, out, opt, flavor="builtin"):
        x = ins[0]
        k, s = (opt.filterHeight, opt.filterWidth), (opt.strideH, opt.strideW)
        padding = PAD_NAMES[opt.padding]
        if _is_int(infos[0]):
            return K.pool(x, kind, k, s, padding, _act(opt), out.q, out.dtype)
        pads = K.spatial_pads(padding, x.shape[1:3], k, s, (1, 1))
        if kind == "max":
            y = K.patches(x, *k, *s, 1, 1, pads, -np.inf).max(axis=(3, 4))
        else:
            p = K.patches(x.astype(np.float64), *k, *s, 1, 1, pads, 0.0).sum(axis=(3, 4))
            c = K.patches(np.ones((*x.shape[:3], 1)), *k, *s, 1, 1, pads, 0.0).sum(axis=(3, 4))
            y = p / c
        return _float_act(y, _act(opt)).astype(np.float32)
    return run


def _quantize(ins, infos, out, opt, flavor="builtin"):
    if _is_int(infos[0]):
        return K.requantize_tensor(ins[0], infos[0].q, out.q, out.dtype, flavor)
    return K.quantize_float(ins[0], out.q, out.dtype, flavor)


def _dequantize(ins, infos, out, opt, flavor="builtin"):
    x, info = ins[0], infos[0]
    if info.dtype == np.float16:
        return x.astype(np.float32)
    if info.scale.size > 1:  # per channel (LiteRT's PerChannelDequantize, float32)
        shape = [1] * x.ndim
        shape[info.axis % x.ndim] = -1
        d = (x.astype(np.int64) - info.zero_point.reshape(shape)).astype(np.float32)
        return (info.scale.reshape(shape) * d).astype(np.float32)
    return K.dequantize(x, info.q, flavor)


def _unary(fn_name):
    def run(ins, infos, out, opt, flavor="builtin"):
        x = ins[0]
        if _is_int(infos[0]):
            if fn_name == "softmax":
                return A.softmax(x, infos[0].q, out.q, opt.beta, out.dtype)
            if fn_name in ("logistic", "tanh"):
                return A.lut_activation(x, infos[0].q, out.q, fn_name, out.dtype)
            if fn_name == "hardswish":
                return A.hard_swish(x, infos[0].q, out.q, out.dtype)
            if fn_name in ("RELU", "RELU6", "RELU_N1_TO_1"):
                y = K.requantize_tensor(x, infos[0].q, out.q, np.int64)
                lo, hi = K.act_range(fn_name, float(out.scale[0]), int(out.zero_point[0]),
                                     out.dtype)
                return np.clip(y, lo, hi).astype(out.dtype)
            raise UnsupportedOpError(f"reference executor: integer {fn_name} not implemented")
        xf = x.astype(np.float64)
        if fn_name == "softmax":
            e = np.exp(opt.beta * (xf - xf.max(axis=-1, keepdims=True)))
            return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        f = {"logistic": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
             "hardswish": lambda v: v * np.clip(v + 3, 0, 6) / 6}.get(fn_name)
        y = f(xf) if f is not None else _float_act(xf, fn_name)
        return y.astype(np.float32)
    return run


def _mean(ins, infos, out, opt, flavor="builtin"):
    axes = tuple(int(a) % ins[0].ndim for a in np.ravel(ins[1]))
    if _is_int(infos[0]):
        return K.mean(ins[0], axes, bool(opt.keepDims), infos[0].q, out.q, out.dtype, flavor)
    return ins[0].astype(np.float64).mean(axis=axes, keepdims=bool(opt.keepDims)).astype(
        np.float32)


def _pad(ins, infos, out, opt, flavor="builtin"):
    fill = int(out.zero_point[0]) if _is_int(out) and out.zero_point is not None else 0
    return np.pad(ins[0], [tuple(p) for p in ins[1]], constant_values=fill)


_OPS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": lambda i, f, o, p, k: _conv(i, f, o, p, k, depthwise=True),
    "FULLY_CONNECTED": _fc,
    "ADD": _binary("ADD"),
    "SUB": _binary("SUB"),
    "MUL": _binary("MUL"),
    "MAX_POOL_2D": _pool("max"),
    "AVERAGE_POOL_2D": _pool("avg"),
    "MEAN": _mean,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "RESHAPE": lambda i, f, o, p, k: i[0].reshape(o.shape),
    "TRANSPOSE": lambda i, f, o, p, k: i[0].transpose([int(a) for a in i[1]]),
    "CONCATENATION": lambda i, f, o, p, k: np.concatenate(i, axis=p.axis),
    "PAD": _pad,
    "SOFTMAX": _unary("softmax"),
    "LOGISTIC": _unary("logistic"),
    "TANH": _unary("tanh"),
    "HARD_SWISH": _unary("hardswish"),
    "RELU": _unary("RELU"),
    "RELU6": _unary("RELU6"),
    "RELU_N1_TO_1": _unary("RELU_N1_TO_1"),
    "BATCH_MATMUL": lambda i, f, o, p, k: _batch_matmul(i, f, o, p, k),
}


def _batch_matmul(ins, infos, out, opt, flavor="builtin"):
    a, b = ins
    adj_x, adj_y = bool(getattr(opt, "adjX", False)), bool(getattr(opt, "adjY", False))
    if _is_int(infos[0]):
        return K.batch_matmul(a, b, infos[0].q, infos[1].q, out.q, adj_x, adj_y, out.dtype,
                              flavor)
    a = np.swapaxes(a, -1, -2) if adj_x else a
    b = np.swapaxes(b, -1, -2) if adj_y else b
    return np.matmul(a.astype(np.float64), b).astype(np.float32)


def _register_shape_ops() -> None:
    from edgequant.interp.tflite import data_ops, math_ops, shape_ops, split_deconv

    for module in (shape_ops, data_ops, math_ops, split_deconv):
        _OPS.update(module.OPS)


_register_shape_ops()
