"""Lowering to an ExecuTorch program with the XNNPACK delegate (portable kernels for the rest)."""
from __future__ import annotations

import inspect
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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

    ``exported`` is consumed: its nodes lose their ``from_node`` provenance first, and the
    lowering runs under :func:`shared_provenance`. Every FX pass records where each node it
    rewrites came from by deep-copying that node's whole provenance chain, and the chains grow
    by one level per pass: ExecuTorch's edge passes plus XNNPACK's 17 passes per partition make
    the copying quadratic in the number of passes. Dropping the chain that capture and PT2E
    quantization built (MobileMamba T2 int8, CPU s of ``lower_to_pte``: 78.9 -> 63.9),
    then sharing instead of copying the rest (whole T2 int8 export 82.5 / 84.7 -> 75.9 / 75.5 s;
    fp32 ``lower_to_pte`` 31.6 -> 26.0 CPU s) leave the
    program byte-identical: the debug handles ExecuTorch derives from provenance read the same
    records.

    ExecuTorch's IR validity checks are off, as in ExecuTorch's own XNNPACK configuration
    (``get_xnnpack_edge_compile_config``): they run every op of the edge program once more on fake
    tensors to check its dtypes (6% of EfficientMod-S's int8 export in py-spy), and the same
    program bytes come out; edgeml runs every program it writes in the runtime anyway (parity)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    for node in exported.graph.nodes:
        node.meta.pop("from_node", None)
    with (warnings.catch_warnings(), shared_provenance(), skip_unchanged_retraces(), skip_empty_decompositions(),
          skip_repeated_checks(), skip_idle_passes(), deferred_recompiles(), fp16_conv_weights(),
          cached_signature_maps()):
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                           compile_config=EdgeCompileConfig(_check_ir_validity=False))
        info = get_delegation_info(edge.exported_program().graph_module)
        program = edge.to_executorch()
    return program.buffer, _summarize(info)


def lowering_failure(e: BaseException) -> str:
    """The one-line reason a lowering failed, with what to do where edgeml knows it."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "Missing out variants" in first and "quantized_decomposed" in first:
        # Quantize / dequantize ops that no XNNPACK partition took are left for ExecuTorch's
        # portable kernels, which have none for them (efficientmod_xxs with int8-dynamic: the
        # dynamic quantization of four conv inputs stays outside the partitions).
        first += ("; XNNPACK did not take every quantized op of this model and ExecuTorch has no portable "
                  "kernel for the rest: use --quantize int8 (static), or keep those layers in fp32")
    return f"lowering to ExecuTorch failed: {first}"


@contextmanager
def _replaced(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.name`` is ``value`` for the duration (a class's or a module's attribute, its own or
    inherited); afterwards the original is put back, or the override removed if the attribute was
    inherited, however the block ends. How every speed-up below patches a library."""
    own = name in vars(owner)
    original = vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


_SIGNATURE_MAPS = ("inputs_to_parameters", "inputs_to_buffers", "inputs_to_lifted_tensor_constants")


@contextmanager
def cached_signature_maps() -> Iterator[None]:
    """``ExportGraphSignature.inputs_to_parameters`` / ``_buffers`` / ``_lifted_tensor_constants``
    built once per state of the signature instead of on every read.

    Each is a property that builds a new dict from all input specs, and ExecuTorch asks them
    per node (``is_param_node``, the partitioner's ``is_constant_data``, constant propagation, the
    XNNPACK serializer): quadratic in the program's size, 15% of RAVLT-S's int8 export and 11% of
    EfficientMod-S's (py-spy). A cached map is valid while nothing changed what it is built from:
    the spec list (specs are only ever added or removed, which changes its length, or the list
    replaced), and the specs and their arguments (every assignment to a field of a spec, an
    argument or a signature bumps a version)."""
    from torch.export import graph_signature as gs

    version = [0]
    memos: dict[int, tuple] = {}  # id(signature) -> (weak reference, key, {map name: map})

    def bumping(cls: type):
        base = cls.__setattr__

        def setattr_(self, name, value):
            version[0] += 1
            base(self, name, value)
        return setattr_

    def cached(name: str):
        build = getattr(gs.ExportGraphSignature, name).fget

        def get(self):
            key = (version[0], id(self.input_specs), len(self.input_specs))
            memo = memos.get(id(self))
            if memo is None or memo[0]() is not self or memo[1] != key:
                memo = memos[id(self)] = (weakref.ref(self), key, {})
            maps = memo[2]
            if name not in maps:
                maps[name] = build(self)
            return maps[name]
        return property(get)

    argument_classes = [c for c in vars(gs).values() if isinstance(c, type) and c.__name__.endswith("Argument")]
    with ExitStack() as stack:
        for cls in [gs.InputSpec, gs.OutputSpec, gs.ExportGraphSignature, *argument_classes]:
            stack.enter_context(_replaced(cls, "__setattr__", bumping(cls)))
        for name in _SIGNATURE_MAPS:
            stack.enter_context(_replaced(gs.ExportGraphSignature, name, cached(name)))
        yield


