"""Op implementations, grouped by family; importing this package fills ``registry.OPS``."""

from edgequant.interp.ops import (  # noqa: F401  (imported for their @register side effect)
    control,
    conv,
    conv_transpose,
    elementwise,
    indexing,
    math,
    matmul_float,
    nbits,
    nn,
    pool,
    qlinear,
    qlinear_ms,
    quant,
    reduce,
    resize,
    rnn,
    rnn_quant,
    sequence,
    shape,
)
