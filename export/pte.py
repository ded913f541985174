"""Lowering to an ExecuTorch program with the XNNPACK delegate (portable kernels for the rest)."""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch

# Ops that carry the arithmetic; the delegation share that matters is over these.
COMPUTE_OPS = ("convolution", "linear", "mm", "bmm", "addmm", "matmul", "baddbmm")


@dataclass
class DelegationSummary:
    backend: str
    delegated_nodes: int
    total_nodes: int
    compute_delegated: int
    compute_total: int
    portable_ops: dict[str, int] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.delegated_nodes / self.total_nodes if self.total_nodes else 1.0

    @property
    def compute_share(self) -> float:
        return self.compute_delegated / self.compute_total if self.compute_total else 1.0

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "delegated_nodes": self.delegated_nodes,
            "total_nodes": self.total_nodes,
            "share": round(self.share, 4),
            "compute_delegated": self.compute_delegated,
            "compute_total": self.compute_total,
            "compute_share": round(self.compute_share, 4),
            "portable_ops": self.portable_ops,
        }


def lower_to_pte(exported: torch.export.ExportedProgram) -> tuple[bytes, DelegationSummary]:
    """``to_edge_transform_and_lower`` with the XNNPACK partitioner; returns the program bytes.

    ``exported`` is consumed: its nodes lose their ``from_node`` provenance first. Every FX pass
    deep-copies that chain into each node it rewrites, so the copies grow with the number of
    passes already applied; after PT2E quantization's passes they were a fifth of the lowering
    (MobileMamba T2 int8: 78.9 -> 63.9 CPU s; fp32: 31.4 -> 29.5). Nothing edgeml reads uses it
    (per-operator profiles name XNNPACK's own operators)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    for node in exported.graph.nodes:
        node.meta.pop("from_node", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        info = get_delegation_info(edge.exported_program().graph_module)
        program = edge.to_executorch()
    return program.buffer, _summarize(info)


def _summarize(info) -> DelegationSummary:
    df = info.get_operator_delegation_dataframe()
    df = df[(df["op_type"] != "Total") & (df["op_type"] != "getitem")]
    delegated = int(df["occurrences_in_delegated_graphs"].sum())
    portable = int(df["occurrences_in_non_delegated_graphs"].sum())
    portable_ops = Counter()
    compute_del = compute_all = 0
    for _, row in df.iterrows():
        op = str(row["op_type"])
        d, p = int(row["occurrences_in_delegated_graphs"]), int(row["occurrences_in_non_delegated_graphs"])
        if p:
            portable_ops[op] += p
        if any(f"aten_{c}_" in op + "_" for c in COMPUTE_OPS):
            compute_del += d
            compute_all += d + p
    return DelegationSummary("XnnpackBackend", delegated, delegated + portable, compute_del, compute_all,
                             dict(portable_ops))