@contextmanager
def fp16_conv_weights() -> Iterator[None]:
    """While active, the fp16 weights and biases of convolutions are serialized as fp16.

    ExecuTorch's XNNPACK convolution visitor writes every filter and bias as fp32
    (``force_fp32=True``), which for an fp16 program stores its convolution weights at twice
    their size (an fp16 MobileNetV2 was 11.4 MB instead of 7.0) for XNNPACK to convert back to
    fp16 when it loads the program. XNNPACK's fp16 convolutions take fp16 filters as they are: the
    outputs are identical either way (``tests/quantize/test_fp16.py``). Only fp16 constants
    of convolutions change; fp32 and quantized programs are serialized exactly as before."""
    from executorch.backends.xnnpack.operators.node_visitor import NodeVisitor

    define_tensor = NodeVisitor.define_tensor

    def define_fp16_as_fp16(self, tensor, *args, force_fp32: bool = False, **kwargs):
        if force_fp32 and getattr(self, "target", None) == "aten.convolution.default" and \
                kwargs.get("quant_params") is None and _dtype(tensor) == torch.float16:
            force_fp32 = False
        return define_tensor(self, tensor, *args, force_fp32=force_fp32, **kwargs)

    with _replaced(NodeVisitor, "define_tensor", define_fp16_as_fp16):
        yield


def _dtype(node: object) -> torch.dtype | None:
    value = getattr(node, "meta", {}).get("val")
    return value.dtype if isinstance(value, torch.Tensor) else None


@contextmanager
def shared_provenance() -> Iterator[None]:
    """While active, a node's provenance record shares its parent's history instead of copying it.

    ``torch.fx.traceback.NodeSource(node, ...)`` (made for every node an FX pass touches) stores
    ``copy.deepcopy(node.meta["from_node"])``. The records are never mutated after they are made
    (readers walk them; ``to_dict`` caches), so a new list of the same records gives every reader
    the same history at O(1) instead of O(depth) per node and pass. Patched on the class for the
    duration only; if this torch's ``NodeSource`` is not the one this was written against
    (``__init__(self, node, pass_name, action)``), nothing is patched and lowering just copies."""
    from torch.fx import traceback as fx_traceback

    source = getattr(fx_traceback, "NodeSource", None)
    init = getattr(source, "__init__", None)
    try:
        params = list(inspect.signature(init).parameters) if init is not None else []
    except (TypeError, ValueError):
        params = []
    if params[:4] != ["self", "node", "pass_name", "action"]:
        yield
        return

    def init_sharing_history(self, node, pass_name="", action=None):
        history = node.meta.get("from_node") if node is not None else None
        if not history:
            init(self, node, pass_name, action)
            return
        node.meta["from_node"] = []  # nothing for the original to deep-copy
        try:
            init(self, node, pass_name, action)
        finally:
            node.meta["from_node"] = history
        self.from_node = list(history)

    with _replaced(source, "__init__", init_sharing_history):
        yield


