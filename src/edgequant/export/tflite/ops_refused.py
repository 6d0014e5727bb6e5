"""Ops refused on purpose, each with the reason (TFLite control flow and recurrent layers).

They get a handler so the error says *why* (not "has no TFLite export"): ``If`` / ``Loop``
would need TFLite subgraphs (control flow is out of scope); ``GRU`` has no TFLite builtin
(the converter unrolls it into many ops); ``LSTM`` would map to UNIDIRECTIONAL_SEQUENCE_LSTM
(not built: its state lives in variable tensors, so ONNX's initial_h / initial_c inputs and
Y_c output have no counterpart).
"""

from __future__ import annotations

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.convert import Converter
from edgequant.export.tflite.ingest import Node

#: ONNX op → why it is refused.
REFUSED = {
    "If": "TFLite control flow (IF subgraphs) is out of scope; fold the branch for your "
          "deployment (e.g. fix the condition input and constant-fold) before export",
    "Loop": "TFLite control flow (WHILE subgraphs) is out of scope; unroll the loop before export",
    "Scan": "TFLite control flow is out of scope; unroll the scan before export",
    "GRU": "TFLite has no GRU builtin (its converter unrolls GRUs into elementwise ops); "
           "export the GRU cell unrolled, or keep this model on onnxruntime",
    "LSTM": "UNIDIRECTIONAL_SEQUENCE_LSTM export is not implemented (TFLite keeps the LSTM "
            "state in variable tensors: no initial_h / initial_c inputs, no Y_c output); keep "
            "this model on onnxruntime (QDQ / QOperator export)",
}


def refuse(cv: Converter, node: Node) -> None:
    """Raise the refusal for ``node``, naming it and the reason."""
    raise UnsupportedOpError(f"node {node.name!r}: op {node.op_type} is not exported to TFLite: "
                             f"{REFUSED[node.op_type]}")
