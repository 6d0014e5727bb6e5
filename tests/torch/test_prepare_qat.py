"""prepare_qat: module swapping and fusion, float regions, Conv+BN folding numerics."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_models import tiny_cnn

from edgequant.errors import RecipeError
from edgequant.recipes.builtin import get_recipe
from edgequant.recipes.recipe import Rule
from edgequant.torch import FloatRegion, float_region, freeze_bn, prepare_qat
from edgequant.torch.qat_modules import QATConv2d, QATLinear
from edgequant.torch.quantizers import ActivationQuantizer


def test_swaps_and_fuses_and_leaves_the_original_alone():
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qat = prepare_qat(model, "w4a8")
    inner = qat.model
    assert isinstance(inner[0], QATConv2d) and inner[0].bn is not None and inner[0].relu
    assert isinstance(inner[1], nn.Identity) and isinstance(inner[2], nn.Identity)
    assert isinstance(inner[4], QATConv2d) and inner[4].bn is None and inner[4].relu
    assert isinstance(inner[7], QATLinear) and not inner[7].relu
    assert inner[0].weight_quant.spec.qtype.bits == 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model[0], nn.Conv2d)


def test_training_loop_runs_unchanged(images):
    qat = prepare_qat(tiny_cnn(), "w8a8", learn_scales=True)
    opt = torch.optim.SGD(qat.parameters(), lr=0.1)
    scale0 = qat.model[7].act_quant.scale.detach().clone()
    for _ in range(3):
        loss = qat(images).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert qat(images).shape == (32, 5)
    assert not torch.equal(qat.model[7].act_quant.scale.detach(), scale0)  # LSQ scale trained


#: float32 rounding of the folded weights vs conv followed by BN: a few ulps of values ~1.
FOLD_TOL = 1e-5


def test_bn_fold_equals_conv_then_batchnorm(images):
    model = tiny_cnn()
    qat = prepare_qat(model, "w8a8")
    qat.train()
    qat(images)  # BN running stats move away from their defaults
    freeze_bn(qat)
    conv = qat.model[0]
    w, b = conv.folded()
    bn = nn.BatchNorm2d(4).eval()  # the oracle: PyTorch's own conv → BN in eval mode
    bn.load_state_dict(conv.bn.state_dict())
    plain = bn(nn.functional.conv2d(images, conv.weight, conv.bias, padding=1))
    folded = nn.functional.conv2d(images, w, b, padding=1)
    torch.testing.assert_close(folded, plain, rtol=FOLD_TOL, atol=FOLD_TOL)
    # After the freeze, train mode uses the same fold as eval (what convert exports).
    with torch.no_grad():
        y_train = conv(images)
        conv.eval()
        assert torch.equal(conv(images), y_train) or conv.act_quant.frozen is not None


def test_skip_glob_keeps_modules_float_and_quantizes_their_output(images):
    qat = prepare_qat(tiny_cnn(), "w8a8", skip=["7"])
    assert isinstance(qat.model[7], nn.Linear)
    assert isinstance(getattr(qat.model[7], "edgequant_out_quant", None), ActivationQuantizer)
    qat.train()
    qat(images)


def test_recipe_float_rule_is_a_skip_list():
    recipe = get_recipe("w8a8").with_rules(Rule(nodes=("4",), action="float"))
    qat = prepare_qat(tiny_cnn(), recipe)
    assert isinstance(qat.model[4], nn.Conv2d) and isinstance(qat.model[0], QATConv2d)


def test_float_region_wrapper_and_marker():
    model = tiny_cnn()
    model[7] = FloatRegion(model[7])
    float_region(model[4])
    qat = prepare_qat(model, "w8a8")
    assert isinstance(qat.model[7].module, nn.Linear)
    assert isinstance(qat.model[4], nn.Conv2d)
    assert isinstance(qat.model[0], QATConv2d)


def test_unknown_skip_name_lists_close_names():
    with pytest.raises(RecipeError, match=r"'fc1' matches no module.*close names.*'fc2'"):
        prepare_qat(_named(), "w8a8", skip=["fc1"])


def _named() -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.fc2 = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc2(self.fc(x))

    return Net()


def test_eval_before_any_data_is_an_error(images):
    qat = prepare_qat(tiny_cnn(), "w8a8").eval()
    with pytest.raises(Exception, match="seen no data"):
        qat(images)