def xnnpack_decomposition_table(exported: torch.export.ExportedProgram) -> dict:
    """The decompositions ``to_edge_transform_and_lower`` applies for the XNNPACK partitioner.

    ExecuTorch 1.5 decomposes to core ATen except the ops the partitioner asks to keep (linear,
    convolution, ... : ``ops_to_not_decompose``); ``edgeml.export.decompose_custom_ops(...,
    backend="xnnpack")`` applies this table in the same retrace as edgeml's own decompositions,
    so that lowering (``skip_empty_decompositions``) finds nothing left to decompose. Plus edgeml's
    own for ops XNNPACK has no node for but can compute (GroupNorm: ``passes/groupnorm.py``; means
    over other axes than a 4-D map's two innermost: ``passes/means.py``; non-overlapping unfold and
    fold as permutes: ``passes/unfold.py``; splits and strided slices as step-1 slices:
    ``passes/slices.py``; a softmax over another axis than the last: ``passes/softmax.py``;
    squares and square roots written as ``pow``: ``passes/powers.py``; maxima over any axes:
    ``passes/maxima.py``; selects and rolls as slices: ``passes/slices.py``; ceil-mode average
    pooling: ``passes/means.py``; the LayerNorms the module pass does not see, with their means as
    linears: ``passes/layernorm.py``; GELU's tanh approximation, which the delegate computes as the
    exact GELU: ``passes/gelu.py``). Only those when this
    ExecuTorch does not have the functions this was written against: lowering then decomposes
    as usual."""
    from edgeml.backends.xnnpack.passes.gelu import gelu_decompositions
    from edgeml.backends.xnnpack.passes.groupnorm import group_norm_decompositions
    from edgeml.backends.xnnpack.passes.layernorm import layer_norm_decompositions
    from edgeml.backends.xnnpack.passes.maxima import max_decompositions
    from edgeml.backends.xnnpack.passes.means import mean_decompositions
    from edgeml.backends.xnnpack.passes.powers import power_decompositions
    from edgeml.backends.xnnpack.passes.slices import slice_decompositions
    from edgeml.backends.xnnpack.passes.softmax import softmax_decompositions
    from edgeml.backends.xnnpack.passes.unfold import unfold_decompositions

    ours = {**group_norm_decompositions(), **mean_decompositions(), **unfold_decompositions(),
            **slice_decompositions(), **softmax_decompositions(), **power_decompositions(),
            **max_decompositions(), **layer_norm_decompositions(), **gelu_decompositions()}
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir.program._program import (
            _can_skip_using_EDGE_DO_NOT_DECOMP,
            _default_decomposition_table,
            _remove_invalid_ops_for_not_decompose,
        )
    except ImportError:
        return ours
    partitioner = XnnpackPartitioner()
    keep, _ = partitioner.ops_to_not_decompose(exported)
    if not _can_skip_using_EDGE_DO_NOT_DECOMP(partitioner, exported):
        keep = _remove_invalid_ops_for_not_decompose(keep)
    table = dict(_default_decomposition_table())
    for op in keep:
        table.pop(op, None)
    table.update(ours)
    return table


def _nothing_to_decompose(exported: torch.export.ExportedProgram, table: dict) -> bool:
    """Whether ``exported.run_decompositions(table)`` could only retrace the graph as it is: the
    program is already functional ATen (inference dialect, no mutation anywhere, no nested
    graphs) and none of its ops is in ``table``."""
    sig = exported.graph_signature
    if getattr(exported, "dialect", None) != "ATEN" or sig.buffers_to_mutate or sig.user_inputs_to_mutate:
        return False
    if getattr(sig, "parameters_to_mutate", None):
        return False
    gm = exported.graph_module
    if any(isinstance(m, torch.fx.GraphModule) for m in gm.children()):
        return False
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if target in table:
            return False
        schema = getattr(target, "_schema", None)
        if schema is not None and schema.is_mutable:
            return False
    return True


@contextmanager
def skip_empty_decompositions() -> Iterator[None]:
    """While active, ``ExportedProgram.run_decompositions`` returns a program that has nothing to
    decompose as it is, instead of retracing it.

    ``to_edge_transform_and_lower`` calls it three times on the whole program before partitioning
    (to functionalize, then the first and the second pass of the partitioner's decompositions);
    each is a full retrace under fake tensors (MobileMamba B1 int8: about 5 CPU s each). A program
    that ``decompose_custom_ops(..., backend="xnnpack")`` decomposed is already functional and in
    the table's terms, so each of them would rebuild the same graph. ExecuTorch skips its own
    second call on the same grounds when ``contains_any_call_fn_target_op`` finds nothing; this
    applies that test (and checks the functional form) to all of them. The program computes the
    same outputs; its bytes may differ in the order of constants (the retrace sorts the
    placeholders that constant folding added). Patched for the duration only."""
    from torch.export import ExportedProgram

    run = ExportedProgram.__dict__.get("run_decompositions")
    if run is None:
        yield
        return

    def run_unless_empty(self, decomp_table=None, *args, **kwargs):
        if decomp_table is not None and not args and not kwargs and _nothing_to_decompose(self, decomp_table):
            return self
        return run(self, decomp_table, *args, **kwargs)

    with _replaced(ExportedProgram, "run_decompositions", run_unless_empty):
        yield


