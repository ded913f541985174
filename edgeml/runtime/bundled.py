"""ExecuTorch bundled programs (``.bpte``): the program plus sample inputs and reference outputs.

``edgeml export ... --bundle N`` writes ``<stem>.bpte`` next to ``<stem>.pte``: the same program
bytes with N test cases (preprocessed sample images and the eager PyTorch outputs for them),
serialized with ``executorch.devtools.BundledProgram``. Any ExecuTorch runtime built with
bundled-IO support (``executor_runner`` with ``-DEXECUTORCH_ENABLE_BUNDLE_IO=ON``, or the host
pybindings used here) can then check itself against the reference without edgeml.

The manifest of the ``.pte`` describes the bundle too (``artifact.bundle``: file, sha256, cases,
rtol, atol), so ``edgeml verify X.bpte`` checks the file's bytes before any native code parses
them: ExecuTorch's bundled-program loader does not validate a corrupt buffer.

Tolerances are per element, ``|out - ref| <= atol + rtol * |ref|`` (ExecuTorch's check), with
``atol`` a fraction of the largest reference magnitude of each output: fp32 programs differ from
eager PyTorch only by summation order, int8 ones by quantization noise.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeml.errors import ArtifactError
from edgeml.manifest import Manifest, read_manifest, sha256_file
from edgeml.runtime.metrics import cosine, sqnr_db

METHOD = "forward"
# atol as a fraction of max |reference| per scheme; rtol per scheme (see module doc).
ATOL_FRACTION = {"none": 1e-4, "int8": 0.15}
RTOL = {"none": 1e-3, "int8": 0.1}


def bundle_tolerances(scheme: str, expected: Sequence[Sequence[torch.Tensor]]) -> tuple[float, float]:
    """(rtol, atol) for a program quantized with ``scheme`` whose reference outputs are ``expected``."""
    peak = max(float(t.abs().max()) for case in expected for t in case if t.numel())
    return RTOL.get(scheme, RTOL["int8"]), ATOL_FRACTION.get(scheme, ATOL_FRACTION["int8"]) * max(peak, 1e-12)


def build_bundle(program: bytes, inputs: Sequence[Sequence[torch.Tensor]],
                 expected: Sequence[Sequence[torch.Tensor]]) -> bytes:
    """Serialize ``program`` with one test case per (inputs, expected outputs) pair."""
    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    if len(inputs) != len(expected) or not inputs:
        raise ValueError("need one list of expected outputs per input case, and at least one case")
    cases = [MethodTestCase(inputs=[t.contiguous() for t in xs], expected_outputs=[t.contiguous() for t in ys])
             for xs, ys in zip(inputs, expected)]
    with tempfile.TemporaryDirectory(prefix="edgeml-bpte-") as tmp:
        # BundledProgram takes an ExecutorchProgramManager or a .pte path; the bytes are all we keep.
        pte = Path(tmp) / "program.pte"
        pte.write_bytes(program)
        bundled = BundledProgram(None, [MethodTestSuite(METHOD, cases)], pte_file_path=str(pte))
        return bytes(serialize_from_bundled_program_to_flatbuffer(bundled))


def bundle_path(pte: str | Path) -> Path:
    return Path(pte).with_suffix(".bpte")


@dataclass
class BundleCase:
    index: int
    passed: bool
    sqnr_db: list[float]  # per output: runtime vs the bundled expected output (nan if it failed to run)
    cosine: list[float]


@dataclass
class BundleReport:
    path: Path
    rtol: float
    atol: float
    cases: list[BundleCase]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    def to_dict(self) -> dict:
        return {"artifact": str(self.path), "check": "ExecuTorch bundled program "
                "(verify_result_with_bundled_expected_output)", "rtol": self.rtol, "atol": self.atol,
                "passed": self.passed,
                "cases": [{"index": c.index, "passed": c.passed, "sqnr_db": c.sqnr_db, "cosine": c.cosine}
                          for c in self.cases]}


def open_bundle(path: str | Path) -> tuple[bytes, Manifest, dict]:
    """The bundle's bytes, its manifest and the manifest's ``artifact.bundle`` record, sha256-checked."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"bundled program {path} does not exist")
    manifest = read_manifest(path)
    record = manifest.artifact.get("bundle")
    if not isinstance(record, dict) or record.get("file") != path.name:
        raise ArtifactError(f"the manifest next to {path.name} records no bundle of that name: "
                            "export with --bundle N to write one")
    if sha256_file(path) != record.get("sha256"):
        raise ArtifactError(f"{path.name} does not match its manifest (sha256 differs): the file is truncated, "
                            "corrupted or was modified after export. Export it again.")
    return path.read_bytes(), manifest, record


