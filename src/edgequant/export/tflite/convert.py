"""The ONNX → TFLite conversion state: tensors, domains (float / integer), layouts, boundaries.

Each ONNX node is handled by one op builder (``ops_*`` modules) that asks the
:class:`Converter` for its inputs in the domain and layout it needs and declares its outputs.
Conversions (QUANTIZE, DEQUANTIZE, TRANSPOSE) are inserted lazily and cached, so a tensor is
transposed or requantized at most once whatever the number of consumers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.builder import Quant, TFLiteBuilder
from edgequant.export.tflite.ingest import Graph, Node
from edgequant.export.tflite.layout import TO_NHWC, nhwc_shape, to_first, to_last
from edgequant.qparams import QParams

log = logging.getLogger(__name__)

#: ``mode=`` overrides for a float graph: float32, float16 weights, dynamic-range int8 weights.
FLOAT_MODES = ("fp32", "fp16", "dynamic")
#: Integer domains (a node's kernel family) → activation dtype: int8 kernels, 16x8 kernels.
DOM_DTYPE = {"i8": np.dtype(np.int8), "i16": np.dtype(np.int16)}
OP = schema.BuiltinOperator
OPT = schema.BuiltinOptions
ACT = {
    None: schema.ActivationFunctionType.NONE,
    "RELU": schema.ActivationFunctionType.RELU,
    "RELU6": schema.ActivationFunctionType.RELU6,
    "RELU_N1_TO_1": schema.ActivationFunctionType.RELU_N1_TO_1,
}

#: ``Converter.act`` layout asking for channels-last storage, by rank.
LAST = {3: "nlc", 4: "nhwc"}


@dataclass
class TVal:
    """A TFLite tensor standing for an ONNX tensor (or a temporary)."""

    idx: int
    shape: tuple[int, ...]
    dtype: np.dtype
    quant: Quant | None = None
    nhwc: bool = False  # stored channels-last: 4-D NCHW as NHWC, 3-D (N, C, L) as (N, L, C)
    flat_perm: np.ndarray | None = None  # NHWC-ordered flatten: feature j is ONNX feature perm[j]
    plain: bool = False  # non-float data (ids, masks, raw int8 rows): never (de)quantized

    @property
    def is_int(self) -> bool:
        """True for integer activations (int8 / int16), False for plain integer / bool data."""
        return self.dtype.kind in "iu" and not self.plain


def natural_dom(qp: QParams) -> str:
    """The integer domain of activation qparams: ``i16`` for 16-bit, ``i8`` for 8-bit."""
    return "i16" if qp.qtype.bits == 16 else "i8"


class Converter:
    """Builds the TFLite subgraph for one :class:`Graph`; each node's arithmetic (its domain:
    ``f`` float, ``i8`` int8 kernels, ``i16`` 16x8 kernels) comes from its tensors' qparams."""

    def __init__(self, graph: Graph, mode: str | None, io: str, strict: bool) -> None:
        if mode is not None and mode not in FLOAT_MODES:
            raise ValueError(f"mode {mode!r} is not allowed: use one of {FLOAT_MODES}")
        self.g = graph
        self.mode = mode  # float-graph override, None: everything from the graph
        self.io = io
        self.strict = strict
        self.b = TFLiteBuilder()
        self.vals: dict[tuple[str, str, bool], TVal] = {}  # (onnx name, domain, nhwc) → value
        self.dom = "f"  # domain of the node being converted
        self.kind: str | None = None  # arithmetic of the node being converted, when special
        self.kinds: dict[str, str] = {}  # node → int8 / int16x8 / hybrid / int4 / fp16 / float
        self.float_nodes: list[str] = []
        self.notes: list[str] = []
        self.node: Node | None = None

    # ---- domains --------------------------------------------------------------------------
    @property
    def q(self) -> bool:
        """Is the node being converted integer?"""
        return self.dom != "f"

    @property
    def act_dtype(self) -> np.dtype:
        """Integer activation dtype of the current domain."""
        return DOM_DTYPE.get(self.dom, np.dtype(np.int8))

    def note(self, text: str) -> None:
        """Log ``text`` and keep it for :class:`ExportResult`."""
        log.info(text)
        if text not in self.notes:
            self.notes.append(text)

    def act_quant(self, name: str, dom: str | None = None) -> Quant | None:
        """TFLite qparams of activation ``name`` in ``dom`` (default: the current domain).

        uint8 qparams become int8 (zp − 128, exact). In its own domain a tensor keeps its
        qparams; an 8-bit tensor read by a 16x8 kernel becomes ``scale / 128``, zero point 0
        (``(q − zp) · 128`` fits int16: exact); a 16-bit tensor read by an int8 kernel gets a
        symmetric int8 scale over its range (lossy: a seam the graph did not state).
        """
        dom = dom or self.dom
        qp = self.g.act_q.get(name)
        if qp is None:
            return None
        scale, zp, have = float(qp.scale), int(qp.zero_point), natural_dom(qp)
        if have == "i16" and (not qp.qtype.signed or zp != 0):
            raise UnsupportedOpError(f"tensor {name!r}: 16-bit activations export as TFLite 16x8 "
                                     f"(int16, zero point 0), got {qp.qtype.name} zero point {zp}")
        if have == "i8" and qp.qtype.bits != 8:
            raise UnsupportedOpError(f"tensor {name!r}: activation type {qp.qtype.name} has no "
                                     "TFLite kernels (use int8, uint8 or int16)")
        if not qp.qtype.signed:  # same scale, integers shifted: exact one-to-one mapping
            zp -= 128
        if have == dom:
            return Quant.of(scale, zp)
        if dom == "i16":
            return Quant.of(np.float32(scale) / np.float32(128), 0)
        self.note(f"tensor {name!r}: int16 activations read by an int8 kernel (requantized to "
                  "int8 over the int16 range)")
        return Quant.of(np.float32(scale) * np.float32(32767 / 127), 0)

    def node_domain(self, node: Node) -> str:
        """``i8`` / ``i16`` when every activation input and output has qparams (the output's
        type picks the kernels), else ``f``."""
        if not self.g.quantized:
            return "f"
        acts = [i for i in node.inputs if i and self.g.value(i) is None]
        if not all(self.g.act_q.get(t) is not None for t in [*acts, *node.outputs]):
            return "f"
        return natural_dom(self.g.act_q[node.outputs[0]])

    # ---- tensors --------------------------------------------------------------------------
    def temp(self, name: str, shape, dtype, quant: Quant | None = None, nhwc=False) -> TVal:
        """A new non-constant tensor."""
        idx = self.b.add_tensor(name, tuple(shape), dtype, quant=quant)
        return TVal(idx, tuple(shape), np.dtype(dtype), quant, nhwc)

    def const(self, name: str, data: np.ndarray, quant: Quant | None = None) -> TVal:
        """A constant tensor holding ``data``."""
        data = np.asarray(data)
        idx = self.b.add_tensor(name, data.shape, data.dtype, data=data, quant=quant)
        return TVal(idx, tuple(data.shape), data.dtype, quant)

    def float_const(self, name: str, data: np.ndarray, half: bool = False) -> TVal:
        """A float32 constant; stored as float16 + DEQUANTIZE at run time when the ONNX model
        stores it as float16 (``half``) or in fp16 mode."""
        data = np.asarray(data, dtype=np.float32)
        if self.mode != "fp16" and not half:
            return self.const(name, data)
        self.kind = self.kind or "fp16"
        half = self.const(f"{name}_fp16", data.astype(np.float16))
        out = self.temp(name, data.shape, np.float32)
        self.op(OP.DEQUANTIZE, [half], [out])
        return out

    def output(self, name: str, shape, nhwc: bool = False, quant: Quant | None = None) -> TVal:
        """Declare ONNX tensor ``name`` as produced in the current node's domain."""
        if self.q:
            tv = self.temp(name, shape, self.act_dtype, quant or self.act_quant(name), nhwc)
        elif name in self.g.dtypes and name not in self.g.act_q:  # ids, masks: their own type
            tv = self.temp(name, shape, self.g.dtypes[name], None, nhwc)
            tv.plain = True
        else:
            tv = self.temp(name, shape, np.float32, None, nhwc)
        self.vals[(name, self.dom, nhwc)] = tv
        self.vals.setdefault((name, "src", False), tv)
        return tv

    def op(self, code: int, inputs: list, outputs: list[TVal], opt_type=0, opt=None) -> None:
        """Emit an operator; ``inputs`` are TVals or None (omitted optional input)."""
        ins = [-1 if t is None else t.idx for t in inputs]
        self.b.add_op(code, ins, [t.idx for t in outputs], opt_type, opt)

    # ---- reading inputs in the wanted domain and layout -----------------------------------
    def act(self, name: str, layout: str = "any", allow_perm: bool = False) -> TVal:
        """ONNX activation ``name`` in the current node's domain; layout any / nhwc / nchw
        (``nhwc``: 4-D channels-last; ``nlc``: 3-D channels-last; ``nchw``: ONNX layout).

        ``allow_perm``: the caller (FULLY_CONNECTED) accepts an NHWC-ordered flatten.
        """
        dom = self.dom
        src = self.vals.get((name, "src", False))
        if src is None:
            raise UnsupportedOpError(f"tensor {name!r} is used before it is produced "
                                     "(graph not topologically sorted?)")
        key_any = [k for k in ((name, dom, src.nhwc), (name, dom, not src.nhwc)) if k in self.vals]
        if key_any:
            tv = self.vals[key_any[0]]
        else:
            tv = self._convert_domain(name, src)
            self.vals[(name, dom, tv.nhwc)] = tv
        if tv.flat_perm is not None and not allow_perm:
            raise UnsupportedOpError(f"tensor {name!r}: NHWC-ordered flatten read by a "
                                     "non fully-connected consumer")
        if layout == "nhwc" and len(tv.shape) == 4 and not tv.nhwc:
            return self._transposed(name, tv, TO_NHWC, True, dom)
        if layout == "nlc" and len(tv.shape) == 3 and not tv.nhwc:  # 1-D conv: (N, L, C)
            return self._transposed(name, tv, to_last(3), True, dom)
        if layout == "nchw" and tv.nhwc:
            return self._transposed(name, tv, to_first(len(tv.shape)), False, dom)
        return tv

    def _convert_domain(self, name: str, src: TVal) -> TVal:
        """``src`` in the current domain: DEQUANTIZE to float, QUANTIZE float → int or int →
        int of another width (LiteRT's QUANTIZE requantizes int8 ↔ int16 directly)."""
        if src.plain:  # ids, masks: the same tensor in every domain
            return src
        if not self.q:
            if not src.is_int:
                return src
            out = self.temp(f"{name}_dq", src.shape, np.float32, None, src.nhwc)
            code = OP.DEQUANTIZE
        else:
            if src.is_int and src.dtype == self.act_dtype:
                return src
            own = natural_dom(self.g.act_q[name]) if name in self.g.act_q else self.dom
            if not src.is_int and own != self.dom:  # float → the graph's own type first
                dom, self.dom = self.dom, own
                try:
                    src = self.act(name, "any", allow_perm=True)
                finally:
                    self.dom = dom
            quant = self.act_quant(name)
            if quant is None:
                raise UnsupportedOpError(f"tensor {name!r}: an integer node reads it but it has "
                                         "no qparams")
            out = self.temp(f"{name}_{self.act_dtype.name}", src.shape, self.act_dtype, quant,
                            src.nhwc)
            code = OP.QUANTIZE
        out.flat_perm = src.flat_perm
        self.op(code, [src], [out])
        return out

    def _transposed(self, name, tv: TVal, perm, nhwc: bool, dom: str) -> TVal:
        key = (name, dom, nhwc)
        if key in self.vals:
            return self.vals[key]
        shape = tuple(tv.shape[p] for p in perm)
        out = self.temp(f"{name}_{'nhwc' if nhwc else 'nchw'}", shape, tv.dtype, tv.quant, nhwc)
        out.plain = tv.plain
        self.op(OP.TRANSPOSE, [tv, self.const(f"{name}_perm", np.array(perm, np.int32))], [out],
                OPT.TransposeOptions, schema.TransposeOptionsT())
        self.vals[key] = out
        return out

    def requant(self, tv: TVal, quant: Quant, name: str) -> TVal:
        """``tv`` re-expressed with ``quant`` (a QUANTIZE int→int op unless already equal)."""
        if quant.same_as(tv.quant):
            return tv
        out = self.temp(f"{name}_requant", tv.shape, tv.dtype, quant, tv.nhwc)
        self.op(OP.QUANTIZE, [tv], [out])
        return out

    def passthrough(self, code: int, inputs: list, name: str, shape, nhwc: bool, in_quant,
                    opt_type=0, opt=None) -> TVal:
        """Emit an op whose integer kernel keeps its input's qparams (pool, reshape, pad…).

        When the ONNX output has other qparams, the op writes a temporary with the input's
        qparams and a QUANTIZE brings it to the output's.
        """
        out_q = self.act_quant(name) if self.q else None
        if not self.q or out_q.same_as(in_quant):
            out = self.output(name, shape, nhwc)
            self.op(code, inputs, [out], opt_type, opt)
            return out
        tmp = self.temp(f"{name}_pre", shape, self.act_dtype, in_quant, nhwc)
        self.op(code, inputs, [tmp], opt_type, opt)
        out = self.output(name, shape, nhwc)
        self.op(OP.QUANTIZE, [tmp], [out])
        return out

    # ---- boundaries -----------------------------------------------------------------------
    def add_inputs(self) -> None:
        """Graph inputs in the public dtype (float, or the integer I/O type) and ONNX layout."""
        for name in self.g.inputs:
            shape = self.g.shapes[name]
            io = self._io_dtype(name)
            public = self.g.public_names.get(name, name)
            if io is None:
                tv = self.temp(public, shape, self.g.dtypes.get(name, np.dtype(np.float32)))
                tv.plain = tv.dtype != np.float32  # token ids, masks: integer data
                self.b.inputs.append(tv.idx)
                self.vals[(name, "src", False)] = tv
                continue
            dom = natural_dom(self.g.act_q[name])
            quant = self.act_quant(name, dom)
            if io == np.uint8:
                quant = Quant.of(quant.scale, quant.zero_point + 128)
            tv = self.temp(public, shape, io, quant)
            self.b.inputs.append(tv.idx)
            if io == np.uint8:  # uint8 → int8 QUANTIZE: exact, zero point shifted by 128
                q8 = self.temp(f"{name}_int8", shape, np.int8, self.act_quant(name, dom))
                self.op(OP.QUANTIZE, [tv], [q8])
                tv = q8
            self.vals[(name, dom, False)] = tv
            self.vals[(name, "src", False)] = tv

    def _io_dtype(self, name: str) -> np.dtype | None:
        qp = self.g.act_q.get(name)
        if self.io == "float" or qp is None:
            return None
        io = np.dtype(self.io) if self.io in ("int8", "uint8", "int16") else self.g.io_dtype.get(name)
        if io is not None and (io.itemsize == 2) != (natural_dom(qp) == "i16"):
            raise UnsupportedOpError(f"tensor {name!r}: io {io} does not fit its {qp.qtype.name} "
                                     "qparams (8-bit tensors take int8 / uint8 I/O, 16-bit int16)")
        return io

    def add_outputs(self) -> None:
        """Graph outputs in ONNX layout and the public dtype (transposed before DEQUANTIZE)."""
        for name in self.g.outputs:
            io = self._io_dtype(name)
            src = self.vals[(name, "src", False)]
            if io is not None:
                self.dom = natural_dom(self.g.act_q[name])
            else:
                self.dom = "f" if not src.is_int else "i16" if src.dtype == np.int16 else "i8"
            tv = self.act(name, "nchw")
            if io is None and tv.is_int:  # float I/O: DEQUANTIZE the NCHW integer tensor
                out = self.temp(f"{name}_float", tv.shape, np.float32)
                self.op(OP.DEQUANTIZE, [tv], [out])
                tv = out
            elif io is not None and np.dtype(io) != tv.dtype:
                quant = Quant.of(tv.quant.scale, tv.quant.zero_point + 128)
                out = self.temp(f"{name}_{np.dtype(io).name}", tv.shape, io, quant)
                self.op(OP.QUANTIZE, [tv], [out])
                tv = out
            if tv.idx in self.b.inputs or tv.idx in self.b.outputs:  # identity model edge case
                out = self.temp(f"{name}_out", tv.shape, tv.dtype, tv.quant)
                self.op(OP.RESHAPE, [tv, self.const(f"{name}_shape",
                                                    np.array(tv.shape, np.int32))], [out])
                tv = out
            public = self.g.public_names.get(name, name)
            old = self.b.tensors[tv.idx].name
            self.b.names.discard(old)
            clash = next((t for t in self.b.tensors if t.name == public), None)
            if clash is not None:  # free the public name for the output tensor
                clash.name = self.b.unique_name(f"{public}_internal")
            self.b.names.add(public)
            self.b.tensors[tv.idx].name = public
            self.b.outputs.append(tv.idx)

    def convert(self, handlers: dict) -> bytes:
        """Convert every node with ``handlers[op_type](cv, node)``; returns ``.tflite`` bytes."""
        self.add_inputs()
        for node in self.g.nodes:
            self.node = node
            handler = handlers.get(node.op_type)
            if handler is None:
                raise UnsupportedOpError(
                    f"node {node.name!r}: op {node.op_type} has no TFLite export (supported: "
                    f"{', '.join(sorted(handlers))}); unsupported ops are an error in every mode "
                    "because TFLite builtins have no fallback")
            self.dom = self.node_domain(node)
            self.kind = None
            if self.g.act_q and not self.q:
                if self.strict:
                    raise UnsupportedOpError(
                        f"node {node.name!r} ({node.op_type}) is not quantized (an input or "
                        "output has no qparams); strict export allows integer ops only")
                log.info("node %s (%s) runs in float", node.name, node.op_type)
                self.float_nodes.append(node.name)
            handler(self, node)
            default = {"i8": "int8", "i16": "int16x8"}.get(self.dom, "float")
            self.kinds[node.name] = self.kind or default
        self.add_outputs()
        return self.b.finish(f"edgequant {self.summary()}")

    def summary(self) -> str:
        """One word for the whole model: fp32 / fp16 / dynamic / int8 / int16x8 / int4 when
        every non-float node shares one arithmetic, else ``mixed``."""
        kinds = set(self.kinds.values()) - {"float"}
        if not kinds:
            return self.mode or "fp32"
        if len(kinds) > 1:
            return "mixed"
        kind = kinds.pop()
        return "dynamic" if kind == "hybrid" else kind

    # ---- helpers for op builders ----------------------------------------------------------
    def shape_of(self, name: str) -> tuple[int, ...]:
        """ONNX shape of ``name`` (from shape inference)."""
        if name not in self.g.shapes:
            raise UnsupportedOpError(f"tensor {name!r}: shape unknown after ONNX shape inference")
        return self.g.shapes[name]

    def tflite_shape(self, name: str, nhwc: bool) -> tuple[int, ...]:
        """Shape of ``name`` as stored in TFLite."""
        s = self.shape_of(name)
        return nhwc_shape(s) if nhwc and len(s) in (3, 4) else s
