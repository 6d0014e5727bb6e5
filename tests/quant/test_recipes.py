"""Recipes as data: JSON round-trip, unknown keys, rule order, float regions, plan contents."""

from __future__ import annotations

import json

import pytest
from float_models import cnn_bn, images

import edgequant as eq
from edgequant.errors import RecipeError, UnsupportedOpError
from edgequant.recipes import BUILTIN_NAMES, Recipe, Rule, get_recipe, resolve
from edgequant.spec import PerChannel, QType, QuantSpec


@pytest.mark.parametrize("name", [*BUILTIN_NAMES, "w4a8", "w8a16_g64", "w4_dynamic"])
def test_builtin_recipes_round_trip_json(name):
    r = get_recipe(name)
    assert Recipe.from_json(r.to_json()) == r


def test_custom_recipe_with_rules_round_trips():
    r = get_recipe("w8a8").with_rules(
        Rule(op_types=("Gemm",), action="float", name="keep head float"),
        Rule(nodes=("conv*",), weights=QuantSpec(QType(4, True, True), PerChannel(0), True)))
    assert Recipe.from_json(r.to_json()) == r


def test_unknown_keys_and_versions_are_rejected():
    d = json.loads(get_recipe("w8a8").to_json())
    with pytest.raises(RecipeError, match=r"unknown key\(s\) \['colour'\]"):
        Recipe.from_json(json.dumps({**d, "colour": "blue"}))
    d["weights"]["granularity"]["kind"] = "per_row"
    with pytest.raises(RecipeError, match="per_row"):
        Recipe.from_json(json.dumps(d))
    with pytest.raises(RecipeError, match="schema_version 99"):
        Recipe.from_json(json.dumps({**json.loads(get_recipe("fp32").to_json()),
                                     "schema_version": 99}))


def test_unknown_recipe_name_lists_builtins():
    with pytest.raises(RecipeError, match="w8a8"):
        get_recipe("int8-please")


def test_last_matching_rule_wins_and_unmatched_rules_are_reported():
    model = cnn_bn()
    r = get_recipe("w8a8").with_rules(
        Rule(op_types=("Gemm",), action="float", name="float head"),
        Rule(nodes=("fc",), action="quantize", name="quantize fc again"),
        Rule(nodes=("no_such_node",), action="float", name="typo"))
    plan = resolve(r, model)
    fc = next(d for d in plan.nodes if d.node == "fc")
    assert fc.action == "quantize" and fc.rule == "quantize fc again"
    assert plan.unmatched_rules == ("typo",)
    with pytest.raises(UnsupportedOpError, match="rule typo matched no node"):
        eq.quantize(model, r, calibration={"input": images(8)}, strict=True)


def test_float_rule_keeps_node_float_with_reason():
    r = get_recipe("w8a8").with_rules(Rule(op_types=("Gemm",), action="float", name="head"))
    qm = eq.quantize(cnn_bn(), r, calibration={"input": images(16)})
    assert qm.report["plan"]["float_nodes"] == [
        {"node": "fc", "op_type": "Gemm", "reason": "kept in float by rule head"}]
    gemm = next(n for n in qm.model.graph.node if n.op_type == "Gemm")
    assert gemm.input[1] == "fc.w"  # float weight, no DequantizeLinear


def test_plan_records_decision_and_rule_per_tensor():
    plan = resolve(get_recipe("w8a8"), cnn_bn())
    d = plan.to_dict()["tensors"]
    assert d["fc.w"]["action"] == "quantize" and d["fc.w"]["rule"] == "recipe"
    assert d["fc.w"]["spec"]["granularity"] == {"kind": "per_channel", "axis": 0}
    assert d["fc.b"]["role"] == "bias"
    assert {v["action"] for v in d.values()} >= {"quantize", "share"}


def test_recipe_options_are_checked_and_round_trip(monkeypatch):
    from edgequant.recipes import options as opts

    monkeypatch.setitem(opts.OPTIONS, "demo_switch", opts.Option(False, "a test switch", opts.boolean))
    monkeypatch.setitem(opts.OPTIONS, "demo_alpha", opts.Option(0.5, "a test number",
                                                                 opts.number(0.0, 1.0)))
    base = get_recipe("w8a8")
    assert opts.option(base, "demo_switch") is False  # default when unset
    rec = base.with_options(demo_switch=True, demo_alpha=0.25)
    back = Recipe.from_json(rec.to_json())
    assert back == rec
    assert opts.option(back, "demo_switch") is True and opts.option(back, "demo_alpha") == 0.25
    with pytest.raises(RecipeError, match=r"option 'nope' is unknown; known options: .*demo_alpha"):
        base.with_options(nope=1)
    with pytest.raises(RecipeError,
                       match=r"option 'demo_alpha': 2 is not allowed: use a number in \[0.0, 1.0\]"):
        base.with_options(demo_alpha=2)
    with pytest.raises(RecipeError, match="option 'demo_switch': 1 is not allowed: use true or false"):
        base.with_options(demo_switch=1)