# The hooks through which ExportPass's retrace calls back into a pass; a pass that overrides none of
# them gets nothing from the retrace but fresh metadata for the nodes it changed.
_RETRACE_HOOKS = ("call_operator", "call_sym", "call_cond", "call_map", "call_getitem", "call_submodule",
                  "call_delegate", "placeholder", "output", "call_scan", "call_while")


@contextmanager
def skip_unchanged_retraces() -> Iterator[None]:
    """While active, an XNNPACK pass that changed nothing skips the full retrace it ends with.

    ``XnnpackBackend.preprocess`` runs 17 passes on every partition, and each ends with
    ``super().call(graph_module)``: ExportPass re-runs every node under fake tensors to refresh
    the metadata of what the pass rewrote. Most passes find nothing to rewrite in a given model (no
    batch norm, prelu, upsample, conv1d or SDPA pattern), so most of those retraces copy the graph
    unchanged; they were most of preprocess's time (MobileMamba T2 int8: 24 CPU s for 11 partitions
    x 17 passes). Here the retrace is skipped when the graph is, node for node, what the pass
    started with (same names, ops, targets and arguments) and the pass overrides none of
    ExportPass's retrace hooks (a pass that rewrites through ``call_operator`` does its work in the
    retrace and always gets it). The program is byte-identical (``tests/export/test_pte_provenance.py``
    pins the bytes). Patched for the duration only; if this ExecuTorch's pass manager or
    ExportPass is not the one this was written against, nothing is patched."""
    try:
        import executorch.backends.xnnpack._passes as xnnpack_passes
        from executorch.exir.pass_base import ExportPass, _ExportPassBase
        from torch.fx.passes.infra.pass_base import PassResult
    except ImportError:
        yield
        return
    transform = getattr(xnnpack_passes, "_transform", None)
    base_call = _ExportPassBase.__dict__.get("call")
    params = list(inspect.signature(base_call).parameters) if base_call is not None else []
    if transform is None or params != ["self", "graph_module"]:
        yield
        return
    started: dict[int, tuple[object, tuple]] = {}

    def eligible(p: object) -> bool:
        return all(getattr(type(p), h, None) is getattr(ExportPass, h, None) for h in _RETRACE_HOOKS)

    def transform_noting_start(ep, *passes, **kwargs):
        noted = [p for p in passes if eligible(p)]
        if noted:
            shape = _graph_key(ep.graph_module)
            for p in noted:
                started[id(p)] = (ep.graph_module, shape)
        try:
            return transform(ep, *passes, **kwargs)
        finally:
            for p in noted:
                started.pop(id(p), None)

    def call_unless_unchanged(self, graph_module):
        start = started.get(id(self))
        if start is not None and start[0] is graph_module and _graph_key(graph_module) == start[1]:
            return PassResult(graph_module, False)
        return base_call(self, graph_module)

    with _replaced(xnnpack_passes, "_transform", transform_noting_start), \
            _replaced(_ExportPassBase, "call", call_unless_unchanged):
        yield


@contextmanager
def skip_repeated_checks() -> Iterator[None]:
    """While active, ExecuTorch's pass manager does not re-check a program it just checked.

    ``ExportedProgramPassManager`` checks the program before and after its passes: it regenerates
    the graph module's Python code, lints the graph and validates the program. XNNPACK's preprocess
    runs each of its 17 passes through a manager of its own, on every partition: the check after
    one pass and the one before the next see the same program, and after a pass that changed
    nothing (most of them, ``skip_unchanged_retraces``), all three do (MobileMamba B1 int8: 524
    checks, about 4 CPU s). A check is skipped when the same graph module holds node for node
    the same graph (``_graph_key``), with the same signature and constants, as at its last
    passed check. Patched for the duration only."""
    import weakref

    try:
        from executorch.exir.pass_manager import ExportedProgramPassManager
    except ImportError:
        yield
        return
    check = ExportedProgramPassManager.__dict__.get("check")
    if check is None:
        yield
        return
    passed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def key(ep) -> tuple:
        return (_graph_key(ep.graph_module), str(ep.graph_signature), tuple(ep.state_dict), tuple(ep.constants))

    def check_unless_checked(self, exported_program) -> None:
        gm = exported_program.graph_module
        k = key(exported_program)
        if passed.get(gm) == k:
            return
        check(self, exported_program)
        passed[gm] = k

    with _replaced(ExportedProgramPassManager, "check", check_unless_checked):
        yield


