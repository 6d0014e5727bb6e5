"""Float regions: modules QAT leaves in float (``FloatRegion`` wrapper, ``float_region`` mark)."""

from __future__ import annotations

from torch import nn

_FLOAT_MARK = "_edgequant_float_region"


class FloatRegion(nn.Module):
    """Wrapper keeping ``module`` (and everything inside it) in float during QAT and export."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        """Run the wrapped module unchanged."""
        return self.module(*args, **kwargs)


def float_region(module: nn.Module) -> nn.Module:
    """Mark ``module`` (in place) so ``prepare_qat`` leaves it and its children in float."""
    setattr(module, _FLOAT_MARK, True)
    return module


__all__ = ["FloatRegion", "float_region"]
