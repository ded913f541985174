"""edgeml.export.passes.reshapes.simplify_reshapes: chained and identity views and zero pads go,
the function stays."""
import torch
import torch.nn.functional as F
from torch import nn

from edgeml.export.passes.reshapes import simplify_reshapes


class _Reshapes(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.reshape(2, 3, 4, 5).reshape(6, 20).reshape(2, 60)  # a chain of three views
        y = F.pad(y, (0, 0)) * 2.0  # a pad that pads nothing
        z = x.reshape(x.shape) + 1.0  # a view to the shape it has
        w = x.permute(0, 2, 1).reshape(4, 30)  # a view of a non-contiguous tensor: left alone
        return y.sum() + z.reshape(120)[:5].sum() + w.sum(), y.reshape(2, 60)  # an output that is a view


def _targets(ep: torch.export.ExportedProgram) -> list:
    return [n.target for n in ep.graph.nodes if n.op == "call_function"]


def test_chains_identities_and_zero_pads_go_and_the_function_stays():
    x = torch.randn(2, 3, 20)
    ep = torch.export.export(_Reshapes(), (x,)).run_decompositions()
    before = _targets(ep)
    with torch.no_grad():
        expected = ep.module()(x)
    simplify_reshapes(ep.graph_module)
    after = _targets(ep)
    view, pad = torch.ops.aten.view.default, torch.ops.aten.constant_pad_nd.default
    assert pad in before and pad not in after
    assert after.count(view) < before.count(view)
    # No view reads another view's output, except where the first reads a non-contiguous tensor.
    for node in ep.graph.nodes:
        if node.target is view and node.args[0].op == "call_function" and node.args[0].target is view:
            assert not node.args[0].args[0].meta["val"].is_contiguous()
    # The output node keeps its own node (the signature names it), even an identity view.
    assert len(list(ep.graph.nodes)[-1].args[0]) == 2
    with torch.no_grad():
        out = ep.module()(x)
    for o, e in zip(out, expected, strict=True):
        torch.testing.assert_close(o, e, rtol=0, atol=0)


def test_a_graph_with_nothing_to_simplify_is_left_as_it_is():
    ep = torch.export.export(nn.Linear(4, 3), (torch.randn(2, 4),)).run_decompositions()
    code = ep.graph_module.code
    simplify_reshapes(ep.graph_module)
    assert ep.graph_module.code == code


class _Tokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (1, 8, h, w) -> (2, 4, h*w): one symbolic size in the target shape
        return x.flatten(2).unflatten(1, (2, 4)).flatten(0, 1) * 2.0


def test_a_single_symbolic_size_is_written_as_inferred():
    # XNNPACK's partitioner refuses a reshape that names a symbolic size and takes one -1.
    x = torch.randn(1, 8, 6, 10)
    h, w = torch.export.Dim("h", min=2, max=32), torch.export.Dim("w", min=2, max=32)
    ep = torch.export.export(_Tokens(), (x,), dynamic_shapes=({2: h, 3: w},)).run_decompositions()
    views = [n for n in ep.graph.nodes if n.target is torch.ops.aten.view.default]
    assert any(not all(isinstance(s, int) for s in n.args[1]) for n in views)
    simplify_reshapes(ep.graph_module)
    views = [n for n in ep.graph.nodes if n.target is torch.ops.aten.view.default]
    assert views and all(all(isinstance(s, int) for s in n.args[1]) and -1 in n.args[1] for n in views)
    for shape in ((1, 8, 6, 10), (1, 8, 3, 7)):
        x = torch.randn(shape)
        torch.testing.assert_close(ep.module()(x), _Tokens()(x), rtol=0, atol=0)


class _Squeezes(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.reshape(2, 1, 3, 20).unbind(0)  # selects of a stacked tensor
        c = a.squeeze(0).unsqueeze(0) * b.squeeze()  # squeeze / unsqueeze of static shapes
        d = x.expand(2, 3, 20) + 1.0  # an expand to the shape x has
        return c.sum() + d.sum(), x.unsqueeze(0)  # an output that is an unsqueeze


def test_squeezes_become_views_and_identity_expands_go():
    x = torch.randn(2, 3, 20)
    ep = torch.export.export(_Squeezes(), (x,)).run_decompositions()
    before = _targets(ep)
    with torch.no_grad():
        expected = ep.module()(x)
    simplify_reshapes(ep.graph_module)
    after = _targets(ep)
    aten = torch.ops.aten
    assert aten.expand.default in before and aten.expand.default not in after
    squeezes = {aten.squeeze.dims, aten.squeeze.dim, aten.squeeze.default, aten.unsqueeze.default}
    assert squeezes & set(before)
    assert [t for t in after if t in squeezes] == [aten.unsqueeze.default]  # only the output's own node
    with torch.no_grad():
        out = ep.module()(x)
    for o, e in zip(out, expected, strict=True):
        torch.testing.assert_close(o, e, rtol=0, atol=0)


class _Expands(nn.Module):
    def forward(self, v: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = c.expand(2, 3, 5)  # a user that does not broadcast (an output): stays
        return torch.relu(v) * c.expand_as(v), kept


def test_an_expand_that_every_user_broadcasts_anyway_goes():
    v, c = torch.randn(2, 3, 5), torch.randn(2, 3, 1)
    ep = torch.export.export(_Expands(), (v, c)).run_decompositions()
    with torch.no_grad():
        expected = ep.module()(v, c)
    assert _targets(ep).count(torch.ops.aten.expand.default) == 2
    simplify_reshapes(ep.graph_module)
    assert _targets(ep).count(torch.ops.aten.expand.default) == 1
    with torch.no_grad():
        for o, e in zip(ep.module()(v, c), expected, strict=True):
            torch.testing.assert_close(o, e, rtol=0, atol=0)


class _Repeats(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = q.unsqueeze(1)  # (1, 1, 8)
        tiled = k.repeat(1, 2, 1)  # repeats an axis of size 5: new values, stays
        return g.repeat(1, k.shape[1], 1) * k, tiled  # SwiftFormer's global query: a broadcast


def test_a_repeat_of_size_one_axes_that_broadcasting_does_anyway_goes():
    q, k = torch.randn(1, 8), torch.randn(1, 5, 8)
    ep = torch.export.export(_Repeats(), (q, k)).run_decompositions()
    with torch.no_grad():
        expected = ep.module()(q, k)
    assert _targets(ep).count(torch.ops.aten.repeat.default) == 2
    simplify_reshapes(ep.graph_module)
    assert _targets(ep).count(torch.ops.aten.repeat.default) == 1
    with torch.no_grad():
        for o, e in zip(ep.module()(q, k), expected, strict=True):
            torch.testing.assert_close(o, e, rtol=0, atol=0)


def test_an_as_strided_that_only_restrides_size_one_axes_goes():
    """Core ATen's adaptive_avg_pool1d (Swin's pooler) ends in such an ``as_strided``."""
    pool = _TokenPool()
    x = torch.randn(1, 49, 8)
    ep = torch.export.export(pool, (x,)).run_decompositions()
    assert torch.ops.aten.as_strided.default in _targets(ep)
    simplify_reshapes(ep.graph_module)
    assert torch.ops.aten.as_strided.default not in _targets(ep)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), pool(x), rtol=0, atol=0)
    strided = torch.export.export(_Strided(), (torch.randn(4, 6),)).run_decompositions()
    simplify_reshapes(strided.graph_module)
    assert torch.ops.aten.as_strided.default in _targets(strided)  # a real restride stays


class _TokenPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool1d(x.transpose(1, 2), 1), 1)


class _Strided(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_strided(x, (4, 6), (1, 4)) + 1  # a transposed read of the same storage


class _WholeSlices(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x[::1, ::1])[:, 1:] + x[:, :5]  # whole-axis slices (an alias), real ones


def test_aliases_and_whole_axis_slices_go():
    x = torch.randn(4, 6)
    ep = torch.export.export(_WholeSlices(), (x,)).run_decompositions()
    simplify_reshapes(ep.graph_module)
    targets = _targets(ep)
    assert torch.ops.aten.alias.default not in targets and targets.count(torch.ops.aten.slice.Tensor) == 2
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), _WholeSlices()(x), rtol=0, atol=0)