@contextmanager
def deferred_recompiles() -> Iterator[None]:
    """While active, a new ``GraphModule`` writes its Python code when it is first run or read,
    not every time its graph is set or changed.

    FX recompiles (generates, then compiles, the module's ``forward`` source) whenever a
    ``GraphModule`` is built and whenever a pass calls ``recompile()``; lowering builds one for
    nearly every pass, and ExecuTorch's passes walk the graph, not the code. Every plain
    ``GraphModule`` made while active is torch's ``_LazyGraphModule`` (what ``torch.compile``
    uses for the same reason), whose ``recompile`` only marks the code stale and whose
    ``forward`` / ``code`` / ``str`` / pickling write it first. One addition: strict
    ``torch.export`` reads the pytree specs that a recompile sets (``_in_spec`` / ``_out_spec``),
    so reading those writes the code too. Patched for the duration only (modules made meanwhile
    stay lazy, which changes nothing for their users); left alone if this torch has no
    ``_LazyGraphModule`` of the kind this was written against."""
    from torch.fx.graph_module import GraphModule

    try:
        from torch.fx._lazy_graph_module import _LazyGraphModule
    except ImportError:
        yield
        return
    new = GraphModule.__dict__.get("__new__")
    if new is None or not all(hasattr(_LazyGraphModule, a) for a in ("real_recompile", "_needs_recompile")):
        yield
        return

    class DeferredGraphModule(_LazyGraphModule):
        def __getattr__(self, name: str):
            if name in ("_in_spec", "_out_spec") and type(self)._needs_recompile():
                self.real_recompile()
                if name in self.__dict__:
                    return self.__dict__[name]
            return super().__getattr__(name)

    def new_deferred(cls, *args, **kwargs):
        # GraphModule.__new__ gives every instance a class of its own (``GraphModuleImpl``) under
        # the first class of the MRO that is not one; a plain GraphModule gets the deferred one.
        base = next(t for t in cls.__mro__ if t.__qualname__.split(".")[-1] != "GraphModuleImpl")
        if base is not GraphModule:
            return new(cls, *args, **kwargs)

        class GraphModuleImpl(DeferredGraphModule):
            pass

        return torch.nn.Module.__new__(GraphModuleImpl)

    with _replaced(GraphModule, "__new__", new_deferred):
        yield


def _op_names(graph_module: torch.fx.GraphModule) -> set[str]:
    """The base names of the ops the graph calls (``_softmax`` for aten's and edge's alike)."""
    names = set()
    for node in graph_module.graph.nodes:
        if node.op == "call_function":
            parts = getattr(node.target, "__name__", "").split(".")
            names.add(parts[-2] if len(parts) > 1 else parts[0])
    return names


def _has_symbolic_values(graph_module: torch.fx.GraphModule) -> bool:
    for node in graph_module.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return True
        if isinstance(val, torch.Tensor) and any(not isinstance(d, int) for d in val.shape):
            return True
    return False


def _has_view_ops(graph_module: torch.fx.GraphModule) -> bool:
    return any(node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload) and node.target.is_view
               for node in graph_module.graph.nodes)


# What RemoveMixedTypeOperators casts: the tensor arguments of these ops that do not have the
# promoted dtype.
_PROMOTING_OPS = ("add.Tensor", "mul.Tensor", "sub.Tensor", "div.Tensor", "div.Tensor_mode", "minimum.default")


def _has_mixed_dtypes(graph_module: torch.fx.GraphModule) -> bool:
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or getattr(node.target, "__name__", "") not in _PROMOTING_OPS:
            continue
        dtypes = set()
        for arg in node.args:
            if isinstance(arg, torch.fx.Node):
                val = getattr(graph_module, arg.target, None) if arg.op == "get_attr" else arg.meta.get("val")
                if not isinstance(val, torch.Tensor):
                    return True  # a symbolic scalar, or nothing to tell the dtype by: assume it mixes
                dtypes.add(val.dtype)
            elif isinstance(arg, torch.Tensor):
                dtypes.add(arg.dtype)
        out = node.meta.get("val")
        if len(dtypes) > 1 or not isinstance(out, torch.Tensor) or dtypes - {out.dtype}:
            return True
    return False