def check_bundle(path: str | Path, *, rtol: float | None = None, atol: float | None = None) -> BundleReport:
    """Run every bundled test case in ExecuTorch's runtime and check it against its expected outputs."""
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program

    from edgeml.runtime.runners import quiet_native_stderr

    data, _, record = open_bundle(path)
    rtol = float(record["rtol"] if rtol is None else rtol)
    atol = float(record["atol"] if atol is None else atol)
    schema = deserialize_from_flatbuffer_to_bundled_program(data)
    suite = next((s for s in schema.method_test_suites if s.method_name == METHOD), None)
    if suite is None or not suite.test_cases:
        raise ArtifactError(f"{Path(path).name} holds no test cases for method {METHOD!r}")
    expected = [[_tensor_from_schema(v) for v in case.expected_outputs] for case in suite.test_cases]
    cases = []
    with quiet_native_stderr():
        from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

        for i, ref in enumerate(expected):
            module = _load_bundled_program_from_buffer(data)
            try:
                outs = module.verify_result_with_bundled_expected_output(METHOD, i, rtol, atol)
                passed = True
            except RuntimeError:
                # The check raises on mismatch without the outputs; run the case again unchecked
                # (infinite tolerance) to report how far off it is.
                module = _load_bundled_program_from_buffer(data)
                try:
                    outs = module.verify_result_with_bundled_expected_output(METHOD, i, 0.0, float("inf"))
                except RuntimeError as e:
                    raise ArtifactError(f"{Path(path).name}: bundled case {i} does not run in this runtime "
                                        f"({e})") from None
                passed = False
            outs = [o for o in outs if isinstance(o, torch.Tensor)]
            cases.append(BundleCase(i, passed, [round(sqnr_db(r, o.float()), 3) for r, o in zip(ref, outs)],
                                    [round(cosine(r, o.float()), 6) for r, o in zip(ref, outs)]))
    return BundleReport(Path(path), rtol, atol, cases)


def _tensor_from_schema(value) -> torch.Tensor:
    """A bundled-program schema value (a serialized Tensor) as a torch tensor."""
    t = value.val
    from executorch.exir.tensor import scalar_type_table

    dtype = {int(v): k for k, v in scalar_type_table.items()}[int(t.scalar_type)]
    return torch.frombuffer(bytearray(t.data), dtype=dtype).reshape(list(t.sizes)).clone()


def format_bundle_report(report: BundleReport) -> str:
    lines = [f"{report.path.name}: ExecuTorch bundled-program check, {len(report.cases)} cases "
             f"(|out - ref| <= {report.atol:.3g} + {report.rtol:g} |ref| per element)"]
    for c in report.cases:
        sq = ", ".join(f"{s:.1f}" for s in c.sqnr_db)
        lines.append(f"  case {c.index}: {'pass' if c.passed else 'FAIL'}  SQNR {sq} dB, cosine "
                     + ", ".join(f"{v:.6f}" for v in c.cosine))
    bad = [c.index for c in report.cases if not c.passed]
    lines.append("  PASS: every case within tolerance" if not bad else
                 f"  FAIL: cases {bad} are outside the tolerance")
    return "\n".join(lines)


@torch.no_grad()
def write_bundle(path: str | Path, program: bytes, reference, inputs: Sequence[torch.Tensor],
                 scheme: str) -> dict:
    """Write ``path`` (.bpte): ``program`` with one case per input and ``reference``'s outputs for it.

    Returns the manifest record (``artifact.bundle``) that ``edgeml verify X.bpte`` checks against."""
    from edgeml.manifest import atomic_write_bytes

    cases = [[x.contiguous()] for x in inputs]
    expected = []
    for (x,) in cases:
        y = reference(x)
        expected.append([t.detach().float().contiguous() for t in (y if isinstance(y, (tuple, list)) else [y])])
    rtol, atol = bundle_tolerances(scheme, expected)
    data = build_bundle(program, cases, expected)
    path = Path(path)
    atomic_write_bytes(path, data)
    return {"file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
            "cases": len(cases), "method": METHOD, "rtol": rtol, "atol": atol,
            "expected": "eager PyTorch outputs of the reference model"}
