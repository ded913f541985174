"""Passes of the XNNPACK backend: rewrites and decompositions that let its partitioner take the
whole graph."""


def static(*sizes) -> bool:
    """Whether every size is a plain int (no symbolic size: the decompositions leave those ops)."""
    return all(isinstance(s, int) for s in sizes)
