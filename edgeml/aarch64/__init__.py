"""Run artifacts on aarch64 CPU kernels without a phone: an emulated ARM Python under qemu-user.

``edgeml setup-aarch64`` (edgeml.aarch64.setup) builds an arm64 Debian root file system with
mmdebstrap and installs the PyPI aarch64 wheels of the host's own torch / ExecuTorch / ONNX
Runtime versions next to it. ``edgeml verify X --on aarch64`` (edgeml.aarch64.run) then runs the
artifact's program in that Python under ``qemu-aarch64 -cpu PROFILE``, so XNNPACK (or ONNX
Runtime's MLAS) picks the ARM micro-kernels the emulated CPU's features select — NEON, dot
product (SDOT), i8mm (SMMLA) or SME (KleidiAI) — and compares the outputs with the PyTorch
reference and with the host's own run of the same program on the same images.

This shows that the ARM kernels compute what the x86 ones do; it says nothing about a phone's
latency or memory (emulation is 100x slower and has no caches to speak of).
"""
from __future__ import annotations

import os
from pathlib import Path

from edgeml.errors import DeviceError

HOME_ENV = "EDGEML_AARCH64_HOME"

# Named CPU profiles: the kernels XNNPACK / KleidiAI select on each (qemu -cpu models).
CPU_ALIASES = {
    "neon": "cortex-a72",       # ARMv8.0: plain NEON
    "dotprod": "cortex-a76",    # ARMv8.2 + dot product (SDOT/UDOT)
    "i8mm": "max,sme=off",      # ARMv9 features with int8 matrix multiply (SMMLA), no SME
    "sme": "max",               # everything qemu emulates, SME/SME2 included (KleidiAI kernels)
}
DEFAULT_CPUS = ("cortex-a76", "max,sme=off")


class Aarch64EnvError(DeviceError):
    """The emulated aarch64 environment or a host tool it needs is missing or broken."""


def default_home() -> Path:
    """Where the environment lives: $EDGEML_AARCH64_HOME, else $XDG_CACHE_HOME/edgeml/aarch64."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "edgeml" / "aarch64"


def resolve_cpu(name: str) -> str:
    """A qemu ``-cpu`` value from a profile name or alias (``dotprod`` -> ``cortex-a76``)."""
    name = name.strip()
    return CPU_ALIASES.get(name, name)
