"""export/passes/export_form.py on MobileMamba: same function, fewer and delegable ops (issue 5)."""
import collections

import pytest
import torch

import edgeml
from edgeml.export import decompose_custom_ops, prepare_for_export
from edgeml.export.passes.export_form import has_export_form, to_export_form
from edgeml.export.passes.reparameterize import reparameterize_model
from edgeml.models import mobilemamba as mm


@pytest.fixture(scope="module")
def t2():
    return edgeml.create_model("mobilemamba_t2")


def _targets(model, x) -> collections.Counter:
    ep = torch.export.export(model, (x,))
    return collections.Counter(str(n.target) for n in ep.graph.nodes if n.op == "call_function")


@pytest.mark.parametrize("resolution", [64, 96, 192])  # stage sizes 2/1/1, 6/3/2, 12/6/3: odd and even
def test_export_form_computes_the_same_function(t2, resolution):
    # BN folded first (as prepare_for_export does), and without: the pass folds what it meets.
    for source in (t2, reparameterize_model(t2)):
        form = to_export_form(source)
        assert form is not source and not any(isinstance(m, mm.Scale) for m in form.modules())
        x = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(resolution))
        with torch.no_grad():
            ref, out = t2(x), form(x)
        assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()
    # The input is left alone: still the official parameter layout.
    assert any(k.endswith("x_proj_weight") for k in t2.state_dict())


def test_export_form_has_no_portable_glue(t2):
    x = torch.randn(1, 3, 64, 64)
    before, after = _targets(t2, x), _targets(to_export_form(t2), x)
    # Batched matmuls broadcast through portable expand_copy, and splits stay portable in ExecuTorch;
    # the export form has neither: grouped 1x1 convs and channel slices instead.
    for op in ("aten.matmul.default", "aten.split_with_sizes.default", "aten.chunk.default", "aten.permute.default"):
        assert before[op] > 0, op
        assert after[op] == 0, op
    assert sum(after.values()) < sum(before.values())


def test_prepare_for_export_uses_it_and_leaves_other_models_alone(t2):
    x = torch.randn(1, 3, 64, 64)
    prepared = prepare_for_export(t2, (x,), format="pte")
    assert all(getattr(m, "export_form", True) for m in prepared.modules() if isinstance(m, mm.SS2D))
    ep = decompose_custom_ops(torch.export.export(prepared, (x,)))
    assert not any("selective_scan" in str(n.target) for n in ep.graph.nodes)
    with torch.no_grad():
        assert (ep.module()(x) - t2(x)).abs().max() <= 2e-5 * t2(x).abs().max()
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    assert not has_export_form(plain) and to_export_form(plain) is plain
