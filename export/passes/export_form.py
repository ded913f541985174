"""Switch blocks that have an export form to it: the same function in fewer, delegable ops.

A block opts in with a ``use_export_form()`` method that rewrites it in place (MobileMamba's
``SS2D`` and ``WaveletMamba``: projections as grouped 1x1 convs instead of batched matmuls that
ExecuTorch broadcasts with portable ``expand_copy``, constants precomputed, scales folded into
the convs next to them; see ``edgeml/models/mobilemamba.py``). A method with a ``backend``
parameter gets the backend's name (EfficientMod's ``ModulationMlp`` splits its context tiling for
XNNPACK only). This is the model protocol's block hook (``edgeml.models.protocol``). ExecuTorch's lowering costs
time per node and per delegated partition, and every op XNNPACK does not take splits a
partition, so fewer and delegable nodes make both the export and the program faster.

``to_export_form`` is pure: it returns a copy in eval mode and leaves its input alone. Run it
after BatchNorm folding of ``Conv2dBN`` blocks (it also folds any BatchNorm it meets itself).
"""
from __future__ import annotations

import copy
import inspect
from typing import TypeVar

import torch
from torch import fx, nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def has_export_form(model: nn.Module) -> bool:
    return any(callable(getattr(m, "use_export_form", None)) for m in model.modules())


def to_export_form(model: ModuleT, backend: str | None = None) -> ModuleT:
    """A copy of ``model`` in which every module with a ``use_export_form()`` method has called it;
    a method that takes a ``backend`` argument is told which backend the program is for (a form
    may help one backend's partitioner and not another's)."""
    if isinstance(model, fx.GraphModule):
        raise TypeError("to_export_form works on eager modules: apply it before torch.export / fx tracing")
    if not has_export_form(model):
        return model
    model = copy.deepcopy(model)
    with torch.no_grad():
        # Outer blocks first: a block may rewrite its children as part of its own form.
        for m in list(model.modules()):
            convert = getattr(m, "use_export_form", None)
            if callable(convert):
                if "backend" in inspect.signature(convert).parameters:
                    convert(backend=backend)
                else:
                    convert()
    return model.eval()
