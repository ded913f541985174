"""Third-party warnings that edgeml's own use of its libraries sets off and that tell its users nothing.

Importing edgeml (``edgeml/__init__.py``) calls ``install()``, which silences exactly the messages
listed in ``KNOWN`` below, each matched by its source (a ``warnings`` category and the module the
warning is attributed to, or the logger that logs it) and a regular expression for the start of
its text. Every other warning and log record, from these libraries too, still shows. Each entry
says why it is harmless; when a library version changes what it prints, the list changes with it
(tests/test_warnings.py runs the real code paths and fails if a listed message shows).

The ``edgeml`` command line quiets third-party chatter more broadly while it draws its progress
bars (``edgeml.commands``); this list is what the Python API (``edgeml.export.export``,
``verify_artifact``, ``profile_artifact``) leaves out.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownWarning:
    """One message to silence: a ``warnings`` warning (``category`` a Warning class, ``module`` the
    regex the attributed module name must match) or a log record (``category`` a logging level,
    ``module`` the logger's exact name)."""

    module: str
    category: type[Warning] | int
    message: str  # regex, matched at the start of the message text
    why: str

    @property
    def is_log_record(self) -> bool:
        return isinstance(self.category, int)


KNOWN: tuple[KnownWarning, ...] = (
    KnownWarning(
        "torchao", logging.WARNING,
        r"Failed to load .*[/\\]torchao[/\\]_C\w*\.(cpython-[\w-]+|abi3)\.so: Could not load this library",
        "torchao ships optional CUDA (cutlass sm90a) and mxfp8 kernels as separate libraries and logs each "
        "one the machine cannot load; edgeml runs none of them (8da4w lowers to XNNPACK's own kernels)",
    ),
    KnownWarning(
        "torch.utils._pytree", logging.WARNING,
        r"<enum '(KernelPreference|ScaleCalculationMode)'> is an Enum subclass and is now natively supported",
        "torchao registers these enums as pytree constants when it is imported; the deprecation is addressed "
        "to torchao, and the registration has no effect on what edgeml exports",
    ),
    KnownWarning(
        r"copyreg\Z", FutureWarning,
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "torch.export deep-copies its own module call graph (ExportedProgram.run_decompositions), whose "
        "tree specs are LeafSpec instances; the warning concerns torch's internals, not edgeml's code",
    ),
    KnownWarning(
        "torch.onnx._internal.exporter._registration", logging.WARNING,
        r"torchvision is not installed\. Skipping torchvision::",
        "the ONNX exporter registers translations of torchvision's detection ops when torchvision is "
        "present; no edgeml model uses them",
    ),
    KnownWarning(
        r"executorch\.devtools\.inspector\._inspector\Z", UserWarning,
        r"Output Buffer not found\. Tensor Debug Data will not be available",
        "the per-operator profile records only event times (no intermediate tensors, debug buffer size 0) "
        "and reads no tensor debug data",
    ),
)


class _KnownRecords(logging.Filter):
    """Drops the listed records (level and message) of one logger."""

    def __init__(self, entries: list[KnownWarning]) -> None:
        super().__init__()
        self.entries = [(k.category, re.compile(k.message)) for k in entries]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge; let it through
            return True
        return not any(record.levelno == level and pattern.match(text) for level, pattern in self.entries)


_installed: dict[str, _KnownRecords] = {}


def install() -> None:
    """Silence the ``KNOWN`` messages (idempotent; cheap: imports none of the libraries)."""
    by_logger: dict[str, list[KnownWarning]] = {}
    for known in KNOWN:
        if known.is_log_record:
            by_logger.setdefault(known.module, []).append(known)
        else:
            # filterwarnings drops an identical earlier filter, so calling this twice adds nothing.
            warnings.filterwarnings("ignore", message=known.message, category=known.category, module=known.module)
    for name, entries in by_logger.items():
        logger = logging.getLogger(name)
        if _installed.get(name) not in logger.filters:
            _installed[name] = _KnownRecords(entries)
            logger.addFilter(_installed[name])
