""".pte lowering speed-up: the graph signature's name maps built once per state of the signature
(``cached_signature_maps``), with the same program bytes and torch's classes as they were."""
import contextlib

import pytest
import torch
from test_pte_decompositions import _Net  # conv, silu, pad, a portable flip (two partitions), linear
from torch.export import graph_signature as gs

import edgeml.backends.xnnpack.lowering as pte


def _signature() -> gs.ExportGraphSignature:
    torch.manual_seed(0)
    return torch.export.export(_Net().eval(), (torch.randn(1, 3, 10, 10),)).graph_signature


def _maps(signature: gs.ExportGraphSignature) -> tuple[dict, ...]:
    return tuple(dict(getattr(signature, name)) for name in pte._SIGNATURE_MAPS)


def test_cached_maps_follow_every_change_to_the_signature():
    signature = _signature()
    with pte.cached_signature_maps():
        first = signature.inputs_to_parameters
        assert signature.inputs_to_parameters is first  # built once
        assert _maps(signature) == _maps(_signature())
        # An argument renamed in place (ExportGraphSignature.replace_all_uses does this).
        name = next(iter(first))
        signature.replace_all_uses(name, "renamed")
        assert "renamed" in signature.inputs_to_parameters and name not in signature.inputs_to_parameters
        # A spec's kind changed in place, a spec removed, a spec added, the list replaced.
        spec = next(s for s in signature.input_specs if s.kind == gs.InputKind.PARAMETER)
        spec.kind = gs.InputKind.BUFFER
        assert spec.arg.name in signature.inputs_to_buffers
        signature.input_specs.remove(spec)
        assert spec.arg.name not in signature.inputs_to_buffers
        signature.input_specs.insert(0, gs.InputSpec(gs.InputKind.CONSTANT_TENSOR, gs.TensorArgument("c"), "c"))
        assert signature.inputs_to_lifted_tensor_constants == {"c": "c"}
        signature.input_specs = []
        assert _maps(signature) == ({}, {}, {})
    # Afterwards: the properties and __setattr__ are torch's own again.
    assert gs.ExportGraphSignature.__dict__["inputs_to_parameters"].fget.__module__ == gs.__name__
    assert "__setattr__" not in vars(gs.InputSpec) and "__setattr__" not in vars(gs.TensorArgument)


def test_the_same_program_with_and_without_the_cache(monkeypatch):
    def lowered(cache: bool) -> bytes:
        torch.manual_seed(0)
        exported = torch.export.export(_Net().eval(), (torch.randn(1, 3, 10, 10),))
        with monkeypatch.context() as m:
            if not cache:
                m.setattr(pte, "cached_signature_maps", contextlib.nullcontext)
            data, summary = pte.lower_to_pte(exported)
        assert summary.compute_share == 1.0
        return data

    assert lowered(cache=True) == lowered(cache=False)


def test_the_patch_is_undone_when_lowering_fails():
    with pytest.raises(RuntimeError, match="boom"), pte.cached_signature_maps():
        raise RuntimeError("boom")
    assert "inputs_to_buffers" in vars(gs.ExportGraphSignature)
    assert vars(gs.ExportGraphSignature)["inputs_to_buffers"].fget.__module__ == gs.__name__
    assert "__setattr__" not in vars(gs.ExportGraphSignature)


def test_the_same_program_with_executorchs_ir_checks(monkeypatch):
    """``lower_to_pte`` turns ExecuTorch's IR validity checks off (as its XNNPACK configuration
    does): checks only, the same bytes as with them on, quantized program included."""
    import executorch.exir as exir

    from edgeml.backends.xnnpack.quantizer import Pt2eSession
    from edgeml.quantize.schemes import get_scheme

    def lowered(checks: bool, int8: bool) -> bytes:
        torch.manual_seed(0)
        model, x = _Net().eval(), torch.randn(1, 3, 10, 10)
        if int8:
            model = Pt2eSession(model, (x,), get_scheme("int8"), None, [x]).quantized_module([])
        exported = torch.export.export(model, (x,))
        seen = []
        original = exir.to_edge_transform_and_lower

        def spy(*args, **kwargs):
            seen.append(kwargs["compile_config"]._check_ir_validity)
            if checks:
                kwargs["compile_config"] = exir.EdgeCompileConfig()
            return original(*args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(exir, "to_edge_transform_and_lower", spy)
            data, _ = pte.lower_to_pte(exported)
        assert seen == [False]
        return data

    for int8 in (False, True):
        assert lowered(checks=True, int8=int8) == lowered(checks=False, int8=int8)


class _Attention(torch.nn.Module):
    """A causal, decaying ``edgeml::linear_attention``: its chunked decomposition builds masks that
    constant propagation folds."""

    def __init__(self, c: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.qkv, self.heads = torch.nn.Linear(c, 3 * c), heads
        self.log_decay = torch.nn.Parameter(-torch.rand(heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from edgeml.kernels import linear_attention

        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        decay = self.log_decay[None, :, None].expand(x.shape[0], -1, x.shape[1])
        return linear_attention(q, k, v, causal=True, log_decay=decay)


def test_the_same_decomposition_with_and_without_the_cache(monkeypatch):
    """``decompose_custom_ops`` (the retrace and constant propagation) runs under the cache too."""
    from edgeml.export import decompose_custom_ops

    def decomposed(cache: bool) -> tuple:
        torch.manual_seed(0)
        exported = torch.export.export(_Attention().eval(), (torch.randn(1, 40, 8),))
        with monkeypatch.context() as m:
            if not cache:
                m.setattr(pte, "cached_signature_maps", contextlib.nullcontext)
            ep = decompose_custom_ops(exported, backend="xnnpack")
        return (ep.graph_module.code, str(ep.graph_signature),
                {k: v.tolist() for k, v in {**ep.state_dict, **ep.constants}.items()})

    with_cache = decomposed(cache=True)
    assert "linear_attention" not in with_cache[0] and with_cache[2]
    assert with_cache == decomposed(cache=False)
