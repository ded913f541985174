"""``edgeml setup-aarch64``, and the ``--on aarch64`` half of ``edgeml verify``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeml.aarch64 import CPU_ALIASES, DEFAULT_CPUS, HOME_ENV

CPU_HELP = (f"emulated CPU profile for --on aarch64 (repeatable): a qemu -cpu model such as cortex-a72 (NEON), "
            f"cortex-a55/cortex-a76 (dot product), 'max,sme=off' (i8mm), max (SME), or an alias "
            f"({', '.join(f'{k}={v}' for k, v in CPU_ALIASES.items())}); default: {' and '.join(DEFAULT_CPUS)}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup-aarch64",
        help="build the emulated aarch64 Python that `verify --on aarch64` runs artifacts in",
        description="Build an arm64 Debian root file system (mmdebstrap) and install the PyPI aarch64 wheels of "
        "the host's torch, ExecuTorch and ONNX Runtime versions beside it, then start it once under "
        "qemu-user. About 5.4 GB of disk (mostly CUDA libraries the aarch64 torch wheel requires) and 10-30 "
        "minutes. Needs qemu-user-static >= 8.2, mmdebstrap and an aarch64 binfmt_misc handler on the host; "
        "what is missing is named with the apt-get command to install it (edgeml installs no host packages). "
        "Steps already done are kept; --force redoes them.",
    )
    p.add_argument("--home", type=Path, help=f"where to build it (default: ${HOME_ENV}, else "
                   "~/.cache/edgeml/aarch64)")
    p.add_argument("--suite", default=None, help="Debian suite of the root file system (default bookworm: "
                   "Python 3.11, which the cp311 wheels need)")
    p.add_argument("--mirror", default=None, help="Debian mirror (default http://deb.debian.org/debian)")
    p.add_argument("--force", action="store_true", help="rebuild the root file system and the wheels")
    p.set_defaults(func=cmd_setup_aarch64)


def cmd_setup_aarch64(args: argparse.Namespace) -> int:
    from edgeml.aarch64.setup import MIRROR, SUITE, setup_env

    setup_env(args.home, suite=args.suite or SUITE, mirror=args.mirror or MIRROR, force=args.force,
              log=lambda line: print(line, flush=True))
    return 0


def cmd_verify_aarch64(args: argparse.Namespace) -> int:
    """``edgeml verify ARTIFACT --on aarch64 [--cpu PROFILE ...]`` (options checked by the caller)."""
    from edgeml.aarch64.run import format_aarch64_report, verify_on_aarch64
    from edgeml.commands import _bar, _quiet
    from edgeml.errors import UsageError
    from edgeml.images import list_images, sample_images

    if args.device_outputs is not None or args.artifact.suffix.lower() == ".bpte":
        raise UsageError("--on aarch64 runs a .pte or .onnx program itself: it takes no --device-outputs or .bpte")
    if args.resolution and len(args.resolution) > 1:
        raise UsageError("--on aarch64 takes one --resolution")
    cpus = args.cpu or list(DEFAULT_CPUS)
    with _quiet():
        n = len(list_images(args.images)) if args.images else len(sample_images())
        bars = [_bar(n, f"verify {args.artifact.name}: reference and host run")]

        def on_profile(cpu: str, calls: int):
            bars.pop().close()
            bars.append(_bar(calls, f"verify {args.artifact.name} on aarch64 {cpu} (qemu)"))
            return lambda: bars[-1].update(1)

        try:
            report = verify_on_aarch64(
                args.artifact, cpus=cpus, images=args.images, min_sqnr=args.min_sqnr,
                checkpoint=args.checkpoint, resolution=args.resolution[0] if args.resolution else None,
                reference=args.reference, on_image=lambda: bars[-1].update(1), on_profile=on_profile)
        finally:
            for b in bars:
                b.close()
    print(format_aarch64_report(report))
    sys.stdout.flush()
    if args.json:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(args.json, report.to_dict())
    return 0 if report.passed else 3
