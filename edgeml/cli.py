"""The ``edgeml`` command line: export, verify, profile, list, and the families' extras.

Every subcommand lives in a module exposing ``register(subparsers)``, which adds its parser
and sets ``func`` (taking the parsed args, returning an exit code). User errors
(``EdgeMLError``) print one line on stderr and exit non-zero, with no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from edgeml.errors import EdgeMLError

# Modules that contribute subcommands, in the order `edgeml --help` lists them.
COMMAND_MODULES = (
    "edgeml.commands",
    "edgeml.dynres.cli",
    "edgeml.quantize.cli",
    "edgeml.aarch64.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeml",
        description="Compile PyTorch vision models (the zoo's, your own, Hugging Face's) into on-device "
        "artifacts (.pte / .onnx), verify them against PyTorch and profile them.",
    )
    parser.add_argument("--version", action="version", version=f"edgeml {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that family's commands are not there yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeMLError as e:
        print(f"edgeml {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"edgeml {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug in edgeml, not a user error
        if os.environ.get("EDGEML_DEBUG"):
            raise
        print(
            f"edgeml {args.command}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            " (this is a bug in edgeml; rerun with EDGEML_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _version() -> str:
    from edgeml import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