def _idle_pass_checks() -> list[tuple[type, Callable[[torch.fx.GraphModule], bool]]]:
    """(pass class, whether it has anything to do in a graph): what ``skip_idle_passes`` guards."""
    checks: list = []
    try:
        from executorch.exir.passes.normalize_transpose_pass import NormalizeTransposePass
        from executorch.exir.passes.remove_mixed_type_operators import RemoveMixedTypeOperators
        from executorch.exir.passes.replace_broken_ops_with_function_ops_pass import (
            ReplaceBrokenOpsWithFunctionalOpsPass,
        )
        from executorch.exir.passes.sym_to_tensor_pass import SymToTensorPass
    except ImportError:
        pass
    else:
        checks += [
            (SymToTensorPass, _has_symbolic_values),  # turns symbolic scalars into tensors
            (NormalizeTransposePass, lambda gm: "t" in _op_names(gm)),  # aten.t -> t_copy
            (ReplaceBrokenOpsWithFunctionalOpsPass, _has_view_ops),  # view ops -> their _copy forms
            (RemoveMixedTypeOperators, _has_mixed_dtypes),
        ]
    try:
        from executorch.backends.xnnpack._passes.convert_to_sdpa import ConvertToSDPAPass
        from executorch.backends.xnnpack._passes.convert_to_upsample_bilinear2d import ConvertToUpsampleBilinear2d
    except ImportError:
        pass
    else:
        # Each rewrites subgraphs that match its patterns, and every pattern calls this op (tested
        # in tests/export/test_pte_provenance.py against the patterns themselves).
        checks += [
            (ConvertToUpsampleBilinear2d, lambda gm: "upsample_bilinear2d" in _op_names(gm)),
            (ConvertToSDPAPass, lambda gm: "_softmax" in _op_names(gm)),
        ]
    return checks


@contextmanager
def skip_idle_passes() -> Iterator[None]:
    """While active, a pass that can find nothing to rewrite in a graph returns it as it is.

    ``to_edge_transform_and_lower`` runs ExecuTorch's edge passes on the whole program, each a
    full retrace under fake tensors (MobileMamba B1 int8: about 1.5 s each). Four of them rewrite
    only what a static, single-dtype graph does not have: symbolic scalars (``SymToTensorPass``),
    ``aten.t`` (``NormalizeTransposePass``), view ops left after the views became copies
    (``ReplaceBrokenOpsWithFunctionalOpsPass``) and arithmetic on mixed dtypes
    (``RemoveMixedTypeOperators``). XNNPACK's upsample and SDPA passes match patterns that it
    builds by exporting and lowering small modules (about 2.7 s, once per process), and each
    pattern calls ``upsample_bilinear2d`` or ``_softmax``: without that op nothing can match.
    Each of these passes is skipped when (and only when) its graph has none of what it rewrites;
    a graph with nested graphs always runs them. Patched for the duration only (the check is
    added to each class's ``call``); a pass this ExecuTorch does not have is left out."""
    with ExitStack() as stack:
        for cls, has_work in _idle_pass_checks():
            call = getattr(cls, "call", None)
            if call is not None:
                stack.enter_context(_replaced(cls, "call", _unless_idle(call, has_work)))
        yield


def _unless_idle(call: Callable, has_work: Callable[[torch.fx.GraphModule], bool]) -> Callable:
    """``call`` (a pass's), returning the graph as it is when it has nothing for the pass to do."""
    from torch.fx.passes.infra.pass_base import PassResult

    def guarded(self, graph_module):
        nested = any(isinstance(m, torch.fx.GraphModule) for m in graph_module.children())
        if not nested and not has_work(graph_module):
            return PassResult(graph_module, False)
        return call(self, graph_module)

    return guarded


def _graph_key(graph_module: torch.fx.GraphModule) -> tuple:
    """The graph node for node: name, op, target and arguments (other nodes by name: a node's repr
    is its name). The target itself, not its repr: ExecuTorch's edge ops build theirs from strings
    on every call (half the key's time on RAVLT-B's 3092-node edge graph, 12 -> 5 ms); an op that
    were a different object for the same operator would only make a key differ, never match."""
    return tuple((n.name, n.op, n.target, repr(n.args), repr(n.kwargs)) for n in graph_module.graph.nodes)


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
