"""export/passes/export_form.py on MobileMamba: same function, fewer and delegable ops."""
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


def test_export_form_scans_both_ways_without_flips(t2):
    # The reversed direction is the scan op's own (bidirectional=True, the tokens passed once):
    # no flip before or after it (portable kernels that split the XNNPACK delegate twice per
    # block), and no concatenation of the tokens with themselves (which XNNPACK does not take).
    x = torch.randn(1, 3, 64, 64)
    form = to_export_form(t2)
    ep = torch.export.export(form, (x,))
    scans = [n for n in ep.graph.nodes if n.op == "call_function" and "selective_scan" in str(n.target)]
    assert len(scans) == 5
    for scan in scans:
        bidirectional = scan.args[9] if len(scan.args) > 9 else scan.kwargs.get("bidirectional")
        assert bidirectional is True
        assert scan.args[0].meta["val"].shape[1] * 2 == scan.args[1].meta["val"].shape[1]  # u shared
    assert not any(n.target is torch.ops.aten.flip.default for n in ep.graph.nodes)
    cats = [n for n in ep.graph.nodes if n.target is torch.ops.aten.cat.default]
    assert all(len(set(n.args[0])) == len(n.args[0]) for n in cats)  # (the MRFFI channel groups' cat stays)
    # The original's formulation (flips, one loop for both directions) computes the same.
    loop = to_export_form(edgeml.create_model("mobilemamba_t2", scan="loop"))
    loop.load_state_dict(form.state_dict())
    with torch.no_grad():
        ref, out = form(x), loop(x)
    assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()
