"""Op implementations, grouped by family; importing this package fills ``registry.OPS``."""

from edgequant.interp.ops import (  # noqa: F401  (imported for their @register side effect)
    conv,
    elementwise,
    nbits,
    nn,
    pool,
    qlinear,
    qlinear_ms,
    quant,
    reduce,
    shape,
)
