"""Which form the registered CPU implementation of an edgeml op dispatches to.

The CPU kernel of each op (`torch.ops.edgeml.*`) looks up the active backend at call time:

* ``"chunked"`` (default): the plain-aten chunked form, the same function that the
  decomposition table hands to ``ExportedProgram.run_decompositions`` (for the selective scan
  in its eager-fast tree form; the decomposition uses its matmul form, same maths);
* ``"naive"``: the obviously-right reference (sequential loop or quadratic form);
* ``"triton"``: the Triton kernel. On CPU tensors this only works under the Triton
  interpreter, i.e. with ``TRITON_INTERPRET=1`` set before ``triton`` is first imported
  (Triton decides at import/decoration time whether ``@triton.jit`` compiles or interprets).

The CUDA implementation always uses Triton. The choice is process-global (a plain module
variable, not thread-local), matching how a verify run picks one reference for the whole run.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

BACKENDS = ("chunked", "naive", "triton")

_active = "chunked"


def current_backend() -> str:
    """The backend the CPU implementations dispatch to right now."""
    return _active


def set_backend(name: str) -> None:
    """Make the CPU implementations dispatch to ``name`` until changed again."""
    global _active
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {BACKENDS}")
    _active = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Within the block, ``torch.ops.edgeml.*`` on CPU run the ``name`` form of each op."""
    previous = _active
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)
